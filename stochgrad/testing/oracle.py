"""A closed-form oracle: exact expectations and gradients, computed with SymPy.

    >>> from stochgrad.testing.oracle import exact
    >>> r = exact("E[z**2, z ~ Normal(mu, sigma)]", {"mu": 1.0, "sigma": 2.0})
    >>> r.formula, r.value, r.grad
    ('mu**2 + sigma**2', 5.0, {'mu': 2.0, 'sigma': 4.0})

:func:`exact` walks the IR (the text is parsed, never evaluated) into a SymPy
expression, integrates out every variable bound by ``E[...]`` -- last binding
first, so a binding may depend on earlier ones, and nested ``E[...]`` are
integrated from the inside out -- then differentiates with respect to every
parameter and evaluates at the given values (with mpmath, 50 digits).  Each
expectation is computed once for generic parameter symbols (scales positive,
and so on) and the binding's actual parameter expressions are substituted
afterwards.  The symbolic part is cached per (expression, parameter names), so
repeated calls only re-evaluate the compiled formulas.

How each distribution is integrated:

* ``sympy.stats`` (moment generating function for polynomial bodies, else
  integration/summation of the density): Normal, Exponential, Weibull,
  Uniform, Laplace, Gumbel, Logistic, Cauchy, Gamma, Beta, Poisson, Geometric
  (as SymPy's number of trials minus one);
* LogNormal as ``exp`` of a Normal (SymPy's own LogNormal has no MGF and its
  integrals do not close);
* Kumaraswamy through its density on (0, 1) (``sympy.stats.Kumaraswamy`` has
  the wrong support), with the exact moments ``b B(1 + k/a, b)`` for
  polynomial bodies;
* Bernoulli (``probs`` or ``logits``) and Binomial (``total_count`` a literal
  integer, at most 500) as finite sums;
* Poisson and Geometric bodies with comparisons against numeric thresholds:
  the finitely many counts below the last threshold are summed exactly and the
  rest (where every comparison is constant) goes to SymPy.

Comparisons become indicators (``Piecewise``), ``sign`` a three-way
``Piecewise``; ``floor``/``round`` only where SymPy sees the argument is an
integer (e.g. of a Poisson count); ``sum``/``mean`` without ``axis`` are the
identity on scalars.  Array-valued parameters are supported elementwise (the
value broadcasts, and ``grad[name]`` is the gradient of the summed value, with
the parameter's shape, as in :func:`stochgrad.estimate`) unless the expression
reduces over axes.

Limits -- :func:`exact` returns ``None`` (it does not raise or hang) when:

* the expression uses something untranslated: ``argmax``, ``sum``/``mean``
  with ``axis``, ``floor``/``round`` of a non-integer, Categorical,
  Dirichlet, a Binomial whose ``total_count`` is not a literal;
* SymPy leaves an ``Integral``/``Sum`` unevaluated (also when it is only in
  the branch of a convergence ``Piecewise`` that the given values select), or
  fails in any way;
* the value or a gradient is not a finite real number (divergent
  expectations such as a Cauchy mean come out as ``nan``/``oo``);
* the given values violate a distribution's constraints (checked with the
  distribution's own ``validate`` for parameters that do not depend on bound
  variables; those that do are trusted);
* ``timeout`` seconds pass.  The timeout uses ``SIGALRM`` (``setitimer``), so
  it is enforced only in the main thread of a Unix process; elsewhere the call
  runs without a limit.  A timer set by the caller (e.g. pytest-timeout) is
  honoured and restored.  A timeout is remembered, so a later call with a
  timeout no longer than the time already spent returns ``None`` at once.

Invalid input -- text that does not parse, missing or unknown parameters,
non-finite values -- raises the same errors as :func:`stochgrad.estimate`.

The result is the exact expectation: where the library estimates a nested
expectation with one inner sample (biased wherever it enters non-linearly),
the oracle gives the true value.  SymPy can itself be wrong on hard
integrals; results with a spurious imaginary part are rejected, but agreement
with Monte Carlo estimates is the independent check.

SymPy is an optional dependency: it is imported on the first call.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import ir
from ..analysis import check_scopes, parameters
from ..api import _check_params, as_expression
from ..distributions import DISTRIBUTIONS, positive
from ..errors import StochgradError

__all__ = ["Exact", "exact", "clear_cache"]

#: digits mpmath works with when evaluating the formulas
_DPS = 50
#: largest Binomial total_count summed term by term
_MAX_BINOMIAL = 500
#: largest count summed exactly below a comparison threshold (Poisson, Geometric)
_MAX_CUTOFF = 2000
#: cached symbolic results
_CACHE_SIZE = 512


@dataclass(frozen=True)
class Exact:
    """The exact value of an expression and its gradient at given parameter values.

    ``value`` is a float (an array when parameters are arrays); ``grad[name]``
    is the derivative of ``value`` (summed, if an array) with respect to parameter
    ``name``, with that parameter's shape; ``formula`` is SymPy's expression of
    the value in the parameters, e.g. ``"mu**2 + sigma**2"``, and
    ``grad_formula[name]`` that of each derivative.
    """

    value: float | np.ndarray
    grad: dict[str, float | np.ndarray]
    formula: str
    grad_formula: dict[str, str] = field(default_factory=dict)


class _Unsupported(Exception):
    """The expression uses something the oracle does not translate."""


class _Timeout(BaseException):
    """Raised by the alarm handler; a BaseException so that ``except Exception`` in SymPy lets it through."""


# -- timeouts ----------------------------------------------------------------------------------


class _Alarm:
    """A stack of deadlines served by one ``ITIMER_REAL`` timer (main thread only).

    The timer repeats every :attr:`REPEAT` seconds once it fires, so a ``_Timeout``
    swallowed by a bare ``except:`` is raised again.  While ``critical`` is set the
    handler does not raise, so the bookkeeping on exit is never interrupted."""

    REPEAT = 0.05

    def __init__(self) -> None:
        self.deadlines: list[float] = []
        self.critical = False
        self.saved_handler: Any = None
        self.foreign: tuple[float, float, float] | None = None  # (deadline, interval, delay) of a caller's timer

    def handler(self, signum: int, frame: Any) -> None:
        if not self.critical:
            raise _Timeout()

    def earliest(self) -> float:
        d = min(self.deadlines)
        return min(d, self.foreign[0]) if self.foreign else d

    def arm(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, max(self.earliest() - time.monotonic(), 1e-4), self.REPEAT)

    def expired(self) -> bool:
        return bool(self.deadlines) and time.monotonic() >= self.earliest()

    def enter_critical(self) -> None:
        while True:
            try:
                self.critical = True
                return
            except _Timeout:  # fired just before the flag was set
                continue


_ALARM = _Alarm()


def _alarm_usable() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`_Timeout` in the body after ``seconds`` (nested limits take the earliest)."""
    if seconds is None or math.isinf(seconds) or not _alarm_usable():
        yield
        return
    a = _ALARM
    outermost = not a.deadlines
    if outermost:
        a.saved_handler = signal.signal(signal.SIGALRM, a.handler)
        delay, interval = signal.setitimer(signal.ITIMER_REAL, 0)
        a.foreign = (time.monotonic() + delay, interval, delay) if delay > 0 else None
    a.deadlines.append(time.monotonic() + seconds)
    a.critical = False
    try:
        a.arm()
        yield
    finally:
        a.enter_critical()
        signal.setitimer(signal.ITIMER_REAL, 0)
        a.deadlines.pop()
        if outermost:
            signal.signal(signal.SIGALRM, a.saved_handler)
            if a.foreign is not None:  # give the caller's timer back what is left of it
                deadline, interval, _ = a.foreign
                signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 1e-4), interval)
            a.foreign = a.saved_handler = None
        else:
            a.arm()
        a.critical = False


def _remaining() -> float:
    if not _ALARM.deadlines or not _alarm_usable():
        return math.inf
    return _ALARM.earliest() - time.monotonic()


# -- sympy helpers -----------------------------------------------------------------------------


def _sympy() -> Any:
    import sympy  # optional dependency: imported on first use
    import sympy.stats  # noqa: F401

    return sympy


def _unevaluated_types(sp: Any) -> tuple[type, ...]:
    from sympy.stats.rv import RandomSymbol
    from sympy.stats.symbolic_probability import Expectation, Probability

    return (sp.Integral, sp.Sum, sp.Product, sp.Limit, sp.Derivative, sp.Subs, RandomSymbol,
            Expectation, Probability)


def _number(sp: Any, v: float) -> Any:
    """An exact SymPy number for a literal (0.1 -> 1/10)."""
    return sp.Integer(int(v)) if v.is_integer() else sp.Rational(repr(v))


def _tidy(sp: Any, expr: Any, share: float = 0.2, cap: float = 2.0) -> Any:
    """``simplify`` within a small part of the remaining time; keep it only if it is no shorter.

    A top-level ``Piecewise`` (SymPy's convergence conditions) is tidied branch by
    branch, leaving branches with unevaluated integrals alone."""
    if expr.is_Atom:
        return expr
    unevaluated = _unevaluated_types(sp)
    if expr.has(*unevaluated):
        if not expr.is_Piecewise:
            return expr
        pieces = [(e if e.has(*unevaluated) else _tidy(sp, e, share / len(expr.args), cap), c)
                  for e, c in expr.args]
        return sp.Piecewise(*pieces)
    budget = min(cap, max(0.05, share * _remaining()))
    candidates = [expr]
    try:
        with _time_limit(budget):
            candidates.append(sp.simplify(expr))
            if expr.has(sp.erfc):  # erf + erfc = 1 is not spotted by simplify
                candidates.append(sp.simplify(expr.replace(sp.erfc, lambda a: 1 - sp.erf(a))))
    except _Timeout:
        if _ALARM.expired():
            raise
    except Exception:
        pass
    try:
        return min(candidates, key=sp.count_ops)  # the first of the shortest: the original on ties
    except Exception:
        return expr


def _positive_params(e: ir.Expr, bound: frozenset[str] = frozenset(), out: set[str] | None = None) -> set[str]:
    """Parameters passed directly as a positive distribution parameter (their symbols can be positive)."""
    out = set() if out is None else out
    if isinstance(e, ir.Expect):
        inner = bound
        for b in e.bindings:
            d = DISTRIBUTIONS.get(b.dist.name)
            specs = {p.name: p for p in d.params} if d else {}
            for name, value in b.dist.params:
                spec = specs.get(name)
                if spec is not None and spec.constraint is positive and isinstance(value, ir.Name) \
                        and value.id not in inner:
                    out.add(value.id)
                _positive_params(value, inner, out)
            inner = inner | {b.var}
        _positive_params(e.body, inner, out)
        return out
    for child in e.children():
        _positive_params(child, bound, out)
    return out


# -- translation and integration ---------------------------------------------------------------

_POSITIVE_SUPPORT = frozenset({"Exponential", "Weibull", "LogNormal", "Gamma", "Beta", "Kumaraswamy"})
_COUNTS = frozenset({"Bernoulli", "Binomial", "Poisson", "Geometric"})


class _Translator:
    """IR -> SymPy, integrating out each bound variable as its ``E[...]`` closes."""

    def __init__(self, sp: Any, params: Mapping[str, Any]) -> None:
        self.sp = sp
        self.params = dict(params)
        self.bound: set[Any] = set()  # Dummy symbols of the bound variables
        self.checks: list[tuple[str, dict[str, Any]]] = []
        self.reduces = False
        self.unevaluated = _unevaluated_types(sp)

    # expressions
    def expr(self, e: ir.Expr, env: Mapping[str, Any]) -> Any:
        sp = self.sp
        if isinstance(e, ir.Num):
            return _number(sp, e.value)
        if isinstance(e, ir.Name):
            if e.id in env:
                return env[e.id]
            return self.params[e.id]
        if isinstance(e, ir.Neg):
            return -self.expr(e.operand, env)
        if isinstance(e, ir.BinOp):
            a, b = self.expr(e.left, env), self.expr(e.right, env)
            if e.op == "+":
                return a + b
            if e.op == "-":
                return a - b
            if e.op == "*":
                return a * b
            if e.op == "/":
                return a / b
            if e.op == "**":
                return a**b
            rel = {"<": sp.Lt, "<=": sp.Le, ">": sp.Gt, ">=": sp.Ge}[e.op](a, b)
            return sp.Piecewise((sp.Integer(1), rel), (sp.Integer(0), True))
        if isinstance(e, ir.Call):
            return self.call(e, env)
        if isinstance(e, ir.Expect):
            return self.expect(e, env)
        raise _Unsupported(f"{type(e).__name__} node")

    def call(self, e: ir.Call, env: Mapping[str, Any]) -> Any:
        sp = self.sp
        if e.fn in ("sum", "mean"):
            if e.kwargs:
                raise _Unsupported(f"{e.fn} over an axis")
            self.reduces = True
            return self.expr(e.args[0], env)
        if e.fn == "argmax":
            raise _Unsupported("argmax")
        x = self.expr(e.args[0], env)
        simple = {"exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "abs": sp.Abs, "sin": sp.sin,
                  "cos": sp.cos, "tan": sp.tan, "tanh": sp.tanh}
        if e.fn in simple:
            return simple[e.fn](x)
        if e.fn == "log1p":
            return sp.log(1 + x)
        if e.fn == "expm1":
            return sp.exp(x) - 1
        if e.fn == "sigmoid":
            return 1 / (1 + sp.exp(-x))
        if e.fn == "softplus":
            return sp.log(1 + sp.exp(x))
        if e.fn == "sign":
            return sp.Piecewise((sp.Integer(1), x > 0), (sp.Integer(-1), x < 0), (sp.Integer(0), True))
        if e.fn in ("floor", "round"):
            if x.is_integer:  # e.g. of a count: the identity
                return x
            raise _Unsupported(f"{e.fn} of a value not known to be an integer")
        raise _Unsupported(f"function {e.fn}")

    def expect(self, e: ir.Expect, env: Mapping[str, Any]) -> Any:
        local = dict(env)
        laws = []
        for b in e.bindings:
            params = {k: self.expr(v, local) for k, v in b.dist.params}
            var = self.variable(b)
            self.checks.append((b.dist.name, params))
            laws.append((b.dist.name, var, params))
            local[b.var] = var
            self.bound.add(var)
        g = self.expr(e.body, local)
        for name, var, params in reversed(laws):
            g = self.integrate(name, var, params, g)
            self.bound.discard(var)
        return g

    def variable(self, b: ir.Binding) -> Any:
        name = b.dist.name
        if name in _COUNTS:
            return self.sp.Dummy(b.var, integer=True, nonnegative=True)
        if name in _POSITIVE_SUPPORT:
            return self.sp.Dummy(b.var, positive=True)
        return self.sp.Dummy(b.var, real=True)

    # expectations over one variable
    def integrate(self, name: str, var: Any, params: dict[str, Any], g: Any) -> Any:
        if var not in g.free_symbols:
            return g
        handler = getattr(self, "law_" + name, None)
        if handler is None:
            raise _Unsupported(f"distribution {name}")
        r = handler(var, params, g)
        if r.has(*self.unevaluated) and (r.free_symbols & self.bound):
            raise _Unsupported("an inner expectation did not close")
        if r.has(self.sp.nan):
            raise _Unsupported("nan")
        return r

    def generic(self, params: Mapping[str, Any], kinds: Mapping[str, dict[str, bool]],
                compute: Callable[[dict[str, Any]], Any], substitute: Callable[[dict[str, Any]], dict[Any, Any]] | None = None) -> Any:
        """Compute with Dummy parameters of the given assumptions, tidy, then substitute the real ones."""
        sp = self.sp
        d = {k: sp.Dummy(k, **a) for k, a in kinds.items()}
        r = _tidy(sp, compute(d))
        back = substitute(d) if substitute else {d[k]: params[k] for k in d}
        return r.xreplace(back)

    def stats_E(self, X: Any, var: Any, g: Any) -> Any:
        """``sympy.stats.E`` of ``g(X)``, falling back to integrating against the density."""
        sp = self.sp
        try:
            return sp.stats.E(g.xreplace({var: X}))
        except NotImplementedError:  # e.g. Cauchy: no MGF for a polynomial body
            s = X.pspace.domain.set
            return sp.integrate(g * sp.stats.density(X)(var), (var, s.inf, s.sup))

    def law_Normal(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        st = self.sp.stats
        return self.generic(params, {"loc": {"real": True}, "scale": {"positive": True}},
                            lambda d: self.stats_E(st.Normal("z", d["loc"], d["scale"]), var, g))

    def law_LogNormal(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        n = self.sp.Dummy("n", real=True)
        return self.law_Normal(n, params, g.xreplace({var: self.sp.exp(n)}))

    def law_Exponential(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        st = self.sp.stats
        return self.generic(params, {"rate": {"positive": True}},
                            lambda d: self.stats_E(st.Exponential("z", d["rate"]), var, g))

    def law_Weibull(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        st = self.sp.stats
        return self.generic(params, {"scale": {"positive": True}, "concentration": {"positive": True}},
                            lambda d: self.stats_E(st.Weibull("z", d["scale"], d["concentration"]), var, g))

    def law_Uniform(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        st = self.sp.stats
        # high = low + width with width > 0, so SymPy knows the interval is not empty
        return self.generic(
            params, {"low": {"real": True}, "width": {"positive": True}},
            lambda d: self.stats_E(st.Uniform("z", d["low"], d["low"] + d["width"]), var, g),
            lambda d: {d["low"]: params["low"], d["width"]: params["high"] - params["low"]})

    def law_Laplace(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        st = self.sp.stats
        return self.generic(params, {"loc": {"real": True}, "scale": {"positive": True}},
                            lambda d: self.stats_E(st.Laplace("z", d["loc"], d["scale"]), var, g))

    def law_Gumbel(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        st = self.sp.stats  # sympy's argument order is (scale, loc)
        return self.generic(params, {"loc": {"real": True}, "scale": {"positive": True}},
                            lambda d: self.stats_E(st.Gumbel("z", d["scale"], d["loc"]), var, g))

    def law_Logistic(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        st = self.sp.stats
        return self.generic(params, {"loc": {"real": True}, "scale": {"positive": True}},
                            lambda d: self.stats_E(st.Logistic("z", d["loc"], d["scale"]), var, g))

    def law_Cauchy(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        st = self.sp.stats
        return self.generic(params, {"loc": {"real": True}, "scale": {"positive": True}},
                            lambda d: self.stats_E(st.Cauchy("z", d["loc"], d["scale"]), var, g))

    def law_Gamma(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        st = self.sp.stats  # sympy's Gamma takes the scale 1 / rate
        return self.generic(params, {"concentration": {"positive": True}, "rate": {"positive": True}},
                            lambda d: self.stats_E(st.Gamma("z", d["concentration"], 1 / d["rate"]), var, g))

    def law_Beta(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        st = self.sp.stats
        return self.generic(params, {"a": {"positive": True}, "b": {"positive": True}},
                            lambda d: self.stats_E(st.Beta("z", d["a"], d["b"]), var, g))

    def law_Kumaraswamy(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        sp = self.sp

        def compute(d: dict[str, Any]) -> Any:
            a, b = d["a"], d["b"]
            if g.is_polynomial(var):  # E[z**k] = b B(1 + k/a, b)
                poly = sp.Poly(g, var)
                return sum((c * (1 if k == 0 else b * sp.gamma(1 + sp.Integer(k) / a) * sp.gamma(b)
                                 / sp.gamma(1 + sp.Integer(k) / a + b))
                            for (k,), c in poly.terms()), sp.Integer(0))
            pdf = a * b * var ** (a - 1) * (1 - var**a) ** (b - 1)
            return sp.integrate(g * pdf, (var, 0, 1))

        return self.generic(params, {"a": {"positive": True}, "b": {"positive": True}}, compute)

    def law_Bernoulli(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        sp = self.sp
        p = params["probs"] if "probs" in params else 1 / (1 + sp.exp(-params["logits"]))
        return g.xreplace({var: sp.Integer(0)}) * (1 - p) + g.xreplace({var: sp.Integer(1)}) * p

    def law_Binomial(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        sp = self.sp
        n, p = params["total_count"], params["probs"]
        if not (n.is_Integer and 0 <= int(n) <= _MAX_BINOMIAL):
            raise _Unsupported("Binomial total_count must be a literal integer")
        n = int(n)
        r = sp.Add(*[sp.binomial(n, k) * p**k * (1 - p) ** (n - k) * g.xreplace({var: sp.Integer(k)})
                     for k in range(n + 1)])
        return _tidy(sp, r)

    def law_Poisson(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        sp, st = self.sp, self.sp.stats
        return self.generic(params, {"rate": {"positive": True}}, lambda d: self.counts(
            var, g, lambda k: sp.exp(-d["rate"]) * d["rate"] ** k / sp.factorial(k),
            lambda h: self.stats_E(st.Poisson("x", d["rate"]), var, h)))

    def law_Geometric(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        sp, st = self.sp, self.sp.stats

        def full(d: dict[str, Any], h: Any) -> Any:  # sympy's Geometric counts trials: failures + 1
            G = st.Geometric("x", d["probs"])
            return sp.stats.E(h.xreplace({var: G - 1}))

        return self.generic(params, {"probs": {"positive": True}}, lambda d: self.counts(
            var, g, lambda k: d["probs"] * (1 - d["probs"]) ** k, lambda h: full(d, h)))

    def counts(self, var: Any, g: Any, pmf: Callable[[int], Any], full: Callable[[Any], Any]) -> Any:
        """E over 0, 1, 2, ...: comparisons with numeric thresholds are summed exactly below them."""
        sp = self.sp
        rels = [r for r in g.atoms(sp.core.relational.Relational) if var in r.free_symbols]
        if not rels:
            return full(g)
        cut = 0
        for r in rels:
            diff = sp.expand(r.lhs - r.rhs)
            if not diff.is_polynomial(var) or sp.degree(diff, var) != 1:
                return full(g)
            slope, rest = diff.coeff(var, 1), diff.coeff(var, 0)
            t = -rest / slope
            if not t.is_number or not t.is_real:
                return full(g)
            cut = max(cut, int(math.floor(abs(float(t)))) + 2)
        if cut > _MAX_CUTOFF:
            return full(g)
        tail = g.xreplace({r: r.xreplace({var: sp.Integer(cut)}) for r in rels})
        head = sp.Add(*[(g.xreplace({var: sp.Integer(k)}) - tail.xreplace({var: sp.Integer(k)})) * pmf(k)
                        for k in range(cut)])
        return head + full(tail)


# -- the cached symbolic part ------------------------------------------------------------------


@dataclass
class _Entry:
    names: tuple[str, ...]
    symbols: tuple[Any, ...]
    value: Any
    grads: dict[str, Any]
    formula: str
    grad_formula: dict[str, str]
    checks: list[tuple[str, dict[str, tuple[Any, Callable[..., Any] | None]]]]
    elementwise: bool
    compiled: dict[str, Callable[..., Any] | None]


_UNSUPPORTED = "unsupported"
_CACHE: OrderedDict[tuple[ir.Expr, tuple[str, ...]], Any] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget every cached symbolic result (and remembered timeouts)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _store(key: tuple[ir.Expr, tuple[str, ...]], item: Any) -> None:
    with _CACHE_LOCK:
        _CACHE[key] = item
        _CACHE.move_to_end(key)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)


def _build(e: ir.Expr, names: tuple[str, ...]) -> _Entry:
    sp = _sympy()
    pos = _positive_params(e)
    syms = {n: sp.Symbol(n, positive=True) if n in pos else sp.Symbol(n, real=True) for n in names}
    tr = _Translator(sp, syms)
    value = tr.expr(e, {})
    if not value.free_symbols <= set(syms.values()):
        raise _Unsupported("a bound variable was not integrated out")
    value = _tidy(sp, value, share=0.3)
    grads = {n: sp.diff(value, syms[n]) for n in names}
    symbols = tuple(syms[n] for n in names)
    checks = [(name, {k: (v, _compile(sp, symbols, v)) for k, v in p.items()}) for name, p in tr.checks
              if all(v.free_symbols <= set(symbols) for v in p.values())]
    compiled: dict[str, Callable[..., Any] | None] = {"": _compile(sp, symbols, value)}
    compiled.update({n: _compile(sp, symbols, grads[n]) for n in names})
    return _Entry(names, symbols, value, grads, sp.sstr(value), {n: sp.sstr(g) for n, g in grads.items()},
                  checks, not tr.reduces, compiled)


def _compile(sp: Any, symbols: tuple[Any, ...], expr: Any) -> Callable[..., Any] | None:
    """An mpmath function of the parameters; None where the formula keeps unevaluated parts."""
    if expr.has(*_unevaluated_types(sp)):
        return None
    try:
        return sp.lambdify(symbols, expr, modules="mpmath")
    except Exception:
        return None


def _symbolic(e: ir.Expr, names: tuple[str, ...], timeout: float | None) -> _Entry | None:
    key = (e, names)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            _CACHE.move_to_end(key)
    if isinstance(cached, _Entry):
        return cached
    if cached == _UNSUPPORTED:
        return None
    if isinstance(cached, float) and timeout is not None and timeout <= cached + 0.1:
        return None  # timed out before, after about this long
    start = time.monotonic()
    try:
        entry = _build(e, names)
    except _Timeout:
        _store(key, time.monotonic() - start)  # the time it had (a caller's timer may have cut it short)
        raise
    except (_Unsupported, Exception):
        if _ALARM.expired():  # a timeout SymPy turned into another error
            _store(key, time.monotonic() - start)
            return None
        _store(key, _UNSUPPORTED)
        return None
    _store(key, entry)
    return entry


# -- numeric evaluation ------------------------------------------------------------------------


def _real(x: Any) -> float | None:
    """``x`` as a finite real float, or None."""
    try:
        c = complex(x)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(c.real) and math.isfinite(c.imag)):
        return None
    if abs(c.imag) > 1e-12 * (1.0 + abs(c.real)):
        return None
    return c.real


def _scalar(sp: Any, fn: Callable[..., Any] | None, expr: Any, symbols: tuple[Any, ...],
            args: tuple[float, ...]) -> float | None:
    import mpmath

    if fn is not None:
        try:
            with mpmath.workdps(_DPS):
                out = fn(*[mpmath.mpf(a) for a in args])
                return _real(out)
        except Exception:
            pass  # a function the printer does not know: evaluate with SymPy
    try:
        v = expr.xreplace({s: sp.Float(a, _DPS) for s, a in zip(symbols, args)})
        if v.has(*_unevaluated_types(sp)) or not v.is_number:
            return None
        return _real(v.evalf(_DPS))
    except Exception:
        return None


def _array(sp: Any, fn: Callable[..., Any] | None, expr: Any, symbols: tuple[Any, ...],
           arrays: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray | None:
    out = np.empty(shape)
    for index in np.ndindex(*shape):
        v = _scalar(sp, fn, expr, symbols, tuple(float(a[index]) for a in arrays))
        if v is None:
            return None
        out[index] = v
    return out


def _sum_to(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast gradient back to a parameter's shape."""
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead))) if lead else g
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def _valid(sp: Any, entry: _Entry, values: Mapping[str, np.ndarray], shape: tuple[int, ...]) -> bool:
    arrays = [np.broadcast_to(values[n], shape) for n in entry.names]
    for name, exprs in entry.checks:
        numeric = {}
        for k, (expr, fn) in exprs.items():
            a = _array(sp, fn, expr, entry.symbols, arrays, shape)
            if a is None:
                return False
            numeric[k] = a
        try:
            DISTRIBUTIONS[name].validate(numeric, name)
        except StochgradError:
            return False
    return True


def _evaluate(entry: _Entry, values: Mapping[str, np.ndarray], order: list[str]) -> Exact | None:
    sp = _sympy()
    scalar = all(values[n].ndim == 0 for n in entry.names)
    if not scalar and not entry.elementwise:
        return None
    shape = np.broadcast_shapes(*(values[n].shape for n in entry.names)) if entry.names else ()
    if not _valid(sp, entry, values, shape):
        return None
    arrays = [np.broadcast_to(values[n], shape) for n in entry.names]
    value = _array(sp, entry.compiled[""], entry.value, entry.symbols, arrays, shape)
    if value is None:
        return None
    grad: dict[str, float | np.ndarray] = {}
    for n in order:
        g = _array(sp, entry.compiled[n], entry.grads[n], entry.symbols, arrays, shape)
        if g is None:
            return None
        g = _sum_to(g, values[n].shape)
        grad[n] = float(g) if values[n].ndim == 0 else g
    return Exact(value=float(value) if scalar else value, grad=grad, formula=entry.formula,
                 grad_formula={n: entry.grad_formula[n] for n in order})


# -- entry point -------------------------------------------------------------------------------


def exact(expr_or_text: str | ir.Expr, params: Mapping[str, Any] | None = None, *,
          timeout: float | None = 10.0) -> Exact | None:
    """The exact value and gradient of an expression, or None where SymPy cannot find them.

    ``params`` maps every parameter of the expression to a number (or a numpy
    array, elementwise); ``timeout`` bounds the whole call in seconds (None: no
    limit; enforced in the main thread only).  Raises like
    :func:`stochgrad.estimate` for invalid text or parameters; see the module
    docstring for what is supported.
    """
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds or None, got {timeout!r}")
    e = as_expression(expr_or_text)
    check_scopes(e)
    names = parameters(e)
    params = params or {}
    values = _check_params(names, params)
    order = [n for n in params if n in values]
    try:
        with _time_limit(timeout):
            entry = _symbolic(e, names, timeout)
            if entry is None:
                return None
            return _evaluate(entry, values, order)
    except _Timeout:
        return None
    except Exception:  # SymPy or mpmath failing in an unforeseen way
        return None
