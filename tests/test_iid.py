"""z ~ iid(K, D): K independent copies on a new first axis; IWAE bounds, score terms, enumeration."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import stochgrad as sg
from conftest import grad_of
from stochgrad.testing import assert_estimate


def iwae(k):
    # z ~ N(0, 1), x | z ~ N(z, 1), q = N(m, s): log (1/K) sum_k p(x, z_k) / q(z_k)
    return (f"E[log(mean(exp(log_prob(Normal(z, 1), x) + log_prob(Normal(0, 1), z) - log_prob(Normal(m, s), z)),"
            f" axis=0)), z ~ iid({k}, Normal(m, s))]")


ELBO = "E[log_prob(Normal(z, 1), x) + log_prob(Normal(0, 1), z) - log_prob(Normal(m, s), z), z ~ Normal(m, s)]"


def test_iwae_bound_increases_towards_the_log_evidence(backend):
    params = {"m": 0.0, "s": 1.0, "x": 1.5}
    evidence = stats.norm(0, math.sqrt(2)).logpdf(1.5)  # x ~ N(0, 2) marginally
    # ELBO by hand: -log(2 pi)/2 - ((x - m)^2 + s^2)/2 - (m^2 + s^2)/2 + 1/2 + log s
    elbo = -0.5 * math.log(2 * math.pi) - 0.5 * (1.5**2 + 1) - 0.5 + 0.5
    bounds = {k: sg.estimate(iwae(k), params, n=20_000, backend=backend, seed=7) for k in (1, 5, 50)}
    assert_estimate(bounds[1], value=elbo)
    e = sg.estimate(ELBO, params, n=20_000, backend=backend, seed=7)
    assert bounds[1].value == pytest.approx(e.value, abs=5 * math.hypot(e.value_stderr, bounds[1].value_stderr))
    values = [bounds[k].value for k in (1, 5, 50)]
    ses = [bounds[k].value_stderr for k in (1, 5, 50)]
    assert values[0] + 5 * math.hypot(ses[0], ses[1]) < values[1]
    assert values[1] + 5 * math.hypot(ses[1], ses[2]) < values[2]
    assert values[2] < evidence + 5 * ses[2]
    assert evidence - values[2] < evidence - values[1]  # closer at every step
    assert bounds[50].plan.node("z").shape == (50,)
    assert "z ~ iid(50, Normal(m, s)): pathwise" in str(bounds[50].plan)


def test_iwae_at_the_exact_posterior_is_the_evidence_with_no_variance(backend):
    x = 1.5  # posterior N(x / 2, 1/2): every weight p(x, z) / q(z) equals p(x)
    params = {"m": x / 2, "s": math.sqrt(0.5), "x": x}
    r = sg.estimate(iwae(5), params, n=20_000, backend=backend, seed=0)
    assert r.value == pytest.approx(stats.norm(0, math.sqrt(2)).logpdf(x), abs=1e-12)
    assert r.value_stderr < 1e-12
    # the bound's maximum: zero gradient in q's parameters in expectation (the pathwise estimate still
    # varies there, through the score term of log q: Roeder et al. 2017), d/dx log N(x; 0, 2) in x
    assert_estimate(r, grad={"m": 0.0, "s": 0.0, "x": -x / 2})


@pytest.mark.parametrize("k", [1, 3, 10])
def test_score_function_gradient_of_iid_bernoulli(backend, k):
    r = sg.estimate(f"E[sum(z), z ~ iid({k}, Bernoulli(p))]", {"p": 0.3}, n=40_000, backend=backend, seed=2,
                    estimators={"z": "score"})
    assert r.plan.node("z").estimator == "score"
    assert_estimate(r, value=k * 0.3, grad={"p": k})


def test_enumeration_of_iid_bernoulli_is_exact(backend):
    # E[(z_0 + z_1)^2] = Var + mean^2 = 2 p (1 - p) + 4 p^2 = 2 p + 2 p^2
    p = 0.3
    r = sg.estimate("E[sum(z) ** 2, z ~ iid(2, Bernoulli(p))]", {"p": p}, n=8, backend=backend, seed=0)
    assert r.plan.node("z").estimator == "enumerate"
    assert "exact sum over 4 states" in r.plan.node("z").reason
    assert r.value == pytest.approx(2 * p + 2 * p**2, rel=1e-12)
    assert r.grad["p"] == pytest.approx(2 + 4 * p, rel=1e-12)
    assert r.value_stderr == 0.0


def test_enumeration_of_iid_categorical(backend):
    p, w = np.array([0.2, 0.5, 0.3]), np.array([1.0, -2.0, 4.0])
    r = sg.estimate("E[sum(z * w) ** 2, z ~ iid(2, Categorical(probs=p))]", {"p": p, "w": w}, n=4,
                    backend=backend, seed=0)
    assert "exact sum over 9 states" in r.plan.node("z").reason
    m1, m2 = p @ w, p @ w**2  # (w_a + w_b)^2 over two independent draws: 2 E[w^2] + 2 E[w]^2
    assert r.value == pytest.approx(2 * m2 + 2 * m1**2, rel=1e-12)
    # d/dp_i of sum_ij p_i p_j (w_i + w_j)^2 / (sum p)^2, the probabilities normalized: by finite differences
    def f(q):
        q = q / q.sum()
        return float(q @ (w[:, None] + w[None, :]) ** 2 @ q)
    slope = [(f(p + 1e-6 * np.eye(3)[i]) - f(p - 1e-6 * np.eye(3)[i])) / 2e-6 for i in range(3)]
    assert np.allclose(r.grad["p"], slope, rtol=1e-6)


def test_pathwise_per_copy(backend):
    # E[sum_k z_k^2] = K (mu^2 + s^2)
    r = sg.estimate("E[sum(z ** 2), z ~ iid(4, Normal(mu, s))]", {"mu": 0.5, "s": 1.5}, n=20_000,
                    backend=backend, seed=1)
    assert r.plan.node("z").estimator == "pathwise"
    assert_estimate(r, value=4 * (0.25 + 2.25), grad={"mu": 4 * 2 * 0.5, "s": 4 * 2 * 1.5})
    r = sg.estimate("E[sum(z), z ~ iid(3, Gamma(a, b))]", {"a": 2.0, "b": 0.5}, n=20_000, backend=backend, seed=1)
    assert_estimate(r, value=3 * 4.0, grad={"a": 3 / 0.5, "b": -3 * 2.0 / 0.25})


@settings(max_examples=8, deadline=None)
@given(k=st.integers(1, 6), p=st.floats(0.05, 0.95), mu=st.floats(-2, 2))
def test_linear_costs_over_any_number_of_copies(k, p, mu):
    for backend in ("autograd", "torch"):
        # enumerated: 2^k joint states, exact; pathwise: each sample's gradient of sum(z) is k exactly
        r = sg.estimate(f"E[sum(z), z ~ iid({k}, Bernoulli(p))]", {"p": p}, n=4, backend=backend, seed=0)
        assert r.value == pytest.approx(k * p, rel=1e-12) and r.grad["p"] == pytest.approx(k, rel=1e-12)
        assert f"exact sum over {2**k} states" in r.plan.node("z").reason
        r = sg.estimate(f"E[sum(z), z ~ iid({k}, Normal(mu, 2))]", {"mu": mu}, n=4_000, backend=backend, seed=0)
        assert r.grad["mu"] == pytest.approx(k, rel=1e-12)
        assert_estimate(r, value=k * mu)


def test_iid_after_an_enumerated_node(backend):
    # E[y sum(z)] = q 3 mu: z is drawn once per enumerated state of y, independently
    r = sg.estimate("E[sum(z) * y, y ~ Bernoulli(q), z ~ iid(3, Normal(mu, 1))]", {"q": 0.4, "mu": 0.7}, n=20_000,
                    backend=backend, seed=0)
    assert r.plan.node("y").estimator == "enumerate" and r.plan.node("z").estimator == "pathwise"
    assert_estimate(r, value=0.4 * 2.1, grad={"q": 2.1, "mu": 1.2})


def test_copies_are_independent_and_identically_distributed(backend):
    # the mean of z_0 z_1 is mu^2 (independent), of z_0^2 is mu^2 + 1, each copy with the law of D
    r = sg.estimate("E[(sum(z) ** 2 - sum(z ** 2)) / 2, z ~ iid(2, Normal(mu, 1))]", {"mu": 0.8}, n=40_000,
                    backend=backend, seed=3)
    assert_estimate(r, value=0.64, grad={"mu": 1.6})


def test_nested_monte_carlo(backend):
    # E[(mean of m draws)^2] = mu^2 + 1/m: the inner mean is over the copies' axis
    r = sg.estimate("E[mean(x, axis=0) ** 2, x ~ iid(4, Normal(mu, 1))]", {"mu": 0.7}, n=40_000, backend=backend, seed=4)
    assert_estimate(r, value=0.49 + 0.25, grad={"mu": 1.4})


def test_iid_of_a_batch_puts_the_copies_first(backend):
    mu = np.array([0.5, -1.0])
    r = sg.estimate("E[sum(mean(z, axis=0) * w), z ~ iid(3, Normal(mu, 1))]", {"mu": mu, "w": np.array([1.0, 2.0])},
                    n=2_000, backend=backend, seed=0)
    assert r.plan.node("z").shape == (3, 2)
    assert_estimate(r, value=0.5 - 2.0, grad={"mu": np.array([1.0, 2.0])})
    p = sg.plan("E[sum(z), z ~ iid(3, Categorical(logits=l))]", shapes={"l": (4,)})
    assert p.node("z").shape == (3, 4)


def test_score_terms_sum_log_q_over_the_copies(backend):
    # only the product's gradient needs log q of both copies: d/dmu E[z_0 z_1] = 2 mu
    r = sg.estimate("E[(sum(z) ** 2 - sum(z ** 2)) / 2, z ~ iid(2, Normal(mu, 1))]", {"mu": 0.8}, n=200_000,
                    backend=backend, seed=5, estimators={"z": "score"})
    assert_estimate(r, value=0.64, grad={"mu": 1.6})


def test_embedded_form_and_printing():
    mu, z = sg.symbols("mu z")
    e = sg.E(sg.sum(z), z=sg.iid(3, sg.Normal(mu, 1)))
    assert str(e) == "E[sum(z), z ~ iid(3, Normal(mu, 1))]" and sg.parse(str(e)) == e
    assert sg.iid(3, sg.Normal(mu, 1)) != sg.iid(4, sg.Normal(mu, 1)) != sg.Normal(mu, 1)
    assert hash(sg.iid(3, sg.Normal(mu, 1))) == hash(sg.parse("E[z, z ~ iid(3, Normal(mu, 1))]").bindings[0].dist)
    for bad in (0, -2, 2.5, True):
        with pytest.raises(sg.StochgradError, match="number of copies"):
            sg.iid(bad, sg.Normal(0, 1))
    with pytest.raises(sg.StochgradError, match="needs a distribution"):
        sg.iid(2, mu)


@pytest.mark.parametrize("text, message, column", [
    ("E[z, z ~ iid(0, Normal(0, 1))]", "the number of copies K must be a positive integer literal, got `0`", 14),
    ("E[z, z ~ iid(k, Normal(0, 1))]", "positive integer literal, got `k`", 14),
    ("E[z, z ~ iid(2.5, Normal(0, 1))]", "positive integer literal, got `2.5`", 14),
    ("E[z, z ~ iid(-3, Normal(0, 1))]", "positive integer literal, got `-3`", 14),
    ("E[z, z ~ iid(1 + 1, Normal(0, 1))]", "positive integer literal, got `1 \\+ 1`", 14),
    ("E[z, z ~ iid(2)]", r"iid\(K, D\) takes 2 arguments", 10),
    ("E[z, z ~ iid(2, x)]", "iid needs a distribution as its second argument, got `x`", 17),
    ("E[z, z ~ iid(2, iid(3, Normal(0, 1)))]", "iid\\(K, D\\) takes one law D", 17),
    ("KL(iid(2, Normal(0, 1)) || Normal(0, 1))", "KL\\(p \\|\\| q\\) takes the laws themselves", 4),
])
def test_bad_iid_names_the_problem_and_place(text, message, column):
    with pytest.raises(sg.ParseError, match=message) as info:
        sg.parse(text)
    assert info.value.column == column


def test_compiled_objective_with_iid_and_log_prob(backend):
    # the IWAE bound as a compiled objective, differentiated by the framework, near the estimate
    params = {"m": 0.2, "s": 0.9, "x": 1.0}
    f = sg.compile(iwae(5), n=20_000, backend=backend, seed=0)
    r = sg.estimate(iwae(5), params, n=20_000, backend=backend, seed=1)
    if backend == "torch":
        import torch

        m = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
        out = f(m=m, s=0.9, x=1.0)
        out.backward()
        value, grad = float(out.detach()), float(m.grad)
    else:
        value, grad = float(f(m=0.2, s=0.9, x=1.0)), float(grad_of(backend)(lambda m: f(m=m, s=0.9, x=1.0))(0.2))
    assert abs(value - r.value) < 6 * r.value_stderr * math.sqrt(2)
    assert abs(grad - r.grad["m"]) < 6 * r.stderr["m"] * math.sqrt(2)


def test_score_over_iid_categorical_copies(backend):
    # E[sum_k w . z_k] = K softmax(l) . w; d/dl = K q (w - q . w)
    l, w = np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0])
    q = np.exp(l) / np.exp(l).sum()
    r = sg.estimate("E[sum(z * w), z ~ iid(4, Categorical(logits=l))]", {"l": l, "w": w}, n=40_000, backend=backend,
                    seed=0, estimators={"z": "score"})
    assert r.plan.node("z").shape == (4, 3)
    assert_estimate(r, value=4 * q @ w, grad={"l": 4 * q * (w - q @ w), "w": 4 * q})


def test_a_per_copy_cost_pairs_each_copy_with_its_own_score(backend):
    """``sum(z * w)`` over the K copies of ``z ~ iid(K, Bernoulli(p))`` is a sum of per-copy terms: the
    plan pairs each copy's score with its own term and names them copies, not examples; the gradient
    is the closed form ``d/dp sum_k w_k p = sum(w)`` within 6 standard errors."""
    w = np.array([1.0, 2.0, 3.0])
    r = sg.estimate("E[sum(z * w), z ~ iid(3, Bernoulli(p))]", {"p": 0.3, "w": w}, n=4000, seed=2,
                    backend=backend, estimators={"z": "score"})
    assert "plate over 3 iid copies (inferred" in str(r.plan) and "examples (" not in str(r.plan)
    assert abs(float(r.grad["p"]) - w.sum()) < 6 * float(r.stderr["p"])
