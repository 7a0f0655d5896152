"""The delta-method control variates: first order for the score function (:mod:`stochgrad.estimators.delta`,
``estimators={"z": "delta"}``) and second order for pathwise (:mod:`stochgrad.estimators.pathwise_delta`).

Closed forms by hand: for ``z ~ Normal(mu, s)``, ``E[(z - 1)^2 + z^4] = (mu - 1)^2 + s^2 + mu^4 + 6 mu^2 s^2
+ 3 s^4``; ``E[sin z] = sin(mu) e^{-s^2/2}``; ``E|z| = s sqrt(2/pi) e^{-mu^2/(2 s^2)} + mu (1 - 2 Phi(-mu/s))``
(scipy's Phi); ``E[sqrt|z|] = sqrt(s) 2^{1/4} Gamma(3/4) / sqrt(pi)`` at ``mu = 0``; other laws' moments
below.  The exact variance ratio against the score function (large-``n`` limit: baselines are the
means) is integrated with numpy's Gauss-Hermite rule here, never by the code under test.

Power: the variance ratio is asserted against the quadrature (0.34 for ``d/dmu`` at mu = 1, s = 0.2);
a linear cost has *zero* variance under the delta method (the residual vanishes), which a wrong
``grad_theta E[h]`` term (or a wrong sign) would turn into an error of ``|c grad mu|``, thousands of
standard errors (measured: a flipped sign of that term gives d/dmu = -3.52 for the exact 4.48, 235
standard errors); likewise a quadratic cost under ``pathwise_delta``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

import stochgrad as sg
from stochgrad.distributions import lookup
from stochgrad.estimators import Delta

Z = 5.5
SMOOTH = "E[(z - 1)**2 + z**4, z ~ Normal(mu, s)]"


def smooth_grad(mu, s):
    return 2 * (mu - 1) + 4 * mu ** 3 + 12 * mu * s ** 2, 2 * s + 12 * mu ** 2 * s + 12 * s ** 3


def quadrature_ratio(mu, s):
    """Var(delta) / Var(score with a mean baseline), per parameter, by 60-point Gauss-Hermite."""
    x, w = np.polynomial.hermite_e.hermegauss(60)
    w = w / w.sum()
    f = lambda z: (z - 1) ** 2 + z ** 4  # noqa: E731
    z = mu + s * x
    h = f(mu) + (2 * (mu - 1) + 4 * mu ** 3) * (z - mu)
    out = []
    def var(r, score):
        g = (r - (w * r).sum()) * score
        return (w * g * g).sum() - (w * g).sum() ** 2

    for score in (x / s, (x * x - 1) / s):
        out.append(var(f(z) - h, score) / var(f(z), score))
    return out


def run(text, params, est="delta", backend="autograd", n=20000, seed=1):
    return sg.estimate(text, params, n=n, seed=seed, backend=backend, estimators={"z": est})


def test_unbiased_and_lower_variance_on_a_smooth_cost(backend):
    mu, s = 1.0, 0.2
    r, plain = run(SMOOTH, {"mu": mu, "s": s}, backend=backend), run(SMOOTH, {"mu": mu, "s": s}, "score", backend)
    exact = smooth_grad(mu, s)
    for k, name in enumerate(("mu", "s")):
        assert abs(r.grad[name] - exact[k]) <= Z * r.stderr[name], (name, r.grad, exact)
    measured = [(r.stderr[k] / plain.stderr[k]) ** 2 for k in ("mu", "s")]  # 0.33, 0.33 at seed 1
    for got, want in zip(measured, quadrature_ratio(mu, s)):  # 0.336, 0.356
        assert got == pytest.approx(want, abs=0.08) and got < 0.5
    assert "delta-method control variate" in str(r.plan)


def test_linear_cost_is_exact(backend):
    """``f = sum(a * z)``: ``h = f``, so every sample gives ``grad = a`` exactly (MultivariateNormal)."""
    a = np.array([1.5, -2.0, 0.5])
    text = "E[sum(a * z), z ~ MultivariateNormal(m, scale_tril=L)]"
    L = np.array([[1.0, 0, 0], [0.3, 0.8, 0], [-0.2, 0.1, 0.5]])
    r = sg.estimate(text, {"a": a, "m": np.array([0.1, 0.2, -0.3]), "L": L}, n=500, seed=2, backend=backend,
                    estimators={"z": "delta"})
    np.testing.assert_allclose(r.grad["m"], a, atol=1e-9)
    np.testing.assert_allclose(r.stderr["m"], 0.0, atol=1e-9)
    np.testing.assert_allclose(r.grad["L"], 0.0, atol=1e-9)


@settings(max_examples=4, deadline=None)
@given(st.floats(-1.5, 1.5), st.floats(0.2, 1.2))
def test_unbiased_over_parameters(mu, s):
    text = "E[sin(z) + z**2, z ~ Normal(mu, s)]"
    r = run(text, {"mu": mu, "s": s}, n=10000, seed=4)
    e = math.exp(-s * s / 2)
    assert abs(r.grad["mu"] - (math.cos(mu) * e + 2 * mu)) <= Z * r.stderr["mu"]
    assert abs(r.grad["s"] - (-s * math.sin(mu) * e + 2 * s)) <= Z * r.stderr["s"]


LAWS = [  # (cost and law, params, exact gradient by hand)
    ("E[z**2, z ~ Exponential(r)]", {"r": 1.7}, {"r": -4 / 1.7 ** 3}),  # E z^2 = 2 / r^2
    ("E[z**2, z ~ Gumbel(m, b)]", {"m": 0.2, "b": 0.7},  # (m + gamma b)^2 + pi^2 b^2 / 6
     {"m": 2 * (0.2 + np.euler_gamma * 0.7), "b": 2 * np.euler_gamma * (0.2 + np.euler_gamma * 0.7)
      + math.pi ** 2 * 0.7 / 3}),
    ("E[z**2, z ~ Laplace(m, b)]", {"m": 0.4, "b": 0.6}, {"m": 0.8, "b": 4 * 0.6}),  # m^2 + 2 b^2
    ("E[log(z)**2, z ~ LogNormal(m, v)]", {"m": 0.3, "v": 0.5}, {"m": 0.6, "v": 1.0}),  # m^2 + v^2
]


@pytest.mark.parametrize("text, params, exact", LAWS, ids=["exponential", "gumbel", "laplace", "lognormal"])
def test_other_laws_unbiased(backend, text, params, exact):
    r = sg.estimate(text, params, n=20000, seed=6, backend=backend, estimators={"z": "delta"})
    for k, want in exact.items():
        assert abs(r.grad[k] - want) <= Z * r.stderr[k], (k, r.grad[k], want, r.stderr[k])


def test_kinked_cost_unbiased(backend):
    """``|z|`` is not differentiable at 0; the coefficient is whatever autodiff gives: still unbiased."""
    mu, s = 0.3, 1.1
    r = run("E[abs(z), z ~ Normal(mu, s)]", {"mu": mu, "s": s}, backend=backend)
    dmu = 1 - 2 * stats.norm.cdf(-mu / s)
    ds = math.sqrt(2 / math.pi) * math.exp(-mu * mu / (2 * s * s))
    assert abs(r.grad["mu"] - dmu) <= Z * r.stderr["mu"]
    assert abs(r.grad["s"] - ds) <= Z * r.stderr["s"]


def test_infinite_gradient_at_the_mean_falls_back(backend):
    """``sqrt|z|`` at mu = 0 has an infinite slope: the coefficient is dropped (0), still unbiased, finite."""
    s = 0.8
    r = run("E[sqrt(abs(z)), z ~ Normal(mu, s)]", {"mu": 0.0, "s": s}, backend=backend)
    m = math.sqrt(s) * 2 ** 0.25 * special.gamma(0.75) / math.sqrt(math.pi)
    assert np.isfinite(r.grad["mu"]) and np.isfinite(r.grad["s"])
    assert abs(r.grad["mu"]) <= Z * r.stderr["mu"]
    assert abs(r.grad["s"] - m / (2 * s)) <= Z * r.stderr["s"]


def test_reported_stderr_matches_spread_of_runs():
    runs = [run(SMOOTH, {"mu": 1.0, "s": 0.2}, n=2000, seed=20 + k) for k in range(30)]
    g = np.array([r.grad["mu"] for r in runs])
    assert g.std(ddof=1) / np.mean([r.stderr["mu"] for r in runs]) == pytest.approx(1.0, abs=0.3)
    assert abs(g.mean() - smooth_grad(1.0, 0.2)[0]) <= Z * g.std(ddof=1) / np.sqrt(len(g))


def test_with_antithetic_pairs(backend):
    r = run(SMOOTH, {"mu": 1.0, "s": 0.2}, "delta:antithetic=true", backend, n=20001)
    exact = smooth_grad(1.0, 0.2)
    assert abs(r.grad["mu"] - exact[0]) <= Z * r.stderr["mu"]
    assert abs(r.grad["s"] - exact[1]) <= Z * r.stderr["s"]
    assert "antithetic pairs" in str(r.plan)


def test_one_sample_runs_without_a_baseline():
    with pytest.warns(sg.NonFiniteWarning, match="undefined at n = 1"):
        r = run(SMOOTH, {"mu": 1.0, "s": 0.2}, n=1)
    assert np.isfinite(r.grad["mu"])


@pytest.mark.parametrize("text, match", [
    ("E[z, z ~ Bernoulli(p)]", "delta needs a continuous node with a known mean .*this node is Bernoulli"),
    ("E[z, z ~ Gamma(p, 1.0)]", "this node is Gamma"),
    ("E[z * y, z ~ Normal(p, 1.0), y ~ Normal(0.0, 1.0)]", "delta: z must be the only random node"),
])
def test_refusals_name_the_problem(text, match):
    with pytest.raises(sg.PlanError, match=match):
        sg.estimate(text, {"p": 0.4}, n=10, estimators={"z": "delta"})


def test_option_and_capability_refusals():
    with pytest.raises(sg.PlanError, match="delta: baseline must be 'loo' or none"):
        run(SMOOTH, {"mu": 1.0, "s": 0.2}, "delta:baseline=ema", n=10)
    with pytest.raises(sg.PlanError, match="lacks the grad_inside capability"):
        Delta().requires(lookup("Normal"), states=None, capabilities=frozenset({"implicit_reparam"}))


# -- the second-order variant for pathwise ---------------------------------------------------------

def pathwise_quadrature_ratio(mu, s):
    """Var(pathwise_delta) / Var(pathwise) for d/dmu and d/ds of the smooth cost (Gauss-Hermite):
    pathwise gives ``f'(z) (1, eps)``, the control variate removes ``(f'(mu) + f''(mu) s eps) (1, eps)``
    and adds back its mean."""
    x, w = np.polynomial.hermite_e.hermegauss(60)
    w = w / w.sum()
    fp = lambda z: 2 * (z - 1) + 4 * z ** 3  # noqa: E731
    fpp = 2 + 12 * mu ** 2
    z = mu + s * x
    lin = fp(mu) + fpp * s * x

    def var(g):
        return (w * g * g).sum() - (w * g).sum() ** 2

    return [var((fp(z) - lin) * d) / var(fp(z) * d) for d in (1.0, x)]


def test_pathwise_delta_unbiased_and_lower_variance(backend):
    mu, s = 1.0, 0.2
    r = run(SMOOTH, {"mu": mu, "s": s}, "pathwise_delta", backend)
    plain = run(SMOOTH, {"mu": mu, "s": s}, "pathwise", backend)
    exact = smooth_grad(mu, s)
    for k, name in enumerate(("mu", "s")):
        assert abs(r.grad[name] - exact[k]) <= Z * r.stderr[name], (name, r.grad, exact)
    assert r.value == plain.value  # the value is the plain Monte Carlo estimate
    measured = [(r.stderr[k] / plain.stderr[k]) ** 2 for k in ("mu", "s")]  # 0.053, 0.071 at seed 1
    for got, want in zip(measured, pathwise_quadrature_ratio(mu, s)):
        assert got == pytest.approx(want, rel=0.25) and got < 0.2


def test_pathwise_delta_quadratic_cost_is_exact(backend):
    """A quadratic cost (cross term included) equals its expansion: the exact gradient, no variance."""
    text = "E[sum(a * z) + sum(z * z * w) + z[0] * z[1], z ~ Normal(m, s)]"
    p = {"a": np.array([1.0, 2, 3]), "w": np.array([0.5, -1, 2]), "m": np.array([0.1, 0.2, 0.3]),
         "s": np.array([0.5, 1.0, 1.5])}
    r = sg.estimate(text, p, n=100, seed=1, backend=backend, estimators={"z": "pathwise_delta"})
    m = p["m"]
    np.testing.assert_allclose(r.grad["m"], p["a"] + 2 * p["w"] * m + np.array([m[1], m[0], 0.0]), atol=1e-9)
    np.testing.assert_allclose(r.grad["s"], 2 * p["w"] * p["s"], atol=1e-9)
    np.testing.assert_allclose(r.stderr["m"], 0.0, atol=1e-9)


@settings(max_examples=4, deadline=None)
@given(st.floats(-1.5, 1.5), st.floats(0.2, 1.2))
def test_pathwise_delta_unbiased_over_parameters(mu, s):
    text = "E[sin(z) + exp(z), z ~ Normal(mu, s)]"
    r = run(text, {"mu": mu, "s": s}, "pathwise_delta", n=10000, seed=4)
    e, g = math.exp(-s * s / 2), math.exp(mu + s * s / 2)
    assert abs(r.grad["mu"] - (math.cos(mu) * e + g)) <= Z * r.stderr["mu"]
    assert abs(r.grad["s"] - (-s * math.sin(mu) * e + s * g)) <= Z * r.stderr["s"]


def test_pathwise_delta_refusals():
    with pytest.raises(sg.PlanError, match="pathwise_delta needs a Normal node .*this node is Laplace"):
        sg.estimate("E[z**2, z ~ Laplace(p, 1.0)]", {"p": 0.4}, n=10, estimators={"z": "pathwise_delta"})
    with pytest.raises(sg.PlanError, match="pathwise_delta: z has 65 elements per sample"):
        sg.estimate("E[sum(z**2), z ~ Normal(m, 1.0)]", {"m": np.zeros(65)}, n=10,
                    estimators={"z": "pathwise_delta"})
    with pytest.raises(sg.PlanError, match="lacks the hvp_inside capability"):
        sg.estimators.PathwiseDelta().requires(lookup("Normal"), states=None, capabilities=frozenset())
