"""The function table (stochgrad.functions, stochgrad.fnimpl): values, gradients, shapes, plans, errors.

Every closed form here is independent of the code under test: values from numpy/scipy
(``scipy.special.logsumexp``, ``softmax``, ``log_softmax``, ``gammaln``, ``digamma``, ``erf``,
``expit``), gradients from hand-derived derivatives or central finite differences of those numpy
functions, expectations from the normal identities

* ``E[max(Z, 0)] = mu Phi(mu) + phi(mu)`` and ``d/dmu = Phi(mu)`` for ``Z ~ Normal(mu, 1)``;
* ``E[1{Z > 0}] = Phi(mu)``, ``d/dmu = phi(mu)``;
* ``E[clip(Z, a, b)] = a Phi(a - mu) + b (1 - Phi(b - mu)) + mu (Phi(b - mu) - Phi(a - mu)) + phi(a - mu) - phi(b - mu)``,
  ``d/dmu = Phi(b - mu) - Phi(a - mu)``.

Both backends, float64; Monte Carlo checks within 5 standard errors, fixed seeds.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import special
from scipy.stats import norm

import stochgrad as sg
from stochgrad import ieee, parser
from stochgrad.functions import FUNCTIONS
from stochgrad.shapes import infer

BACKENDS = ["torch", "autograd"]
X = np.array([[0.3, -1.2, 2.0, 0.7], [1.5, 0.1, -0.4, -2.2], [0.0, 0.9, 1.1, -0.6]])  # no ties anywhere
W = np.array([[0.5, -1.0, 1.8, 0.25], [1.0, 0.3, -0.7, 1.5], [-0.2, 0.8, 0.4, -1.1]])


def value(text: str, params: dict, backend: str, wrt: str | None = None):
    """A deterministic expression's value (and gradient in ``wrt``): n=2 identical samples."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = sg.estimate(text, params, n=2, backend=backend, seed=0)
    return (np.asarray(est.value), None if wrt is None else np.asarray(est.grad[wrt]))


def fd_grad(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central finite differences of a numpy function of an array."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


# -- values and gradients against numpy/scipy -----------------------------------------------------------
REDUCTIONS = {  # name -> numpy form f(x, axis)
    "sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min, "prod": np.prod,
    "logsumexp": lambda x, axis: special.logsumexp(x, axis=axis),
    "logmeanexp": lambda x, axis: special.logsumexp(x, axis=axis) - np.log(x.size if axis is None else x.shape[axis]),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_reductions_match_numpy(backend, name, axis):
    ref = REDUCTIONS[name]
    opt = "" if axis is None else f", axis={axis}"
    got, _ = value(f"{name}(x{opt})", {"x": X}, backend)
    np.testing.assert_allclose(got, ref(X, axis), rtol=1e-12, atol=1e-12)
    # gradient of a weighted sum of the reduction, against finite differences of numpy's
    w = np.ones(ref(X, axis).shape) if axis is None else np.linspace(-1.0, 2.0, ref(X, axis).size)
    text, params = (f"sum(w * {name}(x{opt}))", {"x": X, "w": w}) if axis is not None else (f"{name}(x)", {"x": X})
    _, grad = value(text, params, backend, wrt="x")
    np.testing.assert_allclose(grad, fd_grad(lambda x: np.sum(w * ref(x, axis)), X), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_min_gradients_go_to_the_extreme_entry(backend):
    for name, pick in (("max", np.argmax), ("min", np.argmin)):
        _, grad = value(f"sum(w * {name}(x, axis=1))", {"x": X, "w": np.array([1.0, 2.0, 3.0])}, backend, wrt="x")
        expected = np.zeros_like(X)
        expected[np.arange(3), pick(X, axis=1)] = [1.0, 2.0, 3.0]
        np.testing.assert_array_equal(grad, expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_prod_gradient_is_exact_at_zeros(backend):
    # d/dx_i prod(x) = prod of the others: [0, 2*3*5, 0, 0] with one zero, all zero with two
    got, grad = value("prod(x)", {"x": np.array([2.0, 0.0, 3.0, 5.0])}, backend, wrt="x")
    assert got == 0.0
    np.testing.assert_array_equal(grad, [0.0, 30.0, 0.0, 0.0])
    _, grad = value("prod(x)", {"x": np.array([0.0, 4.0, 0.0])}, backend, wrt="x")
    np.testing.assert_array_equal(grad, [0.0, 0.0, 0.0])
    # an odd length (the tree sets entries aside) and a longer axis, against numpy
    x = np.linspace(0.5, 1.7, 13)
    got, grad = value("prod(x)", {"x": x}, backend, wrt="x")
    np.testing.assert_allclose(got, np.prod(x), rtol=1e-13)
    np.testing.assert_allclose(grad, [np.prod(np.delete(x, i)) for i in range(13)], rtol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_logsumexp_is_stable_and_its_gradient_is_the_softmax(backend):
    x = np.array([1000.0, -1000.0, 999.0, 1000.0])
    got, grad = value("logsumexp(x)", {"x": x}, backend, wrt="x")
    np.testing.assert_allclose(got, 1000.0 + np.log(2.0 + np.exp(-1.0)), rtol=1e-15)
    np.testing.assert_allclose(grad, special.softmax(x), rtol=1e-12, atol=1e-300)
    # one entry dominating: full relative accuracy (log1p, not log of a sum near 1): within two ulps
    # of scipy's (one ulp of 3 + log 3 is 2.2e-16 relative; the libraries' rounding differs by versions)
    for y in ([-14.0, 0.0], [0.0, -40.0, -41.0], [3.0, 3.0, 3.0]):
        got, _ = value("logsumexp(x)", {"x": np.array(y)}, backend)
        exact = special.logsumexp(y)
        assert abs(got - exact) <= 2 * np.spacing(abs(exact)), (y, got, exact)
    # non-finite entries made inside the expression: all -inf gives -inf, a +inf entry +inf
    assert value("logsumexp(log(x))", {"x": np.array([0.0, 0.0])}, backend)[0] == -np.inf
    assert value("logsumexp(log(x))", {"x": np.array([0.0, 1.0])}, backend)[0] == 0.0
    assert value("logsumexp(x * 1e308 * 10)", {"x": np.array([1.0, -1.0])}, backend)[0] == np.inf
    got, grad = value("logmeanexp(x)", {"x": -x}, backend, wrt="x")
    np.testing.assert_allclose(got, special.logsumexp(-x) - np.log(4.0), rtol=1e-15)
    np.testing.assert_allclose(grad, special.softmax(-x), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis", [None, 0, 1, -2])
def test_softmax_and_log_softmax_match_scipy(backend, axis):
    opt, ax = ("", -1) if axis is None else (f", axis={axis}", axis)
    got, _ = value(f"softmax(x{opt})", {"x": X}, backend)
    np.testing.assert_allclose(got, special.softmax(X, axis=ax), rtol=1e-12)
    got, _ = value(f"log_softmax(x{opt})", {"x": X}, backend)
    np.testing.assert_allclose(got, special.log_softmax(X, axis=ax), rtol=1e-12)
    for name, ref in (("softmax", special.softmax), ("log_softmax", special.log_softmax)):
        _, grad = value(f"sum(w * {name}(x{opt}))", {"x": X, "w": W}, backend, wrt="x")
        np.testing.assert_allclose(grad, fd_grad(lambda x, ref=ref: np.sum(W * ref(x, axis=ax)), X), rtol=1e-6,
                                   atol=1e-8)


ELEMENTWISE = {  # name -> (numpy value, hand-derived derivative), on x > 0 where each is defined
    "erf": (special.erf, lambda x: 2.0 / np.sqrt(np.pi) * np.exp(-x * x)),
    "logsigmoid": (lambda x: -np.log1p(np.exp(-x)), lambda x: special.expit(-x)),
    "lgamma": (special.gammaln, special.digamma),
    "digamma": (special.digamma, lambda x: special.polygamma(1, x)),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_elementwise_functions_match_scipy(backend, name):
    f, df = ELEMENTWISE[name]
    x = np.array([0.05, 0.5, 1.0, 2.5, 7.0, 30.0])
    if name in ("erf", "logsigmoid"):
        x = np.concatenate([x, -x])
    got, _ = value(f"{name}(x)", {"x": x}, backend)
    np.testing.assert_allclose(got, f(x), rtol=1e-12)
    _, grad = value(f"sum({name}(x))", {"x": x}, backend, wrt="x")
    np.testing.assert_allclose(grad, df(x), rtol=1e-8)  # torch's trigamma is good to about 1e-9


@pytest.mark.parametrize("backend", BACKENDS)
def test_maximum_minimum_where_clip_values_and_gradients(backend):
    a, b = X, W[0]  # b broadcasts against a's rows
    p = {"a": a, "b": b}
    for name, ref, da in (("maximum", np.maximum, a > b), ("minimum", np.minimum, a < b)):
        got, ga = value(f"{name}(a, b)", p, backend)[0], value(f"sum({name}(a, b))", p, backend, wrt="a")[1]
        np.testing.assert_array_equal(got, ref(a, b))
        np.testing.assert_array_equal(ga, da.astype(float))
        gb = value(f"sum({name}(a, b))", p, backend, wrt="b")[1]
        np.testing.assert_array_equal(gb, (~da).sum(axis=0).astype(float))
    c = (X > 0.5).astype(float) * 3.0 - (X < -1.0)  # numeric: nonzero is true
    p = {"c": c, "a": a, "b": b}
    got = value("where(c, a, b)", p, backend)[0]
    np.testing.assert_array_equal(got, np.where(c != 0, a, b))
    np.testing.assert_array_equal(value("sum(where(c, a, b))", p, backend, wrt="a")[1], (c != 0).astype(float))
    np.testing.assert_array_equal(value("sum(where(c, a, b))", p, backend, wrt="c")[1], np.zeros_like(c))
    # clip with constant bounds and with parameter bounds (no entry on a bound)
    np.testing.assert_array_equal(value("clip(a, -0.5, 1.0)", {"a": a}, backend)[0], np.clip(a, -0.5, 1.0))
    lo, hi = np.array([-0.5, -1.5, 0.0, 0.2]), np.array([1.0, 0.5, 1.9, 0.8])
    q = {"a": a, "lo": lo, "hi": hi}
    np.testing.assert_array_equal(value("clip(a, lo, hi)", q, backend)[0], np.clip(a, lo, hi))
    inside = ((a > lo) & (a < hi)).astype(float)
    np.testing.assert_array_equal(value("sum(clip(a, lo, hi))", q, backend, wrt="a")[1], inside)
    np.testing.assert_array_equal(value("sum(clip(a, lo, hi))", q, backend, wrt="lo")[1], (a < lo).sum(axis=0))
    np.testing.assert_array_equal(value("sum(clip(a, lo, hi))", q, backend, wrt="hi")[1], (a > hi).sum(axis=0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_transpose_reverses_the_axes(backend):
    got, grad = value("sum(w * transpose(x))", {"x": X, "w": W.T * 2.0}, backend, wrt="x")
    np.testing.assert_allclose(got, np.sum(W.T * 2.0 * X.T), rtol=1e-14)
    np.testing.assert_array_equal(grad, 2.0 * W)
    x3 = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(value("transpose(x)", {"x": x3}, backend)[0], x3.T)
    np.testing.assert_array_equal(value("transpose(x)", {"x": X[0]}, backend)[0], X[0])  # a vector: unchanged


@settings(deadline=None, max_examples=12)
@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5),
                    elements=st.floats(-30.0, 30.0, allow_subnormal=False)),
       axis=st.integers(-3, 2), backend=st.sampled_from(BACKENDS))
def test_reductions_and_softmax_over_random_arrays(x, axis, backend):
    axis = axis % x.ndim - x.ndim if axis < 0 else axis % x.ndim  # a valid axis, either sign
    for name in ("logsumexp", "max", "min", "prod", "logmeanexp"):
        got, _ = value(f"{name}(x, axis={axis})", {"x": x}, backend)
        np.testing.assert_allclose(got, REDUCTIONS[name](x, axis), rtol=1e-11, atol=1e-300)
    got, grad = value(f"sum(w * log_softmax(x, axis={axis}))", {"x": x, "w": np.cos(x)}, backend, wrt="x")
    np.testing.assert_allclose(got, np.sum(np.cos(x) * special.log_softmax(x, axis=axis)), rtol=1e-10, atol=1e-10)
    # d/dx_j sum_i w_i (x_i - lse) = w_j - softmax_j * sum_i w_i (along the axis)
    s = special.softmax(x, axis=axis)
    np.testing.assert_allclose(grad, np.cos(x) - s * np.sum(np.cos(x), axis=axis, keepdims=True), rtol=1e-9,
                               atol=1e-9)


# -- inside E[...]: the planner reads the per-argument flags -------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_expected_maximum_is_pathwise(backend):
    mu = 0.4
    text = "E[maximum(z, 0), z ~ Normal(mu, 1)]"
    assert "pathwise" in str(sg.plan(text))
    est = sg.estimate(text, {"mu": mu}, n=40_000, backend=backend, seed=1)
    assert abs(est.value - (mu * norm.cdf(mu) + norm.pdf(mu))) < 5 * est.value_stderr
    assert abs(est.grad["mu"] - norm.cdf(mu)) < 5 * est.stderr["mu"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_expected_max_of_two_normals_is_clarks_formula(backend):
    # Clark (1961): for independent Z_i ~ Normal(mu_i, 1), theta = sqrt(2), d = mu_1 - mu_2,
    # E[max(Z_1, Z_2)] = mu_1 Phi(d/theta) + mu_2 Phi(-d/theta) + theta phi(d/theta), d/dmu_1 = Phi(d/theta)
    mu = np.array([0.5, -0.2])
    text = "E[max(z), z ~ Normal(mu, 1)]"
    assert "pathwise" in str(sg.plan(text, shapes={"mu": (2,)}))
    est = sg.estimate(text, {"mu": mu}, n=40_000, backend=backend, seed=4)
    t, d = math.sqrt(2.0), mu[0] - mu[1]
    exact = mu[0] * norm.cdf(d / t) + mu[1] * norm.cdf(-d / t) + t * norm.pdf(d / t)
    assert abs(est.value - exact) < 5 * est.value_stderr
    grad = np.array([norm.cdf(d / t), norm.cdf(-d / t)])
    assert np.all(np.abs(est.grad["mu"] - grad) < 5 * est.stderr["mu"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_where_condition_breaks_the_path_and_the_planner_picks_score(backend):
    mu = -0.3
    for text in ("E[where(z > 0, 1, 0), z ~ Normal(mu, 1)]", "E[where(floor(z) + 1, 0, 1), z ~ Normal(mu, 1)]"):
        shown = str(sg.plan(text))
        assert "score" in shown and "where() is not differentiable in its condition" in shown, shown
    text = "E[where(z > 0, 1, 0), z ~ Normal(mu, 1)]"
    est = sg.estimate(text, {"mu": mu}, n=40_000, backend=backend, seed=2)
    assert abs(est.value - norm.cdf(mu)) < 5 * est.value_stderr
    assert abs(est.grad["mu"] - norm.pdf(mu)) < 5 * est.stderr["mu"]
    # the same variable also in a and b: still score (the condition wins)
    assert "score" in str(sg.plan("E[where(z > 0, z, 0), z ~ Normal(mu, 1)]"))
    # a condition free of z leaves z pathwise
    assert "pathwise" in str(sg.plan("E[where(c, z, 0), z ~ Normal(mu, 1)]"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_expected_clip_is_pathwise_in_all_three_arguments(backend):
    mu, a, b = 0.3, -0.8, 1.1
    text = "E[clip(z, a, b), z ~ Normal(mu, 1)]"
    assert "pathwise" in str(sg.plan(text))
    est = sg.estimate(text, {"mu": mu, "a": a, "b": b}, n=40_000, backend=backend, seed=3)
    pa, pb = norm.cdf(a - mu), norm.cdf(b - mu)
    exact = a * pa + b * (1 - pb) + mu * (pb - pa) + norm.pdf(a - mu) - norm.pdf(b - mu)
    assert abs(est.value - exact) < 5 * est.value_stderr
    for name, grad in (("mu", pb - pa), ("a", pa), ("b", 1 - pb)):
        assert abs(est.grad[name] - grad) < 5 * est.stderr[name], name


# -- shapes and errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "shape"), [
    ("sum(x, axis=1)", (2, 4)), ("prod(x, axis=-1)", (2, 3)), ("max(x)", ()), ("min(x, axis=0)", (3, 4)),
    ("logsumexp(x, axis=2)", (2, 3)), ("logmeanexp(x)", ()), ("softmax(x, axis=0)", (2, 3, 4)),
    ("log_softmax(x)", (2, 3, 4)), ("transpose(x)", (4, 3, 2)), ("argmax(x)", (2, 3)),
    ("where(c, x, 0)", (2, 3, 4)), ("maximum(v, x)", (2, 3, 4)), ("clip(v, 0, c)", (3, 4)),
    ("erf(v)", (4,)), ("transpose(v)", (4,)),
])
def test_shape_rules(text, shape):
    assert infer(sg.parse(text), {"x": (2, 3, 4), "v": (4,), "c": (3, 1)}) == shape


@pytest.mark.parametrize(("text", "message"), [
    ("sum(x, axis=3)", r"sum\(\): axis 3 is out of range for a value with 3 axes \(shape \(2, 3, 4\)\) in `sum\(x, axis=3\)`"),
    ("logsumexp(x, axis=-4)", r"logsumexp\(\): axis -4 is out of range"),
    ("prod(x, axis=5)", r"prod\(\): axis 5 is out of range"),
    ("softmax(s)", r"softmax\(\) needs a value with at least one axis, got a scalar in `softmax\(s\)`"),
    ("max(x, axis=3)", r"max\(\): axis 3"),
    ("where(v, x, u)", r"shapes \(4,\) and \(2, 3, 4\) and \(3,\) do not broadcast in `where\(v, x, u\)`"),
])
def test_shape_errors_name_the_function(text, message):
    with pytest.raises(sg.StochgradError, match=message) as info:
        infer(sg.parse(text), {"x": (2, 3, 4), "v": (4,), "u": (3,)})
    assert info.value.span is not None


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_axis_at_run_time_names_the_call(backend):
    with pytest.raises(sg.StochgradError, match=r"logsumexp\(\): axis 2 is out of range .* `logsumexp\(x, axis=2\)`"):
        value("logsumexp(x, axis=2)", {"x": X}, backend)
    with pytest.raises(sg.StochgradError, match=r"softmax\(\): axis -3 is out of range"):
        value("sum(softmax(x, axis=-3))", {"x": X}, backend)
    with pytest.raises(sg.StochgradError, match=r"log_softmax\(\) needs a value with at least one axis"):
        value("log_softmax(mu)", {"mu": 1.0}, backend)


@pytest.mark.parametrize(("text", "message", "column"), [
    ("where(z, 1)", "where() takes 3 arguments, got 2", 1),
    ("1 + maximum(z)", "maximum() takes 2 arguments, got 1", 5),
    ("clip(z, 0)", "clip() takes 3 arguments, got 2", 1),
    ("logsumexp(z, 1)", "logsumexp() takes 1 argument, got 2", 1),
    ("maximum(z, 0, axis=1)", "maximum() has no option 'axis'", 1),
    ("softmax(z, axis=0.5)", "softmax(): option 'axis' must be an integer literal, got 0.5", 1),
    ("prod(z, dim=0)", "prod() has no option 'dim'; it accepts axis", 1),
])
def test_call_errors_name_the_function_and_position(text, message, column):
    with pytest.raises(sg.ParseError) as info:
        sg.parse(text)
    assert info.value.message == message
    assert info.value.column == column


@pytest.mark.parametrize("text", [
    "E[where(z > 0, z, -z) + maximum(z, 1) - minimum(0, z), z ~ Normal(mu, 1)]",
    "logsumexp(x, axis=-1) + sum(softmax(x, axis=0) * log_softmax(x)) + max(prod(x, axis=1))",
    "clip(lgamma(a) + digamma(a) + erf(a) + logsigmoid(a), -1, 2) + logmeanexp(transpose(x))",
])
def test_round_trip_and_both_parsers(text):
    e = sg.parse(text)
    assert sg.parse(str(e)) == e
    assert parser.parse_with_lark(text) == e


def test_every_row_is_complete():
    for name, fn in FUNCTIONS.items():
        assert fn.name == name and len(fn.differentiable_in) == fn.arity >= 1
        assert callable(fn.shape) and callable(fn.impl)
    assert FUNCTIONS["where"].differentiable_in == (False, True, True)
    assert not FUNCTIONS["floor"].differentiable and FUNCTIONS["where"].differentiable


# -- constant folding: the IEEE scalar forms agree with the backends ---------------------------------
FOLDED = [("lgamma", (0.0,)), ("lgamma", (-2.0,)), ("lgamma", (0.5,)), ("lgamma", (1e308,)), ("erf", (0.7,)),
          ("erf", (-3.0,)), ("logsigmoid", (-800.0,)), ("logsigmoid", (3.0,)), ("maximum", (1.0, 2.0)),
          ("minimum", (-1.0, 2.0)), ("where", (0.0, 1.0, 2.0)), ("where", (-2.0, 1.0, 2.0)),
          ("clip", (3.0, -1.0, 1.0)), ("clip", (0.5, 1.0, -1.0))]


def test_ieee_scalar_forms_match_scipy():
    assert ieee.call("lgamma", 0.0) == math.inf and ieee.call("lgamma", -3.0) == math.inf
    assert ieee.call("lgamma", 0.5) == pytest.approx(special.gammaln(0.5), rel=1e-15)
    assert ieee.call("erf", 0.3) == pytest.approx(special.erf(0.3), rel=1e-15)
    assert ieee.call("logsigmoid", -1000.0) == -1000.0
    assert ieee.call("where", math.nan, 1.0, 2.0) == 1.0  # NaN is nonzero: true, as in numpy
    assert ieee.call("clip", 0.5, 1.0, -1.0) == np.clip(0.5, 1.0, -1.0) == -1.0
    assert ieee.call("digamma", 1.0) is None and ieee.call("sum", 1.0) is None  # left to the backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_folded_constants_equal_the_backend_values(backend):
    for name, args in FOLDED:
        names = [f"a{i}" for i in range(len(args))]
        folded, _ = value(f"{name}({', '.join(repr(a) for a in args)})", {}, backend)
        computed, _ = value(f"{name}({', '.join(names)})", dict(zip(names, args)), backend)
        np.testing.assert_allclose(folded, computed, rtol=1e-15, err_msg=f"{name}{args}")


# -- second derivatives (the implementations are made of differentiable primitives) --------------------
HESSIANS = {  # hand-derived: logsumexp's is diag(s) - s s^T; prod's (i != j) the product of the other entries
    "logsumexp(x)": (np.array([0.3, -1.2, 2.0, 0.7]),
                     lambda x: np.diag(special.softmax(x)) - np.outer(special.softmax(x), special.softmax(x))),
    "prod(x)": (np.array([2.0, 0.0, 3.0, 5.0]),
                lambda x: np.array([[0.0 if i == j else np.prod(np.delete(x, [i, j])) for j in range(4)]
                                    for i in range(4)])),
    "sum(where(x > 0, x ** 3, 0)) + max(x)": (np.array([0.3, -1.2, 2.0, 0.7]), lambda x: np.diag(6 * x * (x > 0))),
    "sum(maximum(x, 0) * minimum(x, 1))": (np.array([0.3, -1.2, 2.0, 0.7]),
                                           lambda x: np.diag(2.0 * ((x > 0) & (x < 1)))),
}


@pytest.mark.parametrize("text", sorted(HESSIANS))
def test_second_derivatives_on_both_backends(text):
    import autograd
    import torch

    x, hessian = HESSIANS[text]
    ft = sg.compile(text, backend="torch", n=2, seed=0)
    fa = sg.compile(text, backend="autograd", n=2, seed=0)
    ht = torch.autograd.functional.hessian(lambda t: ft(x=t), torch.tensor(x)).numpy()
    ha = autograd.hessian(lambda a: fa(x=a))(x)
    np.testing.assert_allclose(ht, hessian(x), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ha, hessian(x), rtol=1e-12, atol=1e-14)


def test_embedded_form_builds_the_text_form():
    from stochgrad.embed import function, symbols

    z, c, x = symbols("z c x")
    where, maximum, logsumexp = function("where"), function("maximum"), function("logsumexp")
    assert where(c > 0, maximum(z, 0), -z) == sg.parse("where(c > 0, maximum(z, 0), -z)")
    assert logsumexp(x, axis=-1) == sg.parse("logsumexp(x, axis=-1)")
    with pytest.raises(sg.StochgradError, match=r"where\(\) takes 3 arguments, got 1"):
        where(z)
