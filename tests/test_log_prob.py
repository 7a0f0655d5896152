"""log_prob(D, x) and entropy(D): against scipy.stats, hand-derived ELBOs and numerical integration."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special, stats

import stochgrad as sg
from stochgrad import fastparse, parser
from stochgrad.testing import assert_estimate
from _parsecheck import spans

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def fd(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2 * h)


def kumaraswamy_logpdf(x, a, b):  # by hand: log(a b x^(a-1) (1 - x^a)^(b-1))
    return math.log(a * b) + (a - 1) * math.log(x) + (b - 1) * math.log1p(-x**a)


pos = st.floats(0.3, 4.0)
real = st.floats(-2.0, 2.0)
unit = st.floats(0.05, 0.95)

#: (DSL text with parameters a, b, value x; parameter strategies; x strategy given the parameters; scipy log density)
SCALAR = [
    ("Normal(a, b)", (real, pos), lambda a, b: st.floats(-4, 4), lambda x, a, b: stats.norm(a, b).logpdf(x)),
    ("LogNormal(a, b)", (real, pos), lambda a, b: st.floats(0.05, 5),
     lambda x, a, b: stats.lognorm(b, scale=math.exp(a)).logpdf(x)),
    ("Exponential(a)", (pos,), lambda a: st.floats(0.0, 5), lambda x, a: stats.expon(scale=1 / a).logpdf(x)),
    ("Weibull(a, b)", (pos, pos), lambda a, b: st.floats(0.05, 5),
     lambda x, a, b: stats.weibull_min(b, scale=a).logpdf(x)),
    ("Uniform(a, a + b)", (real, pos), lambda a, b: st.floats(a + 1e-3 * b, a + b * (1 - 1e-3)),
     lambda x, a, b: stats.uniform(a, b).logpdf(x)),
    ("Laplace(a, b)", (real, pos), lambda a, b: st.floats(-4, 4), lambda x, a, b: stats.laplace(a, b).logpdf(x)),
    ("Gumbel(a, b)", (real, pos), lambda a, b: st.floats(-3, 3), lambda x, a, b: stats.gumbel_r(a, b).logpdf(x)),
    ("Logistic(a, b)", (real, pos), lambda a, b: st.floats(-4, 4), lambda x, a, b: stats.logistic(a, b).logpdf(x)),
    ("Cauchy(a, b)", (real, pos), lambda a, b: st.floats(-4, 4), lambda x, a, b: stats.cauchy(a, b).logpdf(x)),
    ("Kumaraswamy(a, b)", (pos, pos), lambda a, b: st.floats(0.05, 0.95), kumaraswamy_logpdf),
    ("Gamma(a, b)", (pos, pos), lambda a, b: st.floats(0.05, 5), lambda x, a, b: stats.gamma(a, scale=1 / b).logpdf(x)),
    ("Beta(a, b)", (pos, pos), lambda a, b: st.floats(0.05, 0.95), lambda x, a, b: stats.beta(a, b).logpdf(x)),
    ("Bernoulli(a)", (unit,), lambda a: st.sampled_from([0.0, 1.0]), lambda x, a: stats.bernoulli(a).logpmf(x)),
    ("Bernoulli(logits=a)", (real,), lambda a: st.sampled_from([0.0, 1.0]),
     lambda x, a: stats.bernoulli(special.expit(a)).logpmf(x)),
    ("Poisson(a)", (pos,), lambda a: st.integers(0, 12).map(float), lambda x, a: stats.poisson(a).logpmf(x)),
    ("Binomial(7, a)", (unit,), lambda a: st.integers(0, 7).map(float), lambda x, a: stats.binom(7, a).logpmf(x)),
    ("Geometric(a)", (unit,), lambda a: st.integers(0, 12).map(float),
     lambda x, a: stats.geom(a, loc=-1).logpmf(x)),  # failures before the first success
]


@pytest.mark.parametrize("law, strategies, xs, reference", SCALAR, ids=[c[0] for c in SCALAR])
@settings(max_examples=6, deadline=None)
@given(data=st.data())
def test_log_prob_matches_scipy(law, strategies, xs, reference, data):
    names = "ab"[: len(strategies)]
    params = {k: data.draw(s, label=k) for k, s in zip(names, strategies)}
    x = data.draw(xs(*params.values()), label="x")
    discrete = sg.DISTRIBUTIONS[law.split("(")[0]].discrete
    given = {**params, "x": x}
    for backend in ("autograd", "torch"):
        r = sg.estimate(f"log_prob({law}, x)", given, n=2, backend=backend, seed=0)
        exact = reference(x, *params.values())
        assert r.value == pytest.approx(exact, rel=1e-9, abs=1e-9)
        for k in given if not discrete else names:  # d/dx too for a density
            if k == "x" and law.startswith(("Uniform", "Exponential")) and x <= 1e-3:
                continue
            h = 1e-6 * max(1.0, abs(given[k]))
            slope = fd(lambda v: reference(*[v if n == k else given[n] for n in ("x", *names)]), given[k], h)
            assert r.grad[k] == pytest.approx(slope, rel=1e-4, abs=1e-5), (backend, k)


def test_log_prob_event_laws_match_scipy(backend):
    p = np.array([0.2, 0.5, 0.3])
    xs = np.eye(3)[[1, 0, 2, 1]]  # four one-hot values: a batch of 4
    r = sg.estimate("log_prob(Categorical(probs=p), x)", {"p": p, "x": xs}, n=2, backend=backend, seed=0)
    assert np.allclose(r.value, [stats.multinomial(1, p).logpmf(x) for x in xs], rtol=1e-12)
    l = np.array([0.4, -1.0, 0.3])
    r = sg.estimate("sum(log_prob(Categorical(logits=l), x))", {"l": l, "x": xs}, n=2, backend=backend, seed=0)
    q = special.softmax(l)
    assert r.value == pytest.approx(sum(stats.multinomial(1, q).logpmf(x) for x in xs), rel=1e-12)
    # d/dl sum_i log softmax(l)_{k_i} = counts - 4 softmax(l)
    assert np.allclose(r.grad["l"], xs.sum(0) - 4 * q, rtol=1e-10)
    alpha, x = np.array([1.5, 0.7, 3.0]), np.array([0.2, 0.1, 0.7])
    r = sg.estimate("log_prob(Dirichlet(a), x)", {"a": alpha, "x": x}, n=2, backend=backend, seed=0)
    assert r.value == pytest.approx(stats.dirichlet(alpha).logpdf(x), rel=1e-10)
    slope = [fd(lambda v, i=i: stats.dirichlet(np.where(np.arange(3) == i, v, alpha)).logpdf(x), alpha[i])
             for i in range(3)]
    assert np.allclose(r.grad["a"], slope, rtol=1e-5)


def test_log_prob_broadcasts_batch_shapes(backend):
    mu, x = np.array([0.0, 1.0, -1.0]), np.array([[0.5], [2.0]])  # (3,) against (2, 1): (2, 3)
    r = sg.estimate("log_prob(Normal(mu, 2), x)", {"mu": mu, "x": x}, n=2, backend=backend, seed=0)
    assert np.allclose(r.value, stats.norm(mu, 2).logpdf(x), rtol=1e-12)
    assert r.grad["mu"].shape == (3,) and np.allclose(r.grad["mu"], ((x - mu) / 4).sum(0))
    assert sg.plan("log_prob(Normal(mu, 2), x)", shapes={"mu": (3,), "x": (2, 1)}).root is not None


@pytest.mark.parametrize("text, x", [
    ("log_prob(Exponential(2), x)", -0.5), ("log_prob(Uniform(0, 1), x)", 1.5), ("log_prob(Beta(2, 3), x)", 1.2),
    ("log_prob(Gamma(2, 1), x)", -1.0), ("log_prob(LogNormal(0, 1), x)", -2.0), ("log_prob(Bernoulli(0.3), x)", 0.5),
    ("log_prob(Bernoulli(0), x)", 1.0), ("log_prob(Bernoulli(1), x)", 0.0), ("log_prob(Poisson(2), x)", -1.0),
    ("log_prob(Poisson(2), x)", 1.5), ("log_prob(Binomial(3, 0.4), x)", 4.0), ("log_prob(Geometric(0.5), x)", -1.0),
    ("log_prob(Kumaraswamy(2, 2), x)", 1.5), ("log_prob(Weibull(1, 2), x)", -1.0),
])
def test_out_of_support_is_minus_infinity(backend, text, x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sg.NonFiniteWarning)
        r = sg.estimate(text, {"x": x}, n=2, backend=backend, seed=0)
    assert r.value == -math.inf


def test_out_of_support_events_are_minus_infinity(backend):
    p, xs = np.array([0.2, 0.8]), np.array([[0.5, 0.5], [1.0, 1.0], [0.0, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sg.NonFiniteWarning)
        r = sg.estimate("log_prob(Categorical(probs=p), x)", {"p": p, "x": xs}, n=2, backend=backend, seed=0)
        assert list(r.value[:2]) == [-math.inf, -math.inf] and r.value[2] == pytest.approx(math.log(0.8))
        r = sg.estimate("log_prob(Categorical(probs=p), x)", {"p": np.array([1.0, 0.0]), "x": np.array([0.0, 1.0])},
                        n=2, backend=backend, seed=0)
        assert r.value == -math.inf
        d = sg.estimate("log_prob(Dirichlet(a), x)", {"a": np.array([2.0, 3.0]), "x": np.array([[0.3, 0.3], [1.2, -0.2]])},
                        n=2, backend=backend, seed=0)
        assert list(d.value) == [-math.inf, -math.inf]


def test_non_finite_is_reported_not_raised(backend):
    with pytest.warns(sg.NonFiniteWarning):
        sg.estimate("log_prob(Exponential(1), x)", {"x": -1.0}, n=2, backend=backend, seed=0)


def test_bad_parameters_are_checked_as_for_sampled_nodes(backend):
    with pytest.raises(sg.StochgradError, match=r"log_prob\(Normal\(0, s\), x\).*'scale'.*> 0"):
        sg.estimate("log_prob(Normal(0, s), x)", {"s": -1.0, "x": 0.0}, n=2, backend=backend, seed=0)
    with pytest.raises(sg.StochgradError, match=r"'probs'.*\[0, 1\]"):
        sg.estimate("E[log_prob(Bernoulli(p), z), z ~ Normal(0, 1)]", {"p": 1.5}, n=2, backend=backend, seed=0)
    with pytest.raises(sg.StochgradError, match=r"entropy\(Gamma\(a, 1\)\).*'concentration'"):
        sg.estimate("entropy(Gamma(a, 1))", {"a": 0.0}, n=2, backend=backend, seed=0)


def test_shape_mismatch_names_the_expression(backend):
    with pytest.raises(sg.StochgradError, match=r"`log_prob\(Normal\(mu, 1\), x\)`: the value x of shape \(2,\) does"
                                                r" not fit the distribution's parameters \(loc \(3,\)"):
        sg.estimate("log_prob(Normal(mu, 1), x)", {"mu": np.zeros(3), "x": np.zeros(2)}, n=2, seed=0, backend=backend)


# ------------------------------------------------------------------ differentiability in x


def test_continuous_x_is_pathwise_and_discrete_x_is_not(backend):
    r = sg.estimate("E[log_prob(Normal(0, 1), z), z ~ Normal(mu, 1)]", {"mu": 0.7}, n=20_000, backend=backend, seed=0)
    assert r.plan.node("z").estimator == "pathwise"
    assert_estimate(r, value=-HALF_LOG_2PI - 0.5 * (0.7**2 + 1), grad={"mu": -0.7})
    p = sg.plan("E[log_prob(Bernoulli(0.4), z), z ~ Normal(mu, 1)]")
    assert p.node("z").estimator == "score"
    assert "mass function `log_prob(Bernoulli(0.4), z)`" in p.node("z").reason
    # a discrete law's own parameters stay differentiable: E[log p(y)] over an enumerated y
    r = sg.estimate("E[log_prob(Bernoulli(q), y), y ~ Bernoulli(p)]", {"p": 0.3, "q": 0.6}, n=4, backend=backend, seed=0)
    assert r.value == pytest.approx(0.3 * math.log(0.6) + 0.7 * math.log(0.4), rel=1e-12)
    assert r.grad["q"] == pytest.approx(0.3 / 0.6 - 0.7 / 0.4, rel=1e-12)
    assert r.grad["p"] == pytest.approx(math.log(0.6) - math.log(0.4), rel=1e-12)


# ------------------------------------------------------------------ the ELBO as one expression

ELBO = "E[log_prob(Normal(z, 1), x) + log_prob(Normal(0, 1), z) - log_prob(Normal(mu, s), z), z ~ Normal(mu, s)]"
ELBO_KL = "E[log_prob(Normal(z, 1), x), z ~ Normal(mu, s)] - KL(Normal(mu, s) || Normal(0, 1))"


def elbo_exact(mu, s, x):
    """E_q[log N(x; z, 1)] + E_q[log N(z; 0, 1)] + H[q] for q = N(mu, s^2), by hand:
    (-c - ((x - mu)^2 + s^2) / 2) + (-c - (mu^2 + s^2) / 2) + (c + 1/2 + log s), c = log(2 pi) / 2."""
    value = -HALF_LOG_2PI - 0.5 * (x - mu) ** 2 - 0.5 * mu**2 - s**2 + 0.5 + math.log(s)
    return value, {"mu": (x - mu) - mu, "s": -2 * s + 1 / s, "x": -(x - mu)}


@pytest.mark.parametrize("mu, s, x", [(0.3, 0.8, 1.2), (-1.0, 0.3, 2.0)])
def test_log_prob_elbo_is_the_kl_elbo_and_the_closed_form(backend, mu, s, x):
    params = {"mu": mu, "s": s, "x": x}
    a = sg.estimate(ELBO, params, n=40_000, backend=backend, seed=3)
    b = sg.estimate(ELBO_KL, params, n=40_000, backend=backend, seed=3)
    value, grad = elbo_exact(mu, s, x)
    assert_estimate(a, value=value, grad=grad)
    assert_estimate(b, value=value, grad=grad)
    se = math.hypot(a.value_stderr, b.value_stderr)
    assert abs(a.value - b.value) < 5 * se
    for k in params:
        assert abs(a.grad[k] - b.grad[k]) < 5 * math.hypot(a.stderr[k], b.stderr[k]) + 1e-12, k
    assert a.plan.node("z").estimator == "pathwise"


def test_log_prob_elbo_with_score_function_and_embedded_form(backend):
    mu, s, x, z = sg.symbols("mu s x z")
    e = sg.E(sg.log_prob(sg.Normal(z, 1), x) + sg.log_prob(sg.Normal(0, 1), z) - sg.log_prob(sg.Normal(mu, s), z),
             z=sg.Normal(mu, s))
    assert e == sg.parse(ELBO) and str(e) == ELBO
    params = {"mu": 0.3, "s": 0.8, "x": 1.2}
    r = sg.estimate(e, params, n=100_000, backend=backend, seed=1, estimators={"z": "score"})
    value, grad = elbo_exact(**params)
    assert_estimate(r, value=value, grad=grad)


# ------------------------------------------------------------------ entropy

ENTROPIES = [
    ("Normal(a, b)", {"a": 0.3, "b": 1.7}, lambda a, b: stats.norm(a, b).entropy()),
    ("LogNormal(a, b)", {"a": 0.3, "b": 0.6}, lambda a, b: stats.lognorm(b, scale=math.exp(a)).entropy()),
    ("Exponential(a)", {"a": 2.5}, lambda a: stats.expon(scale=1 / a).entropy()),
    ("Weibull(a, b)", {"a": 1.3, "b": 2.2}, lambda a, b: stats.weibull_min(b, scale=a).entropy()),
    ("Uniform(a, b)", {"a": -0.5, "b": 2.0}, lambda a, b: stats.uniform(a, b - a).entropy()),
    ("Laplace(a, b)", {"a": 0.3, "b": 0.7}, lambda a, b: stats.laplace(a, b).entropy()),
    ("Gumbel(a, b)", {"a": 0.3, "b": 1.4}, lambda a, b: stats.gumbel_r(a, b).entropy()),
    ("Logistic(a, b)", {"a": 0.3, "b": 0.4}, lambda a, b: stats.logistic(a, b).entropy()),
    ("Cauchy(a, b)", {"a": 0.3, "b": 2.1}, lambda a, b: stats.cauchy(a, b).entropy()),
    ("Gamma(a, b)", {"a": 2.5, "b": 1.5}, lambda a, b: stats.gamma(a, scale=1 / b).entropy()),
    ("Beta(a, b)", {"a": 2.5, "b": 0.7}, lambda a, b: stats.beta(a, b).entropy()),
    ("Bernoulli(a)", {"a": 0.3}, lambda a: stats.bernoulli(a).entropy()),
    ("Bernoulli(logits=a)", {"a": -0.8}, lambda a: stats.bernoulli(special.expit(a)).entropy()),
    ("Geometric(a)", {"a": 0.35}, lambda a: stats.geom(a).entropy()),
    ("Kumaraswamy(a, b)",  {"a": 2.0, "b": 3.5},  # no scipy law: -int p log p by quadrature
     lambda a, b: -integrate.quad(lambda x: math.exp(kumaraswamy_logpdf(x, a, b)) * kumaraswamy_logpdf(x, a, b),
                                  0, 1, epsabs=1e-13, epsrel=1e-12)[0]),
]


@pytest.mark.parametrize("law, params, reference", ENTROPIES, ids=[c[0] for c in ENTROPIES])
def test_entropy_closed_forms_match_scipy(backend, law, params, reference):
    r = sg.estimate(f"entropy({law})", params, n=2, backend=backend, seed=0)
    assert r.plan.notes == (f"{sg.parse(f'entropy({law})')}: closed form",)
    assert r.value == pytest.approx(reference(**params), rel=1e-8, abs=1e-10)
    for k in params:
        h = 1e-5 * max(1.0, abs(params[k]))
        slope = fd(lambda v: reference(**{**params, k: v}), params[k], h)
        assert r.grad[k] == pytest.approx(slope, rel=1e-4, abs=1e-6), k


def test_entropy_of_event_laws_and_batches(backend):
    l = np.array([[0.1, 0.5, -1.0], [2.0, 0.0, 0.0]])
    r = sg.estimate("entropy(Categorical(logits=l))", {"l": l}, n=2, backend=backend, seed=0)
    assert np.allclose(r.value, [stats.multinomial(1, special.softmax(row)).entropy() for row in l], rtol=1e-10)
    p = np.array([0.0, 0.25, 0.75])  # a zero probability adds 0 log 0 = 0
    r = sg.estimate("entropy(Categorical(probs=p))", {"p": p}, n=2, backend=backend, seed=0)
    assert r.value == pytest.approx(stats.multinomial(1, p).entropy(), rel=1e-10)
    alpha = np.array([1.5, 0.7, 3.0])
    r = sg.estimate("entropy(Dirichlet(a))", {"a": alpha}, n=2, backend=backend, seed=0)
    assert r.value == pytest.approx(stats.dirichlet(alpha).entropy(), rel=1e-10)
    slope = [fd(lambda v, i=i: stats.dirichlet(np.where(np.arange(3) == i, v, alpha)).entropy(), alpha[i]) for i in range(3)]
    assert np.allclose(r.grad["a"], slope, rtol=1e-5)
    mu = np.array([0.0, 1.0, 2.0])  # the batch shape is the parameters' broadcast, not the scale's alone
    r = sg.estimate("sum(entropy(Normal(mu, 2)))", {"mu": mu}, n=2, backend=backend, seed=0)
    assert r.value == pytest.approx(3 * stats.norm(0, 2).entropy(), rel=1e-12)


def test_monte_carlo_entropy_where_there_is_no_closed_form(backend):
    r = sg.estimate("entropy(Poisson(r))", {"r": 3.0}, n=100_000, backend=backend, seed=0)
    assert r.plan.notes == ("entropy(Poisson(r)): Monte Carlo, E[-log p(x)] with _entropy0 ~ Poisson(r) (plan above)",)
    assert r.plan.node("_entropy0").estimator == "score"
    slope = fd(lambda v: stats.poisson(v).entropy(), 3.0, 1e-4)
    assert_estimate(r, value=stats.poisson(3.0).entropy(), grad={"r": slope})
    # a literal total_count: the Monte Carlo form is enumerated, so exact
    r = sg.estimate("entropy(Binomial(6, p))", {"p": 0.35}, n=4, backend=backend, seed=0)
    assert r.plan.node("_entropy0").estimator == "enumerate"
    assert r.value == pytest.approx(stats.binom(6, 0.35).entropy(), rel=1e-12)
    assert r.grad["p"] == pytest.approx(fd(lambda v: stats.binom(6, v).entropy(), 0.35), rel=1e-6)


def test_entropy_inside_an_objective(backend):
    # E[log N(x; z, 1)] + H[q], the ELBO with the entropy term in closed form, for a Gamma prior-free toy
    r = sg.estimate("E[log_prob(Normal(z, 1), x), z ~ Normal(mu, s)] + log_prob(Normal(0, 1), mu) + entropy(Normal(mu, s))",
                    {"mu": 0.2, "s": 0.5, "x": 1.0}, n=20_000, backend=backend, seed=0)
    value = (-HALF_LOG_2PI - 0.5 * (0.8**2 + 0.25)) + (-HALF_LOG_2PI - 0.02) + stats.norm(0, 0.5).entropy()
    assert_estimate(r, value=value, grad={"mu": 0.8 - 0.2, "s": -0.5 + 2.0, "x": -0.8})


# ------------------------------------------------------------------ text: errors, printing, the fast path


@pytest.mark.parametrize("text, message, column", [
    ("log_prob(x, y)", "log_prob needs a distribution as its first argument, got `x`", 10),
    ("log_prob(Normal(0, 1))", r"log_prob\(D, x\) takes 2 arguments, got 1", 1),
    ("entropy(Normal(0, 1), 2)", r"entropy\(D\) takes 1 argument, got 2", 1),
    ("log_prob(Normal(0, 1), Normal(0, 1))", "unknown function 'Normal': Normal is a distribution", 24),
    ("log_prob(Nomal(0, 1), x)", "unknown distribution 'Nomal'.*did you mean 'Normal'", 10),
    ("log_prob(Normal(0, 1) + 1, x)", "unknown function 'Normal': Normal is a distribution", 10),
    ("log_prob(exp(1), x)", "unknown distribution 'exp'", 10),
    ("log_prob(Normal(0, 1), x, y=1)", "takes no keyword arguments", 1),
])
def test_bad_density_calls_name_the_problem_and_place(text, message, column):
    with pytest.raises(sg.ParseError, match=message) as info:
        sg.parse(text)
    assert info.value.column == column




TEXTS = [
    ELBO, ELBO_KL, "entropy(Normal(mu, s))", "log_prob(Categorical(probs=p), x)", "sum(entropy(Dirichlet(a)))",
    "E[log(mean(exp(log_prob(Normal(0, 1), z) - log_prob(Normal(m, s), z)), axis=0)), z ~ iid(5, Normal(m, s))]",
    "E[sum(z), z ~ iid(3, Bernoulli(logits=l))]", "-log_prob(Normal(0, 1), x) ** 2", "log_prob( Gamma ( a ,b ) , x)",
    "log_prob(Normal(E[z, z ~ Normal(0, 1)], 1), x)", "E[z, z ~ iid(2, Normal(log_prob(Normal(0, 1), m), 1))]",
]


@pytest.mark.parametrize("text", TEXTS)
def test_fast_path_builds_what_lark_builds_and_prints_back(text):
    fast = fastparse.fast_parse(text, {}, parser.MAX_DEPTH)
    slow = parser.parse_with_lark(text)
    assert fast is not None and fast == slow and spans(fast) == spans(slow)
    assert sg.parse(str(slow)) == slow


SOUP = ["log_prob", "entropy", "iid", "(", ")", ",", "Normal", "0", "1", "2", "x", "z", "~", "E", "[", "]", "+",
        "Bernoulli", "-", "2.5", "=", "||", "KL", "sum", "axis"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(SOUP), max_size=20), st.integers(0, len(TEXTS) - 1), st.data())
def test_fast_path_never_accepts_what_lark_refuses(tokens, which, data):
    for text in ("".join(tokens), " ".join(tokens)):
        fast = fastparse.fast_parse(text, {}, parser.MAX_DEPTH)
        if fast is not None:
            slow = parser.parse_with_lark(text)
            assert fast == slow and spans(fast) == spans(slow), text
    base = TEXTS[which]
    i = data.draw(st.integers(0, len(base)))
    for text in (base[:i] + data.draw(st.sampled_from(SOUP)) + base[i:], base[:i] + base[i + 1:]):
        fast = fastparse.fast_parse(text, {}, parser.MAX_DEPTH)
        if fast is not None:
            slow = parser.parse_with_lark(text)
            assert fast == slow and spans(fast) == spans(slow), text


def test_a_user_function_cannot_hide_log_prob_entropy_or_iid():
    for name in ("log_prob", "entropy", "iid"):
        with pytest.raises(sg.ParseError, match=f"user function '{name}' would hide the built-in"):
            sg.parse("f(x)", functions={name: lambda x: x})
