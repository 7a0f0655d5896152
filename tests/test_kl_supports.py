"""KL across supports: undefined (an error naming both) between laws on different spaces,
exactly +inf where supp p reaches outside supp q, exactly +inf for q_k = 0 < p_k, and
0 log 0 = 0.  References: ``scipy.stats.entropy(p, q)`` (inf for a zero q_k under p_k > 0)
and numerical integration, never the code under test."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

import stochgrad as sg
from stochgrad.testing import assert_estimate

CONFIGS = [("autograd", {}), ("torch", {}), ("torch", {"dtype": "float32"})]
CONFIG_IDS = ["autograd", "torch-float64", "torch-float32"]
#: probabilities: exact 0 and 1, and normal numbers of either dtype (a probability below the smallest
#: normal number counts as that number: the clip of the logs)
unit = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(1e-30, 1.0))


@pytest.mark.parametrize("text, params", [
    ("KL(Normal(m, 1) || Bernoulli(0.5))", {"m": 0.0}),
    ("KL(Bernoulli(0.5) || Normal(0, 1))", {}),
    ("KL(Poisson(2) || Exponential(1))", {}),
    ("KL(Beta(2, 3) || Bernoulli(0.5))", {}),
    ("KL(Poisson(1) || Categorical(probs=p))", {"p": np.array([0.5, 0.5])}),
    ("KL(Dirichlet(a) || Categorical(probs=p))", {"a": np.ones(2), "p": np.array([0.5, 0.5])}),
    ("KL(Categorical(probs=p) || Categorical(probs=q))", {"p": np.ones(3) / 3, "q": np.array([1.0])}),
    ("KL(Categorical(logits=p) || Categorical(logits=q))", {"p": np.zeros((2, 3)), "q": np.zeros((2, 1))}),
    ("KL(Dirichlet(a) || Dirichlet(b))", {"a": np.ones(3), "b": np.ones(1)}),  # Monte Carlo pair: checked too
])
def test_laws_on_different_spaces_are_an_error_naming_both(backend, text, params):
    e = sg.parse(text)
    with pytest.raises(sg.PlanError, match="different spaces") as info:
        sg.estimate(text, params, n=4, backend=backend, seed=0)
    assert str(e.p) in str(info.value) and str(e.q) in str(info.value)
    if not params:  # literal parameters: known to the planner alone
        with pytest.raises(sg.PlanError, match="different spaces"):
            sg.plan(text)


@pytest.mark.parametrize("text", [
    "KL(Normal(0, 1) || Exponential(1))",  # the negative half has no q-mass
    "KL(Normal(0, 1) || Uniform(-1, 1))",
    "KL(Laplace(0, 1) || Gamma(2, 1))",
    "KL(Normal(0, 1) || Beta(2, 2))",
    "KL(Poisson(2) || Bernoulli(0.5))",
    "KL(Geometric(0.5) || Binomial(3, 0.5))",
    "KL(Binomial(3, 0.4) || Binomial(2, 0.5))",
    "KL(Uniform(-1, 1) || Exponential(1))",  # literal ends of a Uniform decide too
    "KL(Beta(2, 2) || Uniform(0, 0.5))",
])
def test_support_outside_q_is_exactly_infinite(backend, text):
    r = sg.estimate(text, n=100, backend=backend, seed=0)
    assert r.value == math.inf
    assert "+inf" in str(r.plan) and not r.plan.nodes  # no Monte Carlo of a meaningless log-ratio


def test_the_other_way_round_is_finite(backend):
    # KL(Exponential(r) || Normal(0, 1)) = -H(Exp(r)) - E log N(x) = log r - 1 + log(2 pi) / 2 + E[x^2] / 2, E[x^2] = 2 / r^2
    r_ = 1.5
    expected = math.log(r_) - 1 + 0.5 * math.log(2 * math.pi) + 1 / r_**2
    quad = integrate.quad(lambda x: stats.expon(scale=1 / r_).pdf(x) * (stats.expon(scale=1 / r_).logpdf(x)
                                                                       - stats.norm.logpdf(x)), 0, 60)[0]
    assert quad == pytest.approx(expected, rel=1e-8)  # the hand derivation, checked by integration
    r = sg.estimate("KL(Exponential(r) || Normal(0, 1))", {"r": r_}, n=40_000, backend=backend, seed=3)
    assert_estimate(r, value=expected, grad={"r": 1 / r_ - 2 / r_**3})
    # KL(Uniform(0.5, 1) || Exponential(1)) = -log(1 / 2) - E[log 1 - x] = log 2 + 3/4: inside, so finite
    r = sg.estimate("KL(Uniform(0.5, 1) || Exponential(1))", n=40_000, backend=backend, seed=4)
    assert_estimate(r, value=math.log(2) + 0.75)
    for text in ("KL(Bernoulli(0.3) || Binomial(3, 0.5))", "KL(Binomial(2, 0.3) || Binomial(3, 0.5))"):
        assert np.isfinite(sg.estimate(text, n=1000, backend=backend, seed=0).value)


@st.composite
def simplex_with_zeros(draw, k):
    w = np.array(draw(st.lists(st.one_of(st.just(0.0), st.floats(0.01, 1.0)), min_size=k, max_size=k)))
    if w.sum() == 0:
        w[draw(st.integers(0, k - 1))] = 1.0
    return w / w.sum()


def _close(options):
    return dict(rtol=1e-5, atol=1e-5) if options.get("dtype") == "float32" else dict(rtol=1e-10, atol=1e-12)


def _as_given(x, options):
    """The parameters as the backend holds them (float32 rounds 1 - 1e-16 to 1)."""
    return np.asarray(x, dtype=np.float32).astype(float) if options.get("dtype") == "float32" else np.asarray(x)


def _check(value, expected, options):
    value, expected = np.atleast_1d(value), np.atleast_1d(expected)
    assert np.array_equal(np.isinf(value), np.isinf(expected)), (value, expected)
    assert np.all(value[np.isinf(value)] > 0)
    np.testing.assert_allclose(value[~np.isinf(value)], expected[~np.isinf(expected)], **_close(options))


@pytest.mark.parametrize("backend, options", CONFIGS, ids=CONFIG_IDS)
@settings(max_examples=12)
@given(data=st.data(), k=st.integers(2, 4), m=st.integers(1, 3))
def test_categorical_kl_matches_scipy_entropy(backend, options, data, k, m):
    p = np.stack([data.draw(simplex_with_zeros(k)) for _ in range(m)])
    q = np.stack([data.draw(simplex_with_zeros(k)) for _ in range(m)])
    r = sg.estimate("KL(Categorical(probs=p) || Categorical(probs=q))", {"p": p, "q": q}, n=2, backend=backend,
                    seed=0, backend_options=options)
    _check(r.value, [stats.entropy(a, b) for a, b in zip(_as_given(p, options), _as_given(q, options))], options)
    finite = np.all(np.isfinite(np.atleast_1d(r.value)))
    assert not finite or all(np.all(np.isfinite(g)) for g in r.grad.values())
    # logits for p (every p_k > 0): never infinite against a positive q, and +inf against a zero q_k
    logits = np.log(np.maximum(p, 0.05))
    pl = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    r = sg.estimate("KL(Categorical(logits=l) || Categorical(probs=q))", {"l": logits, "q": q}, n=2,
                    backend=backend, seed=0, backend_options=options)
    _check(r.value, [stats.entropy(a, b) for a, b in zip(pl, _as_given(q, options))], options)


@pytest.mark.parametrize("backend, options", CONFIGS, ids=CONFIG_IDS)
@settings(max_examples=12)
@given(p=st.lists(unit, min_size=1, max_size=4),
       data=st.data())
def test_bernoulli_kl_matches_scipy_entropy(backend, options, p, data):
    q = data.draw(st.lists(unit, min_size=len(p),
                           max_size=len(p)))
    p, q = np.array(p), np.array(q)
    r = sg.estimate("KL(Bernoulli(p) || Bernoulli(q))", {"p": p, "q": q}, n=2, backend=backend, seed=0, backend_options=options)
    pg, qg = _as_given(p, options), _as_given(q, options)
    _check(r.value, [stats.entropy([a, 1 - a], [b, 1 - b]) for a, b in zip(pg, qg)], options)


@pytest.mark.parametrize("text, expected", [
    ("KL(Bernoulli(0.5) || Bernoulli(0))", math.inf),
    ("KL(Bernoulli(0.5) || Bernoulli(1))", math.inf),
    ("KL(Bernoulli(0) || Bernoulli(0))", 0.0),  # 0 log 0 = 0
    ("KL(Bernoulli(1) || Bernoulli(1))", 0.0),
    ("KL(Bernoulli(0) || Bernoulli(0.5))", math.log(2)),
    ("KL(Bernoulli(logits=2) || Bernoulli(0))", math.inf),
])
def test_bernoulli_kl_at_literal_boundaries(backend, text, expected):
    value = sg.estimate(text, n=2, backend=backend, seed=0).value
    assert value == expected if math.isinf(expected) else value == pytest.approx(expected, abs=1e-12)
