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
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import ir
from ..analysis import check_scopes, parameters
from ..api import _check_params, as_expression
from ..distributions import DISTRIBUTIONS
from ..errors import StochgradError
from ._oracle_sympy import (
    _CACHE_SIZE,
    _DPS,
    _positive_params,
    _sympy,
    _tidy,
    _Translator,
    _unevaluated_types,
    _Unsupported,
)
from ._oracle_timer import _ALARM, _time_limit, _Timeout

__all__ = ["Exact", "exact", "clear_cache"]


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
    checks = [
        (name, {k: (v, _compile(sp, symbols, v)) for k, v in p.items()})
        for name, p in tr.checks
        if all(v.free_symbols <= set(symbols) for v in p.values())
    ]
    compiled: dict[str, Callable[..., Any] | None] = {"": _compile(sp, symbols, value)}
    compiled.update({n: _compile(sp, symbols, grads[n]) for n in names})
    return _Entry(
        names,
        symbols,
        value,
        grads,
        sp.sstr(value),
        {n: sp.sstr(g) for n, g in grads.items()},
        checks,
        not tr.reduces,
        compiled,
    )


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


def _scalar(
    sp: Any, fn: Callable[..., Any] | None, expr: Any, symbols: tuple[Any, ...], args: tuple[float, ...]
) -> float | None:
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


def _array(
    sp: Any,
    fn: Callable[..., Any] | None,
    expr: Any,
    symbols: tuple[Any, ...],
    arrays: list[np.ndarray],
    shape: tuple[int, ...],
) -> np.ndarray | None:
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
    return Exact(
        value=float(value) if scalar else value,
        grad=grad,
        formula=entry.formula,
        grad_formula={n: entry.grad_formula[n] for n in order},
    )


# -- entry point -------------------------------------------------------------------------------


def exact(
    expr_or_text: str | ir.Expr, params: Mapping[str, Any] | None = None, *, timeout: float | None = 10.0
) -> Exact | None:
    """The exact value and gradient of an expression, or None where SymPy cannot find them.

    ``params`` maps every parameter of the expression to a number (or a numpy
    array, elementwise); ``timeout`` bounds the whole call in seconds (None: no
    limit; enforced in the main thread only).  Raises like
    :func:`stochgrad.estimate` for invalid text or parameters; see the module
    docstring for what is supported.

    Args:
        expr_or_text: DSL text or an expression.
        params: a number or array for every parameter.
        timeout: seconds for the whole call (``None``: no limit).

    Returns:
        An :class:`Exact` (value, gradient by parameter, the formula), or ``None`` where SymPy cannot
        integrate the expectation within the time.

    Raises:
        ParseError: the text is not valid.
        ValidationError: a parameter is missing or invalid.
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
