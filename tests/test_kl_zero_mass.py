"""Monte Carlo KL(p || q) where q has no mass at a sample of p is +inf, not a clipped finite number.

The pairs below have no closed form, and the supports leave the verdict to the parameter values
(a parameter end, a probability of 0 or 1), so ``E_p[log p(x) - log q(x)]`` is estimated sample
by sample (stochgrad.zeromass).  Truths: scipy.special.rel_entr over the enumerated states (its
``0 log 0 = 0`` and ``p log(p / 0) = inf``), and hand closed forms for Uniform against Uniform and
Exponential.  Gradients of the +inf cases must hold no NaN (the infinity carries no derivative).
"""

import math

import numpy as np
import pytest
from scipy import special, stats

import stochgrad as sg
from stochgrad.testing import assert_estimate

DTYPES = ["float32", "float64"]


def _kl(text, params, backend, dtype="float64", n=4000, seed=0):
    return sg.estimate(text, params, n=n, seed=seed, backend=backend, backend_options={"dtype": dtype})


def _no_nan_gradient(r, wrt=None):
    for k, g in r.grad.items():
        if wrt is not None and k not in wrt:
            continue
        assert not np.isnan(g).any(), f"d/d{k} is NaN: {g}"


@pytest.mark.filterwarnings("ignore::stochgrad.NonFiniteWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("q", [0.0, 0.2, 1.0])
def test_bernoulli_against_binomial_is_exact(backend, dtype, p, q):
    """p enumerated (2 states): the value is exact, sum_k p(k) log(p(k) / q(k)).  Where it is +inf the
    derivative in q holds no NaN; the one in p multiplies the infinite terms by the weights' derivatives
    (d/dp sum_k p(k) f(k) = f(1) - f(0), inf - inf where both are infinite) and is not asserted."""
    truth = special.rel_entr(stats.bernoulli.pmf([0, 1], p), stats.binom.pmf([0, 1], 3, q)).sum()
    r = _kl("KL(Bernoulli(p) || Binomial(3, q))", {"p": p, "q": q}, backend, dtype, n=8)
    if math.isinf(truth):
        assert r.value == math.inf
        _no_nan_gradient(r, wrt=("q",))
    else:
        assert r.value == pytest.approx(truth, rel=1e-5 if dtype == "float32" else 1e-10, abs=1e-6)


@pytest.mark.filterwarnings("ignore::stochgrad.NonFiniteWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c,d", [(-1.0, 2.0), (0.0, 1.0), (0.0, 0.5), (0.5, 3.0), (-2.0, -1.0)])
def test_uniform_against_uniform_with_parameter_ends(backend, dtype, c, d):
    """KL(U(0, 1) || U(c, d)) = log(d - c) if [0, 1] is inside [c, d], else +inf (was -log(1)+log(d-c))."""
    r = _kl("KL(Uniform(a, b) || Uniform(c, d))", {"a": 0.0, "b": 1.0, "c": c, "d": d}, backend, dtype)
    if c <= 0.0 and d >= 1.0:
        assert r.value == pytest.approx(math.log(d - c), rel=1e-6, abs=1e-6)
        assert r.grad["d"] == pytest.approx(1.0 / (d - c), rel=1e-5)
    else:
        assert r.value == math.inf
        _no_nan_gradient(r)


@pytest.mark.filterwarnings("ignore::stochgrad.NonFiniteWarning")
@pytest.mark.parametrize("a", [-0.5, 0.0, 0.25])
def test_uniform_against_exponential(backend, a):
    """KL(U(a, b) || Exp(r)) = -log(b - a) - log r + r (a + b) / 2 for a >= 0; +inf for a < 0 (mass on
    the negative reals, where the exponential density formula would still give a finite number)."""
    b, rate = 1.5, 2.0
    r = _kl("KL(Uniform(a, b) || Exponential(r))", {"a": a, "b": b, "r": rate}, backend, n=20_000)
    if a < 0:
        assert r.value == math.inf
        _no_nan_gradient(r)
    else:
        assert_estimate(r, value=-math.log(b - a) - math.log(rate) + rate * (a + b) / 2,
                        grad={"r": -1.0 / rate + (a + b) / 2})


@pytest.mark.filterwarnings("ignore::stochgrad.NonFiniteWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("q", ["LogNormal(c, e)", "Gamma(c, e)", "Weibull(c, e)", "Beta(c, e)",
                               "Kumaraswamy(c, e)"])
def test_outside_a_fixed_support_is_inf_without_nan(backend, dtype, q):
    """Samples of U(-0.5, 1.5) below 0 (or above 1): a log of a negative number in q's formula would
    give NaN; the sample is evaluated inside q's support instead, and the ratio is +inf."""
    r = _kl(f"KL(Uniform(a, b) || {q})", {"a": -0.5, "b": 1.5, "c": 2.0, "e": 1.5}, backend, dtype, n=256)
    assert r.value == math.inf
    _no_nan_gradient(r)


def test_the_warning_names_the_infinite_log_ratio():
    ratio = r"`log Uniform\(a, b\)\(_kl0\) - log Uniform\(c, d\)\(_kl0\)` is \+inf"
    with pytest.warns(sg.NonFiniteWarning, match=ratio):
        _kl("KL(Uniform(a, b) || Uniform(c, d))", {"a": 0.0, "b": 1.0, "c": 0.0, "d": 0.5}, "autograd")


def test_finite_pairs_are_unchanged(backend):
    """Away from zero mass nothing changes: KL(Geometric(p) || Geometric(q)) = log(p / q) +
    ((1 - p) / p) log((1 - p) / (1 - q)) (by hand; the scipy series agrees), and
    d/dq = -1/q + (1 - p) / (p (1 - q))."""
    p, q = 0.5, 0.3
    k = np.arange(400)
    truth = math.log(p / q) + (1 - p) / p * math.log((1 - p) / (1 - q))
    assert truth == pytest.approx(special.rel_entr(stats.geom.pmf(k + 1, p), stats.geom.pmf(k + 1, q)).sum())
    r = _kl("KL(Geometric(p) || Geometric(q))", {"p": p, "q": q}, backend, n=20_000, seed=2)
    assert_estimate(r, value=truth, grad={"q": -1 / q + (1 - p) / (p * (1 - q))})
