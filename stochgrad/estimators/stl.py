"""Sticking the landing (STL): pathwise, with the node's own law stopped inside its ``log_prob``.

Roeder, Wu & Duvenaud 2017, "Sticking the landing: simple, lower-variance gradient estimators for
variational inference".  For an ELBO ``L(phi) = E_{z ~ q_phi}[log p(x, z) - log q_phi(z)]`` with a
reparameterized ``z = g_phi(eps)``, the pathwise gradient is

    d/dphi [log p(x, z) - log q_phi(z)] = (d/dz [log p(x, z) - log q_phi(z)]) dz/dphi
                                          - (d/dphi log q_phi)(z)            (the score term)

and the score term has mean zero (``E_q[grad_phi log q_phi(z)] = 0``).  STL drops it: in every
``log_prob(Q, z)`` of the cost whose law ``Q`` is the node's own law (structurally the same
expression; for ``z ~ iid(K, Q)`` the base law ``Q``) and whose value is the node itself, ``Q``'s
parameters are stopped, so only the path through ``z`` remains.  The value (the Monte Carlo
estimate) is unchanged.

* Bias: none for the first derivative when each stopped ``log_prob`` enters the cost additively
  (times a constant), as in the ELBO: only a zero-mean term is removed.  Inside a nonlinear
  function of it, e.g. the importance weighted bound (``logmeanexp`` of the log weights), the
  removed term is weighted by the normalized weights and is no longer zero-mean in general
  (Tucker et al. 2019, "Doubly reparameterized gradient estimators"): biased there for K > 1.
* Variance: zero at the exact posterior (``q = p(z | x)``: ``log p(x, z) - log q(z) = log p(x)``
  for every ``z``, and its derivative in ``z`` vanishes), unlike the full pathwise gradient.
* Orders: first order only; the second derivative of the stopped surrogate drops more than a
  zero-mean term, so it is refused by name (``orders = 1``).  Use ``"pathwise"`` for higher-order objectives.
* Where no such ``log_prob`` appears in the cost, STL is plain pathwise (the plan says so); where one
  enters nonlinearly (:func:`stick` counts them), the plan marks the node biased and says why.

The planner calls :meth:`StickingTheLanding.rewrite_cost` (the shared hook), which calls :func:`stick`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from .. import ir
from .base import Rebuild, Rewrite
from .pathwise import Pathwise
from ..arraynodes import Index, MatMul
from ..densities import LogProb


@dataclass(frozen=True)
class StickingTheLanding(Pathwise):
    """Pathwise, with the node's own law's parameters stopped inside ``log_prob(law, node)``."""

    name: ClassVar[str] = "stl"
    orders: ClassVar[int | None] = 1  # a second derivative is refused by name

    def rewrite_cost(
        self, body: ir.Expr, var: str, dist: ir.Dist, rebuild: Rebuild, shapes: Mapping[str, Any] | None = None
    ) -> Rewrite:
        """The cost with ``dist``'s parameters stopped in ``log_prob(dist, var)`` (:func:`stick`)."""
        body, stopped, nonlinear = stick(body, var, dist, rebuild)
        biased = "stl inside a nonlinear function of log q is biased" if nonlinear else ""
        return Rewrite(body, note(var, dist, stopped, nonlinear), biased)


def _law(dist: ir.Dist) -> ir.Dist:
    base = getattr(dist, "base", None)  # iid(K, Q): the base law Q
    return base if isinstance(base, ir.Dist) else dist


#: calls through which a stopped ``log_prob`` still enters the cost linearly
_LINEAR_CALLS = frozenset({"sum", "mean"})


def stick(body: ir.Expr, var: str, dist: ir.Dist, rebuild: Rebuild) -> tuple[ir.Expr, int, int]:
    """``body`` with ``Q``'s parameters stopped in each ``log_prob(Q, var)`` where ``Q`` is node
    ``var``'s law ``dist``; how many were stopped, and how many of those enter the cost nonlinearly
    (not through ``+ - sum mean``, indexing or a constant factor: there the removed term is not
    zero-mean, and STL is biased).  It reads the arithmetic of one expectation's cost, not nested
    expectations (planned already), which keep the full pathwise gradient."""

    law, target = _law(dist), ir.Name(var)
    walk = (ir.Neg, ir.BinOp, ir.Call, MatMul, Index)
    count = nonlinear = 0

    def linear_in(node: ir.Expr, child: ir.Expr) -> bool:
        if isinstance(node, (ir.Neg, Index)):
            return True
        if isinstance(node, ir.BinOp):
            if node.op in ("+", "-"):
                return True
            other = node.right if child is node.left else node.left
            return (node.op == "*" or (node.op == "/" and child is node.left)) and type(other) is ir.Num
        return isinstance(node, ir.Call) and node.impl is None and node.fn in _LINEAR_CALLS

    def go(node: ir.Expr, linear: bool) -> ir.Expr:
        nonlocal count, nonlinear
        if isinstance(node, LogProb):
            if node.x == target and node.dist in (law, dist):  # log_prob(Q, z) or log_prob(iid(K, Q), z)
                count += 1
                nonlinear += not linear
                return replace(node, stopped=True)
            return rebuild(node, [node.dist, go(node.x, False)])
        if isinstance(node, walk):
            return rebuild(node, [go(c, linear and linear_in(node, c)) for c in node.children()])
        return node

    return go(body, True), count, nonlinear


def note(var: str, dist: ir.Dist, count: int, nonlinear: int = 0) -> str:
    """The plan's note on an STL node."""
    law = _law(dist)
    if not count:
        return f"{var}: stl found no log_prob({law}, {var}) in the cost; it is plain pathwise here"
    text = f"{var}: stl stops {law}'s parameters in {count} log_prob({law}, {var}) of the cost (first order only)"
    if nonlinear:
        text += (
            f"; {nonlinear} of them inside a nonlinear function (e.g. logmeanexp of an importance weighted"
            " bound), where the removed score term is not zero-mean: biased there (Tucker et al. 2019)"
        )
    return text
