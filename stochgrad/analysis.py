"""Static analysis of expressions: scopes, parameters and differentiability.

* Scopes: a name bound by ``E[..., v ~ D]`` is visible in the body, in later
  bindings and in nested expectations.  Every other name is a *parameter*.
  Binding a name twice, shadowing an enclosing binding or using a variable in
  a binding before it is bound are errors (otherwise the name would silently
  become a parameter).
* Differentiability: a use of ``z`` under a comparison or a non-differentiable
  function breaks the pathwise derivative (it is 0 almost everywhere while the
  expectation still depends on ``z``; e.g. d/dmu E[z > 0] is the normal
  density).  :func:`nondiff_use` finds the first such use and says where.
"""

from __future__ import annotations

from collections.abc import Iterator

from . import ir
from .errors import StochgradError
from .functions import FUNCTIONS


def check_scopes(expr: ir.Expr) -> None:
    """Raise a :class:`StochgradError` (with the node's span) for a scoping mistake."""
    _scopes(expr, frozenset(), frozenset())


def _scopes(e: ir.Expr, bound: frozenset[str], pending: frozenset[str]) -> None:
    if isinstance(e, ir.Name):
        if e.id in pending:
            raise StochgradError(f"{e.id!r} is used before it is bound (bind it earlier in the E[...])", e.span)
        return
    if isinstance(e, ir.Expect):
        names = [b.var for b in e.bindings]
        for i, b in enumerate(e.bindings):
            if b.var in bound:
                raise StochgradError(f"{b.var!r} is already bound by an enclosing E[...]; use another name", b.span)
            if b.var in names[:i]:
                raise StochgradError(f"{b.var!r} is bound twice in the same E[...]", b.span)
            later = frozenset(names[i:])  # includes b.var itself: x ~ Normal(x, 1) is an error
            _scopes(b.dist, bound | frozenset(names[:i]), pending | later)
        _scopes(e.body, bound | frozenset(names), pending - frozenset(names))
        return
    for child in e.children():
        _scopes(child, bound, pending)


def parameters(expr: ir.Expr) -> tuple[str, ...]:
    """Free names of ``expr`` (its parameters), in order of first appearance."""
    seen: dict[str, None] = {}
    _free(expr, frozenset(), seen)
    return tuple(seen)


def _free(e: ir.Expr, bound: frozenset[str], out: dict[str, None]) -> None:
    if isinstance(e, ir.Name):
        if e.id not in bound:
            out.setdefault(e.id)
        return
    if isinstance(e, ir.Expect):
        inner = bound
        for b in e.bindings:
            _free(b.dist, inner, out)
            inner = inner | {b.var}
        _free(e.body, inner, out)
        return
    for child in e.children():
        _free(child, bound, out)


def names_in(e: ir.Expr) -> Iterator[str]:
    """Every name mentioned in ``e`` (bound or free)."""
    for node in ir.walk(e):
        if isinstance(node, ir.Name):
            yield node.id


def breaks_derivative(node: ir.Expr) -> bool:
    """True for a node whose output has zero derivative almost everywhere."""
    if isinstance(node, ir.BinOp):
        return node.op in ir.COMPARISONS
    if isinstance(node, ir.Call):
        return not (node.impl.differentiable if node.impl is not None else FUNCTIONS[node.fn].differentiable)
    return False


def nondiff_use(e: ir.Expr, var: str) -> str | None:
    """Describe the first use of ``var`` inside a non-differentiable operation, if any."""
    for node in ir.walk(e):
        if breaks_derivative(node) and any(n == var for c in node.children() for n in names_in(c)):
            kind = "comparison" if isinstance(node, ir.BinOp) else "non-differentiable function"
            return f"{kind} `{node}`"
    return None


def additive_terms(e: ir.Expr) -> list[tuple[float, ir.Expr]]:
    """Split ``e`` into signed additive terms: a - (b + c) -> [(+1, a), (-1, b), (-1, c)].

    Each term then multiplies only the score terms of the nodes it depends on
    (Schulman et al. 2015, "causality")."""
    out: list[tuple[float, ir.Expr]] = []
    stack: list[tuple[float, ir.Expr]] = [(1.0, e)]
    while stack:
        sign, node = stack.pop()
        if isinstance(node, ir.BinOp) and node.op in ("+", "-"):
            stack.append((sign if node.op == "+" else -sign, node.right))
            stack.append((sign, node.left))
        elif isinstance(node, ir.Neg):
            stack.append((-sign, node.operand))
        else:
            out.append((sign, node))
    return out
