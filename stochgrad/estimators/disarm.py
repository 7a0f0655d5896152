"""ARM and DisARM: antithetic score-function estimators for Bernoulli nodes (first order only).

For ``z ~ Bernoulli(logits=theta)`` (elementwise over an array of any shape; ``probs=p`` is
``theta = logit(p)``) and ``L(theta) = E[f(z)]``, draw ``u ~ U(0,1)^D`` and the antithetic pair
``b = 1[u < sigmoid(theta)]``, ``b~ = 1[1 - u < sigmoid(theta)]`` (both exactly Bernoulli(theta)):

* **ARM** (Yin & Zhou 2019, "ARM: Augment-REINFORCE-Merge gradient for stochastic binary
  networks", ICLR): ``g_theta = (f(b~) - f(b)) (u - 1/2)``;
* **DisARM** (Dong, Mnih & Tucker 2020, "DisARM: an antithetic gradient estimator for binary
  latent variables", NeurIPS): ``g_theta_d = 1/2 (f(b) - f(b~)) (-1)^{b~_d} 1[b_d != b~_d]
  sigmoid(|theta_d|)`` -- ARM with ``u`` integrated out given the pair, so never more variance.

Both are unbiased for every cost ``f`` (also a discontinuous one).  They fit the score seam: the
sample axis of ``n`` samples holds ``m = n // 2`` pairs, sample ``i < m`` and its *partner*
``i + m`` sharing ``u`` / ``1 - u`` (with ``n`` odd the last sample is its own partner: its score
term is ``f - f = 0``, and the weights are scaled by ``n / 2m``).  Each sample gets the *pseudo log q*
``L_i = sum_d stop(w_id) theta_d`` and the control variate ``b_i = f(partner of i)``, so the
surrogate's score term ``(f_i - f_i') grad L_i`` of a pair sums to
``(f_i - f_i') (w_i - w_i') grad theta``.  ARM: ``w_i = 1/2 - u_i`` gives
``w_i - w_i' = 1 - 2 u_i`` and the pair sum ``2 (f(b~) - f(b)) (u - 1/2)``; DisARM:
``w_i = (-1)^{b_i'} 1[b_i != b_i'] sigmoid(|theta|) / 2`` gives ``w_i - w_i' = (-1)^{b_i'}
1[b_i != b_i'] sigmoid(|theta|)`` and the pair sum twice the DisARM estimate.  The mean over the
``n`` samples is therefore the mean of the estimator over the ``m`` pairs.  Gradients for
``probs`` and upstream parameters follow by the chain rule through ``theta``.

Bias: none.  Derivative orders: the **first** only -- ``L_i`` is not ``log q``, so the surrogate's
second derivatives would not be those of ``E[f]``: ``L_i`` is built by ``Backend.implicit_grad``
(value 0, gradient ``w_i``), whose second derivative is refused by name (use ``score`` or
``enumerate`` for Hessians).
Refused with a clear error: non-Bernoulli nodes, a single sample (or a chunk of one), copies
of enumerated nodes above the node (pairs would mix copies), and parameters that differ from sample
to sample (a Bernoulli whose probs depend on another random node: partners would have different
laws).  The planner never picks them by default (static rules); as unbiased estimators they are
``piloted`` and ``compared``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import PlanError, StochgradError
from .base import Array, EstimatorSpec

if TYPE_CHECKING:
    from ..backend import Backend
    from ..distributions import Distribution, Draw


def _var(draw: Any) -> str:
    node = getattr(draw, "node", None)
    return getattr(node, "var", "the node")


def _partners(B: Backend, x: Array) -> Array:
    """Each sample's partner along the sample axis: ``i <-> i + m`` for ``i < m = n // 2``; with
    ``n`` odd the last sample is its own partner."""
    n = B.shape(x)[0]
    m = n // 2
    return B.concat([x[m:2 * m], x[:m], x[2 * m:]])


@dataclass(frozen=True)
class ARM(EstimatorSpec):
    """Augment-REINFORCE-merge (Yin & Zhou 2019) on antithetic pairs of a Bernoulli node."""

    name: ClassVar[str] = "arm"
    scores: ClassVar[bool] = True
    piloted: ClassVar[bool] = True
    paired: ClassVar[bool] = True  # partners are dependent: a run's standard errors count pairs
    orders: ClassVar[int | None] = 1  # a second derivative is refused by name

    def describe(self) -> str:
        return f"{self.name} (antithetic pairs, partner-cost baseline; first order only)"

    def requires(self, d: Distribution, *, states: int | None, capabilities: frozenset[str] | None = None) -> None:
        if d.name != "Bernoulli":
            raise PlanError(f"{self.name} needs a Bernoulli node; this node is {d.name}")

    def weights(self, B: Backend, u: Array, b: Array, partner: Array, q: Array) -> Array:
        """Per-sample ``w`` of the pseudo log q ``sum_d stop(w_d) theta_d`` (see the module docstring)."""
        return 0.5 - u

    def sample(self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]) -> tuple[Array, Array]:
        var = _var(draw)
        if d.name != "Bernoulli":
            raise PlanError(f"{self.name} needs a Bernoulli node; {var} is {d.name}")
        full = draw("uniform", shape)
        n = B.shape(full)[0]
        if n < 2:
            raise StochgradError(
                f"{self.name} on {var} needs at least 2 samples (one antithetic pair), got {n}"
                " (with chunk=, every chunk needs 2)")
        m = n // 2  # pairs; with n odd the last sample is its own partner and scores nothing
        for key, value in p.items():  # partners must share the law: parameters equal across each pair
            if B.shape(value)[0] != 1:
                v = B.to_numpy(B.stop_gradient(value))
                if not np.array_equal(v[:m], v[m:2 * m]):
                    raise StochgradError(
                        f"{self.name} on {var}: its {key} differ from sample to sample (they depend on another"
                        " random node), so antithetic partners would have different laws; use score")
        half = full[:m]
        u = B.concat([half, 1.0 - half, full[2 * m:]])
        theta = d.logits(B, p)  # type: ignore[attr-defined]
        q = B.stop_gradient(d.probs(B, p))  # type: ignore[attr-defined]
        b = B.fn["lt"](u, q)
        partner = _partners(B, b)
        w = B.stop_gradient(self.weights(B, u, b, partner, q)) * (n / (2 * m))  # the mean over the m pairs
        # value 0, gradient w in theta, and a second derivative refused by name (Backend.implicit_grad)
        refusal = (f"{var} ~ Bernoulli: no second derivative through {self.name}, a first-order estimator;"
                   f" use estimators={{{var!r}: 'score'}} (or 'enumerate') for higher derivatives")
        return b, B.implicit_grad(theta, B.stop_gradient(w) * 0.0, w, refusal)

    def control_variate(self, B: Backend, cost: Array, count: int, block: int | None,
                        state: Any = None) -> Array | None:
        c = B.stop_gradient(cost)
        n = B.shape(c)[0]
        if n != count:
            raise StochgradError(
                f"{self.name} cannot pair samples under copies of an enumerated node ({n} samples for {count}"
                " draws): sample the enumerated node, or enumerate/score this one")
        return _partners(B, c)  # the partner's cost (an unpaired last sample: its own, so it scores 0)


@dataclass(frozen=True)
class DisARM(ARM):
    """DisARM (Dong, Mnih & Tucker 2020): ARM with the uniform integrated out given the pair."""

    name: ClassVar[str] = "disarm"

    def weights(self, B: Backend, u: Array, b: Array, partner: Array, q: Array) -> Array:
        differ = B.fn["abs"](b - partner)
        return (1.0 - 2.0 * partner) * differ * (0.5 + B.fn["abs"](q - 0.5)) * 0.5  # sigmoid(|theta|) = max(q, 1-q)
