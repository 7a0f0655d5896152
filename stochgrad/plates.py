"""Plate inference: which score terms can pair each example with its own cost.

Let a random node ``z = (z_1, ..., z_N)`` have independent rows given its parameters,
``q(z) = prod_i q_i(z_i)`` (its leading axis is a batch axis, and its parameters keep that axis
first, row ``i`` depending only on row ``i`` of other such nodes), and let a cost term be
``f = sum_i t_i`` where ``t_i`` depends on the random nodes only through their row ``i`` (and
through *global* nodes shared by every row).  Then

    grad E[f] = sum_i E[t_i grad log q_i(z_i)] + E[grad f],

because each cross term ``E[t_i grad log q_j(z_j)]``, ``j != i``, factors into
``E[t_i] E[grad log q_j] = 0``.  The per-example surrogate ``sum_i [](log q_i) t_i`` (plus
per-example baselines) therefore has the value and expected gradient of ``[](log q) f``, without
the ``N - 1`` other examples' costs as noise in each example's gradient: the plate-level
Rao-Blackwellization of Pyro's ``TraceGraph_ELBO`` (Schulman et al. 2015, "Gradient estimation
using stochastic computation graphs", section 3; Bingham et al. 2019, "Pyro").  A global node's
score still pairs with the whole sum.

The analysis is static (the IR and :mod:`stochgrad.shapes`): one post-order pass per cost term
gives each subexpression its shape and *kind* -- global (no dependence on a row node), a row value
with the examples' axis at a known position (elementwise operations, broadcasting that keeps the
axis aligned, reductions over other axes, Categorical's event axis; ``log_prob``, ``@`` and basic
indexing by the rules of :mod:`stochgrad.platemodels`), or joint (a sum over the
examples' axis, a user function, a nested expectation or KL of row values, misaligned axes), with
the reason.  A term ``sum(t)`` / ``mean(t)`` (or ``sum(t, axis=0)`` of a vector) whose ``t`` is a
row value is planned per example: the term becomes its per-example costs (``t`` summed over its
other axes, divided by the size for ``mean``) and the surrogate sums them back after pairing.  A
score node is plated when every term it scores is; a term keeps its plate only if every row node
it depends on is plated.  Anything else stays joint (always unbiased), and the plan says why.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .reprs import clipped
from . import ir
from .distributions import lookup
from .functions import make_call
from .planned import NodePlan
from .arraynodes import Index, MatMul
from .densities import Iid, LogProb
from .errors import StochgradError
from .functions import FUNCTIONS
from .platemodels import model_rule
from .shapes import Shape, UnknownShape, _rule as rule, infer

GLOBAL: tuple[Any, ...] = ("global",)
Value = tuple[Shape | None, tuple[Any, ...]]  # (shape or None if unknown, kind)
INFERRED = "inferred: the cost is a sum over axis 0 of per-example terms"


@dataclass(frozen=True)
class PlateTerm:
    """A cost term planned per example: ``size`` examples; ``source`` is the term as written."""

    size: int
    source: ir.Expr


@dataclass(frozen=True)
class Plates:
    nodes: tuple[NodePlan, ...]
    terms: tuple[tuple[float, ir.Expr], ...]
    plates: tuple[PlateTerm | None, ...]


def _joint(why: str) -> tuple[Any, ...]:
    return ("joint", why)


class _Env(Mapping[str, Shape]):
    """Shapes of the local variables (known ones) on top of the planner's environment."""

    def __init__(self, local: Mapping[str, Value], env: Mapping[str, Shape]) -> None:
        self.local, self.env = local, env

    def __getitem__(self, name: str) -> Shape:
        if name in self.local:
            shape = self.local[name][0]
            if shape is None:
                raise UnknownShape(name)
            return shape
        return self.env[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)


def _param_shape(env: Mapping[str, Shape], name: str) -> Shape | None:
    try:
        return tuple(env.get(name, ()))
    except UnknownShape:
        return None


def _opaque(node: ir.Expr, local: Mapping[str, Value], env: Mapping[str, Shape]) -> Value:
    """A user function, nested expectation or KL: global if it names no row or joint value."""
    for sub in ir.walk(node):
        if isinstance(sub, ir.Name) and sub.id in local and local[sub.id][1] != GLOBAL:
            what = (
                f"uses the user function {node.fn}()"
                if isinstance(node, ir.Call)
                else f"puts the examples through `{clipped(node)}`"
            )
            return None, _joint(what)
    source = getattr(node, "source", node)  # a planned expectation: its shape is its source's
    try:
        return infer(source, _Env(local, env)), GLOBAL
    except (UnknownShape, TypeError, ValueError, KeyError):
        return None, GLOBAL


def analyze(e: ir.Expr, n: int, local: Mapping[str, Value], env: Mapping[str, Shape]) -> Value:
    """The shape and kind of ``e`` for a plate of ``n`` examples (one pass, explicit stack)."""
    values: list[Value] = []
    stack: list[tuple[ir.Expr, bool]] = [(e, False)]
    while stack:
        node, ready = stack.pop()
        if isinstance(node, ir.Num):
            values.append(((), GLOBAL))
        elif isinstance(node, ir.Name):
            values.append(local[node.id] if node.id in local else (_param_shape(env, node.id), GLOBAL))
        elif not (
            isinstance(node, (ir.Neg, ir.BinOp, LogProb, MatMul, Index))
            or (isinstance(node, ir.Call) and node.impl is None)
        ):
            values.append(_opaque(node, local, env))
        elif not ready:
            stack.append((node, True))
            stack.extend((c, False) for c in reversed(_kids(node)))
        else:
            k = len(_kids(node))
            args = values[len(values) - k :]
            del values[len(values) - k :]
            values.append(_combine(node, args, n))
    return values[0]


def _kids(node: ir.Expr) -> tuple[ir.Expr, ...]:
    """The children the analysis visits: a call's arguments, a log density's parameters and value."""
    if isinstance(node, ir.Call):
        return tuple(node.args)
    if isinstance(node, LogProb):
        return tuple(v for _, v in node.dist.params) + (node.x,)
    if isinstance(node, Index):
        return (node.value,)  # a gather's index is a parameter (global); the item is checked below
    return tuple(node.children())


def _combine(node: ir.Expr, args: list[Value], n: int) -> Value:
    for _, kind in args:
        if kind[0] == "joint":
            return None, kind
    if isinstance(node, ir.Neg):
        return args[0]
    if isinstance(node, ir.BinOp):
        return _broadcast(node, args)
    if isinstance(node, (LogProb, MatMul, Index)):
        return model_rule(node, args, n, _broadcast)
    assert isinstance(node, ir.Call)
    shape, kind = args[0]
    row = kind[0] == "row"
    if not any(k[0] == "row" for _, k in args):  # example-free: only its shape matters
        return _global_shape(node, args)
    if len(args) > 1:  # maximum, minimum, where, clip: elementwise with broadcasting
        return _broadcast(node, args)
    rule = FUNCTIONS[node.fn].shape.__name__
    if rule == "elementwise":
        return args[0]
    if shape is None:
        return None, _joint(f"the shape of `{clipped(node)}` is unknown")
    if rule == "reversed_axes":  # transpose
        return shape[::-1], ("row", len(shape) - 1 - kind[1])
    if rule == "along_axis":  # softmax, log_softmax: rows stay apart unless it runs along the examples
        axis = dict(node.kwargs).get("axis")
        k = -1 if axis is None else int(axis.value)  # type: ignore[attr-defined]
        if len(shape) == 0 or k % len(shape) == kind[1]:
            return None, _joint(f"`{clipped(node)}` normalizes over the examples")
        return args[0]
    if rule not in ("reduction", "drop_last"):
        return None, _joint(f"`{clipped(node)}` rearranges the examples")
    if rule == "drop_last":  # argmax
        if row and kind[1] == len(shape) - 1:
            return None, _joint(f"`{clipped(node)}` takes the argmax over the examples")
        return shape[:-1], kind
    axis = dict(node.kwargs).get("axis")
    if axis is None:
        return (), _joint(f"`{clipped(node)}` {_verb(node)} over the examples")
    k, rank = int(axis.value), len(shape)  # type: ignore[attr-defined]
    if not -rank <= k < rank:
        return None, _joint(f"axis {k} is out of range in `{clipped(node)}`")
    k %= rank
    out = shape[:k] + shape[k + 1 :]
    if k == kind[1]:
        return None, _joint(f"`{clipped(node)}` {_verb(node)} over the examples")
    return out, ("row", kind[1] - (k < kind[1]))


def _verb(node: ir.Call) -> str:
    return "sums" if node.fn in ("sum", "mean") else "reduces"


def _global_shape(node: ir.Expr, args: list[Value]) -> Value:
    """An example-free value: its shape from its operands' (None if any is unknown or it fails)."""
    if any(s is None for s, _ in args):
        return None, GLOBAL
    try:
        return rule(node, [s for s, _ in args]), GLOBAL  # type: ignore[misc]
    except (StochgradError, TypeError, ValueError, KeyError):
        return None, GLOBAL


def _broadcast(node: ir.Expr, args: list[Value]) -> Value:
    any_row = any(kind[0] == "row" for _, kind in args)
    known = [s for s, _ in args if s is not None]
    if len(known) < len(args):
        return (None, _joint(f"the shape of an operand of `{clipped(node)}` is unknown")) if any_row else (None, GLOBAL)
    rows = [(s, kind[1]) for s, kind in zip(known, (k for _, k in args)) if kind[0] == "row"]
    try:
        shape = tuple(np.broadcast_shapes(*known))
    except ValueError:
        return None, _joint(f"the shapes in `{clipped(node)}` do not broadcast")
    if not rows:
        return shape, GLOBAL
    right = {len(s) - 1 - p for s, p in rows}  # the examples' axis, counted from the right
    if len(right) > 1:
        return None, _joint(f"`{clipped(node)}` pairs rows of different examples")
    return shape, ("row", len(shape) - 1 - right.pop())


def node_kinds(nodes: tuple[NodePlan, ...], n: int, env: Mapping[str, Shape]) -> dict[str, Value]:
    """Shape and kind of every node's value, in order, for a plate of ``n`` examples."""
    local: dict[str, Value] = {}
    for node in nodes:
        params = [analyze(v, n, local, env) for _, v in node.dist.params]
        local[node.var] = (node.shape, _node_kind(node, params, n))
    return local


def _node_kind(node: NodePlan, params: list[Value], n: int) -> tuple[Any, ...]:
    for _, kind in params:
        if kind[0] == "joint":
            return _joint(f"the parameters of {node.var}: {kind[1]}")
    rows = [(s, kind[1]) for s, kind in params if kind[0] == "row"]
    shape = node.shape
    if shape is None:
        return _joint(f"the shape of {node.var} is unknown") if rows else GLOBAL
    capable = len(shape) - lookup(node.dist.name).event_rank >= 1 and shape[0] == n
    if not rows:
        return ("row", 0) if capable else GLOBAL
    top = max(len(s) for s, _ in params if s is not None)
    if capable and all(s is not None and p == 0 and len(s) == top for s, p in rows):
        return ("row", 0)
    return _joint(f"the parameters of {node.var} do not keep the examples' axis first")


def plate_size(node: NodePlan) -> int | None:
    """The number of examples along a node's leading batch axis (None: none, or fewer than 2)."""
    s = node.shape
    if s is None or len(s) - lookup(node.dist.name).event_rank < 1 or s[0] < 2:
        return None
    return s[0]


def _rows(term: ir.Call, shape: Shape, axis: int) -> ir.Expr:
    """The per-example costs of ``sum(t)`` / ``mean(t)``: ``t`` summed over its other axes."""
    x: ir.Expr = term.args[0]
    for _ in range(len(shape) - 1 - axis):
        x = make_call("sum", (x,), (("axis", ir.Num(axis + 1)),))
    for _ in range(axis):
        x = make_call("sum", (x,), (("axis", ir.Num(0)),))
    if term.fn == "mean":
        size = math.prod(shape) if dict(term.kwargs).get("axis") is None else shape[axis]
        x = ir.BinOp("/", x, ir.Num(size))
    return x


def _term(t: ir.Expr, sizes: list[int], kinds: Any, env: Mapping[str, Shape]) -> tuple[int | None, Any]:
    """(n, per-example expression) if ``t`` is a sum over ``n`` examples of per-example terms, else (None, why)."""
    if not (isinstance(t, ir.Call) and t.impl is None and t.fn in ("sum", "mean")):
        what = (
            "uses a user function"
            if isinstance(t, ir.Call) and t.impl is not None
            else "is not a sum over the examples"
        )
        return None, f"the cost term `{clipped(t)}` {what}"
    why: str = ""
    for n in sizes:
        shape, kind = analyze(t.args[0], n, kinds(n), env)
        if kind[0] == "joint":
            why = f"in the cost term `{clipped(t)}`, {kind[1]}"
            continue
        if kind[0] != "row" or shape is None or math.prod(shape) == 0:
            why = f"the cost term `{clipped(t)}` does not depend on the examples row by row"
            continue
        axis = dict(t.kwargs).get("axis")
        if axis is not None and int(axis.value) % len(shape) != kind[1]:  # type: ignore[attr-defined]
            why = f"the cost term `{clipped(t)}` keeps one value per example (it sums over another axis)"
            continue
        if axis is not None and len(shape) != 1:
            why = f"the cost term `{clipped(t)}` leaves more than one value per example"
            continue
        return n, _rows(t, shape, kind[1])
    return None, why


def infer_plates(
    nodes: tuple[NodePlan, ...],
    terms: tuple[tuple[float, ir.Expr], ...],
    boxes: tuple[tuple[int, ...], ...],
    env: Mapping[str, Shape],
) -> Plates:
    """Plan the terms of one expectation per example where the analysis sees that it may."""
    memo: dict[int, dict[str, Value]] = {}

    def kinds(n: int) -> dict[str, Value]:
        if n not in memo:
            memo[n] = node_kinds(nodes, n, env)
        return memo[n]

    moving: dict[int, bool] = {}  # n -> whether an enumerated node varies with n examples

    def enumerated_rows(n: int) -> bool:
        if n not in moving:
            moving[n] = any(node.spec.enumerates and kinds(n)[node.var][1] != GLOBAL for node in nodes)
        return moving[n]

    sizes = [plate_size(node) if node.spec.scores else None for node in nodes]
    found: dict[int, tuple[int, ir.Expr]] = {}
    why: dict[int, str] = {}
    for i, ((_, t), box) in enumerate(zip(terms, boxes)):
        wanted = [n for n in dict.fromkeys(sizes[j] for j in box) if n is not None]
        if not wanted:
            continue
        n, out = _term(t, wanted, kinds, env)
        if n is None:
            why[i] = str(out)
        elif enumerated_rows(n):
            why[i] = "an enumerated node varies with the examples"
        else:
            found[i] = (n, out)

    def is_row(j: int, n: int) -> bool:
        return kinds(n)[nodes[j].var][1][0] == "row"

    scores: dict[int, list[int]] = {}  # node -> the terms it scores
    for i, box in enumerate(boxes):
        for j in box:
            scores.setdefault(j, []).append(i)
    plated: set[int] = set()
    while True:  # a node is plated when all its terms are; a term keeps its plate when all its row nodes are
        plated = {
            j
            for j, n in enumerate(sizes)
            if n is not None
            and j in scores
            and is_row(j, n)
            and all(i in found and found[i][0] == n for i in scores[j])
        }
        drop = [
            i
            for i in found
            if any(is_row(j, found[i][0]) and j not in plated for j in boxes[i])
            or not any(j in plated for j in boxes[i])
        ]
        if not drop:
            break
        for i in drop:
            why[i] = f"the cost term `{clipped(terms[i][1])}` shares a node with a term that is joint"
            del found[i]
    out_nodes = []
    for j, node in enumerate(nodes):
        n = sizes[j]
        unit = "iid copies" if isinstance(node.dist, Iid) else "examples"  # z ~ iid(K, D): axis 0 holds the copies
        if j in plated:
            node = replace(node, plate=1, plate_note=f"plate over {n} {unit} ({INFERRED})")
        elif n is not None:
            reasons = [why[i] for i in scores.get(j, ()) if i in why]
            if not is_row(j, n):
                reasons.insert(0, kinds(n)[node.var][1][1])
            if reasons:
                node = replace(
                    node,
                    plate_note=f"joint over {n} {unit} ({reasons[0]}; declare batch_axes=1,"
                    " with one cost per example, if the rows are independent)",
                )
        out_nodes.append(node)
    new_terms = tuple((s, found[i][1]) if i in found else (s, t) for i, (s, t) in enumerate(terms))
    plates = tuple(PlateTerm(found[i][0], t) if i in found else None for i, (_, t) in enumerate(terms))
    return Plates(tuple(out_nodes), new_terms, plates if found else ())
