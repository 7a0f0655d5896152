"""Translation of stochgrad's IR into SymPy, and the expectation of each distribution.

Used by :mod:`stochgrad.testing.oracle`; see its docstring for what is supported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .. import ir

from ._oracle_helpers import (  # noqa: F401  (re-exported for stochgrad.testing.oracle)
    _CACHE_SIZE,
    _DPS,
    _MAX_BINOMIAL,
    _MAX_CUTOFF,
    _Unsupported,
    _number,
    _positive_params,
    _sympy,
    _tidy,
    _unevaluated_types,
)

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
        simple = {
            "exp": sp.exp,
            "log": sp.log,
            "sqrt": sp.sqrt,
            "abs": sp.Abs,
            "sin": sp.sin,
            "cos": sp.cos,
            "tan": sp.tan,
            "tanh": sp.tanh,
        }
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

    def generic(
        self,
        params: Mapping[str, Any],
        kinds: Mapping[str, dict[str, bool]],
        compute: Callable[[dict[str, Any]], Any],
        substitute: Callable[[dict[str, Any]], dict[Any, Any]] | None = None,
    ) -> Any:
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
        except RuntimeError:  # SymPy lacks a method for this law (e.g. no Cauchy MGF)
            s = X.pspace.domain.set
            return sp.integrate(g * sp.stats.density(X)(var), (var, s.inf, s.sup))

    def law_Normal(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        st = self.sp.stats
        return self.generic(
            params,
            {"loc": {"real": True}, "scale": {"positive": True}},
            lambda d: self.stats_E(st.Normal("z", d["loc"], d["scale"]), var, g),
        )

    def law_LogNormal(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        n = self.sp.Dummy("n", real=True)
        return self.law_Normal(n, params, g.xreplace({var: self.sp.exp(n)}))

    def law_Exponential(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        st = self.sp.stats
        return self.generic(
            params, {"rate": {"positive": True}}, lambda d: self.stats_E(st.Exponential("z", d["rate"]), var, g)
        )

    def law_Weibull(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        st = self.sp.stats
        return self.generic(
            params,
            {"scale": {"positive": True}, "concentration": {"positive": True}},
            lambda d: self.stats_E(st.Weibull("z", d["scale"], d["concentration"]), var, g),
        )

    def law_Uniform(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        st = self.sp.stats
        # high = low + width with width > 0, so SymPy knows the interval is not empty
        return self.generic(
            params,
            {"low": {"real": True}, "width": {"positive": True}},
            lambda d: self.stats_E(st.Uniform("z", d["low"], d["low"] + d["width"]), var, g),
            lambda d: {d["low"]: params["low"], d["width"]: params["high"] - params["low"]},
        )

    def law_Laplace(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        st = self.sp.stats
        return self.generic(
            params,
            {"loc": {"real": True}, "scale": {"positive": True}},
            lambda d: self.stats_E(st.Laplace("z", d["loc"], d["scale"]), var, g),
        )

    def law_Gumbel(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        st = self.sp.stats  # sympy's argument order is (scale, loc)
        return self.generic(
            params,
            {"loc": {"real": True}, "scale": {"positive": True}},
            lambda d: self.stats_E(st.Gumbel("z", d["scale"], d["loc"]), var, g),
        )

    def law_Logistic(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        st = self.sp.stats
        return self.generic(
            params,
            {"loc": {"real": True}, "scale": {"positive": True}},
            lambda d: self.stats_E(st.Logistic("z", d["loc"], d["scale"]), var, g),
        )

    def law_Cauchy(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        st = self.sp.stats
        return self.generic(
            params,
            {"loc": {"real": True}, "scale": {"positive": True}},
            lambda d: self.stats_E(st.Cauchy("z", d["loc"], d["scale"]), var, g),
        )

    def law_Gamma(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        st = self.sp.stats  # sympy's Gamma takes the scale 1 / rate
        return self.generic(
            params,
            {"concentration": {"positive": True}, "rate": {"positive": True}},
            lambda d: self.stats_E(st.Gamma("z", d["concentration"], 1 / d["rate"]), var, g),
        )

    def law_Beta(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        st = self.sp.stats
        return self.generic(
            params,
            {"a": {"positive": True}, "b": {"positive": True}},
            lambda d: self.stats_E(st.Beta("z", d["a"], d["b"]), var, g),
        )

    def law_Kumaraswamy(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        sp = self.sp

        def compute(d: dict[str, Any]) -> Any:
            a, b = d["a"], d["b"]
            if g.is_polynomial(var):  # E[z**k] = b B(1 + k/a, b)
                poly = sp.Poly(g, var)
                return sum(
                    (
                        c
                        * (
                            1
                            if k == 0
                            else b * sp.gamma(1 + sp.Integer(k) / a) * sp.gamma(b) / sp.gamma(1 + sp.Integer(k) / a + b)
                        )
                        for (k,), c in poly.terms()
                    ),
                    sp.Integer(0),
                )
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
        r = sp.Add(
            *[sp.binomial(n, k) * p**k * (1 - p) ** (n - k) * g.xreplace({var: sp.Integer(k)}) for k in range(n + 1)]
        )
        return _tidy(sp, r)

    def law_Poisson(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        sp, st = self.sp, self.sp.stats
        return self.generic(
            params,
            {"rate": {"positive": True}},
            lambda d: self.counts(
                var,
                g,
                lambda k: sp.exp(-d["rate"]) * d["rate"] ** k / sp.factorial(k),
                lambda h: self.stats_E(st.Poisson("x", d["rate"]), var, h),
            ),
        )

    def law_Geometric(self, var: Any, params: dict[str, Any], g: Any) -> Any:
        sp, st = self.sp, self.sp.stats

        def full(d: dict[str, Any], h: Any) -> Any:  # sympy's Geometric counts trials: failures + 1
            G = st.Geometric("x", d["probs"])
            return sp.stats.E(h.xreplace({var: G - 1}))

        return self.generic(
            params,
            {"probs": {"positive": True}},
            lambda d: self.counts(var, g, lambda k: d["probs"] * (1 - d["probs"]) ** k, lambda h: full(d, h)),
        )

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
        head = sp.Add(
            *[(g.xreplace({var: sp.Integer(k)}) - tail.xreplace({var: sp.Integer(k)})) * pmf(k) for k in range(cut)]
        )
        return head + full(tail)
