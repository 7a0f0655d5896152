"""Constant arithmetic in the DSL text follows IEEE 754, as arrays do: ``1/0`` is inf, ``2**2000``
overflows to inf, ``(-8)**0.5`` is NaN, ``log(0)`` is -inf, and a non-finite result is reported
(NonFiniteWarning), never a ZeroDivisionError, OverflowError, TypeError (complex) or IndexError.
The expected values are computed here, independently, with numpy float64 scalars."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stochgrad as sg
from stochgrad.errors import StochgradError

LEAVES = ["0", "1", "2", "0.5", "3.7", "8", "(-8)", "(-1)", "1e300", "2000", "1e-320", "(-0.0)"]
BINARY = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "**": np.power,
          "<": np.less, ">=": np.greater_equal}
UNARY = {"log": np.log, "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs, "sin": np.sin, "tanh": np.tanh,
         "log1p": np.log1p, "expm1": np.expm1, "floor": np.floor}


def _leaf(text: str) -> tuple[str, np.float64]:
    return text, np.float64(float(text.strip("()")))


def _binary(pair: tuple[tuple[str, np.float64], tuple[str, np.float64]], op: str) -> tuple[str, np.float64]:
    (ta, a), (tb, b) = pair
    with np.errstate(all="ignore"):
        return f"({ta} {op} {tb})", np.float64(BINARY[op](a, b))


def _unary(x: tuple[str, np.float64], fn: str) -> tuple[str, np.float64]:
    with np.errstate(all="ignore"):
        return f"{fn}({x[0]})", np.float64(UNARY[fn](x[1]))


def _square(x: tuple[str, np.float64]) -> tuple[str, np.float64]:
    with np.errstate(all="ignore"):
        return f"(({x[0]}) ** 2)", np.float64(x[1] * x[1])


constants = st.recursive(
    st.sampled_from(LEAVES).map(_leaf),
    lambda inner: st.one_of(
        st.builds(_binary, st.tuples(inner, inner), st.sampled_from(sorted(BINARY))),
        st.builds(_unary, inner, st.sampled_from(sorted(UNARY))),
        inner.map(_square),  # the x ** 2 fast path
    ),
    max_leaves=6,
)


def _estimate(text: str, backend: str, **options: object) -> tuple[sg.Estimate, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = sg.estimate(text, {"mu": 0.5}, n=8, seed=0, backend=backend, **options)
    return r, [w for w in caught if issubclass(w.category, sg.NonFiniteWarning)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(constants)
def test_constant_expressions_follow_ieee_arithmetic(backend, constant):
    """A random expression of constants gives numpy's float64 value (NaN where numpy's is NaN),
    with a NonFiniteWarning naming a subexpression exactly when that value is not finite."""
    text, expected = constant
    with np.errstate(all="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r, caught = _estimate(f"E[mu + {text}, z ~ Normal(mu, 1)]", backend)
    with np.errstate(all="ignore"):
        want = np.float64(0.5) + expected
    if np.isnan(want):
        assert np.isnan(r.value)
    else:
        assert r.value == want
    assert bool(caught) == (not np.isfinite(want)), (text, want, [str(w.message) for w in caught])
    if caught:
        assert "`" in str(caught[0].message) and "value" in r.nonfinite


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(constants)
def test_constant_distribution_parameters_are_checked_by_name(backend, constant):
    """A constant expression as a distribution's scale gives either a valid run or a stochgrad
    error naming the parameter and the text that gave it, for inf, NaN and values <= 0 alike."""
    text, scale = constant
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = sg.estimate(f"E[z, z ~ Normal(mu, {text})]", {"mu": 0.5}, n=8, seed=0, backend=backend)
    except StochgradError as exc:
        assert not (np.isfinite(scale) and scale > 0)
        assert "'scale'" in str(exc) and "must be > 0 and finite" in str(exc)
    else:
        assert np.isfinite(scale) and scale > 0
        assert np.isfinite(r.value) and r.grad["mu"] == pytest.approx(1.0)


@pytest.mark.parametrize("text, expected", [
    ("1 / 0", np.inf), ("-1 / 0", -np.inf), ("0 / 0", np.nan), ("2 ** 2000", np.inf), ("(-8) ** 0.5", np.nan),
    ("(-1) ** 0.5", np.nan), ("(-0.0) ** -1", -np.inf), ("log(0)", -np.inf), ("sqrt(-1)", np.nan),
    ("exp(1000)", np.inf), ("(1e200) ** 2", np.inf), ("(1 / 0 > 2)", 1.0), ("(0 / 0 < 2)", 0.0),
    ("sigmoid(-1000)", 0.0), ("softplus(1000)", 1000.0),
])
def test_the_issues_constant_cases(backend, text, expected):
    """The cases of the issue: each gives its IEEE value (the sampled z adds its own mean, so the
    constant is read off ``E[z + c] - E[z]`` at a fixed seed), never a Python exception."""
    r, caught = _estimate(f"E[z + {text}, z ~ Normal(mu, 1)]", backend)
    base, _ = _estimate("E[z, z ~ Normal(mu, 1)]", backend)
    with np.errstate(all="ignore"):
        got = r.value - base.value
    if np.isnan(expected):
        assert np.isnan(r.value)
    elif np.isinf(expected):
        assert r.value == expected
    else:
        assert got == pytest.approx(expected, abs=1e-9)
    assert bool(caught) == (not np.isfinite(expected))


def test_constants_in_float32():
    """In float32 (torch) a constant computed in float64 is rounded once; 1/0 is still inf, with a warning."""
    pytest.importorskip("torch")
    r, caught = _estimate("E[mu + 1 / 3, z ~ Normal(mu, 1)]", "torch", backend_options={"dtype": "float32"})
    assert r.value == pytest.approx(0.5 + 1 / 3, rel=1e-6) and not caught
    r, caught = _estimate("E[mu + 1 / 0, z ~ Normal(mu, 1)]", "torch", backend_options={"dtype": "float32"})
    assert r.value == np.inf and caught and "`1 / 0` is +inf" in str(caught[0].message)
