"""Moving-average baselines as explicit state in and out, optax's ``(params, state)`` convention.

A compiled objective keeps its moving averages in ``f.baseline_state``, which it mutates on every call
and reads on the host (:mod:`stochgrad.baselines`): right for torch and autograd loops, impossible in a
pure function.  On the jax backend an objective also takes the state explicitly and returns the next one::

    f = sg.compile("E[(y - 0.3)**2, y ~ Bernoulli(p)]", backend="jax", n=64, estimators={"y": "score:baseline=ema"})
    state = f.init_state(p=0.4)                    # {"y": {"value": 0.0, "updates": 0}}: a pytree of arrays
    value, state = f(key=k, state=state, p=0.4)    # jax.jit, jax.grad(..., has_aux=True), lax.scan all apply

The state is a dict by variable (``"z#<uid>"`` where two nodes share a name) of ``{"value": array of
the node's cost-mean shape, "updates": int32 scalar}``.  The rule is :class:`~stochgrad.baselines.AverageState`'s,
computed with array operations instead of on the host: with ``m_t`` the batch's mean cost (gradient-free)
and ``u`` the updates so far,

    b_t = (u > 0) * v                              (the baseline this batch uses: the state *before* it)
    v  <- m_t if u == 0 else decay * v + (1 - decay) * m_t,    u <- u + 1

Batch ``t`` uses ``b_{t-1}``, which does not depend on its own samples, so the score-function estimator stays
unbiased; before the first update the baseline is 0, which gives the same gradient as no baseline.  The
result is a function of the key (or the call's seeded noise), the parameters and the state only: same
key and state, same value and same next state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import StochgradError, ValidationError

if TYPE_CHECKING:
    from .backend import Backend


class ExplicitAverage:
    """One node's moving average inside one call: reads ``value``/``updates`` from the given state and
    leaves the next ones in ``out`` (``record``: only notes the shape, for :meth:`ExplicitState.init`)."""

    explicit = True  # baseline_value's cue (stochgrad.estimators.score)

    def __init__(self, name: str, given: Mapping[str, Any] | None) -> None:
        self.name, self.given = name, given
        self.out: dict[str, Any] | None = None

    def advance(self, B: Backend, mean: Any, decay: float) -> Any:
        """The baseline for this batch (None when only recording) from the batch's mean cost ``mean``."""
        if self.given is None:  # init: record the shape and dtype of the value
            self.out = {"value": B.asarray(np.zeros(B.shape(mean))), "updates": np.zeros((), dtype=np.int32)}
            return None
        value, updates = self.given["value"], self.given["updates"]
        if tuple(B.shape(value)) != tuple(B.shape(mean)):
            raise StochgradError(
                f"the moving-average state of {self.name} holds a value of shape {tuple(B.shape(value))}, but this"
                f" call's costs have shape {tuple(B.shape(mean))}; make the state with f.init_state(...) for"
                " parameters of these shapes"
            )
        seen = B.fn["gt"](updates, 0)  # 1.0 after the first update, else 0.0 (a float of the backend's dtype)
        self.out = {
            "value": B.stop_gradient(seen * (decay * value + (1 - decay) * mean) + (1 - seen) * mean),
            "updates": updates + 1,
        }
        return B.stop_gradient(B.reshape(seen * value, (1, *B.shape(value))))


class ExplicitState:
    """The moving averages of one call, given (``state``) or being recorded (``state=None``): the lowering's
    ``frame.baselines`` (it asks :meth:`node` for a stateful node's state, as of a
    :class:`~stochgrad.baselines.BaselineState`)."""

    def __init__(self, plan: Any, state: Any, record: bool = False) -> None:
        vars_ = [n.var for n in plan.nodes if n.spec.stateful]
        self.names = {
            n.uid: n.var if vars_.count(n.var) == 1 else f"{n.var}#{n.uid}" for n in plan.nodes if n.spec.stateful
        }
        self.state = None if record else state
        self._nodes: dict[int, ExplicitAverage] = {}
        if not record and not isinstance(state, Mapping):
            raise ValidationError(
                f"state must be the dict f.init_state(...) made (or a call returned), got {type(state).__name__}"
            )

    def node(self, node: Any) -> ExplicitAverage:
        name = self.names.get(node.uid, node.var)
        if node.uid not in self._nodes:
            given = None
            if self.state is not None:
                given = self.state.get(name)
                if not (isinstance(given, Mapping) and "value" in given and "updates" in given):
                    have = ", ".join(map(repr, self.state)) or "none"
                    raise ValidationError(
                        f"state has no moving-average entry {name!r} ({{'value', 'updates'}}; it"
                        f" has: {have}); make it with f.init_state(...)"
                    )
            self._nodes[node.uid] = ExplicitAverage(name, given)
        return self._nodes[node.uid]

    def out(self) -> dict[str, Any]:
        """The next state: the given one with every advanced node's entry replaced."""
        nxt = dict(self.state or {})
        nxt.update({a.name: a.out for a in self._nodes.values() if a.out is not None})
        extra = [k for k in nxt if k not in self.names.values()] if self.state is not None else []
        if extra:
            raise ValidationError(
                f"state has entries {', '.join(map(repr, extra))} that this objective's plan does"
                " not have (its moving averages: "
                f"{', '.join(map(repr, self.names.values())) or 'none'}); make it with f.init_state(...)"
            )
        return nxt
