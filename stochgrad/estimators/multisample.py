"""Multi-sample objectives: finding the K-sample bound ``logmeanexp(T, axis=0)`` of ``z ~ iid(K, Q)``.

The importance weighted bound (Burda et al. 2016) and other Monte Carlo objectives (Mnih & Rezende
2016) are written ``E[logmeanexp(T, axis=0), z ~ iid(K, Q)]`` where ``T`` holds the log weights
``w_k`` of the K copies on its axis 0 (``T = log_prob(P, z) - log_prob(Q, z)`` for the IWAE).  The
estimators made for them, ``"vimco"`` (:mod:`.vimco`) and ``"dreg"`` (:mod:`.dreg`), need that
structure; this module recognises it once for both (:func:`bound_sites`):

* the node is ``z ~ iid(K, Q)`` with ``K >= 2`` copies;
* every use of ``z`` in the cost lies inside the argument ``T`` of some ``logmeanexp(T, axis=0)``
  (a *site*; ``log(mean(exp(T), axis=0))`` is one too), and none in another binding's law
  (checked when the program is built: :func:`alone_in_law`);
* each site enters the cost linearly: through ``+``, ``-``, negation, indexing, ``sum``/``mean``
  (over the remaining axes) and products with (divisions by) factors that do not depend on ``z``,
  so the cost's gradient is the sum of the sites' gradients, each times its (stopped) factor;
* inside ``T`` no reduction without ``axis``, or with ``axis=0``, nor a transpose, of a value
  depending on ``z``: those would mix the copies (the weight ``w_j`` must depend on ``z_j`` only,
  which the per-copy baselines need).  At run time ``T``'s axis 0 must have length ``K``.

Anything else is a :class:`PlanError` naming the estimator, the node and the offending expression.
Each site is replaced by a :class:`Bound`, an internal IR node (printed ``vimco[z](logmeanexp(T,
axis=0))``) that lowers itself (``lower``, read by :mod:`stochgrad.program.compile`) into the
estimator's surrogate for that term: value ``logmeanexp_k w_k`` per sample, gradient the estimator's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import ir
from ..errors import PlanError, StochgradError
from ..types import Array
from .base import Rebuild
from ..arraynodes import Index, MatMul
from ..densities import LogProb

#: calls through which a bound still enters the cost linearly
_LINEAR_CALLS = frozenset({"sum", "mean"})
#: calls that mix the axes of their argument whatever their options
_MIXING = frozenset({"transpose"})
#: reductions (every axis without ``axis=``), and calls along one axis (the last without ``axis=``)
_REDUCTIONS = frozenset({"sum", "mean", "max", "min", "prod", "logsumexp", "logmeanexp"})
_ALONG = frozenset({"softmax", "log_softmax"})


@dataclass(frozen=True, eq=False)
class Bound(ir.Expr):
    """``logmeanexp(weights, axis=0)`` over the ``count`` copies of ``var``, whose gradient is
    ``estimator``'s (internal: made by the planner through ``rewrite_cost``, not DSL text).
    ``score``: an extra child the estimator reads (VIMCO: ``log_prob(Q, var)`` per copy);
    ``surrogate(frame, weights_step, score_step, env) -> per-sample value``."""

    estimator: str
    var: str
    count: int
    weights: ir.Expr
    source: ir.Call
    surrogate: Callable[..., Array]
    score: ir.Expr | None = None

    def children(self) -> tuple[ir.Expr, ...]:
        return (self.weights,) if self.score is None else (self.weights, self.score)

    def __str__(self) -> str:  # internal, like planned.LogRatio: printed, not parsed back
        return f"{self.estimator}[{self.var}](logmeanexp({self.weights}, axis=0))"

    def shape_rule(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return shapes[0][1:]

    def lower(self, builder: Any, bound: frozenset[str]) -> Callable[..., Array]:
        """The step of this term: the estimator's surrogate of the bound (see the module doc)."""
        weights = builder.step(self.weights, bound)
        score = None if self.score is None else builder.step(self.score, bound)
        surrogate = self.surrogate

        def step(fr: Any, env: dict[str, Array]) -> Array:
            if fr.batch_axes:
                raise PlanError(
                    f"{self.estimator}: {self.var}'s K-sample bound cannot run with batch_axes"
                    " (its copies are the bound's axis 0); use batch_axes=0"
                )
            return surrogate(fr, self, weights, score, env)

        return step

    def log_weights(self, fr: Any, step: Callable[..., Any], env: dict[str, Array]) -> Array:
        """The log weights ``T`` of one run, shape ``(rows, K, ...)``, checked."""
        w = fr.array(step(fr, env))
        shape = fr.B.shape(w)
        if len(shape) < 2 or shape[1] != self.count:
            raise StochgradError(
                f"{self.estimator}: the log weights `{self.weights}` must keep the {self.count} copies"
                f" of {self.var} on their axis 0, but have shape {tuple(shape[1:])}",
                self.source.span,
            )
        return w


def _mentions(e: ir.Expr, var: str) -> bool:
    return any(isinstance(n, ir.Name) and n.id == var for n in ir.walk(e))


def _axis(call: ir.Call) -> int | None:
    for k, v in call.kwargs:
        if k == "axis" and isinstance(v, ir.Num):
            return int(v.value)
    return None


def _builtin(node: ir.Expr, fn: str) -> ir.Call | None:
    ok = isinstance(node, ir.Call) and node.impl is None and node.fn == fn and len(node.args) == 1
    return node if ok else None  # type: ignore[return-value]


def _site(node: ir.Expr) -> tuple[ir.Expr, int | None] | None:
    """``(T, axis)`` where ``node`` is ``logmeanexp(T, axis=...)`` or ``log(mean(exp(T), axis=...))``."""
    lme, log = _builtin(node, "logmeanexp"), _builtin(node, "log")
    if lme is not None:
        return lme.args[0], _axis(lme)
    mean = None if log is None else _builtin(log.args[0], "mean")
    exp = None if mean is None else _builtin(mean.args[0], "exp")
    return None if mean is None or exp is None else (exp.args[0], _axis(mean))


def _check_copies_kept(t: ir.Expr, var: str, name: str) -> None:
    """Refuse, inside a site's log weights, an operation that mixes the copies of ``var``."""
    for node in ir.walk(t):
        if not isinstance(node, ir.Call) or node.impl is not None or not any(_mentions(a, var) for a in node.args):
            continue
        axis = _axis(node)
        if node.fn in _MIXING or (node.fn in _REDUCTIONS and axis in (None, 0)) or (node.fn in _ALONG and axis == 0):
            raise PlanError(
                f"{name}: `{node}` mixes the copies of {var} inside the log weights (axis 0 is the"
                f" copy axis): each weight must depend on its own copy only; reduce over other axes"
                f" (axis=-1)"
            )


def bound_sites(
    body: ir.Expr, var: str, dist: ir.Dist, rebuild: Rebuild, name: str, make: Callable[[ir.Call, ir.Expr], ir.Expr]
) -> tuple[ir.Expr, int]:
    """``body`` with each site ``logmeanexp(T, axis=0)`` of node ``var ~ dist`` replaced by
    ``make(site, T)``, and the number of sites; a :class:`PlanError` naming estimator ``name``
    where the structure is not there (module docstring)."""
    count = getattr(dist, "count", None)
    if count is None:
        raise PlanError(
            f"{name} needs {var} ~ iid(K, Q) with K >= 2 copies, averaged in a K-sample bound"
            f" logmeanexp(..., axis=0); {var} ~ {dist} is a single draw"
        )
    if count < 2:
        raise PlanError(f"{name} needs K >= 2 copies (a leave-one-out over the copies); {var} ~ {dist} has K = 1")
    found = 0

    def outside(at: ir.Expr) -> PlanError:
        return PlanError(
            f"{name}: {var} ~ {dist} is used outside a K-sample bound logmeanexp(..., axis=0),"
            f" in `{at}`; every use of {var} must lie inside one"
        )

    def linear_in(node: ir.Expr, child: ir.Expr) -> bool:
        if isinstance(node, (ir.Neg, Index)):
            return child is node.children()[0]
        if isinstance(node, ir.BinOp):
            if node.op in ("+", "-"):
                return True
            other = node.right if child is node.left else node.left
            return (node.op == "*" or (node.op == "/" and child is node.left)) and not _mentions(other, var)
        return isinstance(node, ir.Call) and node.impl is None and node.fn in _LINEAR_CALLS

    def go(node: ir.Expr, linear: bool, parent: ir.Expr) -> ir.Expr:
        nonlocal found

        if isinstance(node, ir.Name):
            if node.id == var:
                raise outside(parent)
            return node
        site = _site(node)
        if site is not None and _mentions(site[0], var):
            t, axis = site
            if axis != 0:
                over = "every axis" if axis is None else f"axis {axis}"
                raise PlanError(
                    f"{name}: `{node}` averages over {over}, but the copies of {var} ~ {dist} are axis 0:"
                    f" write logmeanexp(..., axis=0)"
                )
            if not linear:
                raise PlanError(
                    f"{name}: the bound `{node}` enters the cost nonlinearly (in `{parent}`); {name}"
                    f" estimates the gradient of a bound that enters through + - sum mean or a factor"
                    f" that does not depend on {var}"
                )
            _check_copies_kept(t, var, name)
            found += 1
            return make(node, t)  # type: ignore[arg-type]
        if isinstance(node, (ir.Neg, ir.BinOp, ir.Call, ir.Dist, LogProb, MatMul, Index)):
            kids = [go(c, linear and linear_in(node, c), node) for c in node.children()]
            return rebuild(node, kids)
        if _mentions(node, var):
            raise outside(node)
        return node

    out = go(body, True, body)
    if not found:
        raise PlanError(f"{name}: found no K-sample bound logmeanexp(T, axis=0) of {var} ~ {dist} in the cost `{body}`")
    return out, found


def alone_in_law(e: Any, name: str) -> None:
    """Refuse, at build time, a later node whose law depends on a node ``name`` estimates (its
    influence through that node would not be in the bound's estimator)."""
    for j, node in enumerate(e.nodes):
        if node.spec.name != name:
            continue
        for later in e.nodes[j + 1 :]:
            if node.uid in later.parents:
                raise PlanError(
                    f"{name}: {later.var} ~ {later.dist} depends on {node.var}; {name} needs every use"
                    f" of {node.var} inside its K-sample bound logmeanexp(..., axis=0)"
                )
