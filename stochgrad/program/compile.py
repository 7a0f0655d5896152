"""Plan -> program: a planned expression compiled once into steps over an evaluation frame.

:func:`build` turns ``Plan.root`` into a :class:`Program` whose single entry point, ``run(frame)``,
evaluates the per-sample surrogate with no tree walk and no dispatch on node types: every
subexpression is resolved when the program is built into a *step*, a closure ``step(frame, env)``
over its children's steps.  Resolved at build time:

* **arithmetic** (``+ - * / **``, comparisons, negation) of any depth becomes a flat *tape*: its
  other operands (leaves) first, left to right, then each operator bottom-up over numbered slots, so
  a 10,000-term sum runs without recursion; ``x ** 2`` is ``x * x`` (cheaper, both ways);
* **constants** are folded with IEEE semantics (:mod:`stochgrad.ieee`): a constant operation or a
  primitive of a constant is a Python float in the program, made into an array once per ``memo``;
* **names**: a bound variable reads the scope, a parameter reads the frame (copied to the current
  enumeration multiplicity once per frame); which is which is known from the scopes;
* **functions**: the implementation of each call's row in the function table (:mod:`stochgrad.fnimpl`),
  or the user function it runs;
* **distribution parameters**: each distribution's check (:class:`~.checks.DistCheck`), with its
  numbers and given parameters marked, and the cheapest form of all-constant parameters;
* **random nodes** and **expectations**: :mod:`.nodes` and :func:`stochgrad.surrogate.build_expect`.

What depends on values stays in the frame (:mod:`.frame`): the enumeration multiplicity (a joint
support's size follows the parameters' shapes), the noise, the baseline state.  With ``trace`` the
program calls ``trace(expression, value, frame)`` after each subexpression, in evaluation order,
and folds nothing (:mod:`stochgrad.diagnostics` names the first non-finite subexpression this way).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import fnimpl, ir
from ..arraynodes import Index, MatMul
from ..distributions import event_ranks, lookup
from ..functions import COMPARISON_PRIMITIVES, FUNCTIONS
from ..ieee import binop as ieee_binop
from ..ieee import call as ieee_call
from ..kl import FLOAT_PARAMETERS, kl_value
from ..planned import LogRatio, PlannedExpect
from ..surrogate import build_expect
from ..userfn import call_user_function, check_operands
from ..zeromass import log_ratio
from .arraysteps import index_step, matmul_step
from ..densities import Entropy, LogProb
from .checks import DistCheck
from .densities import entropy_step, log_prob_step
from .frame import Frame
from .nodes import enumerate_step, sample_step

from ..types import Array

Step = Callable[[Frame, dict[str, Array]], Any]
Trace = Callable[[ir.Expr, Any, Frame], None]
_ARITH = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "**": lambda a, b: a**b,
}


class Program:
    """A planned expression's steps; ``run(frame)`` gives the per-sample surrogate (an array).
    ``checks`` lists the distributions whose parameters are numbers or given parameters only."""

    def __init__(self, root: ir.Expr, trace: Trace | None = None) -> None:
        builder = _Builder(trace)
        self.root = root
        self._step = builder.step(root, frozenset())
        self.checks: list[DistCheck] = builder.direct

    def run(self, fr: Frame) -> Array:
        return fr.array(self._step(fr, {}))


class _Builder:
    def __init__(self, trace: Trace | None) -> None:
        self.trace, self.fold = trace, trace is None
        self.direct: list[DistCheck] = []
        self._seen_direct: set[tuple[Any, ir.Dist]] = set()

    # -- entry points --------------------------------------------------------------
    def compile(self, e: ir.Expr, bound: frozenset[str]) -> Step | float:
        """A step for ``e``, or (folding) the float it always is."""
        if type(e) in (ir.BinOp, ir.Neg):
            out = self._tape(e, bound)
        elif type(e) is ir.Num:
            out = e.value if self.fold else _const(e.value)
        else:
            compiler = _COMPILERS.get(type(e))  # else an estimator's internal node that lowers itself
            out = compiler(self, e, bound) if compiler is not None else e.lower(self, bound)  # type: ignore[attr-defined]
        if self.trace is None or isinstance(out, float) or type(e) in (ir.BinOp, ir.Neg):
            return out  # a tape traces its own operators
        return _traced(out, e, self.trace)

    def step(self, e: ir.Expr, bound: frozenset[str]) -> Step:
        out = self.compile(e, bound)
        return _const(out) if isinstance(out, float) else out

    def check(self, d: ir.Dist, context: str | ir.Expr, bound: frozenset[str]) -> DistCheck:
        c = DistCheck(d, context, bound)
        if all(kind != 2 for kind in c.kinds) and (context, d) not in self._seen_direct:
            self._seen_direct.add((context, d))
            self.direct.append(c)
        return c

    # -- arithmetic: a tape over slots ------------------------------------------------
    def _tape(self, e: ir.Expr, bound: frozenset[str]) -> Step | float:
        slots: dict[int, int] = {}
        values: list[Any] = []  # per slot: a float, a leaf step, or None (an operator's result)
        leaves: list[tuple[int, Step]] = []
        ops: list[tuple[int, Callable[..., Any], int, int, ir.Expr]] = []
        stack: list[tuple[ir.Expr, bool]] = [(e, False)]
        while stack:
            node, ready = stack.pop()
            if id(node) in slots:
                continue
            if ready:
                kids = [slots[id(c)] for c in _operands(node)]
                slot = len(values)
                fn = _operator(node)
                if self.fold and all(isinstance(values[k], float) for k in kids):
                    values.append(
                        fn(None, *[values[k] for k in kids]) if len(kids) == 2 else fn(None, values[kids[0]], None)
                    )
                else:
                    values.append(None)
                    ops.append((slot, fn, kids[0], kids[1] if len(kids) == 2 else -1, node))
                slots[id(node)] = slot
            elif type(node) in (ir.BinOp, ir.Neg):
                stack.append((node, True))
                stack.extend((c, False) for c in reversed(_operands(node)))
            else:
                out = self.compile(node, bound)
                slots[id(node)] = len(values)
                values.append(out)
                if not isinstance(out, float):
                    leaves.append((len(values) - 1, out))
        root = slots[id(e)]
        if isinstance(values[root], float) and not ops:
            return values[root]
        init = [v if isinstance(v, float) else None for v in values]
        trace = self.trace
        if len(ops) == 1 and trace is None:  # one operator: no slots at run time
            (_, fn, a, b, _node) = ops[0]
            return _one_op(fn, values[a], None if b < 0 else values[b])

        def tape(fr: Frame, env: dict[str, Array]) -> Array | float:
            v = init.copy()
            for slot, leaf in leaves:
                v[slot] = leaf(fr, env)
            for slot, fn, a, b, node in ops:
                v[slot] = fn(fr, v[a], v[b] if b >= 0 else None)
                if trace is not None:
                    trace(node, v[slot], fr)
            return v[root]

        return tape

    # -- other expressions -----------------------------------------------------------
    def _name(self, e: ir.Name, bound: frozenset[str]) -> Step:
        name = e.id
        if name in bound:
            return lambda fr, env: env[name]
        return lambda fr, env: fr.param(name)

    def _call(self, e: ir.Call, bound: frozenset[str]) -> Step | float:
        if e.impl is not None:  # a user function: native arrays in, native array out (checked)
            args, name, impl = [self.step(a, bound) for a in e.args], e.fn, e.impl.fn
            return lambda fr, env: fr.array(call_user_function(fr.B, name, impl, [fr.array(s(fr, env)) for s in args]))
        # a built-in: its row's implementation (fnimpl), constants folded where ieee has a scalar form
        impl, name = FUNCTIONS[e.fn].impl, e.fn
        axis = fnimpl.option(e, "axis")
        xs = [self.compile(a, bound) for a in e.args]
        if self.fold and all(isinstance(x, float) for x in xs):
            out = ieee_call(name, *xs)  # type: ignore[arg-type]  # all floats
            if out is not None:
                return out
        steps = [_const(x) if isinstance(x, float) else x for x in xs]
        if len(steps) == 1:
            (x1,) = steps

            def call1(fr: Frame, env: dict[str, Array]) -> Array | float:
                v = x1(fr, env)
                if isinstance(v, float):  # a constant (a traced program folds nothing): IEEE semantics
                    out = ieee_call(name, v)
                    if out is not None:
                        return out
                return impl(fr, [v], axis, e)

            return call1

        def call(fr: Frame, env: dict[str, Array]) -> Array | float:
            vs = [s(fr, env) for s in steps]
            if all(isinstance(v, float) for v in vs):
                out = ieee_call(name, *vs)
                if out is not None:
                    return out
            return impl(fr, vs, axis, e)

        return call

    def _dists(
        self, dists: list[ir.Dist], where: ir.Expr, bound: frozenset[str]
    ) -> Callable[..., list[dict[str, Array]]]:
        """A step giving several distributions' parameters, aligned together and checked."""
        parts = []
        for d in dists:
            form = (
                lookup(d.name).constant_form({k: v.value for k, v in d.params})  # type: ignore[attr-defined]
                if all(type(v) is ir.Num for _, v in d.params)
                else None
            )
            if form:
                parts.append(
                    (
                        list(form),
                        [_const(float(x)) if isinstance(x, (int, float)) else _value(x) for x in form.values()],
                    )
                )
            else:
                parts.append(([k for k, _ in d.params], [self.step(v, bound) for _, v in d.params]))
        checks = [self.check(d, where, bound) for d in dists]
        each = [event_ranks(lookup(d.name), names) or (0,) * len(names) for d, (names, _) in zip(dists, parts)]
        ranks = None if not any(map(any, each)) else [r for rs in each for r in rs]  # batch axes only

        def params(fr: Frame, env: dict[str, Array]) -> list[dict[str, Array]]:
            values = fr.align(*(s(fr, env) for _, steps in parts for s in steps), ranks=ranks)  # constants stay floats
            out, i = [], 0
            for (names, _), check in zip(parts, checks):
                p = {k: values[i + j] for j, k in enumerate(names)}
                check(fr, p)
                out.append(p)
                i += len(names)
            return out

        return params

    def _kl(self, e: ir.KL, bound: frozenset[str]) -> Step:
        params = self._dists([e.p, e.q], e, bound)
        verdicts: dict[Any, str] = {}  # by the logical shapes: decided once per program and shapes

        floats = (e.p.name, e.q.name) in FLOAT_PARAMETERS

        def kl(fr: Frame, env: dict[str, Array]) -> Array:
            p, q = params(fr, env)
            if not floats:
                p, q = _arrays(fr, p), _arrays(fr, q)
            return fr.array(kl_value(fr.B, e, p, q, verdicts))  # the closed form, or +inf (see kl.verdict)

        return kl

    def _log_ratio(self, e: LogRatio, bound: frozenset[str]) -> Step:
        params, x = self._dists([e.p, e.q], e, bound), e.x.id

        def ratio(fr: Frame, env: dict[str, Array]) -> Array:
            p, q = (_arrays(fr, d) for d in params(fr, env))
            return log_ratio(fr.B, e.p, p, e.q, q, env[x])  # +inf exactly where q has no mass

        return ratio

    def _expect(self, e: PlannedExpect, bound: frozenset[str]) -> Step:
        nodes = []
        for node in e.nodes:
            steps = [self.step(v, bound) for _, v in node.dist.params]
            check = self.check(node.dist, node.var, bound)
            nodes.append((enumerate_step if node.spec.enumerates else sample_step)(node, steps, check))
            bound = bound | {node.var}
        terms = [self.step(t, bound) for _, t in e.terms]
        return build_expect(e, nodes, terms)


_COMPILERS: dict[type, Callable[..., Any]] = {
    ir.Name: _Builder._name,
    ir.Call: _Builder._call,
    ir.KL: _Builder._kl,
    LogRatio: _Builder._log_ratio,
    PlannedExpect: _Builder._expect,
    MatMul: matmul_step,
    Index: index_step,
    LogProb: log_prob_step,
    Entropy: entropy_step,
}
_TWO = ir.Num(2.0)


def _operands(e: ir.Expr) -> list[ir.Expr]:
    if type(e) is ir.Neg:
        return [e.operand]
    if e.op == "**" and type(e.right) is ir.Num and e.right.value == 2.0:  # type: ignore[attr-defined]
        return [e.left]  # type: ignore[attr-defined]
    return [e.left, e.right]  # type: ignore[attr-defined]


def _operator(e: ir.Expr) -> Callable[..., Any]:
    """``fn(frame, a, b)`` for one arithmetic node (``b`` unused for a unary one); with ``frame=None``
    on two floats (folding at build time) it gives the IEEE result."""
    if type(e) is ir.Neg:
        return lambda fr, x, _: -x
    op = e.op  # type: ignore[attr-defined]
    if op == "**" and len(_operands(e)) == 1:  # x * x: cheaper than pow, forward and backward
        return lambda fr, x, _: ieee_binop("*", x, x) if isinstance(x, float) else x * x
    arith, comparison = _ARITH.get(op), COMPARISON_PRIMITIVES.get(op)

    def binop(fr: Frame | None, a: Array | float, b: Array | float) -> Array | float:
        if isinstance(a, float) and isinstance(b, float):  # two constants: IEEE arithmetic
            return ieee_binop(op, a, b)
        a, b = fr.align(a, b)  # type: ignore[union-attr]
        try:
            if comparison is not None:
                return fr.B.fn[comparison](fr.array(a), fr.array(b))  # type: ignore[union-attr]
            return arith(a, b)  # type: ignore[misc]
        except (ValueError, RuntimeError):  # shapes only a user function's output made known: name the operation
            check_operands(fr.B, [a, b], e)  # type: ignore[union-attr]
            raise

    return binop


def _one_op(fn: Callable[..., Any], a: Step | float, b: Step | float | None) -> Step:
    if b is None:
        return lambda fr, env: fn(fr, a(fr, env), None)  # type: ignore[operator]
    if isinstance(a, float):
        return lambda fr, env: fn(fr, a, b(fr, env))  # type: ignore[operator]
    if isinstance(b, float):
        return lambda fr, env: fn(fr, a(fr, env), b)
    return lambda fr, env: fn(fr, a(fr, env), b(fr, env))


def _arrays(fr: Frame, p: dict[str, Array | float]) -> dict[str, Array]:
    """Distribution parameters with the constants made arrays (for formulas written for arrays)."""
    return {k: fr.array(v) for k, v in p.items()}


def _const(x: float) -> Step:
    return lambda fr, env: x


def _value(x: Any) -> Step:
    return lambda fr, env: fr.B.asarray(np.asarray(x, dtype=float)[None]) if np.ndim(x) else float(x)


def _traced(step: Step, e: ir.Expr, trace: Trace) -> Step:
    def traced(fr: Frame, env: dict[str, Array]) -> Any:
        out = step(fr, env)
        trace(e, out, fr)
        return out

    return traced
