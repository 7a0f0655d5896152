"""The SymPy oracle's small helpers: limits, the "unsupported" signal, exact numbers and timed tidying.

Used by :mod:`stochgrad.testing._oracle_sympy` (the translation) and :mod:`stochgrad.testing.oracle`.
"""

from __future__ import annotations

from typing import Any

from .. import ir
from ..distributions import DISTRIBUTIONS, positive
from ._oracle_timer import _ALARM, _remaining, _time_limit, _Timeout

#: digits mpmath works with when evaluating the formulas
_DPS = 50
#: largest Binomial total_count summed term by term
_MAX_BINOMIAL = 500
#: largest count summed exactly below a comparison threshold (Poisson, Geometric)
_MAX_CUTOFF = 2000
#: cached symbolic results
_CACHE_SIZE = 512


class _Unsupported(Exception):
    """The expression uses something the oracle does not translate."""


# -- sympy helpers -----------------------------------------------------------------------------


def _sympy() -> Any:
    import sympy  # optional dependency: imported on first use
    import sympy.stats  # loads the submodule: sympy.stats is used through the returned module

    return sympy


def _unevaluated_types(sp: Any) -> tuple[type, ...]:
    from sympy.stats.rv import RandomSymbol
    from sympy.stats.symbolic_probability import Expectation, Probability

    return (sp.Integral, sp.Sum, sp.Product, sp.Limit, sp.Derivative, sp.Subs, RandomSymbol, Expectation, Probability)


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
        pieces = [(e if e.has(*unevaluated) else _tidy(sp, e, share / len(expr.args), cap), c) for e, c in expr.args]
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
                if (
                    spec is not None
                    and spec.constraint is positive
                    and isinstance(value, ir.Name)
                    and value.id not in inner
                ):
                    out.add(value.id)
                _positive_params(value, inner, out)
            inner = inner | {b.var}
        _positive_params(e.body, inner, out)
        return out
    for child in e.children():
        _positive_params(child, bound, out)
    return out
