"""Discrete nodes at the edges: exact enumeration at p = 0 and 1, every dtype and estimator at
the boundary, and support sizes known before anything is allocated.

The references are written here in numpy/scipy, independently of the code under test:
``sum_k q(k) f(k)`` and its derivative by hand (Bernoulli, Categorical) or from
``scipy.stats.binom.pmf`` with ``d/dp Bin(k; n, p) = n (Bin(k-1; n-1, p) - Bin(k; n-1, p))``.
"""

import math
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import stochgrad as sg
from stochgrad.cli import main

# (backend, backend options): autograd is float64 only
CONFIGS = [("autograd", {}), ("torch", {}), ("torch", {"dtype": "float32"})]
CONFIG_IDS = ["autograd", "torch-float64", "torch-float32"]
boundary_or_inside = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0))
costs = st.lists(st.floats(-3, 3), min_size=4, max_size=4)


def _tol(options):
    return dict(rel=2e-5, abs=2e-5) if options.get("dtype") == "float32" else dict(rel=1e-10, abs=1e-12)


def _poly(c, y):
    return c[0] + c[1] * y + c[2] * y**2 + c[3] * y**3


def _poly_text(c, var="y"):
    return f"({c[0]!r} + {c[1]!r} * {var} + {c[2]!r} * {var}**2 + {c[3]!r} * {var}**3)"


# -- exact enumeration: value and gradient of sum_k q(k) f(k) at every valid parameter ----------


@pytest.mark.parametrize("backend, options", CONFIGS, ids=CONFIG_IDS)
@settings(max_examples=15)
@given(p=boundary_or_inside, c=costs)
def test_bernoulli_enumeration_is_the_polynomial(backend, options, p, c):
    r = sg.estimate(f"E[{_poly_text(c)}, y ~ Bernoulli(p)]", {"p": p}, n=4, backend=backend, seed=0, backend_options=options)
    assert r.plan.node("y").estimator == "enumerate"
    f0, f1 = _poly(c, 0.0), _poly(c, 1.0)
    assert r.value == pytest.approx((1 - p) * f0 + p * f1, **_tol(options))
    assert r.grad["p"] == pytest.approx(f1 - f0, **_tol(options))  # also at p = 0 and p = 1
    assert r.stderr["p"] == 0.0


@pytest.mark.parametrize("backend, options", CONFIGS, ids=CONFIG_IDS)
@settings(max_examples=10)
@given(logit=st.floats(-30, 30), c=costs)
def test_bernoulli_logits_enumeration(backend, options, logit, c):
    r = sg.estimate(f"E[{_poly_text(c)}, y ~ Bernoulli(logits=l)]", {"l": logit}, n=4, backend=backend, seed=0,
                    backend_options=options)
    p = 1 / (1 + math.exp(-logit))
    f0, f1 = _poly(c, 0.0), _poly(c, 1.0)
    assert r.value == pytest.approx((1 - p) * f0 + p * f1, **_tol(options))
    assert r.grad["l"] == pytest.approx((f1 - f0) * p * (1 - p), **_tol(options))


@st.composite
def simplex_with_zeros(draw, k_min=2, k_max=5):
    k = draw(st.integers(k_min, k_max))
    w = np.array(draw(st.lists(st.one_of(st.just(0.0), st.floats(0.01, 1.0)), min_size=k, max_size=k)))
    if w.sum() == 0:
        w[draw(st.integers(0, k - 1))] = 1.0
    return w / w.sum()


@pytest.mark.parametrize("backend, options", CONFIGS, ids=CONFIG_IDS)
@settings(max_examples=12)
@given(p=simplex_with_zeros(), data=st.data())
def test_categorical_enumeration_is_the_polynomial(backend, options, p, data):
    c = np.array(data.draw(st.lists(st.floats(-3, 3), min_size=len(p), max_size=len(p))))
    r = sg.estimate("E[sum(y * c), y ~ Categorical(probs=p)]", {"p": p, "c": c}, n=4, backend=backend, seed=0,
                    wrt=["p"], backend_options=options)
    assert r.plan.node("y").estimator == "enumerate"
    s = p.sum()  # probs are normalized over the last axis: q = p / sum(p)
    assert r.value == pytest.approx(float(p @ c / s), **_tol(options))
    np.testing.assert_allclose(r.grad["p"], c / s - (p @ c) / s**2, **{"rtol": _tol(options)["rel"],
                                                                       "atol": 10 * _tol(options)["abs"]})
    logits = np.log(np.maximum(p, 1e-3))
    q = np.exp(logits) / np.exp(logits).sum()
    r = sg.estimate("E[sum(y * c), y ~ Categorical(logits=l)]", {"l": logits, "c": c}, n=4, backend=backend,
                    seed=0, wrt=["l"], backend_options=options)
    np.testing.assert_allclose(r.grad["l"], q * (c - q @ c), rtol=_tol(options)["rel"], atol=10 * _tol(options)["abs"])


@pytest.mark.parametrize("backend, options", CONFIGS, ids=CONFIG_IDS)
@settings(max_examples=15)
@given(n=st.integers(0, 7), p=boundary_or_inside, c=costs)
def test_binomial_enumeration_is_the_polynomial(backend, options, n, p, c):
    r = sg.estimate(f"E[{_poly_text(c)}, y ~ Binomial({n}, p)]", {"p": p}, n=4, backend=backend, seed=0, backend_options=options)
    assert r.plan.node("y").estimator == "enumerate"
    k = np.arange(n + 1)
    f = _poly(c, k.astype(float))
    value = float(stats.binom.pmf(k, n, p) @ f)
    grad = float(n * (stats.binom.pmf(k[:-1], n - 1, p) @ (f[1:] - f[:-1]))) if n else 0.0
    assert r.value == pytest.approx(value, **_tol(options))
    assert r.grad["p"] == pytest.approx(grad, rel=_tol(options)["rel"], abs=_tol(options)["abs"] * max(n, 1))


def test_large_binomial_enumeration_stays_finite(backend):
    # C(1000, 500) p^500 (1-p)^500 overflows and underflows as separate factors: the weights do not
    r = sg.estimate("E[y, y ~ Binomial(1000, p)]", {"p": 0.3}, n=4, backend=backend, seed=0, enumerate_budget=2000)
    assert r.plan.node("y").estimator == "enumerate"
    assert r.value == pytest.approx(300.0, rel=1e-9) and r.grad["p"] == pytest.approx(1000.0, rel=1e-9)
    for p, grad in ((0.0, 1000.0), (1.0, 1000.0)):
        r = sg.estimate("E[y, y ~ Binomial(1000, p)]", {"p": p}, n=4, backend=backend, seed=0, enumerate_budget=2000)
        assert r.value == pytest.approx(1000 * p, abs=1e-9) and r.grad["p"] == pytest.approx(grad, rel=1e-9)


# -- every estimator at the boundary, in every dtype: finite, and the value right -------------

BOUNDARY_CASES = [  # (text, params, exact value of E[cost])
    ("E[y, y ~ Bernoulli(p)]", {"p": 0.0}, 0.0),
    ("E[y, y ~ Bernoulli(p)]", {"p": 1.0}, 1.0),
    ("E[y, y ~ Bernoulli(0)]", {}, 0.0),
    ("E[y, y ~ Bernoulli(1)]", {}, 1.0),
    ("E[y, y ~ Bernoulli(logits=l)]", {"l": 200.0}, 1.0),
    ("E[y, y ~ Bernoulli(logits=l)]", {"l": -200.0}, 0.0),
    ("E[sum(y * c), y ~ Categorical(probs=p)]", {"p": np.array([0.0, 1.0]), "c": np.array([1.0, 2.0])}, 2.0),
    ("E[sum(y * c), y ~ Categorical(probs=p)]", {"p": np.array([1.0, 0.0, 0.0]), "c": np.array([1.0, 2.0, 3.0])}, 1.0),
    ("E[sum(y * c), y ~ Categorical(logits=l)]", {"l": np.array([0.0, 200.0]), "c": np.array([1.0, 2.0])}, 2.0),
    ("E[y, y ~ Binomial(3, p)]", {"p": 0.0}, 0.0),
    ("E[y, y ~ Binomial(3, p)]", {"p": 1.0}, 3.0),
    ("E[y, y ~ Geometric(p)]", {"p": 1.0}, 0.0),
]
ESTIMATORS = ["score", "enumerate", "relaxed", "straight_through", "straight_through_gumbel"]


@pytest.mark.parametrize("backend, options", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("text, params, exact", BOUNDARY_CASES, ids=[f"{t}{p}" for t, p, _ in BOUNDARY_CASES])
def test_every_estimator_is_finite_at_the_boundary(backend, options, text, params, exact):
    d = sg.parse(text).bindings[0].dist.name
    wrt = [k for k in params if k != "c"]
    for est in ESTIMATORS:
        if (est != "score" and d in ("Geometric",)) or (est not in ("score", "enumerate") and d == "Binomial"):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sg.BiasWarning)
            r = sg.estimate(text, params, n=256, backend=backend, seed=0, estimators={"y": est}, wrt=wrt, backend_options=options)
        assert np.isfinite(r.value), (est, r.value)
        for k in wrt:
            assert np.all(np.isfinite(r.grad[k])) and np.all(np.isfinite(r.stderr[k])), (est, k, r.grad, r.stderr)
        assert r.value == pytest.approx(exact, abs=1e-6), est


# -- support sizes before allocation ---------------------------------------------------------


def test_planning_a_huge_binomial_allocates_nothing():
    tracemalloc.start()
    try:
        p = sg.plan("E[y, y ~ Binomial(1000000000, 0.5)]")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert p.node("y").estimator == "score"
    assert peak < 4 << 20, peak  # the support (8 GB of float64) is never built


@pytest.mark.parametrize("n", [0, 1, 2, 1023, 1024, 10**6, 10**9, 2**53])
def test_binomial_over_total_counts(backend, n):
    states = n + 1
    p = sg.plan(f"E[y, y ~ Binomial({n}, 0.3)]")
    assert p.node("y").estimator == ("enumerate" if states <= 1024 else "score")
    assert str(states) in p.node("y").reason or states > 1024
    r = sg.estimate(f"E[y, y ~ Binomial({n}, p)]", {"p": 0.3}, n=2000, backend=backend, seed=1)
    assert np.isfinite(r.value) and np.isfinite(r.grad["p"])
    if states <= 1024:
        assert r.value == pytest.approx(0.3 * n, rel=1e-9, abs=1e-12) and r.grad["p"] == pytest.approx(n, rel=1e-9)
    else:  # score: the sample mean of n p = 0.3 n, sd sqrt(n p (1 - p) / 2000)
        assert abs(r.value - 0.3 * n) < 6 * math.sqrt(n * 0.21 / 2000)


@pytest.mark.parametrize("n", ["1e20", "9007199254740994", "1e300"])
def test_unrepresentable_total_count_is_refused_by_name(backend, n, capsys):
    with pytest.raises(sg.StochgradError, match=r"total_count.*at most 2\*\*53"):
        sg.estimate(f"E[y, y ~ Binomial({n}, 0.5)]", n=10, backend=backend, seed=0)
    with pytest.raises(sg.PlanError, match="enumerate requested"):
        sg.plan(f"E[y, y ~ Binomial({n}, 0.5)]", estimators={"y": "enumerate"})
    assert main(["estimate", f"E[y, y ~ Binomial({n}, 0.5)]", "-n", "10", "--backend", backend]) != 0
    err = capsys.readouterr().err
    assert "total_count" in err and "Traceback" not in err


@pytest.mark.parametrize("form", ["probs", "logits"])
def test_empty_categorical_is_a_named_error(backend, form):
    with pytest.raises(sg.StochgradError, match=r"Categorical.*(empty last axis|at least one category)"):
        sg.estimate(f"sum(E[y, y ~ Categorical({form}=p)])", {"p": np.zeros(0)}, n=4, backend=backend, seed=0)
    with pytest.raises(sg.StochgradError, match="at least one category"):
        sg.estimate(f"sum(E[y, y ~ Categorical({form}=p)])", {"p": np.zeros(0)}, n=4, backend=backend, seed=0,
                    estimators={"y": "score"})


@pytest.mark.parametrize("backend", ["autograd", "torch"])
@pytest.mark.parametrize("rate", [1.5e18, 1e19, 1e300])
def test_poisson_rate_beyond_the_samplers_range_is_named(backend, rate):
    """numpy's Poisson sampler raises a bare ValueError near 2**63 and torch's returns NaN above
    about 1e19: a rate past 1e18 is refused by name on both backends."""
    with pytest.raises(sg.StochgradError, match=r"y ~ Poisson\(r\): parameter 'rate' .*must be > 0 and at most 1e\+18"):
        sg.estimate("E[y, y ~ Poisson(r)]", {"r": rate}, n=10, seed=0, backend=backend)


@pytest.mark.parametrize("backend", ["autograd", "torch"])
def test_poisson_at_the_largest_rate_is_finite(backend):
    r = sg.estimate("E[y, y ~ Poisson(r)]", {"r": 1e18}, n=1000, seed=0, backend=backend)
    assert abs(r.value - 1e18) < 6 * 1e9 / np.sqrt(1000) + 1e18 * 1e-12
