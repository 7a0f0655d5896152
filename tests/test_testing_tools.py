"""stochgrad.testing: the tools users get, checked on right and deliberately wrong inputs."""

import numpy as np
import pytest

import stochgrad as sg
from stochgrad.distributions import InverseCDF, Param, positive
from stochgrad.testing import assert_unbiased, assert_within_stderr, check_pathwise, z_threshold


def test_z_threshold_is_bonferroni():
    assert z_threshold(0.05) == pytest.approx(1.959964, abs=1e-6)
    assert z_threshold(1e-6, 10) == pytest.approx(z_threshold(1e-7), rel=1e-12)


def test_assert_within_stderr():
    assert_within_stderr(1.0, 1.04, 0.01)  # 4 standard errors: within 4.89
    with pytest.raises(AssertionError, match=r"more than 4.89 standard errors"):
        assert_within_stderr(1.0, 1.06, 0.01)
    with pytest.raises(AssertionError, match="not finite"):
        assert_within_stderr(np.nan, 1.0, 0.01)


def test_assert_unbiased(backend):
    r = assert_unbiased("E[z**2, z ~ Normal(mu, sigma)]", {"mu": 1.0, "sigma": 2.0}, exact_value=5.0,
                        exact_grad={"mu": 2.0, "sigma": 4.0}, backend=backend)
    assert r.n == 20_000
    with pytest.raises(AssertionError, match="d/dsigma"):
        assert_unbiased("E[z**2, z ~ Normal(mu, sigma)]", {"mu": 1.0, "sigma": 2.0}, exact_grad={"sigma": 4.4},
                        backend=backend)


@pytest.mark.parametrize("dist, params", [
    ("Normal(m, s)", {"m": 0.3, "s": 1.2}),
    ("Weibull(lam, k)", {"lam": 1.5, "k": 2.0}),
    ("Gumbel(m, s)", {"m": -0.5, "s": 0.7}),
    ("Gamma(a, r)", {"a": 1.7, "r": 2.0}),
    ("Kumaraswamy(a, b)", {"a": 2.0, "b": 3.0}),
])
def test_check_pathwise_accepts_correct_samplers(dist, params):
    check_pathwise(dist, params, n=50_000)


class _WrongSampler(InverseCDF):
    """Claims a pathwise sampler, but its inverse CDF is that of a different law (scale squared)."""

    name = "WrongRayleigh"
    params = (Param("scale", positive),)

    def icdf(self, B, p, u):
        return p["scale"] ** 2 * B.fn["sqrt"](-2.0 * B.fn["log1p"](-u))

    def log_prob(self, B, p, x):
        s = p["scale"]
        return B.fn["log"](x) - 2.0 * B.fn["log"](s) - x * x / (2.0 * s * s)


def test_check_pathwise_catches_a_false_sampler():
    sg.register_distribution(_WrongSampler())
    with pytest.raises(AssertionError, match="pathwise vs score function"):
        check_pathwise("WrongRayleigh(s)", {"s": 1.5}, costs=("z",), n=50_000)


def test_params_for_expression_respects_constraints():
    from hypothesis import given, settings

    from stochgrad.testing.strategies import params_for_expression

    text = "E[z + u + y, z ~ Normal(mu, sigma), u ~ Uniform(lo, hi), y ~ Bernoulli(p)] + c"

    @settings(max_examples=50)
    @given(params_for_expression(text))
    def check(values):
        assert set(values) == {"mu", "sigma", "lo", "hi", "p", "c"}
        assert values["sigma"] > 0 and 0 <= values["p"] <= 1 and values["lo"] < values["hi"]
        r = sg.estimate(text, values, n=4, seed=0)
        assert np.isfinite(r.value)

    check()


def test_params_for_expression_with_a_bound_variable_as_a_uniform_bound():
    """A Uniform whose bound is a random variable, not a parameter, constrains nothing (the
    strategy used to look the variable up among the parameters and fail)."""
    from hypothesis import given, settings

    from stochgrad.testing.strategies import params_for_expression

    @settings(max_examples=20)
    @given(params_for_expression("E[x, z ~ Exponential(1), x ~ Uniform(lo, z)] + E[u, w ~ Normal(0, 1), u ~ Uniform(w, hi)]"))
    def check(values):
        assert set(values) == {"lo", "hi"} and all(np.isfinite(v) for v in values.values())

    check()


class _StoppedSampler(InverseCDF):
    """The right law, but the sampler hides its dependence on the parameter from autodiff."""

    name = "StoppedRayleigh"
    params = (Param("scale", positive),)

    def icdf(self, B, p, u):
        return B.stop_gradient(p["scale"]) * B.fn["sqrt"](-2.0 * B.fn["log1p"](-u))

    def log_prob(self, B, p, x):
        s = p["scale"]
        return B.fn["log"](x) - 2.0 * B.fn["log"](s) - x * x / (2.0 * s * s)


def test_check_pathwise_catches_a_hidden_dependence_by_finite_differences():
    sg.register_distribution(_StoppedSampler())
    with pytest.raises(AssertionError, match="finite differences of the same-noise expectation"):
        check_pathwise("StoppedRayleigh(s)", {"s": 1.5}, costs=("z",), n=20_000)
