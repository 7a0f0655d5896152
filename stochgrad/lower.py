"""Lowering: evaluate a planned expression on a backend, producing the surrogate.

Every array carries a leading *sample axis* (see :mod:`stochgrad.sampleaxis`).
:class:`Lowering` evaluates names, numbers, arithmetic, calls and KL terms, checks
distribution parameters, and draws or enumerates each random node; the surrogate of an
expectation is assembled from those in :mod:`stochgrad.surrogate`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from . import ir
from .baselines import BaselineState
from .continuous import check_precision
from .distributions import joint_prob, joint_support, lookup
from .errors import StochgradError
from .functions import COMPARISON_PRIMITIVES, FUNCTIONS
from .ieee import binop as ieee_binop, call as ieee_call
from .noise import BLOCK, NoiseSource
from .kl import kl_value
from .planner import LogRatio, NodePlan, PlannedExpect
from .sampleaxis import SampleAxis
from .shapes import broadcast
from .surrogate import expect
from .userfn import call_user_function, check_operands
from .zeromass import log_ratio

if TYPE_CHECKING:
    from .backend import Backend

Array = Any
_TWO = ir.Num(2.0)
_HUGE = 1e30  # bound on |log q| (finite in float32 too): a larger one is a sample at the edge of range
_ARITH = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "**": lambda a, b: a**b,
}


class Lowering(SampleAxis):
    """Evaluates planned expressions for one chunk of samples."""

    def __init__(self, B: Backend, params: Mapping[str, Array], noise: NoiseSource,
                 known: Mapping[str, np.ndarray] | None = None,
                 batch_axes: int = 0, memo: dict[Any, Any] | None = None, checks: bool = True,
                 first_order: bool = False, baselines: BaselineState | None = None) -> None:
        """``known`` holds the numeric values of parameters, so that a distribution argument that is
        just a parameter or a constant is checked once on it rather than on a per-sample array.

        ``batch_axes`` (a plate) declares that the first logical axes of every random node index
        independent examples whose costs depend on their own latents only: a score term then
        multiplies each example's cost by that example's log q alone (less variance); the
        default 0 treats the whole node as one joint variable, which is always valid.

        ``memo`` outlives the lowering (shared by the chunks of a run, or the calls of an objective):
        it holds constant arrays and the constant parameter sets already checked (see :meth:`check`).
        ``checks=False`` skips the parameter checks (a fused objective checks before it runs).

        ``first_order=True`` builds score terms as ``v + stop(v) (L - stop(L))`` rather than DiCE's
        ``[](L) v``: the same value and first derivative, fewer passes, but wrong second derivatives;
        for ``estimate``, which differentiates once.  Objectives keep DiCE's form.

        ``baselines`` holds the moving-average baselines' running state, owned by the caller (an
        ``estimate`` run or an objective; see :mod:`stochgrad.baselines`); default: a fresh one."""
        self.B, self.params, self.noise, self.known = B, params, noise, known or {}
        self.memo: dict[Any, Any] = {} if memo is None else memo
        self._checked_now: set[Any] = set()
        self.checks = checks
        self.first_order = first_order
        self.baselines = BaselineState() if baselines is None else baselines
        self.batch_axes = batch_axes
        self.mult = 1
        self._tiled: dict[tuple[str, int], Array] = {}
        # leave-one-out groups: noise blocks when the noise comes in blocks, else the whole call
        self._loo_block = BLOCK if getattr(noise, "blocked", False) else None

    # -- evaluation -----------------------------------------------------------
    _known: dict[int, Any] | None = None  # while _arithmetic runs a handler: its operands' values, by id

    def evaluate(self, e: ir.Expr, env: Mapping[str, Array]) -> Array | float:
        known = self._known
        if known is not None and id(e) in known:
            return known[id(e)]
        if known is None and type(e) in _ARITHMETIC:
            return self._arithmetic(e, env)
        return _HANDLERS[type(e)](self, e, env)

    def _arithmetic(self, e: ir.Expr, env: Mapping[str, Array]) -> Array | float:
        """Evaluate a tree of arithmetic (BinOp, Neg) of any depth without recursion: its other
        nodes first, left to right, then each operator bottom-up through its handler, whose
        operands are then already known (a 10,000-term product is a chain that deep)."""
        values: dict[int, Any] = {}
        order: list[ir.Expr] = []
        stack: list[tuple[ir.Expr, bool]] = [(e, False)]
        while stack:
            node, ready = stack.pop()
            if ready:
                order.append(node)
            elif id(node) in values:
                continue
            elif type(node) in _ARITHMETIC:
                stack.append((node, True))
                stack.extend((c, False) for c in reversed(node.children()))
            else:
                values[id(node)] = self.evaluate(node, env)
        for node in order:
            self._known = values
            try:
                values[id(node)] = _HANDLERS[type(node)](self, node, env)
            finally:
                self._known = None
        return values[id(e)]

    def _num(self, e: ir.Num, env: Mapping[str, Array]) -> float:
        return e.value

    def _name(self, e: ir.Name, env: Mapping[str, Array]) -> Array:
        if e.id in env:
            return env[e.id]
        if self.mult == 1:
            return self.params[e.id]
        key = (e.id, self.mult)
        if key not in self._tiled:
            self._tiled[key] = self.tile(self.params[e.id], self.mult)
        return self._tiled[key]

    def _neg(self, e: ir.Neg, env: Mapping[str, Array]) -> Array | float:
        return -self.evaluate(e.operand, env)

    def _binop(self, e: ir.BinOp, env: Mapping[str, Array]) -> Array | float:
        if e.op == "**" and e.right == _TWO:  # x * x: cheaper than pow, forward and backward
            x = self.evaluate(e.left, env)
            return ieee_binop("*", x, x) if isinstance(x, float) else x * x
        a, b = self.align(self.evaluate(e.left, env), self.evaluate(e.right, env))
        if isinstance(a, float) and isinstance(b, float):  # two constants: IEEE arithmetic, as arrays
            return ieee_binop(e.op, a, b)
        try:
            if e.op in COMPARISON_PRIMITIVES:
                return self.B.fn[COMPARISON_PRIMITIVES[e.op]](self.array(a), self.array(b))
            return _ARITH[e.op](a, b)
        except (ValueError, RuntimeError):  # shapes only a user function's output made known: name the operation
            check_operands(self.B, [a, b], e)
            raise

    def _call(self, e: ir.Call, env: Mapping[str, Array]) -> Array:
        if e.impl is not None:  # a user function: native arrays in, native array out (checked)
            return self.array(call_user_function(self.B, e.fn, e.impl.fn, [self.array(self.evaluate(a, env)) for a in e.args]))
        fn = FUNCTIONS[e.fn]
        x = self.evaluate(e.args[0], env)
        if fn.primitive is not None and isinstance(x, float):  # a constant: IEEE semantics, once
            out = ieee_call(fn.primitive, x)
            if out is not None:
                return out
        x = self.array(x)
        if fn.primitive is not None:
            return self.B.fn[fn.primitive](x)
        if e.fn == "argmax":
            shape = self.B.shape(x)
            if len(shape) < 2:
                raise StochgradError(f"argmax needs a value with a last axis, got a scalar in `{e}`")
            if ("arange", shape[-1]) not in self.memo:
                self.memo[("arange", shape[-1])] = self.B.asarray(np.arange(shape[-1], dtype=float))
            index = self.memo[("arange", shape[-1])]
            return self.B.sum(self.B.one_hot_argmax(x) * index, (len(shape) - 1,))
        opts = {k: int(v.value) for k, v in e.kwargs if isinstance(v, ir.Num)}
        total, count = self.reduce_logical(x, opts.get("axis"))
        return total if e.fn == "sum" else total / count

    def _kl(self, e: ir.KL, env: Mapping[str, Array]) -> Array:
        (p, q) = self._dist_params([e.p, e.q], env, where=e)
        return self.array(kl_value(self.B, e, p, q))  # the closed form, or +inf (see kl.verdict)

    def _log_ratio(self, e: LogRatio, env: Mapping[str, Array]) -> Array:
        x = env[e.x.id]
        (p, q) = self._dist_params([e.p, e.q], env, where=e)
        return log_ratio(self.B, e.p, p, e.q, q, x)  # +inf exactly where q has no mass (stochgrad.zeromass)

    def _dist_params(self, dists: list[ir.Dist], env: Mapping[str, Array], where: ir.Expr) -> list[dict[str, Array]]:
        """Parameters of several distributions, aligned together and checked."""
        forms = [self._constant_form(d) for d in dists]
        values = self.align(*(self.array(x) for d, form in zip(dists, forms)
                              for x in (form.values() if form else (self.evaluate(v, env) for _, v in d.params))))
        out, i = [], 0
        for d, form in zip(dists, forms):
            names = list(form) if form else [k for k, _ in d.params]
            p = {k: values[i + j] for j, k in enumerate(names)}
            self.check(d, p, env, where=(where, d))
            out.append(p)
            i += len(names)
        return out

    def _constant_form(self, d: ir.Dist) -> dict[str, float] | None:
        """For a distribution with constant parameters only, its parameters in the form its formulas
        use most cheaply (e.g. a Bernoulli's logits), computed once per ``memo``; else None."""
        if not all(type(v) is ir.Num for _, v in d.params):
            return None
        key = ("constant form", d)
        if key not in self.memo:
            self.memo[key] = lookup(d.name).constant_form({k: v.value for k, v in d.params})  # type: ignore[union-attr]
        return self.memo[key]

    def check(self, d: ir.Dist, p: Mapping[str, Array], env: Mapping[str, Array], where: tuple[Any, ir.Dist]) -> None:
        """Check ``d``'s parameter values against its constraints, once per distinct set of values:
        constants and known parameters once per run (in ``memo``, shared between chunks and
        calls), arrays once per evaluation (keyed by identity, while they are alive).  ``where`` is
        ``(variable, d)`` for a random node, ``(expression, d)`` for a KL or log-ratio term."""
        if not self.checks:
            return
        key = tuple((k, v) if type(v) is ir.Num or (type(v) is ir.Name and v.id not in env and v.id in self.known)
                    else (k, id(p[k])) for k, v in d.params)
        lasting = all(isinstance(k[1], ir.Expr) for k in key)
        seen = self.memo if lasting else self._checked_now
        if (d.name, key) in seen:
            return
        context, dist = where
        law, values = lookup(d.name), {k: self._numeric(v, p.get(k), env) for k, v in d.params}
        law.validate(values, where=lambda: f"{context} ~ {dist}" if isinstance(context, str) else f"{context}: {dist}",
                     sources=lambda: {k: str(v) for k, v in d.params})
        if isinstance(context, str):  # a random node: are its samples all rounded to the location?
            check_precision(law, values, getattr(self.B, "dtype", "float64"), lambda: f"{context} ~ {dist}")
        if lasting:
            self.memo[(d.name, key)] = True
        else:
            self._checked_now.add((d.name, key))

    # -- random nodes ------------------------------------------------------------
    def parameters(self, node: NodePlan, env: Mapping[str, Array]) -> tuple[dict[str, Array], tuple[int, ...]]:
        """The node's parameters (aligned, checked) and the logical shape of one sample."""
        names = [k for k, _ in node.dist.params]
        values = self.align(*(self.array(self.evaluate(v, env)) for _, v in node.dist.params))
        p = dict(zip(names, values))
        self.check(node.dist, p, env, where=(node.var, node.dist))
        shapes = {self.B.shape(v)[1:] for v in values}
        return p, (shapes.pop() if len(shapes) == 1 else broadcast(sorted(shapes), node.dist))

    def sample(self, node: NodePlan, env: Mapping[str, Array]) -> tuple[Array, Array | None]:
        """Draw the node's value; for score nodes also return log q summed over logical axes."""
        p, shape = self.parameters(node, env)
        streams = itertools.count()  # one noise stream per draw of this node
        count = self.noise.count

        def draw(kind: str, logical: tuple[int, ...], *params: Array) -> Array:
            stream = next(streams)
            if self.mult == 1:
                return self.noise.draw(node.uid, stream, kind, tuple(logical), *params)
            return self.B.concat([  # independent noise in every enumeration copy
                self.noise.draw(node.uid, stream, kind, tuple(logical),
                                *(q if self.B.shape(q)[0] == 1 else q[r * count:(r + 1) * count] for q in params),
                                branch=r)
                for r in range(self.mult)
            ])

        draw.node = node  # type: ignore[attr-defined]  # named in errors raised later (stochgrad.gammas)
        d = lookup(node.dist.name)
        z, logq = node.spec.sample(d, self.B, p, draw, shape)
        if logq is None:
            return z, None
        shape = self.B.shape(logq)  # sum log q over all axes but the leading batch (plate) axes
        axes = tuple(range(1 + min(self.batch_axes, len(shape) - 1), len(shape)))
        logq = self.B.sum(logq, axes) if axes else logq
        # an infinite log density (a sample at the edge of float range) would make the magic box NaN
        return z, logq if d.finite_log_prob else self.B.fn["clip"](logq, -_HUGE, _HUGE)

    def enumerate(self, node: NodePlan, scope: dict[str, Array]) -> tuple[Array, Array]:
        """Copy ``scope`` once per joint state; return the node's values and weights ``K q(k)``."""
        d = lookup(node.dist.name)
        p, shape = self.parameters(node, scope)
        level = self.mult * self.noise.count
        key = ("support", node.uid, shape, level)  # the states, each repeated per sample: made once
        if key not in self.memo:
            support = joint_support(d, node.dist, shape)
            if support is None:
                raise StochgradError(f"{node.var} ~ {node.dist}: cannot enumerate a support of this size or kind")
            self.memo[key] = (support.shape[0], self.B.asarray(np.repeat(support, level, axis=0)))
        k, z = self.memo[key]
        for var in scope:
            scope[var] = self.tile(scope[var], k)
        p = {name: self.tile(v, k) for name, v in p.items()}
        self.mult *= k
        return z, k * joint_prob(self.B, d.prob(self.B, p, z))  # q(k) itself, differentiable where it is 0

    def stop(self, x: Array | float) -> Array | float:
        return x if isinstance(x, float) else self.B.stop_gradient(x)

    def _numeric(self, e: ir.Expr, value: Array, env: Mapping[str, Array]) -> np.ndarray | float:
        """The value to check: a Python float for a scalar (one entry, no logical axes), else numpy."""
        if isinstance(e, ir.Num):
            return e.value
        if isinstance(e, ir.Name) and e.id not in env and e.id in self.known:
            return self.known[e.id]
        return self.B.item(value) if self.B.shape(value) in ((), (1,)) else self.B.to_numpy(value)


_ARITHMETIC = (ir.BinOp, ir.Neg)
_HANDLERS = {
    ir.Num: Lowering._num, ir.Name: Lowering._name, ir.Neg: Lowering._neg, ir.BinOp: Lowering._binop,
    ir.Call: Lowering._call, PlannedExpect: expect, ir.KL: Lowering._kl, LogRatio: Lowering._log_ratio,
}
