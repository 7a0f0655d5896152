"""Lowering: evaluate a planned expression on a backend, producing the surrogate.

Shape convention: every array has a leading *sample axis* (size 1 for values
that do not vary across samples, else the chunk size) followed by its logical
shape; Python floats stand for constants.  Binary operations align logical
shapes from the right, as numpy broadcasting does, by inserting unit axes
after the sample axis; reductions act on logical axes only.

For each expectation the result is the per-sample surrogate (see
:mod:`stochgrad.estimators`)::

    S = sum_t []( sum_{v in score nodes of term t} log q_v ) * term_t
        + sum_{v score, with baseline} (1 - [](log q_v)) * b_v

whose value is the sum of the cost terms and whose gradient is the planned
estimator.  A nested expectation is estimated with one inner sample per outer
sample, which is unbiased wherever it enters the outer cost linearly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from . import ir
from .distributions import lookup
from .errors import StochgradError
from .estimators import leave_one_out, magic_box
from .functions import COMPARISON_PRIMITIVES, FUNCTIONS
from .noise import NoiseSource
from .planner import NodePlan, PlannedExpect

Array = Any
_ARITH = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "**": lambda a, b: a**b,
}


class Lowering:
    """Evaluates planned expressions for one chunk of samples."""

    def __init__(self, B: Any, params: Mapping[str, Array], noise: NoiseSource,
                 known: Mapping[str, np.ndarray] | None = None) -> None:
        """``known`` holds the numeric values of parameters, so that a distribution argument that is
        just a parameter or a constant is checked once on it rather than on a per-sample array."""
        self.B, self.params, self.noise, self.known = B, params, noise, known or {}
        self._handlers = {
            ir.Num: self._num, ir.Name: self._name, ir.Neg: self._neg, ir.BinOp: self._binop,
            ir.Call: self._call, PlannedExpect: self._expect,
        }

    # -- shapes ---------------------------------------------------------------
    def array(self, x: Array | float) -> Array:
        return self.B.asarray(np.array([x], dtype=float)) if isinstance(x, float) else x

    def rank(self, x: Array | float) -> int:
        return -1 if isinstance(x, float) else len(self.B.shape(x)) - 1

    def lift(self, x: Array, rank: int) -> Array:
        """Give ``x`` logical rank ``rank`` by inserting unit axes after the sample axis."""
        r = self.rank(x)
        if r < 0 or r >= rank:
            return x
        shape = self.B.shape(x)
        return self.B.reshape(x, shape[:1] + (1,) * (rank - r) + shape[1:])

    def align(self, *xs: Array | float) -> list[Array | float]:
        rank = max(self.rank(x) for x in xs)
        return [self.lift(x, rank) for x in xs]

    def reduce_logical(self, x: Array, axis: int | None) -> tuple[Array, int]:
        """Sum over all logical axes (``axis=None``) or one; returns (sum, count summed)."""
        shape = self.B.shape(x)
        if axis is None:
            axes = tuple(range(1, len(shape)))
        else:
            rank = len(shape) - 1
            if not -rank <= axis < rank:
                raise StochgradError(f"axis {axis} is out of range for a value with {rank} axes (shape {shape[1:]})")
            axes = (axis % rank + 1,)
        count = int(np.prod([shape[a] for a in axes])) if axes else 1
        return (self.B.sum(x, axes) if axes else x), count

    # -- evaluation -----------------------------------------------------------
    def eval(self, e: ir.Expr, env: Mapping[str, Array]) -> Array | float:
        return self._handlers[type(e)](e, env)

    def _num(self, e: ir.Num, env: Mapping[str, Array]) -> float:
        return e.value

    def _name(self, e: ir.Name, env: Mapping[str, Array]) -> Array:
        if e.id in env:
            return env[e.id]
        return self.params[e.id]

    def _neg(self, e: ir.Neg, env: Mapping[str, Array]) -> Array | float:
        return -self.eval(e.operand, env)

    def _binop(self, e: ir.BinOp, env: Mapping[str, Array]) -> Array | float:
        a, b = self.align(self.eval(e.left, env), self.eval(e.right, env))
        if e.op in COMPARISON_PRIMITIVES:
            return self.B.fn[COMPARISON_PRIMITIVES[e.op]](self.array(a), self.array(b))
        return _ARITH[e.op](a, b)

    def _call(self, e: ir.Call, env: Mapping[str, Array]) -> Array:
        fn = FUNCTIONS[e.fn]
        x = self.array(self.eval(e.args[0], env))
        if fn.primitive is not None:
            return self.B.fn[fn.primitive](x)
        opts = {k: int(v.value) for k, v in e.kwargs if isinstance(v, ir.Num)}
        total, count = self.reduce_logical(x, opts.get("axis"))
        return total if e.fn == "sum" else total / count

    def sample(self, node: NodePlan, env: Mapping[str, Array]) -> tuple[Array, Array | None]:
        """Draw the node's sample; for score nodes also return log q summed over logical axes."""
        d = lookup(node.dist.name)
        names = [k for k, _ in node.dist.params]
        values = self.align(*(self.array(self.eval(v, env)) for _, v in node.dist.params))
        p = dict(zip(names, values))
        d.validate({k: self._numeric(e, p[k], env) for k, e in node.dist.params}, where=f"{node.var} ~ {node.dist}",
                   sources={k: str(v) for k, v in node.dist.params})
        shape = np.broadcast_shapes(*(self.B.shape(v)[1:] for v in values))
        streams = iter(range(1 << 30))

        def draw(kind: str, logical: tuple[int, ...]) -> Array:
            return self.noise.draw(node.uid, next(streams), kind, tuple(logical))

        if node.spec.name == "pathwise":
            return d.rsample(self.B, p, draw, shape), None
        z = d.sample(self.B, p, draw, shape)
        logq, _ = self.reduce_logical(d.log_prob(self.B, p, z), None)
        return z, logq

    def _numeric(self, e: ir.Expr, value: Array, env: Mapping[str, Array]) -> np.ndarray:
        if isinstance(e, ir.Num):
            return np.asarray(e.value)
        if isinstance(e, ir.Name) and e.id not in env and e.id in self.known:
            return self.known[e.id]
        return self.B.to_numpy(value)

    def _expect(self, e: PlannedExpect, env: Mapping[str, Array]) -> Array:
        B = self.B
        scope = dict(env)
        logq: list[Array | None] = []
        for node in e.nodes:
            scope[node.var], lq = self.sample(node, scope)
            logq.append(lq)
        values = [self.array(sign * self.eval(t, scope)) if sign != 1.0 else self.array(self.eval(t, scope))
                  for sign, t in e.terms]
        total: Array | float = 0.0
        for value, box in zip(values, e.boxes):
            if box:
                value = _mul(self, magic_box(B, _sum([logq[j] for j in box])), value)
            total = _add(self, total, value)
        for j, node in enumerate(e.nodes):
            if logq[j] is None or getattr(node.spec, "baseline", None) is None:
                continue
            cost = _sum_aligned(self, [v for v, box in zip(values, e.boxes) if j in box])
            if cost is None or B.shape(cost)[0] < 2:
                continue  # nothing depends on the node, or too few samples for leave-one-out
            base = leave_one_out(B, cost)
            total = _add(self, total, _mul(self, 1.0 - magic_box(B, logq[j]), base))
        return self.array(total)


def _sum(xs: list[Array]) -> Array:
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out


def _add(low: Lowering, a: Array | float, b: Array | float) -> Array | float:
    a, b = low.align(a, b)
    return a + b


def _mul(low: Lowering, a: Array | float, b: Array | float) -> Array | float:
    a, b = low.align(a, b)
    return a * b


def _sum_aligned(low: Lowering, xs: list[Array]) -> Array | None:
    if not xs:
        return None
    out = xs[0]
    for x in xs[1:]:
        out = _add(low, out, x)
    return out
