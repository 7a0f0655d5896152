"""Estimators against hand-derived closed forms, on both backends.

Tolerances come from the reported standard errors (stochgrad.testing: family-wise
false-failure rate 1e-6).  Closed forms are derived by hand in the comments or
taken from scipy.
"""

import math

import numpy as np
import pytest
from scipy.stats import norm

import stochgrad as sg
from stochgrad.testing import assert_estimate

N = 40_000


def test_comparison_uses_score_function_and_matches_density(backend):
    # E[z > 0] = Phi(mu), so d/dmu = phi(mu); pathwise would report exactly 0.
    mu = 0.3
    r = sg.estimate("E[z > 0, z ~ Normal(mu, 1)]", {"mu": mu}, n=N, backend=backend, seed=1)
    assert r.plan.node("z").estimator == "score"
    assert_estimate(r, value=norm.cdf(mu), grad={"mu": norm.pdf(mu)})
    assert r.grad["mu"] > 10 * r.stderr["mu"]  # a zero gradient would fail


def test_forced_pathwise_through_comparison_is_silently_zero(backend):
    r = sg.estimate("E[z > 0, z ~ Normal(mu, 1)]", {"mu": 0.3}, n=1000, backend=backend, seed=1,
                    estimators={"z": "pathwise"})
    assert r.grad["mu"] == 0.0 and r.plan.node("z").biased


@pytest.mark.parametrize("estimator", ["pathwise", "score", sg.Score(baseline=None)])
def test_normal_square_every_estimator(backend, estimator):
    # E[z^2] = mu^2 + sigma^2  =>  grad = (2 mu, 2 sigma)
    mu, sigma = 1.5, 0.8
    r = sg.estimate("E[z**2, z ~ Normal(mu, sigma)]", {"mu": mu, "sigma": sigma}, n=N, backend=backend,
                    seed=2, estimators={"z": estimator})
    assert_estimate(r, value=mu**2 + sigma**2, grad={"mu": 2 * mu, "sigma": 2 * sigma})


def test_leave_one_out_baseline_reduces_variance(backend):
    # A large offset inside the cost inflates the plain score-function variance; LOO removes most of it.
    # E[(z + 100)^2] = (mu + 100)^2 + 1, gradient 2 (mu + 100).  With eps = z - mu, the plain estimator's
    # per-sample sd is about (mu + 100)^2 ~ 1e4; with the baseline about 2 (mu + 100) sqrt(3) ~ 350.
    text = "E[(z + 100)**2, z ~ Normal(mu, 1)]"
    loo = sg.estimate(text, {"mu": 0.5}, n=N, backend=backend, seed=3, estimators={"z": "score"})
    plain = sg.estimate(text, {"mu": 0.5}, n=N, backend=backend, seed=3, estimators={"z": sg.Score(baseline=None)})
    assert_estimate(loo, grad={"mu": 201.0})
    assert_estimate(plain, grad={"mu": 201.0})
    assert plain.stderr["mu"] > 10 * loo.stderr["mu"]


def test_constant_terms_get_no_score_term(backend):
    # z**2 + 100 splits into terms; the constant multiplies no score function, so no variance from it.
    r = sg.estimate("E[z**2 + 100, z ~ Normal(mu, 1)]", {"mu": 0.5}, n=N, backend=backend, seed=3,
                    estimators={"z": sg.Score(baseline=None)})
    r0 = sg.estimate("E[z**2, z ~ Normal(mu, 1)]", {"mu": 0.5}, n=N, backend=backend, seed=3,
                     estimators={"z": sg.Score(baseline=None)})
    assert r.grad["mu"] == pytest.approx(r0.grad["mu"], rel=1e-12)


@pytest.mark.parametrize("overrides", [{}, {"z": "score"}, {"x": "score"}, {"z": "score", "x": "score"}])
def test_dependent_bindings(backend, overrides):
    # x | z ~ N(z, s), z ~ N(mu, 1)  =>  E[x^2] = mu^2 + 1 + s^2
    r = sg.estimate("E[x**2, z ~ Normal(mu, 1), x ~ Normal(z, s)]", {"mu": 0.7, "s": 1.3}, n=N,
                    backend=backend, seed=4, estimators=overrides)
    assert_estimate(r, value=0.7**2 + 1 + 1.3**2, grad={"mu": 1.4, "s": 2.6})


@pytest.mark.parametrize("overrides", [{}, {"z": "score"}, {"x": "score"}, {"z": "score", "x": "score"}])
def test_nested_expectation(backend, overrides):
    # E_z[E_x[x^2]] with x ~ N(z, 1), z ~ N(mu, s): mu^2 + s^2 + 1
    r = sg.estimate("E[E[x**2, x ~ Normal(z, 1)], z ~ Normal(mu, s)]", {"mu": -0.4, "s": 0.9}, n=N,
                    backend=backend, seed=5, estimators=overrides)
    assert_estimate(r, value=0.16 + 0.81 + 1, grad={"mu": -0.8, "s": 1.8})


def test_score_node_downstream_of_pathwise_node(backend):
    # x ~ N(z, 1), z ~ N(mu, 1) => x ~ N(mu, sqrt 2): d/dmu P(x > 0) = phi(mu / sqrt2) / sqrt2
    mu = 0.2
    r = sg.estimate("E[x > 0, z ~ Normal(mu, 1), x ~ Normal(z, 1)]", {"mu": mu}, n=N, backend=backend, seed=6)
    assert [n.estimator for n in r.plan.nodes] == ["pathwise", "score"]
    assert_estimate(r, grad={"mu": norm.pdf(mu / math.sqrt(2)) / math.sqrt(2)})


def test_sum_of_terms_each_with_own_score_term(backend):
    # E[z^2 - x^2] = mu^2 + 1 - nu^2 - 1
    r = sg.estimate("E[z**2 - x**2 + 3, z ~ Normal(mu, 1), x ~ Normal(nu, 1)]", {"mu": 0.5, "nu": -1.0},
                    n=N, backend=backend, seed=7, estimators={"z": "score", "x": "score"})
    assert_estimate(r, value=0.25 - 1.0 + 3, grad={"mu": 1.0, "nu": 2.0})


def test_vector_parameters_and_broadcasting(backend):
    mu = np.array([[0.5], [1.0], [-2.0]])  # (3, 1)
    sigma = np.array([0.5, 2.0])  # (2,)
    r = sg.estimate("E[z**2, z ~ Normal(mu, sigma)]", {"mu": mu, "sigma": sigma}, n=N, backend=backend, seed=8)
    assert np.shape(r.value) == (3, 2)
    assert r.grad["mu"].shape == (3, 1) and r.grad["sigma"].shape == (2,)
    # grad of the summed value: d/dmu_i = sum_j 2 mu_i, d/dsigma_j = sum_i 2 sigma_j
    assert_estimate(r, value=mu**2 + sigma**2, grad={"mu": 2 * mu * 2, "sigma": 2 * sigma * 3})


def test_reductions_over_logical_axes(backend):
    mu = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]])
    r = sg.estimate("E[sum(z**2, axis=-1) + mean(z), z ~ Normal(mu, 1)]", {"mu": mu}, n=N, backend=backend, seed=9)
    assert np.shape(r.value) == (2,)
    exact_value = (mu**2 + 1).sum(axis=-1) + mu.mean()
    assert_estimate(r, value=exact_value, grad={"mu": 2 * mu + 2 / mu.size})


def test_deterministic_parts_have_zero_standard_error(backend):
    r = sg.estimate("mu**2 + E[z, z ~ Normal(mu, 1)]", {"mu": 2.0}, n=1000, backend=backend, seed=10)
    assert r.grad["mu"] == pytest.approx(5.0) and r.stderr["mu"] == 0.0
    r = sg.estimate("3 * mu", {"mu": 2.0}, n=10, backend=backend, seed=0)
    assert r.value == 6.0 and r.grad["mu"] == pytest.approx(3.0, rel=1e-12)


class Rayleigh(sg.InverseCDF):
    """Defined only by its inverse CDF and log density: pathwise sampling is derived."""

    name = "RayleighTest"
    params = (sg.Param("scale", sg.distributions.positive),)

    def icdf(self, B, p, u):
        return p["scale"] * B.fn["sqrt"](-2.0 * B.fn["log1p"](-u))

    def log_prob(self, B, p, x):
        s = p["scale"]
        return B.fn["log"](x) - 2.0 * B.fn["log"](s) - x * x / (2.0 * s * s)


def test_user_defined_inverse_cdf_distribution_is_pathwise(backend):
    sg.register_distribution(Rayleigh())
    # Rayleigh: E[z] = s sqrt(pi/2), E[z^2] = 2 s^2
    text = "E[z + z**2, z ~ RayleighTest(s)]"
    assert sg.plan(text).node("z").estimator == "pathwise"
    s = 1.7
    for est in ("pathwise", "score"):
        r = sg.estimate(text, {"s": s}, n=N, backend=backend, seed=11, estimators={"z": est})
        assert_estimate(r, value=s * math.sqrt(math.pi / 2) + 2 * s**2, grad={"s": math.sqrt(math.pi / 2) + 4 * s})


def test_single_sample_has_no_baseline_and_nan_stderr(backend):
    r = sg.estimate("E[z > 0, z ~ Normal(mu, 1)]", {"mu": 0.0}, n=1, backend=backend, seed=0)
    assert np.isnan(r.stderr["mu"]) and np.isfinite(r.grad["mu"])
