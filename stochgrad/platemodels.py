"""Plate rules for model-shaped nodes: ``log_prob(D(args), x)``, ``a @ b`` and ``value[items]``.

Companion of :mod:`stochgrad.plates` (read its docstring first): each rule maps the shapes and
kinds of a node's operands (global, a row value with the examples' axis at position ``p``, or
joint) to the node's own, so that a term like ``sum(log_prob(Bernoulli(logits=c), h))`` or
``sum(h @ W)`` over rows ``h_i`` is recognized as ``sum_i t_i`` with ``t_i`` depending on row ``i``
only.  The rules are numpy's shape semantics, read for where the examples' axis lands:

* ``log_prob(D(theta), x)``: the parameters are aligned on their batch axes (the axes before each
  parameter's own event axes, :attr:`stochgrad.distributions.Param.event_rank`), the value's
  batch shape is their broadcast, ``x`` broadcasts against the value shape and the output drops
  ``D``'s event axes.  Row ``i`` of the output is ``log q_i`` of row ``i`` of ``theta`` and ``x``
  when every row operand puts the examples on the same batch axis and that axis survives (is
  not one of the reduced event axes).
* ``a @ b`` (``numpy.matmul``): for ``a`` of rank >= 2 the axis ``-1`` is contracted, ``-2`` is the
  output's row axis and the others are stack axes broadcast against ``b``'s; symmetrically for
  ``b`` the axis ``-2`` is contracted and ``-1`` is the output's column axis.  The examples stay
  apart when they sit on a non-contracted axis of one operand and the other is example-free;
  a contracted examples axis, or examples on both sides, mixes rows (joint).
* ``value[items]``: basic indexing (integers, slices) that leaves the examples' axis whole
  (``:``) keeps it, shifted left by the integers before it; a gather, an ``...`` or any item on
  the examples' axis other than ``:`` is treated as mixing (conservative: always unbiased).

A rule that cannot decide returns joint, which is always unbiased (the whole-cost score term).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .reprs import clipped
from . import ir
from .arraynodes import Index, MatMul, Slice, index_shape, matmul_shape
from .densities import LogProb
from .distributions import lookup
from .errors import StochgradError

Shape = tuple[int, ...]
Value = tuple[Shape | None, tuple[Any, ...]]
GLOBAL: tuple[Any, ...] = ("global",)


def _joint(why: str) -> tuple[Any, ...]:
    return ("joint", why)


def model_rule(node: ir.Expr, args: list[Value], n: int, broadcast: Callable[[ir.Expr, list[Value]], Value]) -> Value:
    """The shape and kind of a log density, matmul or index node from its operands' (none joint)."""
    if any(s is None for s, _ in args):
        if any(k[0] == "row" for _, k in args):
            return None, _joint(f"the shape of an operand of `{clipped(node)}` is unknown")
        return None, GLOBAL
    shapes = [s for s, _ in args if s is not None]
    if isinstance(node, LogProb):
        return _log_prob(node, args, n, broadcast)
    if isinstance(node, MatMul):
        try:
            out = tuple(matmul_shape(shapes[0], shapes[1], node))
        except (StochgradError, ValueError):
            return None, _joint(f"the shapes in `{clipped(node)}` do not multiply")
        return out, _matmul(node, args, out)
    assert isinstance(node, Index)
    if node.gather is not None:
        return None, GLOBAL if args[0][1] == GLOBAL else _joint(f"`{clipped(node)}` gathers (not analyzed for plates)")
    try:
        out = tuple(index_shape(shapes[0], node, ()))
    except (StochgradError, ValueError, IndexError):
        return None, _joint(f"`{clipped(node)}` does not index its value")
    return out, _index(node, args[0], out)


def _log_prob(node: LogProb, args: list[Value], n: int, broadcast: Callable[[ir.Expr, list[Value]], Value]) -> Value:
    try:
        d = lookup(node.dist.name)
    except (StochgradError, KeyError):
        return None, _joint(f"the distribution of `{clipped(node)}` is not analyzed for plates")
    ranks = {p.name: p.event_rank for p in d.params}
    names = [k for k, _ in node.dist.params]
    try:
        v = tuple(d.value_shape(dict(zip(names, (s for s, _ in args[:-1]))), node.dist))  # type: ignore[misc]
    except (StochgradError, ValueError, TypeError):
        return None, _joint(f"the parameters of `{clipped(node)}` do not broadcast")
    copies = getattr(node.dist, "count", None)  # log_prob(iid(K, D), x): the copies axis before D's batch axes
    if copies is not None:
        v = (int(copies),) + v
    batch = len(v) - (d.event_rank if any(ranks.values()) else 0)
    where: set[int] = set()  # the examples' axis in the value shape, from each row parameter
    for name, (s, kind) in zip(names, args[:-1]):
        if kind[0] != "row":
            continue
        assert s is not None
        own = len(s) - ranks.get(name, 0)  # the parameter's batch axes
        if kind[1] >= own:
            return None, _joint(f"the examples are an event axis of a parameter of `{clipped(node)}`")
        where.add(batch - own + kind[1])
    if len(where) > 1:
        return None, _joint(f"`{clipped(node)}` pairs parameters of different examples")
    value: Value = (v, ("row", where.pop()) if where else GLOBAL)
    if value[1] != GLOBAL and not (0 <= value[1][1] < len(v) and v[value[1][1]] == n):
        return None, _joint(f"the examples' axis of `{clipped(node)}` is not aligned")
    shape, kind = broadcast(node, [value, args[-1]])
    if kind[0] != "row" or shape is None:
        return (None if shape is None else shape[: len(shape) - d.event_rank]), kind
    out = shape[: len(shape) - d.event_rank]
    if kind[1] >= len(out):
        return None, _joint(f"`{clipped(node)}` reduces the examples as event axes of {node.dist.name}")
    return out, kind


def _matmul(node: MatMul, args: list[Value], out: Shape) -> tuple[Any, ...]:
    (sa, ka), (sb, kb) = args
    assert sa is not None and sb is not None
    if ka[0] == "row" and kb[0] == "row":
        return _joint(f"`{clipped(node)}` multiplies rows of different examples")
    if ka[0] != "row" and kb[0] != "row":
        return GLOBAL
    s, p, left = (sa, ka[1], True) if ka[0] == "row" else (sb, kb[1], False)
    r = len(s)
    contracted = (r - 1 if left else r - 2) if r >= 2 else 0
    if p == contracted:
        return _joint(f"`{clipped(node)}` contracts the examples' axis")
    if r >= 2 and p == (r - 2 if left else r - 1):  # the row axis of a, the column axis of b
        other = sb if left else sa
        q = len(out) - (1 if (not left or len(other) == 1) else 2)
        return ("row", q)
    stack = len(out) - (2 if len(sa) >= 2 and len(sb) >= 2 else 1)  # the output's stack axes
    return ("row", stack - (r - 2 - p))


def _index(node: Index, value: Value, out: Shape) -> tuple[Any, ...]:
    shape, kind = value
    if kind[0] != "row":
        return GLOBAL
    p = kind[1]
    if any(i is Ellipsis for i in node.items):
        return _joint(f"`{clipped(node)}` indexes with `...` (not analyzed for plates)")
    if p < len(node.items) and node.items[p] != Slice():
        return _joint(f"`{clipped(node)}` indexes the examples' axis")
    q = p - sum(1 for i in node.items[:p] if not isinstance(i, Slice))
    if not (0 <= q < len(out)) or shape is None or out[q] != shape[p]:
        return _joint(f"`{clipped(node)}` indexes the examples' axis")
    return ("row", q)
