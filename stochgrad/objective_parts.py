"""What an :class:`stochgrad.compiled.Objective` does around a call: explicit state, checks, the scalar.

* **Explicit state** (jax): ``init_state`` makes the moving averages' state by one recording call, and
  ``f(key=k, state=state, ...)`` carries it in and out (:mod:`stochgrad.explicit_state`).
* **Checks**: with ``validate=True`` one host read of the returned scalar; a NaN or infinity is
  reported (a :class:`~stochgrad.errors.NonFiniteWarning` naming the expression, the call and the first
  non-finite subexpression), never returned silently.  Gradients exist only after the caller's
  ``backward``, so :meth:`ObjectiveParts.check_gradients` counts their non-finite entries on request.
* **The scalar**: the per-sample surrogate summed over its entries and averaged over the ``n`` samples,
  whose value is the Monte Carlo estimate and whose gradient the planned estimator (DiCE, Foerster et
  al. 2018).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import diagnostics
from .errors import NonFiniteWarning, ValidationError, did_you_mean
from .explicit_state import ExplicitState
from .noise import NoiseSource
from .sampleaxis import with_sample_axis

if TYPE_CHECKING:
    from .backend import Backend
    from .ir import Expr
    from .planner import Plan
    from .program import Frame

#: ``__call__`` without ``state=``; ``init_state``'s recording call
_NO_STATE, _RECORD = object(), object()


class ObjectiveParts:
    """The parts of :class:`stochgrad.compiled.Objective` around one call (see the module docstring)."""

    B: Backend
    expr: Expr
    n: int
    fuse: bool
    validate: bool
    batch_axes: int
    noise_seed: int
    parameters: tuple[str, ...]

    if TYPE_CHECKING:  # the Objective's own call, which init_state makes once

        def __call__(self, **params: Any) -> Any: ...

    def _explicit(self, p: Plan, state: Any) -> ExplicitState:
        if "explicit_state" not in self.B.capabilities:
            raise ValidationError(
                f"state=... (explicit moving-average state) needs a backend with the explicit_state"
                f" capability (jax); a {self.B.name} objective keeps its moving averages in"
                " f.baseline_state"
            )
        if self.fuse:
            raise ValidationError("fuse=True cannot take an explicit state (state=...)")
        return ExplicitState(p, None, record=True) if state is _RECORD else ExplicitState(p, state)

    def init_state(self, **params: Any) -> dict[str, Any]:
        """The initial explicit state of the moving-average baselines (jax backend), for parameters like
        ``params`` (values, as ``optax``'s ``opt.init(params)``; read for their shapes, with one
        forward call): ``{var: {"value": zeros, "updates": 0}}``, empty when no node has one.  Then
        ``value, state = f(key=k, state=state, **params)``; see :mod:`stochgrad.explicit_state`."""
        if "explicit_state" not in self.B.capabilities:
            raise ValidationError(
                f"init_state needs a backend with the explicit_state capability (jax); a {self.B.name}"
                " objective keeps its moving averages in f.baseline_state"
            )
        return self(state=_RECORD, **params)[1]  # one recording call on seeded noise, not counted as a call

    def _check_finite(self, out: Any, p: Plan, native: Mapping[str, Any], call: int, keyed: Any = None) -> Any:
        """With ``validate=True``, one host read of the returned scalar: a NaN or infinity gives a
        :class:`~stochgrad.errors.NonFiniteWarning` naming the expression, the call and (re-running
        the call forward, only then) the first non-finite subexpression."""
        if not self.validate:
            return out
        value = self.B.item(out)
        if math.isfinite(value):
            return out
        B = self.B
        params = with_sample_axis(B, {k: B.stop_gradient(v) for k, v in native.items()})
        located = diagnostics.locate_call(
            B,
            p.root,
            params,
            keyed or NoiseSource(B, self.noise_seed, 0, self.n, blocked=False, call=call),
            self.batch_axes,
        )
        warnings.warn(
            f"{self.expr}: the objective's value is {value!r} (call {call}, n={self.n})"
            + (f"; first seen in {located}" if located else ""),
            NonFiniteWarning,
            stacklevel=3,
        )
        return out

    def check_gradients(self, **grads: Any) -> dict[str, int]:
        """After the caller's ``backward`` / ``grad`` (which the objective cannot see): the number of
        NaN or infinite entries of each given gradient (native arrays by parameter name; listing only
        those with some), with a :class:`~stochgrad.NonFiniteWarning` naming them.  One host copy
        per gradient: ``f.check_gradients(mu=mu.grad)``."""
        for k in grads:
            if k not in self.parameters:
                raise TypeError(
                    f"check_gradients: unknown parameter {k!r}{did_you_mean(k, self.parameters)}; the"
                    f" expression's parameters are: {', '.join(self.parameters) or 'none'}"
                )
        counts = diagnostics.nonfinite({f"grad[{k!r}]": self.B.to_numpy(g) for k, g in grads.items()})
        if counts:
            shown = ", ".join(f"{k} ({c} entr{'y' if c == 1 else 'ies'})" for k, c in counts.items())
            warnings.warn(f"{self.expr}: non-finite gradients: {shown}", NonFiniteWarning, stacklevel=2)
        return counts

    def _finish(self, frame: Frame, surrogate: Any) -> Any:
        """The objective from the per-sample surrogate: summed over entries, averaged over samples."""
        s = frame.array(surrogate)
        shape = self.B.shape(s)
        if len(shape) == 1:  # one entry per sample: their mean, one operation
            return self.B.mean(s)
        total = self.B.sum(s, tuple(range(len(shape))))
        return total if shape[0] == 1 else total / shape[0]
