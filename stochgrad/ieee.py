"""IEEE-754 arithmetic for the constants of the DSL text.

Constants are Python floats during lowering, but Python's float arithmetic is not IEEE's:
``1/0`` raises ZeroDivisionError, ``2**2000`` OverflowError, ``(-8)**0.5`` is a complex number
and ``math.log(0)`` raises ValueError.  Arrays follow IEEE 754 (``x/0 = ±inf``, ``0/0 = nan``,
overflow to ``inf``, ``sqrt(-1) = nan``), so constants are computed here in numpy float64 with
floating-point errors ignored, and come back as Python floats: the same value an array of one
entry would hold.  Functions of the DSL fold by name (:func:`call`) where a scalar form here gives exactly
the backends' value (``lgamma(0) = inf``, ``where(nan, a, b) = a``); the others (``digamma``, the
reductions) are left to the backend.  A non-finite constant is not an error here; it is reported with the result
(see :mod:`stochgrad.diagnostics`), or refused by name where it is a distribution's parameter.
"""

from __future__ import annotations

from collections.abc import Callable

import math

import numpy as np

_NAN = float("nan")  # one NaN object: as a cache key it is found again (by identity)


def _sigmoid(x: np.float64) -> np.float64:
    return np.exp(-np.logaddexp(0.0, -x))


#: binary operators of the DSL on float64 scalars (comparisons give 1.0 or 0.0)
BINARY: dict[str, Callable[[np.float64, np.float64], np.float64]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
    "**": np.power,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}


def _logsigmoid(x: np.float64) -> np.float64:
    return -np.logaddexp(0.0, -x)


def _lgamma(x: np.float64) -> float:
    try:
        return math.lgamma(x)
    except (ValueError, OverflowError):  # a pole (0, -1, -2, ...) or beyond float64: +inf, as IEEE lgamma
        return math.inf


def _erf(x: np.float64) -> float:
    return math.erf(x)


def _where(c: np.float64, a: np.float64, b: np.float64) -> np.float64:
    return a if c != 0 else b  # nonzero (NaN included) is true, as in the backends


def _clip(x: np.float64, lo: np.float64, hi: np.float64) -> np.float64:
    return np.minimum(np.maximum(x, lo), hi)


#: one-argument functions of the DSL (elementwise backend primitives, :data:`stochgrad.backend.PRIMITIVES`,
#: and composites) on float64 scalars
UNARY: dict[str, Callable[[np.float64], np.float64 | float]] = {
    "exp": np.exp,
    "log": np.log,
    "log1p": np.log1p,
    "expm1": np.expm1,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "softplus": lambda x: np.logaddexp(0.0, x),
    "floor": np.floor,
    "round": np.round,
    "sign": np.sign,
    "lgamma": _lgamma,
    "erf": _erf,
    "logsigmoid": _logsigmoid,
}

#: functions of the DSL of several arguments on float64 scalars
NARY: dict[str, Callable[..., np.float64 | float]] = {
    "maximum": np.maximum,
    "minimum": np.minimum,
    "where": _where,
    "clip": _clip,
}


def _float(x: np.floating | np.bool_ | float) -> float:
    out = float(x)
    return _NAN if out != out else out


def binop(op: str, a: float, b: float) -> float:
    """``a op b`` for two constants, as float64 arrays compute it (``1/0 = inf``, ``(-8)**0.5 = nan``)."""
    with np.errstate(all="ignore"):
        return _float(BINARY[op](np.float64(a), np.float64(b)))


def call(name: str, *xs: float) -> float | None:
    """Function ``name`` of the DSL (or an elementwise primitive) of constants (``log(0) = -inf``,
    ``exp(1000) = inf``, ``maximum(1, nan) = nan``); None for one without a scalar form here (the
    caller then uses the backend's)."""
    fn = UNARY.get(name) if len(xs) == 1 else NARY.get(name)
    if fn is None:
        return None
    with np.errstate(all="ignore"):
        return _float(fn(*(np.float64(x) for x in xs)))
