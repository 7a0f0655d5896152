"""Printing the IR: canonical DSL text with the fewest parentheses that keep the tree.

``parse(to_text(e)) == e`` for every expression.  A node's printed form is a list of
pieces, strings and child nodes, and :func:`to_text` expands them with an explicit
stack into one list of strings joined once: linear in the size of the text, whatever
the depth of the tree (a 10,000-term sum is a chain 10,000 deep).

Parentheses: a left operand is wrapped when it binds looser than its operator (or is
itself a comparison under a comparison), a right operand when it binds no tighter
(the operators are left-associative); ``**`` is right-associative and its exponent
may be a bare unary minus.
"""

from __future__ import annotations

from typing import Any

from . import ir
from .arraynodes import Index, MatMul
from .ir import PREC, BinOp, Call, Dist, Expect, Expr, KL, Name, Neg, Num


def _wrapped(e: Expr, parens: bool) -> list[Any]:
    return ["(", e, ")"] if parens else [e]


def _joined(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for i, item in enumerate(items):
        if i:
            out.append(", ")
        out.extend(item if isinstance(item, list) else [item])
    return out


def _pieces(node: Expr) -> list[Any]:
    """The printed form of one node: strings and child nodes (printed in turn), in order."""
    t = type(node)
    if t is BinOp:
        left, right, op = node.left, node.right, node.op  # type: ignore[attr-defined]
        p = PREC[op]
        if op == "**":  # right-associative; the exponent may be a bare unary minus
            return _wrapped(left, left.prec <= p) + [f" {op} "] + _wrapped(right, right.prec < PREC["neg"])
        # left-associative (comparisons are not associative at all)
        return (
            _wrapped(left, left.prec < p or (p == 1 and left.prec == 1))
            + [f" {op} "]
            + _wrapped(right, right.prec <= p)
        )
    if t is Neg:
        operand = node.operand  # type: ignore[attr-defined]
        return ["-"] + _wrapped(operand, operand.prec < PREC["neg"])
    if t is Call:
        parts = list(node.args) + [[f"{k}=", v] for k, v in node.kwargs]  # type: ignore[attr-defined]
        return [f"{node.fn}("] + _joined(parts) + [")"]  # type: ignore[attr-defined]
    if t is Dist:
        parts = [
            v if i < node.positional else [f"{k}=", v]  # type: ignore[attr-defined]
            for i, (k, v) in enumerate(node.params)  # type: ignore[attr-defined]
        ]
        return [f"{node.name}("] + _joined(parts) + [")"]  # type: ignore[attr-defined]
    if t is Expect:
        return (
            ["E[", node.body, ", "]  # type: ignore[attr-defined]
            + _joined([[f"{b.var} ~ ", b.dist] for b in node.bindings])  # type: ignore[attr-defined]
            + ["]"]
        )
    if t is KL:
        return ["KL(", node.p, " || ", node.q, ")"]  # type: ignore[attr-defined]
    if t is MatMul:  # binds like * and /, left-associative
        left, right, p = node.left, node.right, PREC["*"]  # type: ignore[attr-defined]
        return _wrapped(left, left.prec < p) + [" @ "] + _wrapped(right, right.prec <= p)
    if t is Index:  # postfix: binds tighter than every operator
        value = node.value  # type: ignore[attr-defined]
        items = [i if isinstance(i, Expr) else node.item_text(i) for i in node.items]  # type: ignore[attr-defined]
        return _wrapped(value, value.prec < ir.ATOM) + ["["] + _joined(items) + ["]"]
    pieces = getattr(node, "pieces", None)  # a node of another module (stochgrad.densities)
    if pieces is not None:
        return pieces()
    return [str(node)]  # a leaf (Num, Name) or an internal node with its own printer


def to_text(e: Expr) -> str:
    """Canonical DSL text of ``e`` (what ``str(e)`` returns), built with an explicit stack."""
    out: list[str] = []
    stack: list[Any] = [e]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif type(item) in ir._STRUCTURAL and type(item) not in (Num, Name):
            stack.extend(reversed(_pieces(item)))
        else:
            out.append(str(item))
    return "".join(out)
