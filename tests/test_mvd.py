"""Measure-valued derivatives (``estimators={"z": "mvd"}``) against closed forms derived by hand,
scipy quadrature and numpy brute-force sums written here -- never from the code under test.

Gaussian closed forms (as in mc_gradients' test suite), for ``z ~ N(mu, sigma)``:
``E[z] = mu``; ``E[z^2] = mu^2 + sigma^2``; ``E[z^3] = mu^3 + 3 mu sigma^2``;
``E[cos z] = cos(mu) exp(-sigma^2 / 2)``; ``P(z > 0) = Phi(mu / sigma)`` (a step cost: pathwise reports
0 there, biased).  Other laws: ``d/db E[f] = int f(x) d/db p(x) dx`` by ``scipy.integrate.quad``
(Gamma's rate, ``d/db p = (a / b - x) p``), ``sum_k f(k) p(k) (k / l - 1)`` (Poisson), and the
``2^D`` states of a Bernoulli vector.  Every check is a z-test at 6 standard errors of the estimate;
``test_a_wrong_constant_fails`` shows the sample sizes detect a constant ``c`` off by 10 %
(the Gaussian gradients' standard errors are about 0.4 % of the gradient at n = 20,000).
"""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

import stochgrad as sg
from stochgrad.backend import get_backend
from stochgrad.distributions import lookup
from stochgrad.errors import PlanError
from stochgrad.estimators import MeasureValued, mvd_laws
from stochgrad.noise import NoiseSource

MU, SIGMA = 0.6, 1.3
E_SIN = math.exp(-SIGMA**2 / 2)
GAUSS = {  # cost -> (value, d/dmu, d/dsigma), by hand
    "z": (MU, 1.0, 0.0),
    "z**2": (MU**2 + SIGMA**2, 2 * MU, 2 * SIGMA),
    "z**3": (MU**3 + 3 * MU * SIGMA**2, 3 * MU**2 + 3 * SIGMA**2, 6 * MU * SIGMA),
    "cos(z)": (math.cos(MU) * E_SIN, -math.sin(MU) * E_SIN, -SIGMA * math.cos(MU) * E_SIN),
    "where(z > 0, 1.0, 0.0)": (stats.norm.cdf(MU / SIGMA), stats.norm.pdf(MU / SIGMA) / SIGMA,
                               -MU / SIGMA**2 * stats.norm.pdf(MU / SIGMA)),
}


def mvd(text, params, backend, n=20_000, seed=0, var="z", spec="mvd"):
    return sg.estimate(text, params, n=n, seed=seed, backend=backend, estimators={var: spec})


def near(got, se, want, k=6.0):
    got, se, want = (np.asarray(x, dtype=float) for x in (got, se, want))
    assert np.all(np.abs(got - want) <= k * se + 1e-12), (got, want, se)
    assert np.all(np.isfinite(se))


@pytest.mark.parametrize("cost", sorted(GAUSS))
def test_gaussian_closed_forms(backend, cost):
    r = mvd(f"E[{cost}, z ~ Normal(mu, sigma)]", {"mu": MU, "sigma": SIGMA}, backend, seed=1)
    value, dmu, dsigma = GAUSS[cost]
    near(r.value, r.value_stderr, value)
    near(r.grad["mu"], r.stderr["mu"], dmu)
    near(r.grad["sigma"], r.stderr["sigma"], dsigma)
    assert not r.plan.node("z").biased and "5 cost evaluations per sample" in str(r.plan)


def test_step_cost_unbiased_where_pathwise_is_not(backend):
    """P(z > 0): mvd is unbiased with a small, finite standard error; pathwise gets 0 (the planner
    marks it biased), which is ~90 standard errors of mvd's estimate away from the truth."""
    text, p = "E[where(z > 0, 1.0, 0.0), z ~ Normal(mu, sigma)]", {"mu": MU, "sigma": SIGMA}
    r = mvd(text, p, backend, seed=2)
    _, dmu, dsigma = GAUSS["where(z > 0, 1.0, 0.0)"]
    near(r.grad["mu"], r.stderr["mu"], dmu)
    near(r.grad["sigma"], r.stderr["sigma"], dsigma)
    assert float(r.stderr["mu"]) < 0.05 * dmu
    path = mvd(text, p, backend, seed=2, spec="pathwise")
    assert path.plan.node("z").biased and abs(float(path.grad["mu"]) - dmu) > 50 * float(r.stderr["mu"])


def test_vector_parameters_with_coupled_costs(backend):
    """Each coordinate is perturbed alone: prod(z) has d/dmu_i = prod_{j != i} mu_j, d/dsigma_i = 0;
    sum(z)^2 has d/dmu_i = 2 sum(mu), d/dsigma_i = 2 sigma_i."""
    mu, sigma = np.array([0.5, 1.0, -2.0]), np.array([1.0, 0.7, 0.5])
    p = {"mu": mu, "sigma": sigma}
    r = mvd("E[prod(z), z ~ Normal(mu, sigma)]", p, backend, seed=3)
    near(r.grad["mu"], r.stderr["mu"], [mu[1] * mu[2], mu[0] * mu[2], mu[0] * mu[1]])
    near(r.grad["sigma"], r.stderr["sigma"], np.zeros(3))
    r = mvd("E[sum(z)**2, z ~ Normal(mu, sigma)]", p, backend, seed=4)
    near(r.grad["mu"], r.stderr["mu"], 2 * mu.sum() * np.ones(3))
    near(r.grad["sigma"], r.stderr["sigma"], 2 * sigma)
    assert "13 cost evaluations per sample (1 + (2 loc + 2 scale) x 3 coordinates)" in str(r.plan)


def test_upstream_chain_rule_and_the_costs_own_dependence(backend):
    """E[z * m + z**2, z ~ Normal(2 x, exp(s))] = 2 x m + 4 x^2 + exp(2 s): the cost's direct
    dependence on m, the chain rule through loc = 2 x and scale = exp(s)."""
    x, m, s = 0.3, -0.8, 0.2
    r = mvd("E[z * m + z**2, z ~ Normal(2 * x, exp(s))]", {"x": x, "m": m, "s": s}, backend, seed=5)
    near(r.grad["x"], r.stderr["x"], 2 * m + 8 * x)
    near(r.grad["m"], r.stderr["m"], 2 * x)
    near(r.grad["s"], r.stderr["s"], 2 * math.exp(2 * s))


def test_exponential_rate(backend):
    lam = 1.7  # E[z^2] = 2 / l^2; P(z > 1) = exp(-l), a step cost
    r = mvd("E[z**2, z ~ Exponential(lam)]", {"lam": lam}, backend, seed=6)
    near(r.grad["lam"], r.stderr["lam"], -4 / lam**3)
    r = mvd("E[where(z > 1, 1.0, 0.0), z ~ Exponential(lam)]", {"lam": lam}, backend, seed=7)
    near(r.grad["lam"], r.stderr["lam"], -math.exp(-lam))
    assert "2 cost evaluations per sample" in str(r.plan)


def test_gamma_rate_against_quadrature(backend):
    a, b = 2.5, 1.5
    for cost, f in (("cos(z)", np.cos), ("where(z > 2, z, 0.0)", lambda x: np.where(x > 2, x, 0.0))):
        dp = lambda x: f(x) * (a / b - x) * stats.gamma.pdf(x, a, scale=1 / b)  # noqa: E731
        exact = integrate.quad(dp, 0, 2, limit=200)[0] + integrate.quad(dp, 2, np.inf, limit=200)[0]
        r = mvd(f"E[{cost}, z ~ Gamma(2.5, b)]", {"b": b}, backend, seed=8)
        near(r.grad["b"], r.stderr["b"], exact)
        near(r.value, r.value_stderr, integrate.quad(lambda x: f(x) * stats.gamma.pdf(x, a, scale=1 / b), 0, np.inf)[0])


def test_poisson_rate_against_a_sum(backend):
    lam = 2.3
    k = np.arange(200.0)
    pk = stats.poisson.pmf(k, lam)
    for cost, f in (("z**2", lambda k: k**2), ("cos(z)", np.cos)):
        r = mvd(f"E[{cost}, z ~ Poisson(lam)]", {"lam": lam}, backend, seed=9)
        near(r.grad["lam"], r.stderr["lam"], np.sum(f(k) * pk * (k / lam - 1)))


@pytest.mark.parametrize("form", ["probs", "logits"])
def test_bernoulli_vector_against_enumeration(backend, form):
    q, w = np.array([0.2, 0.55, 0.9]), np.array([1.0, -2.0, 0.5])
    value, grad = 0.0, np.zeros(3)
    for bits in itertools.product([0.0, 1.0], repeat=3):
        bb = np.array(bits)
        pb = np.prod(np.where(bb == 1, q, 1 - q))
        f = (np.sum(w * bb) - 0.3) ** 2
        value += pb * f
        grad += pb * f * (bb - q) / (q * (1 - q))  # d/dq of the probability of the state
    theta = q if form == "probs" else np.log(q / (1 - q))
    r = mvd(f"E[(sum(w * b) - 0.3)**2, b ~ Bernoulli({form}=t)]", {"t": theta, "w": w}, backend, seed=10, var="b")
    near(r.value, r.value_stderr, value)
    near(r.grad["t"], r.stderr["t"], grad if form == "probs" else grad * q * (1 - q))
    assert "4 cost evaluations per sample (1 + (1 probs) x 3 coordinates)" in str(r.plan)


def test_a_wrong_constant_fails(monkeypatch):
    """A variant whose Normal constants c are 10 % too large is caught by the same z-test."""
    good = mvd_laws.LAWS["Normal"]

    def wrong(*args):
        z, parts = good.draw(*args)
        return z, [part._replace(c=part.c * 1.1) for part in parts]

    monkeypatch.setitem(mvd_laws.LAWS, "Normal", good._replace(draw=wrong))
    r = mvd("E[z**2, z ~ Normal(mu, sigma)]", {"mu": MU, "sigma": SIGMA}, "autograd", seed=1)
    for k, exact in (("mu", 2 * MU), ("sigma", 2 * SIGMA)):
        assert abs(float(r.grad[k]) - exact) > 6 * float(r.stderr[k]), k


def test_compiled_objective_gradient():
    torch = pytest.importorskip("torch")
    f = sg.compile("E[z**3, z ~ Normal(mu, sigma)]", backend="torch", n=20_000, seed=11, estimators={"z": "mvd"})
    grads = []
    for _ in range(8):
        mu = torch.tensor(MU, dtype=torch.float64, requires_grad=True)
        f(mu=mu, sigma=torch.tensor(SIGMA, dtype=torch.float64)).backward()
        grads.append(mu.grad.item())
    near(np.mean(grads), np.std(grads, ddof=1) / math.sqrt(len(grads)), GAUSS["z**3"][1])


def test_refusals():
    with pytest.raises(PlanError, match=r"mvd has no measure-valued decomposition for Uniform; it has one for "
                                        r"Normal \(loc, scale\), Exponential \(rate\), Gamma \(rate\), Poisson"):
        sg.plan("E[z, z ~ Uniform(0, h)]", estimators={"z": "mvd"})
    with pytest.raises(PlanError, match=r"no measure-valued decomposition of Gamma's concentration.*'score'"):
        sg.estimate("E[z, z ~ Gamma(a, 1.0)]", {"a": 2.0}, n=16, estimators={"z": "mvd"})
    with pytest.raises(PlanError, match="mvd: z must be the only random node of its expectation"):
        sg.estimate("E[z * y, z ~ Normal(m, 1), y ~ Normal(0, 1)]", {"m": 0.1}, n=16, estimators={"z": "mvd"})
    big = {"m": np.zeros(300), "s": np.ones(300)}
    with pytest.raises(PlanError, match=r"1201 cost evaluations per sample .* over its budget of 1024.*mvd:budget=1201"):
        sg.estimate("E[sum(z), z ~ Normal(m, s)]", big, n=16, estimators={"z": "mvd"})
    # a fixed seed: 300 entries each within 6 standard errors estimated from 16 samples failed about 1 run in 100
    r = sg.estimate("E[sum(z), z ~ Normal(m, s)]", big, n=16, seed=0, estimators={"z": "mvd:budget=1201"})
    near(r.grad["m"], r.stderr["m"], np.ones(300))  # d/dm_i E[sum(z)] = 1
    with pytest.raises(PlanError, match="budget must be a whole number"):
        MeasureValued(budget=0)


@settings(max_examples=12, deadline=None)
@given(st.sampled_from(sorted(mvd_laws.LAWS)), st.lists(st.integers(1, 3), max_size=2), st.sampled_from(["autograd", "torch"]))
def test_copies_perturb_one_coordinate_each(law, shape, backend):
    """For any law and node shape: the copies number ``evaluations``, each differs from ``z`` only
    at its own coordinate, and the pseudo log q is 0 in value."""
    shape = tuple(shape)
    args = {"Normal": "loc=m, scale=s", "Exponential": "rate=s", "Gamma": "concentration=2.0, rate=s",
            "Poisson": "rate=s", "Bernoulli": "probs=q", "Binomial": "total_count=5, probs=q", "Geometric": "probs=q"}[law]
    text = f"E[sum(z), z ~ {law}({args})]"
    names = [k for k in ("m", "s", "q") if f"={k}" in args]
    node = sg.plan(text, estimators={"z": "mvd"}, shapes={k: shape for k in names}).node("z")
    B, n = get_backend(backend), 5
    noise = NoiseSource(B, 3, 0, n)
    streams = iter(range(100))

    def draw(kind, logical, *params):
        return noise.draw(0, next(streams), kind, tuple(logical), *params)

    draw.node = node
    p = {k: B.asarray(np.full((1,) + shape, v)) for k, v in (("loc", 0.3), ("scale", 1.2), ("rate", 1.2),
                                                               ("concentration", 2.0), ("probs", 0.4),
                                                               ("total_count", 5.0))}
    d = lookup(law)
    values, logq = MeasureValued().sample_copies(d, B, p, draw, shape)
    values, logq = B.to_numpy(values), B.to_numpy(logq)
    count = MeasureValued().evaluations(None, node)
    D = math.prod(shape)
    assert values.shape == (count * n,) + shape and np.all(logq == 0)
    blocks = values.reshape((count, n, D))
    for c in range(1, count):
        coord = (c - 1) % D
        others = np.delete(np.arange(D), coord)
        np.testing.assert_array_equal(blocks[c][:, others], blocks[0][:, others])


def test_min_variance_pilots_price_its_evaluations(backend):
    """E[z^2, z ~ N(mu, 1)], mu = 0.5: pathwise's gradient 2 z has variance 4; mvd's (4 mu W / sqrt(2 pi),
    W Rayleigh) has 16 mu^2 E[W^2] / (2 pi) - 4 mu^2 = 0.27, times its 3 evaluations 0.8: the pilot picks
    mvd and prices it at 3 evaluations per sample."""
    r = sg.estimate("E[z**2, z ~ Normal(mu, 1)]", {"mu": 0.5}, n=2000, backend=backend, seed=0, policy="min_variance")
    node = r.plan.node("z")
    assert node.estimator == "mvd" and node.reason.startswith("min_variance pilot"), node.reason
    assert MeasureValued().evaluations(None, node) == 3
    near(r.grad["mu"], r.stderr["mu"], 1.0)


def test_compare_runs_it_alone_and_skips_it_beside_another_node():
    c = sg.compare("E[z**2, z ~ Normal(mu, sigma)]", {"mu": MU, "sigma": SIGMA}, n=4000, seed=0, backend="autograd")
    row = next(r for r in c.rows if r.estimator.startswith("mvd"))
    assert row.unbiased and c.exact == {"mu": 2 * MU, "sigma": 2 * SIGMA}
    for k in ("mu", "sigma"):
        assert abs(float(row.bias[k])) < 6 * float(row.stderr[k])
    two = sg.compare("E[z * y, z ~ Normal(mu, 1), y ~ Normal(sigma, 1)]", {"mu": MU, "sigma": SIGMA}, n=200, seed=0,
                     backend="autograd")
    assert two.rows and not any(r.estimator.startswith("mvd") for r in two.rows)


def test_one_bernoulli_is_exact(backend):
    """On a scalar Bernoulli every sample's gradient is f(1) - f(0): exact, zero variance (a hand value)."""
    r = mvd("E[(y - 0.3)**2 * k, y ~ Bernoulli(p)]", {"p": 0.25, "k": 2.0}, backend, n=100, var="y")
    assert float(r.grad["p"]) == pytest.approx(2.0 * (0.49 - 0.09), rel=1e-12) and float(r.stderr["p"]) == 0.0


def test_chunks_count_its_copies():
    """The memory footprint per sample counts mvd's 5 evaluations of a scalar Normal (chunk sizing)."""
    from stochgrad import chunking

    text, values = "E[z**2, z ~ Normal(mu, sigma)]", {"mu": np.array(0.5), "sigma": np.array(1.0)}
    feet = {est: chunking.footprint(sg.plan(text, estimators={"z": est}, shapes={"mu": (), "sigma": ()}), values,
                                    ["mu", "sigma"]) for est in ("score", "mvd")}
    assert feet["mvd"] - feet["score"] == 8 * chunking.LIVE * (5 - 1)


@settings(max_examples=6, deadline=None)
@given(st.floats(-2.0, 2.0), st.floats(0.3, 2.5))
def test_normal_cubic_over_parameters(mu, sigma):
    """For any (mu, sigma): d/dmu E[z^3] = 3 mu^2 + 3 sigma^2, d/dsigma = 6 mu sigma (by hand)."""
    r = mvd("E[z**3, z ~ Normal(mu, sigma)]", {"mu": mu, "sigma": sigma}, "autograd", n=20_000, seed=12)
    near(r.grad["mu"], r.stderr["mu"], 3 * mu**2 + 3 * sigma**2)
    near(r.grad["sigma"], r.stderr["sigma"], 6 * mu * sigma)


def test_a_second_node_is_refused_whichever_comes_first():
    with pytest.raises(PlanError, match=r"mvd: z must be the only random node of its expectation \(it has y, z\)"):
        sg.estimate("E[z * y, y ~ Uniform(0, 1), z ~ Normal(m, 1)]", {"m": 0.1}, n=16, estimators={"z": "mvd"})


EXTREMES = ([("E[(z - 0.3)**2, z ~ Normal(loc, scale)]", {"loc": lo, "scale": s}) for lo in (-1e6, 0.0, 1e6)
             for s in (1e-6, 1.0, 1e6)]
            + [("E[exp(-z), z ~ Exponential(rate)]", {"rate": s}) for s in (1e-6, 1e6)]
            + [("E[z, z ~ Gamma(2.0, rate)]", {"rate": s}) for s in (1e-6, 1e6)]
            + [("E[(y - 0.3)**2, y ~ Poisson(rate)]", {"rate": s}) for s in (1e-6, 1e6)]
            + [("E[(y - 0.3)**2, y ~ Bernoulli(p)]", {"p": q}) for q in (0.0, 1e-7, 1.0)]
            + [("E[(y - 0.3)**2, y ~ Bernoulli(logits=l)]", {"l": lg}) for lg in (-50.0, 50.0)])


def test_extreme_parameters_stay_finite(backend):
    """At the edges of the parameter ranges (the grids of test_numerical_safety): no NaN, no inf."""
    for text, p in EXTREMES:
        r = mvd(text, p, backend, n=256, var="y" if "y ~" in text else "z")
        for k in r.grad:
            assert np.all(np.isfinite(r.grad[k])) and np.all(np.isfinite(r.stderr[k])), (text, p, k)
        assert np.isfinite(r.value), (text, p)


def test_binomial_and_geometric_against_sums(backend):
    """Brute-force sums over the support, d/dq of each probability written out by hand:
    Binomial d/dq [C(n,k) q^k (1-q)^(n-k)] = pmf (k/q - (n-k)/(1-q)); Geometric (failures before the
    first success) d/dq [(1-q)^k q] = pmf (1/q - k/(1-q))."""
    w = np.array([0.5, -1.0])
    n, q = np.array([4.0, 7.0]), np.array([0.3, 0.65])
    grad = np.zeros(2)
    ks = [np.arange(int(m) + 1.0) for m in n]
    pk = [stats.binom.pmf(k, int(m), qq) for k, m, qq in zip(ks, n, q)]
    for a, b in itertools.product(range(len(ks[0])), range(len(ks[1]))):
        f = np.cos(w[0] * a + w[1] * b)
        dp = np.array([k[i] / qq - (m - k[i]) / (1 - qq) for k, i, m, qq in zip(ks, (a, b), n, q)])
        grad += pk[0][a] * pk[1][b] * f * dp
    r = mvd("E[cos(sum(w * z)), z ~ Binomial(n, q)]", {"n": n, "q": q, "w": w}, backend, seed=13)
    near(r.grad["q"], r.stderr["q"], grad)
    g = 0.4
    k = np.arange(400.0)
    pmf = (1 - g) ** k * g
    r = mvd("E[sqrt(z), z ~ Geometric(g)]", {"g": g}, backend, seed=14)
    near(r.grad["g"], r.stderr["g"], np.sum(np.sqrt(k) * pmf * (1 / g - k / (1 - g))))
    assert "2 cost evaluations per sample" in str(r.plan)
