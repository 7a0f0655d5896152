"""DReG: doubly reparameterized gradients of multi-sample objectives (pathwise, reparameterizable q).

Tucker, Lawson, Gu & Maddison 2019, "Doubly reparameterized gradient estimators for Monte Carlo
objectives" (ICLR).  For the K-sample bound ``L = E[logmeanexp_k w_k, z ~ iid(K, q_phi)]`` with
``w_k = log p_theta(x, z_k) - log q_phi(z_k)`` and ``z_k = g_phi(eps_k)``, the pathwise (IWAE)
gradient in ``phi`` is ``sum_k w~_k (d w_k / d z_k dz_k/dphi - d/dphi log q_phi(z_k))`` (``w~`` the
normalized weights, softmax of ``w``).  Its score part ``-sum_k w~_k d/dphi log q_phi(z_k)`` is
rewritten by the reparameterization identity ``E_q[f(z) d/dphi log q_phi(z)] = E[df/dz dz/dphi]``
applied to ``f = w~_k`` (``d w~_k / d z_k = w~_k (1 - w~_k) d w_k / d z_k``), which gives

    grad_phi L = E[ sum_k w~_k^2  (d w_k / d z_k) dz_k/dphi ],   q's parameters stopped inside log q(z_k),
    grad_theta L = E[ sum_k w~_k  d w_k / d theta ]              (the IWAE gradient of the model).

* Bias: none for the first derivative where the log weights are ``... - log_prob(Q, z)`` with the
  node's own law ``Q`` entering once with coefficient -1 (the identity needs exactly that) and the
  cost is differentiable in ``z``; elsewhere the plan marks the node biased and says why.
* Variance: for q's parameters it does not grow with K as the IWAE pathwise gradient's signal-to-noise
  ratio decays (Rainforth et al. 2018, "Tighter variational bounds are not necessarily better"), and
  at the exact posterior it is zero.
* Orders: **first order only** (the stops make the second derivative wrong): refused by name
  (``orders = 1``).

Surrogate of one bound, per sample, with ``w`` the log weights with ``Q``'s parameters stopped in
``log_prob(Q, z)`` (stl's :func:`~.stl.stick`) and ``w(stop z)`` the same at the stopped sample::

    S = sum_k stop(w~_k) w_k(stop z_k) + sum_k stop(w~_k^2) [w_k(z_k) - w_k(stop z_k)],   value S + stop(L^ - S) = L^

Its gradient by hand: in ``theta`` (in ``p`` only), the second sum is ``d/dtheta w_k - d/dtheta w_k``
at the same point, 0, and the first is ``sum_k w~_k d w_k / d theta``, the IWAE gradient.  In
``phi`` (in ``q`` only), the first sum is constant (``z`` stopped, ``phi`` stopped in ``log q``), and
the second is ``sum_k w~_k^2 (d w_k / d z_k) dz_k / dphi``: DReG.  A parameter in both gets both
parts, which is the same identity applied to ``q``'s share only.  The log weights are evaluated
twice per bound (at ``z`` and at ``stop z``).

Batched bounds (``sum(logmeanexp(T, axis=0))`` with ``T`` of shape ``(K, N)``): the normalized
weights are per bound element (a softmax over axis 0 only) and the gradient is pathwise through
each element's own weights, with no ``log q`` score term, so no example's gradient carries the
other examples' bound noise: per example already (VIMCO needed :mod:`.per_example` for this).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .. import ir
from ..fnimpl import _logsumexp
from .base import Array, ExpectStep, Rebuild, Rewrite
from .multisample import Bound, alone_in_law, bound_sites
from .pathwise import Pathwise
from .stl import _law, stick
from ..densities import LogProb

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ..planned import NodePlan, PlannedExpect


@dataclass(frozen=True)
class DReG(Pathwise):
    """Pathwise through the K copies, with DReG's squared-weight gradient for q's parameters."""

    name: ClassVar[str] = "dreg"
    compared: ClassVar[bool] = True  # compare runs it; it refuses (PlanError) anything but a K-sample bound
    orders: ClassVar[int | None] = 1  # a second derivative is refused by name
    cost_form: ClassVar[str] = "a K-sample bound logmeanexp(T, axis=0) of z ~ iid(K, Q), K >= 2"

    def describe(self) -> str:
        return "dreg (doubly reparameterized, squared normalized weights)"

    def evaluations(self, states: int | None, node: NodePlan | None = None) -> int:
        return 2  # the log weights at z and at stop(z)

    def rewrite_cost(
        self, body: ir.Expr, var: str, dist: ir.Dist, rebuild: Rebuild, shapes: Mapping[str, Any] | None = None
    ) -> Rewrite:
        law = _law(dist)
        k = int(getattr(dist, "count", 1))
        faults: list[str] = []

        def make(site: ir.Call, t: ir.Expr) -> Bound:
            stuck, count, nonlinear = stick(t, var, dist, rebuild)
            c = coefficient(stuck, var, law)
            if not count or nonlinear or c != -1.0:
                found = "none" if not count else "one inside a nonlinear function" if nonlinear else f"coefficient {c}"
                faults.append(f"in `{site}` the log weights must be ... - log_prob({law}, {var}) (found {found})")
            return Bound(self.name, var, k, stuck, site, surrogate)

        body, sites = bound_sites(body, var, dist, rebuild, self.name, make)
        note = (
            f"{var}: dreg stops {law}'s parameters in log_prob({law}, {var}) and weighs the path through the"
            f" {k} copies by the squared normalized weights in {sites} bound{'s' if sites > 1 else ''}"
            f" (Tucker et al. 2019; first order only)"
        )
        if faults:
            note += "; " + "; ".join(faults) + ": biased there"
        return Rewrite(body, note, "dreg's identity needs the weights' - log q term" if faults else "")

    def own_surrogate(self, e: PlannedExpect, nodes: Sequence[Any], terms: Sequence[Any]) -> ExpectStep | None:
        alone_in_law(e, self.name)  # a check only: the shared assembly builds the expectation
        return None


def coefficient(t: ir.Expr, var: str, law: ir.Dist) -> float | None:
    """The total coefficient of the stopped ``log_prob(law, var)`` in ``t`` through ``+ - sum``,
    negation and constant factors; None where one sits under anything else."""

    def go(node: ir.Expr) -> float | None:
        if isinstance(node, LogProb) and node.stopped and node.x == ir.Name(var) and _law(node.dist) == law:
            return 1.0
        if not any(isinstance(n, LogProb) and n.stopped for n in ir.walk(node)):
            return 0.0
        if isinstance(node, ir.Neg):
            c = go(node.operand)
            return None if c is None else -c
        if isinstance(node, ir.BinOp) and node.op in ("+", "-"):
            a, b = go(node.left), go(node.right)
            return None if a is None or b is None else a + (b if node.op == "+" else -b)
        if isinstance(node, ir.BinOp) and node.op in ("*", "/"):
            for child, other in ((node.left, node.right), (node.right, node.left)):
                if type(other) is ir.Num and (node.op == "*" or child is node.left):
                    c = go(child)
                    return None if c is None else c * other.value if node.op == "*" else c / other.value
            return None
        if isinstance(node, ir.Call) and node.impl is None and node.fn == "sum" and len(node.args) == 1:
            return go(node.args[0])
        return None

    return go(t)


def surrogate(fr: Any, b: Bound, weights: Any, score: Any, env: dict[str, Array]) -> Array:
    """DReG's surrogate of one bound (module docstring), per sample: ``(rows, ...)``."""
    B = fr.B
    w = b.log_weights(fr, weights, env)  # at z: the path through the copies
    fixed = b.log_weights(fr, weights, {**env, b.var: B.stop_gradient(env[b.var])})  # at stop(z)
    value = B.stop_gradient(_logsumexp(fr, w, 1, b.source) - math.log(b.count))
    normalized = B.stop_gradient(B.softmax(w, 1))
    s = B.sum(normalized * fixed, (1,)) + B.sum(normalized * normalized * (w - fixed), (1,))
    return s + (value - B.stop_gradient(s))
