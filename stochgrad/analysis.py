"""Static analysis of expressions: scopes, parameters and differentiability.

* Scopes: a name bound by ``E[..., v ~ D]`` is visible in the body, in later
  bindings and in nested expectations.  Every other name is a *parameter*.
  Binding a name twice, shadowing an enclosing binding or using a variable in
  a binding before it is bound are errors (otherwise the name would silently
  become a parameter), and so is a random variable used as an index (``theta[z]``:
  an index is an integer array parameter, and nothing is differentiable in it).
* Differentiability: a use of ``z`` under a comparison, a non-differentiable
  function, or an argument a function is not differentiable in (the condition of
  ``where``; the flags are the function table's) breaks the pathwise derivative (it is 0 almost everywhere while the
  expectation still depends on ``z``; e.g. d/dmu E[z > 0] is the normal
  density).  :func:`nondiff_uses` finds the first such use of every name and
  says where.

Every analysis here is one pass over the tree with an explicit stack: linear in
the size of the expression, whatever its depth (a 10,000-term sum is a chain
10,000 deep).
"""

from __future__ import annotations

import functools

from collections.abc import Iterator
from typing import Any

from . import ir
from .arraynodes import Index
from .errors import StochgradError
from .functions import FUNCTIONS


def check_scopes(expr: ir.Expr) -> None:
    """Raise a :class:`StochgradError` (with the node's span) for a scoping mistake.

    One pass with an explicit stack; ``status`` says of each name in scope whether it is
    bound or pending (bound later in an enclosing E[...]), and is restored on leaving."""
    status: dict[str, str] = {}
    stack: list[Any] = [expr]
    while stack:
        item = stack.pop()
        if isinstance(item, tuple):  # an action queued around an expectation's parts
            item[0](*item[1:])
        elif isinstance(item, ir.Name):
            if status.get(item.id) == "pending":
                raise StochgradError(
                    f"{item.id!r} is used before it is bound (bind it earlier in the E[...])", item.span
                )
        elif isinstance(item, Index) and item.gather is not None and status.get(item.gather.id) == "bound":
            raise StochgradError(
                f"`{item}` indexes with the random variable {item.gather.id!r}: an index is data (an"
                " integer array parameter), and indexing is not differentiable in it",
                item.span,
            )
        elif isinstance(item, ir.Expect):
            outer = {b.var: status.get(b.var) for b in item.bindings}
            first: dict[str, int] = {}
            for i, b in enumerate(item.bindings):
                first.setdefault(b.var, i)
            todo: list[Any] = [(_enter, status, outer)]
            for i, b in enumerate(item.bindings):
                todo += [(_check_binding, b, outer, first[b.var] < i), b.dist, (status.__setitem__, b.var, "bound")]
            todo += [item.body, (_leave, status, outer)]
            stack.extend(reversed(todo))
        else:
            stack.extend(reversed(item.children()))


def _enter(status: dict[str, str], names: dict[str, str | None]) -> None:
    for var in names:  # x ~ Normal(x, 1) is an error: a binding's own name is pending in it
        status[var] = "pending"


def _leave(status: dict[str, str], outer: dict[str, str | None]) -> None:
    for var, old in outer.items():
        if old is None:
            status.pop(var, None)
        else:
            status[var] = old


def _check_binding(b: ir.Binding, outer: dict[str, str | None], twice: bool) -> None:
    if outer[b.var] == "bound":
        raise StochgradError(f"{b.var!r} is already bound by an enclosing E[...]; use another name", b.span)
    if twice:
        raise StochgradError(f"{b.var!r} is bound twice in the same E[...]", b.span)


@functools.lru_cache(maxsize=512)
def parameters(expr: ir.Expr) -> tuple[str, ...]:
    """Free names of ``expr`` (its parameters), in order of first appearance (one pass; cached,
    since expressions are immutable and hash in constant time)."""
    seen: dict[str, None] = {}
    bound: dict[str, int] = {}  # name -> how many enclosing bindings of it are in scope
    stack: list[Any] = [expr]
    while stack:
        item = stack.pop()
        if isinstance(item, tuple):
            delta, var = item
            bound[var] = bound.get(var, 0) + delta
        elif isinstance(item, ir.Name):
            if not bound.get(item.id):
                seen.setdefault(item.id)
        elif isinstance(item, ir.Expect):
            todo: list[Any] = []
            for b in item.bindings:
                todo += [b.dist, (1, b.var)]
            todo += [item.body] + [(-1, b.var) for b in item.bindings]
            stack.extend(reversed(todo))
        else:
            stack.extend(reversed(item.children()))
    return tuple(seen)


def names_in(e: ir.Expr) -> Iterator[str]:
    """Every name mentioned in ``e`` (bound or free)."""
    for node in ir.walk(e):
        if isinstance(node, ir.Name):
            yield node.id


def breaks_derivative(node: ir.Expr) -> bool:
    """True for a node whose output has zero derivative almost everywhere (in every input)."""
    if isinstance(node, ir.BinOp):
        return node.op in ir.COMPARISONS
    if isinstance(node, ir.Call):
        return not (node.impl.differentiable if node.impl is not None else FUNCTIONS[node.fn].differentiable)
    return False


def _blocked_args(node: ir.Expr) -> tuple[bool, ...]:
    """Per argument of a built-in call, whether the function is not differentiable in it (the row's
    flags: ``where`` in its condition); empty for other nodes."""
    if isinstance(node, ir.Call) and node.impl is None:
        return tuple(not d for d in FUNCTIONS[node.fn].differentiable_in)
    return ()


def nondiff_uses(e: ir.Expr) -> dict[str, str]:
    """For each name used inside a non-differentiable operation in ``e`` -- a comparison, a function
    not differentiable at all, or an argument a function is not differentiable in (the condition of
    ``where``) -- the first such operation (pre-order), described: one pass, tracking the outermost
    breaking ancestor."""
    out: dict[str, str] = {}
    stack: list[tuple[ir.Expr, str | None]] = [(e, None)]
    while stack:
        node, breaking = stack.pop()
        if isinstance(node, ir.Name):
            if breaking is not None and node.id not in out:
                out[node.id] = breaking
            continue
        split = getattr(node, "breaking_children", None)  # log_prob: a discrete law's x only (stochgrad.densities)
        if breaking is None and split is not None:
            why = f"{getattr(node, 'breaks_as', 'non-differentiable function')} `{node}`"
            stack.extend((c, why if breaks else None) for c, breaks in reversed(split()))
            continue
        if breaking is None and breaks_derivative(node):
            kind = "comparison" if isinstance(node, ir.BinOp) else "non-differentiable function"
            breaking = f"{kind} `{node}`"
        kids = node.children()
        blocked = _blocked_args(node) if breaking is None else ()
        if any(blocked):
            fn = FUNCTIONS[node.fn]  # type: ignore[attr-defined]
            stack.extend(
                (
                    c,
                    f"{fn.name}() is not differentiable in its {fn.params[i]}: `{node}`"
                    if i < len(blocked) and blocked[i]
                    else None,
                )
                for i, c in reversed(list(enumerate(kids)))
            )
        else:
            stack.extend((c, breaking) for c in reversed(kids))
    return out


def nondiff_use(e: ir.Expr, var: str) -> str | None:
    """Describe the first use of ``var`` inside a non-differentiable operation, if any."""
    return nondiff_uses(e).get(var)


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
