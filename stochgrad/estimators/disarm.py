"""ARM and DisARM: antithetic score-function estimators for Bernoulli and Categorical nodes (first order only).

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

**Categorical nodes: the stick-breaking binary form** (Dong, Mnih & Tucker 2021, "Coupled gradient
estimators for discrete latent variables", NeurIPS, section 4).  ``z ~ Categorical(p)`` over ``K``
classes (last axis) is ``z = onehot(first j with b_j = 1)`` for *independent* sticks
``b_j ~ Bernoulli(q_j)``, ``q_j = p_j / sum_{i >= j} p_i`` (``j < K``; ``b_K = 1``): class ``j`` has
probability ``q_j prod_{i < j} (1 - q_i) = p_j``.  ``E[f(z)] = E[f(onehot(z(b)))]`` is then the
expectation of a cost of ``K - 1`` independent Bernoullis with logits ``theta_j = log p_j - log
sum_{i > j} p_i`` (stable: a log-softmax, the tails summed, clipped at the dtype's smallest normal),
so ARM and DisARM apply to them unchanged -- the pair shares ``u_j`` / ``1 - u_j`` per stick, the
pseudo-score is in the stick logits, and the gradients for ``logits``/``probs`` follow by the chain
rule through ``theta``.  Why this extension: it is exact (no bias), keeps this module's one
pairing/weight code for both laws (:func:`binary_form` is the only law-specific step), costs two
cost evaluations per pair like the binary case, and is the form the DisARM authors extend to
categoricals; its variance depends on the class order, which here is the last axis's (a different
order is a different, also unbiased, estimator; their extra Rao-Blackwellisation over the
stick noise is not implemented).  ARM extends the same way (``arm`` on a Categorical), with never
less variance than DisARM on the same pairs.

Bias: none.  Derivative orders: the **first** only -- ``L_i`` is not ``log q``, so the surrogate's
second derivatives would not be those of ``E[f]``: ``L_i`` is built by ``Backend.implicit_grad``
(value 0, gradient ``w_i``), whose second derivative is refused by name (use ``score`` or
``enumerate`` for Hessians).
Refused with a clear error: nodes of other laws, a Categorical over a single class, a single sample (or a chunk of one), copies
of enumerated nodes above the node (pairs would mix copies), and parameters that differ from sample
to sample (a Bernoulli whose probs depend on another random node: partners would have different
laws).  The planner never picks them by default (static rules); as unbiased estimators they are
``piloted`` and ``compared``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..discrete import tiny
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
    return B.concat([x[m : 2 * m], x[:m], x[2 * m :]])


#: the laws with an independent-Bernoulli form (:func:`binary_form`)
LAWS = ("Bernoulli", "Categorical")


def binary_form(
    name: str, var: str, d: Distribution, B: Backend, p: Any, shape: tuple[int, ...]
) -> tuple[Array, Array, tuple[int, ...], Callable[[Array], Array]]:
    """The node as independent Bernoullis: their logits ``theta`` (differentiable in the node's
    parameters), their probabilities, their logical shape, and the map from their 0/1 draws to the node's value.  A
    Bernoulli is its own form; a Categorical over ``K`` classes (last axis) is its ``K - 1`` sticks
    (module docstring): ``theta_j = log w_j - log sum_{i > j} w_i`` for its weights ``w`` (``exp``
    of the logits, or the probs: the normalization cancels), the value ``onehot(first j with b_j = 1)``
    with ``b_K = 1``."""
    if d.name == "Bernoulli":
        return d.logits(B, p), d.probs(B, p), shape, lambda b: b  # type: ignore[attr-defined]
    k = shape[-1]
    if k < 2:
        raise PlanError(f"{name} on {var}: a Categorical over {k} class has no gradient to estimate; use score")
    lw = d.log_weights(B, p)  # type: ignore[attr-defined]
    rows, batch = B.shape(lw)[0], tuple(shape[:-1])
    m = math.prod(batch)
    lp = B.log_softmax(B.reshape(lw, (rows, m, k)), 2)  # (rows, m, K), each row normalized
    after = np.tri(k, k - 1, -1)[None]  # [i, j] = 1 where i > j: the mass of the classes after stick j
    tail = B.fn["exp"](lp) @ B.asarray(after)
    theta = lp[:, :, : k - 1] - B.fn["log"](B.fn["clip"](tail, tiny(B), math.inf))
    place = B.asarray(np.eye(k - 1, k)[None])  # stick j -> class j
    before = B.asarray(np.triu(np.ones((k - 1, k)), 1)[None])  # [i, j] = 1 where i < j
    last = B.asarray(np.eye(k)[k - 1 :][None])  # b_K = 1

    def value(b: Array) -> Array:
        n = B.shape(b)[0]
        flat = B.reshape(b, (n, m, k - 1))
        first = B.fn["lt"](flat @ before, 0.5)  # no stick before class j came up 1
        return B.reshape(first * (flat @ place + last), (n,) + batch + (k,))

    theta = B.reshape(theta, (rows,) + batch + (k - 1,))
    return theta, B.fn["sigmoid"](theta), batch + (k - 1,), value


@dataclass(frozen=True)
class ARM(EstimatorSpec):
    """Augment-REINFORCE-merge (Yin & Zhou 2019) on antithetic pairs of a Bernoulli node (or a
    Categorical's sticks)."""

    name: ClassVar[str] = "arm"
    scores: ClassVar[bool] = True
    piloted: ClassVar[bool] = True
    paired: ClassVar[bool] = True  # partners are dependent: a run's standard errors count pairs
    orders: ClassVar[int | None] = 1  # a second derivative is refused by name

    def describe(self) -> str:
        return f"{self.name} (antithetic pairs, partner-cost baseline; first order only)"

    def requires(self, d: Distribution, *, states: int | None, capabilities: frozenset[str] | None = None) -> None:
        if d.name not in LAWS:
            raise PlanError(f"{self.name} needs a Bernoulli node or a Categorical one; this node is {d.name}")

    def weights(self, B: Backend, u: Array, b: Array, partner: Array, q: Array) -> Array:
        """Per-sample ``w`` of the pseudo log q ``sum_d stop(w_d) theta_d`` (see the module docstring)."""
        return 0.5 - u

    def sample(self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]) -> tuple[Array, Array]:
        var = _var(draw)
        if d.name not in LAWS:
            raise PlanError(f"{self.name} needs a Bernoulli node or a Categorical one; {var} is {d.name}")
        theta, probs, sticks, to_value = binary_form(self.name, var, d, B, p, shape)
        full = draw("uniform", sticks)
        n = B.shape(full)[0]
        if n < 2:
            raise StochgradError(
                f"{self.name} on {var} needs at least 2 samples (one antithetic pair), got {n}"
                " (with chunk=, every chunk needs 2)"
            )
        m = n // 2  # pairs; with n odd the last sample is its own partner and scores nothing
        for key, value in p.items():  # partners must share the law: parameters equal across each pair
            if B.shape(value)[0] != 1:
                v = B.to_numpy(B.stop_gradient(value))
                if not np.array_equal(v[:m], v[m : 2 * m]):
                    raise StochgradError(
                        f"{self.name} on {var}: its {key} differ from sample to sample (they depend on another"
                        " random node), so antithetic partners would have different laws; use score"
                    )
        half = full[:m]
        u = B.concat([half, 1.0 - half, full[2 * m :]])
        q = B.stop_gradient(probs)
        b = B.fn["lt"](u, q)
        partner = _partners(B, b)
        w = B.stop_gradient(self.weights(B, u, b, partner, q)) * (n / (2 * m))  # the mean over the m pairs
        # value 0, gradient w in theta, and a second derivative refused by name (Backend.implicit_grad)
        refusal = (
            f"{var} ~ {d.name}: no second derivative through {self.name}, a first-order estimator;"
            f" use estimators={{{var!r}: 'score'}} (or 'enumerate') for higher derivatives"
        )
        return to_value(b), B.implicit_grad(theta, B.stop_gradient(w) * 0.0, w, refusal)

    def control_variate(
        self, B: Backend, cost: Array, count: int, block: int | None, state: Any = None
    ) -> Array | None:
        c = B.stop_gradient(cost)
        n = B.shape(c)[0]
        if n != count:
            raise StochgradError(
                f"{self.name} cannot pair samples under copies of an enumerated node ({n} samples for {count}"
                " draws): sample the enumerated node, or enumerate/score this one"
            )
        return _partners(B, c)  # the partner's cost (an unpaired last sample: its own, so it scores 0)


@dataclass(frozen=True)
class DisARM(ARM):
    """DisARM (Dong, Mnih & Tucker 2020): ARM with the uniform integrated out given the pair."""

    name: ClassVar[str] = "disarm"

    def weights(self, B: Backend, u: Array, b: Array, partner: Array, q: Array) -> Array:
        differ = B.fn["abs"](b - partner)
        return (1.0 - 2.0 * partner) * differ * (0.5 + B.fn["abs"](q - 0.5)) * 0.5  # sigmoid(|theta|) = max(q, 1-q)
