"""The score function with the delta-method control variate (``"delta"``, ``sg.estimators.Delta()``).

Mohamed, Rosca, Figurnov & Mnih 2020, "Monte Carlo gradient estimation in machine learning"
(JMLR), section 7.2; Paisley, Blei & Jordan 2012, "Variational Bayesian inference with stochastic
search" (ICML), for the score function.  For ``L(theta) = E_{z ~ q_theta}[f(z)]`` with a known mean
``mu_theta = E[z]``, the first-order Taylor expansion of the cost around the mean,

    h(z) = f(mu) + grad f(mu)^T (z - mu),      coefficients held at the current theta,

has a known expectation ``E[h] = f(mu)``, whose gradient (the coefficients fixed) is
``grad_theta E_q[h] = grad f(mu)^T grad_theta mu``.  The estimator is

    g = (f(z) - h(z) - b) grad log q(z) + grad f(mu)^T grad_theta mu  (+ the cost's own path, as DiCE)

with ``b`` leave-one-out over the *residuals* ``f - h`` of the other samples (or none).

* **Bias: none, for every cost**: ``E[h(z) grad log q(z)] = grad_theta E_q[h]`` holds for any
  coefficients that do not depend on the sample, so ``g`` is unbiased also where ``f`` is not
  differentiable (autodiff's gradient there is just another coefficient); ``f`` and its gradient must
  be finite at ``mu`` for the variance to fall -- non-finite coefficients are replaced by 0 (the
  plain score term for that coefficient), which keeps it unbiased.
* **Variance**: the score term multiplies only the residual ``f - h = O(|z - mu|^2)``; for a cost
  close to linear around the mean the variance is far below the score function's with a
  leave-one-out baseline (a linear cost gives the exact gradient from one sample).
* **Orders**: the **first** only (the coefficients are held, so the surrogate's second derivative is
  not that of ``E[f]``): a second derivative is refused by name (``orders = 1``).
* **Laws**: continuous ones with a closed-form mean (:data:`MEANS`): Normal, MultivariateNormal,
  Laplace, Logistic, Gumbel, Uniform, Exponential, LogNormal.  Discrete nodes are refused (the mean
  is not in the support, the cost need not be defined there).
* **Backends**: the cost's gradient at the mean is taken inside the forward pass
  (``Backend.grad_inside``, capability ``"grad_inside"``: torch and HIPS autograd, which nests its
  traces); a backend without it is refused by name.  The cost is evaluated twice per sample (at
  ``z`` and at ``mu``), the price ``min_variance`` weighs (:meth:`Delta.evaluations`).
* The node must be the only random node of its expectation, outside enumerations and ``batch_axes``
  runs (:func:`~.copies.alone`); ``antithetic=true`` draws antithetic pairs (:mod:`.antithetic`, the
  residual baseline then leaves the partner out).  ``piloted``: unbiased for any cost where it
  applies, so ``policy="min_variance"`` weighs it (at two cost evaluations per sample) and lists it as
  refused where it does not apply; :func:`stochgrad.compare` runs it where it applies.  The paper's second-order (Hessian) variant is not implemented.

The surrogate (first-order form): ``S = f(z) + stop(f - h - b) (L - stop L) + c^T (mu - stop mu)``
with ``c = stop(grad f(mu))``: value the Monte Carlo estimate ``f(z)``, first derivative ``g``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

from ..errors import PlanError
from .antithetic import Antithetic, flag, leave_pair_out
from .base import Array, EstimatorSpec, ExpectStep
from .copies import alone, cost_on_copies
from .score import leave_one_out

if TYPE_CHECKING:
    from ..backend import Backend
    from ..distributions import Distribution, Draw
    from ..planned import NodePlan, PlannedExpect
    from ..program.frame import Frame

_EULER = 0.5772156649015329

#: law name -> its mean from the parameters (differentiable)
MEANS: dict[str, Callable[[Any, dict[str, Array]], Array]] = {
    "Normal": lambda B, p: p["loc"],
    "MultivariateNormal": lambda B, p: p["loc"],
    "Laplace": lambda B, p: p["loc"],
    "Logistic": lambda B, p: p["loc"],
    "Gumbel": lambda B, p: p["loc"] + _EULER * p["scale"],
    "Uniform": lambda B, p: 0.5 * (p["low"] + p["high"]),
    "Exponential": lambda B, p: 1.0 / p["rate"],
    "LogNormal": lambda B, p: B.fn["exp"](p["loc"] + 0.5 * p["scale"] * p["scale"]),
}


@dataclass(frozen=True)
class Delta(Antithetic, EstimatorSpec):
    """Score function minus the first-order Taylor expansion of the cost at the node's mean."""

    name: ClassVar[str] = "delta"
    piloted: ClassVar[bool] = True  # unbiased for any cost where it applies: min_variance weighs it
    scores: ClassVar[bool] = True
    orders: ClassVar[int | None] = 1  # a second derivative is refused by name
    baseline: Any = "loo"
    antithetic: bool = False

    def __post_init__(self) -> None:
        if self.baseline not in ("loo", None):
            raise PlanError(f"delta: baseline must be 'loo' or none (over the residuals f - h), got {self.baseline!r}")
        object.__setattr__(self, "antithetic", flag(self.antithetic, self.name))

    def describe(self) -> str:
        base = "leave-one-out" if not self.antithetic else "leave-one-pair-out"
        base = f"{base} residual baseline" if self.baseline == "loo" else "no baseline"
        pairs = ", antithetic pairs" if self.antithetic else ""
        return f"delta (score, delta-method control variate at the mean, {base}{pairs}; first order only)"

    def requires(self, d: Distribution, *, states: int | None, capabilities: frozenset[str] | None = None) -> None:
        if d.name not in MEANS:
            raise PlanError(
                f"delta needs a continuous node with a known mean ({', '.join(MEANS)}); this node is {d.name}"
            )
        if capabilities is not None and "grad_inside" not in capabilities:
            raise PlanError(
                "delta needs the cost's gradient inside the forward pass; the backend lacks the grad_inside capability"
            )

    def evaluations(self, states: int | None, node: NodePlan | None = None) -> int:
        return 2  # the cost at z and at the mean (with its gradient)

    def at_one_sample(self) -> EstimatorSpec:
        return dataclasses.replace(self, baseline=None) if self.baseline == "loo" else self

    def own_surrogate(self, e: PlannedExpect, nodes: Sequence[Any], terms: Sequence[Any]) -> ExpectStep:
        return lambda fr, env: expect(fr, e, env, nodes[0], list(terms))

    def sample(self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]) -> tuple[Array, Array]:
        """``z`` and ``log q(z)`` (as the score function draws them); the surrogate draws through
        :meth:`sample_copies`, which the node step prefers."""
        return d.sample_and_log_prob(B, p, draw, shape)

    def sample_copies(
        self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]
    ) -> tuple[Array, Array]:
        """``z`` and the mean ``mu`` (broadcast to ``z``, differentiable) as two blocks on the sample
        axis, and ``log q(z)``."""
        z, logq = d.sample_and_log_prob(B, p, draw, shape)
        return B.concat([z, MEANS[d.name](B, p) + 0.0 * z]), logq

    def residual_baseline(self, B: Backend, resid: Array, count: int, block: int | None) -> Array | None:
        """Leave-one-out (or, with antithetic pairs, leave-one-pair-out) over the residuals ``f - h``."""
        if self.baseline is None or B.shape(resid)[0] < 2:
            return None
        return leave_pair_out(B, resid, count) if self.antithetic else leave_one_out(B, resid, count, block)


def _finite(B: Backend, x: Array) -> Array:
    """``x`` with its non-finite entries set to 0 (gradient-free)."""
    ok = B.fn["lt"](B.fn["abs"](x), math.inf)
    return B.stop_gradient(B.fn["where"](ok, x, ok * 0.0))


def expect(fr: Frame, e: PlannedExpect, env: dict[str, Array], node: Any, terms: list[Any]) -> Array:
    """The delta-method surrogate of an expectation whose one random node is ``delta`` (module docstring)."""
    spec, B, var = cast(Delta, e.nodes[0].spec), fr.B, e.nodes[0].var
    alone(fr, e, "delta")
    values, logq = node(fr, env)
    n = B.shape(values)[0] // 2
    z, mu = values[:n], values[n:]
    at = B.stop_gradient(mu)
    (f,) = cost_on_copies(fr, e, {**env, var: z}, terms, 1, "delta")
    f_mu, c = B.grad_inside(lambda x: cost_on_copies(fr, e, {**env, var: x}, terms, 1, "delta")[0], at)
    f_mu, c = _finite(B, f_mu), _finite(B, c)
    axes = tuple(range(1, len(B.shape(z))))

    def linear(x: Array) -> Array:  # c^T x per sample
        return B.sum(c * x, axes) if axes else c * x

    resid = B.stop_gradient(f - f_mu - linear(z - at))
    base = spec.residual_baseline(B, resid, fr.noise.count, fr.loo_block)
    if base is not None:
        resid = resid - base
    lq = B.sum(logq, tuple(range(1, len(B.shape(logq))))) if len(B.shape(logq)) > 1 else logq
    while len(B.shape(lq)) < len(B.shape(f)):
        lq = B.reshape(lq, B.shape(lq) + (1,))
    return f + resid * (lq - B.stop_gradient(lq)) + linear(mu - at)
