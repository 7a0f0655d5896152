"""Steps of ``log_prob(D, x)`` and a closed-form ``entropy(D)`` (see :mod:`stochgrad.densities`).

Both read ``D``'s parameters through the builder's checked, aligned distribution step (so bad
parameters are reported as for a sampled node, by :class:`~.checks.DistCheck`); ``log_prob``
lifts the parameters and ``x`` to one logical rank and gives ``-inf`` outside the support; the law
``iid(K, D)`` keeps (or broadcasts to) its copies axis (:func:`~stochgrad.densities.with_copies`).
A Monte Carlo entropy was rewritten by the planner into an expectation of ``-log_prob``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..densities import Entropy, Iid, LogProb, batch_rank, entropy_value, log_prob_value, param_event_ranks, with_copies
from ..distributions import lookup
from ..errors import StochgradError
from ..labels import log_prob_data, one_hot_hint
from .frame import Frame

if TYPE_CHECKING:
    from ..types import Array


def _arrays(fr: Frame, p: dict[str, Any]) -> dict[str, Array]:
    return {k: fr.array(v) for k, v in p.items()}


def _check_event_shapes(fr: Frame, e: LogProb | Entropy, p: dict[str, Any]) -> None:
    """A law with event axes (MultivariateNormal: ``loc`` (..., d) and ``(..., d, d)`` matrices) checks
    its parameters' shapes as for a sampled node, naming the parameter."""
    law = lookup(e.dist.name)
    if law.event_rank:
        law.value_shape({k: () if isinstance(v, float) else fr.B.shape(v)[1:] for k, v in p.items()}, e.dist)


def log_prob_step(builder: Any, e: LogProb, bound: frozenset[str]) -> Any:
    params, x = builder._dists([e.dist], e, bound), builder.step(e.x, bound)

    def log_prob(fr: Frame, env: dict[str, Array]) -> Array:
        (p,) = params(fr, env)
        _check_event_shapes(fr, e, p)
        value = x(fr, env)
        if e.data is not None:  # integer data: labels gathered, counts checked (stochgrad.labels)
            return log_prob_data(fr, e, p, value, lambda: _log_prob(fr, e, p, value))
        return _log_prob(fr, e, p, value)

    return log_prob


def _log_prob(fr: Frame, e: LogProb, p: dict[str, Any], x: Array) -> Array:
    names = list(p)
    batch = batch_rank(fr.B, e.dist, _arrays(fr, p)) if isinstance(e.dist, Iid) else 0
    ranks = param_event_ranks(e.dist)  # align on the batch axes only (a vector loc, a batch of matrices)
    event = [ranks.get(k, 0) for k in names] + [lookup(e.dist.name).event_rank]
    *values, value = fr.align(*_arrays(fr, p).values(), fr.array(x), ranks=event)
    if e.stopped:  # sticking the landing (stochgrad.estimators.stl)
        values = [fr.B.stop_gradient(v) for v in values]
    try:
        out = log_prob_value(fr.B, e.dist, dict(zip(names, values)), value)
        return with_copies(fr.B, e.dist, dict(zip(names, values)), out, batch)
    except (ValueError, RuntimeError, TypeError) as exc:  # shapes that do not broadcast (jax: TypeError): name it
        shapes = ", ".join(f"{k} {fr.B.shape(v)[1:]}" for k, v in zip(names, values))
        given = [fr.B.shape(fr.array(v))[1:] for v in (*p.values(), x)]
        raise StochgradError(
            f"`{e}`: the value x of shape {fr.B.shape(x)[1:]} does not fit the"
            f" distribution's parameters ({shapes}): {exc}{one_hot_hint(e, [max(given[:-1], key=len), given[-1]])}",
            e.span,
        ) from None


def entropy_step(builder: Any, e: Entropy, bound: frozenset[str]) -> Any:
    params = builder._dists([e.dist], e, bound)

    def entropy(fr: Frame, env: dict[str, Array]) -> Array:
        (p,) = params(fr, env)
        _check_event_shapes(fr, e, p)
        return fr.array(entropy_value(fr.B, e.dist, _arrays(fr, p)))

    return entropy
