"""Steps of ``log_prob(D, x)`` and a closed-form ``entropy(D)`` (see :mod:`stochgrad.densities`).

Both read ``D``'s parameters through the builder's checked, aligned distribution step (so bad
parameters are reported as for a sampled node, by :class:`~.checks.DistCheck`); ``log_prob``
lifts the parameters and ``x`` to one logical rank and gives ``-inf`` outside the support.
A Monte Carlo entropy was rewritten by the planner into an expectation of ``-log_prob``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..densities import Entropy, LogProb, entropy_value, log_prob_value
from ..errors import StochgradError
from .frame import Frame

if TYPE_CHECKING:
    from ..types import Array


def _arrays(fr: Frame, p: dict[str, Any]) -> dict[str, Array]:
    return {k: fr.array(v) for k, v in p.items()}


def log_prob_step(builder: Any, e: LogProb, bound: frozenset[str]) -> Any:
    params, x = builder._dists([e.dist], e, bound), builder.step(e.x, bound)

    def log_prob(fr: Frame, env: dict[str, Array]) -> Array:
        (p,) = params(fr, env)
        names = list(p)
        *values, value = fr.align(*_arrays(fr, p).values(), fr.array(x(fr, env)))
        if e.stopped:  # sticking the landing (stochgrad.estimators.stl)
            values = [fr.B.stop_gradient(v) for v in values]
        try:
            return log_prob_value(fr.B, e.dist, dict(zip(names, values)), value)
        except (ValueError, RuntimeError, TypeError) as exc:  # shapes that do not broadcast (jax: TypeError): name it
            shapes = ", ".join(f"{k} {fr.B.shape(v)[1:]}" for k, v in zip(names, values))
            raise StochgradError(f"`{e}`: the value x of shape {fr.B.shape(value)[1:]} does not fit the"
                                 f" distribution's parameters ({shapes}): {exc}", e.span) from None

    return log_prob


def entropy_step(builder: Any, e: Entropy, bound: frozenset[str]) -> Any:
    params = builder._dists([e.dist], e, bound)

    def entropy(fr: Frame, env: dict[str, Array]) -> Array:
        (p,) = params(fr, env)
        return fr.array(entropy_value(fr.B, e.dist, _arrays(fr, p)))

    return entropy
