"""Input-dependent ("learned") baselines for the score function (Mnih & Gregor 2014, "Neural
variational inference and learning in belief networks", section 3.2; Pyro's ``nn_baseline``).

``sg.Score(baseline=sg.Baseline(fn, inputs=("x",)))``: the baseline of node ``z`` is
``b = fn(stop(x), ...)``, a function of the *context* named in ``inputs`` -- parameters of the
expression, or random variables sampled *before* ``z`` -- never of ``z`` itself or of what is
sampled after it.  The score term then is ``stop(f - b) grad log q(z)`` (b stopped), and
``E[b grad log q(z)] = E_context[b E_z[grad log q(z) | context]] = 0``: unbiased for *any* ``fn``
at first order (and in DiCE form ``[]L (f - b) + b`` at every order, since b carries no gradient of
the model's parameters: its inputs are stopped).

Training (Mnih & Gregor's squared-error criterion).  The surrogate also gets the value-zero term::

    s * ( (stop(f) - b)^2 - stop((stop(f) - b)^2) )     per sample, averaged like the cost

whose value is exactly 0 (the objective's value is unchanged), whose gradient with respect to the
model's parameters is 0 (f and the inputs are stopped), and whose gradient with respect to the
baseline's own parameters is ``s * grad mean (f - b)^2``.  ``s = +1`` for ``goal="minimize"`` (the
default: the user's optimizer descends the objective, so it descends the squared error too) and
``s = -1`` for ``goal="maximize"`` (an ELBO ascended: ascending ``-err`` descends the error).

Contract of ``fn``: it receives the native arrays of ``inputs`` in that order, each with the
sample axis first (length ``n``, or 1 for a parameter), gradient-stopped; it returns one baseline per
sample -- an array of the shape of the node's per-sample cost (``(n,)``, or ``(n, examples)`` under
a plate) or one that broadcasts to it (a scalar: a constant baseline).  Trainable state lives in the
callable: with torch a ``torch.nn.Module`` (or a closure over tensors with ``requires_grad``) gets
``.grad`` from the same ``backward()`` as the model.  With autograd (HIPS), a closure's arrays are
constants: the baseline is then fixed (still unbiased), not trained.  ``sg.estimate`` runs a fixed
baseline too (its gradients are of the named parameters only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import PlanError

if TYPE_CHECKING:
    from ..backend import Backend
    from .base import Array

GOALS = {"minimize": 1.0, "maximize": -1.0}


@dataclass(frozen=True, eq=False)
class Baseline:
    """A score-function baseline ``fn(*inputs)`` of the node's context, trained by the objective to
    the squared error of the (stopped) cost; ``goal`` says whether the user's optimizer minimises
    (default) or maximises the objective.  Compared by identity (it holds the callable)."""

    fn: Callable[..., Any]
    inputs: tuple[str, ...] = ()
    goal: str = "minimize"

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise PlanError(f"Baseline needs a callable (a function or a torch module), got {type(self.fn).__name__}")
        inputs = (self.inputs,) if isinstance(self.inputs, str) else tuple(self.inputs)
        if not all(isinstance(k, str) and k.isidentifier() for k in inputs):
            raise PlanError(f"Baseline inputs must be names of parameters or earlier variables, got {self.inputs!r}")
        object.__setattr__(self, "inputs", inputs)
        if self.goal not in GOALS:
            raise PlanError(f"Baseline goal must be 'minimize' or 'maximize', got {self.goal!r}")

    def describe(self) -> str:
        name = getattr(self.fn, "__name__", type(self.fn).__name__)
        return f"learned baseline {name}({', '.join(self.inputs)}), trained to {self.goal} with the objective"


def learned_control(
    baseline: Baseline, B: Backend, cost: Array, scope: dict[str, Array], var: str, later: Sequence[str] | None
) -> tuple[Array, Array]:
    """``(stop(b), fit)``: the baseline of node ``var`` for its per-sample ``cost`` and the
    value-zero training term (one per sample), see the module docstring.  ``later`` names ``var``
    and the variables sampled after it, which the baseline may not read (None: the expectation
    enumerates a node, which this baseline does not support)."""
    if later is None:
        raise PlanError(
            f"the learned baseline of {var} cannot be used in an expectation that enumerates a node;"
            " use the 'loo' baseline there, or another estimator for the enumerated node"
        )
    args = []
    for k in baseline.inputs:
        if k in later:
            what = "its own sample" if k == var else f"{k}, which is sampled after {var}"
            raise PlanError(
                f"the learned baseline of {var} reads {what}: a baseline must not depend on the node's"
                " sample (it would bias the score function); give it parameters or earlier variables"
            )
        if k not in scope:
            raise PlanError(
                f"the learned baseline of {var} reads {k!r}, which is not a parameter or variable in"
                f" scope here (known: {', '.join(sorted(scope))})"
            )
        args.append(B.stop_gradient(scope[k]))
    out = baseline.fn(*args)
    try:
        out = B.asarray(np.asarray(out, dtype=float)) if np.isscalar(out) else out
        got = tuple(B.shape(out))
    except Exception as exc:
        raise PlanError(f"the learned baseline of {var} returned {type(out).__name__}, not an array") from exc
    want = tuple(B.shape(cost))
    try:
        fits = np.broadcast_shapes(got, want) == want
    except ValueError:
        fits = False
    if not fits:
        raise PlanError(
            f"the learned baseline of {var} returned shape {got}; it must give one baseline per sample,"
            f" shape {want} (or one that broadcasts to it)"
        )
    c = B.stop_gradient(cost)
    sq = (c - out) ** 2
    fit = GOALS[baseline.goal] * (sq - B.stop_gradient(sq))
    rest = tuple(range(1, len(want)))
    if rest:  # sq has the cost's shape (out broadcasts to it): one training term per sample
        fit = B.sum(fit, rest)
    return B.stop_gradient(out + 0 * c), fit
