"""User-defined distributions (stochgrad.userdist): a sampler from stochgrad's noise and a log density.

Closed forms are hand-derived in the comments (a Bernoulli's E[f(z)] = (1 - p) f(0) + p f(1); a
normal's E[z^2] = loc^2 + scale^2, d/dmu P(z > 0) = phi(mu) from scipy) or computed independently
in the test by numpy (brute-force sums over every sequence, central finite differences of them).
Tolerances come from the reported standard errors (stochgrad.testing.assert_estimate).
"""

import math

import autograd.numpy as anp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

import stochgrad as sg
from stochgrad.fastparse import fast_parse
from stochgrad.noise import BLOCK
from stochgrad.parser import MAX_DEPTH, parse_with_lark
from stochgrad.testing import assert_estimate

N = 40_000


def _ops(backend):
    """The few backend ops the user callables need, written natively for each backend."""
    if backend == "torch":
        return dict(lt=lambda a, b: (a < b).to(torch.float64), log=torch.log, log1p=torch.log1p)
    if backend == "jax":
        import jax.numpy as jnp

        return dict(lt=lambda a, b: jnp.where(a < b, 1.0, 0.0), log=jnp.log, log1p=jnp.log1p)
    return dict(lt=lambda a, b: anp.where(a < b, 1.0, 0.0), log=anp.log, log1p=anp.log1p)


def bernoulli(backend, name="MyBern", support=None, **extra):
    o = _ops(backend)

    def sample(p, noise):
        return o["lt"](noise("uniform"), p["p"])

    def log_prob(p, x):
        return x * o["log"](p["p"]) + (1.0 - x) * o["log1p"](-p["p"])

    return sg.UserDistribution(name, ("p",), sample=sample, log_prob=log_prob, discrete=True, support=support, **extra)


def location_scale(backend, name="MyLoc", pathwise=True):
    o = _ops(backend)

    def sample(p, noise):
        return p["loc"] + p["scale"] * noise("normal")

    def log_prob(p, x):
        t = (x - p["loc"]) / p["scale"]
        return -0.5 * t * t - o["log"](p["scale"]) - 0.5 * math.log(2 * math.pi)

    return sg.UserDistribution(name, {"loc": "real", "scale": "positive"}, sample=sample, log_prob=log_prob,
                               pathwise=pathwise)


@pytest.fixture
def register():
    """Register user distributions for one test; unregister them after it (the Hypothesis strategies
    of stochgrad.testing draw from every registered distribution)."""
    names = []

    def add(dist):
        sg.register_distribution(dist)
        names.append(dist.name)
        return dist

    yield add
    for name in names:
        if name in sg.DISTRIBUTIONS:
            sg.unregister_distribution(name)


# --- a user Bernoulli: score function by default, enumeration with a declared support ---------

F = "3 * (z - 0.3)**2 + z"  # f(0) = 0.27, f(1) = 2.47: E = 0.27 + 2.2 p, d/dp = 2.2


def test_user_bernoulli_score_matches_closed_form_and_the_builtin(backend, register):
    register(bernoulli(backend))
    text = f"E[{F}, z ~ MyBern(p)]"
    plan = sg.plan(text, backend=backend)
    assert plan.node("z").estimator == "score"
    assert "leave-one-out" in str(plan) and "support size unknown" in str(plan)
    p = 0.4
    r = sg.estimate(text, {"p": p}, n=N, backend=backend, seed=3)
    assert_estimate(r, value=0.27 + 2.2 * p, grad={"p": 2.2})
    assert r.grad["p"] > 10 * r.stderr["p"]  # a zero gradient would fail
    # the built-in draws z = [u < p] from the same uniform stream: the same estimate
    b = sg.estimate(f"E[{F}, z ~ Bernoulli(p)]", {"p": p}, n=N, backend=backend, seed=3, estimators={"z": "score"})
    assert r.value == pytest.approx(b.value, rel=1e-12)
    assert r.grad["p"] == pytest.approx(b.grad["p"], rel=1e-9)


def test_user_bernoulli_takes_the_score_baselines(backend, register):
    register(bernoulli(backend))
    text = f"E[{F}, z ~ MyBern(p)]"
    for spec, words in (("score:baseline=none", "no baseline"), ("score:baseline=ema", "moving-average")):
        r = sg.estimate(text, {"p": 0.7}, n=N, backend=backend, seed=5, estimators={"z": spec})
        assert words in str(r.plan)
        assert_estimate(r, grad={"p": 2.2})


def test_seeds_reproduce_and_chunks_agree(register):
    register(bernoulli("torch"))
    text = f"E[{F}, z ~ MyBern(p)]"
    n = 2 * BLOCK  # two noise blocks, run whole and in two chunks
    whole = sg.estimate(text, {"p": 0.3}, n=n, backend="torch", seed=9)
    chunked = sg.estimate(text, {"p": 0.3}, n=n, backend="torch", seed=9, chunk_size=n // 2)
    assert whole.value == pytest.approx(chunked.value, rel=1e-12)
    assert whole.grad["p"] == pytest.approx(chunked.grad["p"], rel=1e-10)
    other = sg.estimate(text, {"p": 0.3}, n=n, backend="torch", seed=10)
    assert other.value != whole.value


@settings(deadline=None, max_examples=8)
@given(p=st.floats(0.05, 0.95))
def test_declared_support_gives_exact_enumeration(p):
    sg.register_distribution(bernoulli("autograd", name="MyBernEnum", support=[0.0, 1.0]))
    try:
        r = sg.estimate("E[3 * (z - 0.3)**2 + z, z ~ MyBernEnum(p)]", {"p": p}, n=4, backend="autograd", seed=0)
        assert r.plan.node("z").estimator == "enumerate"
        assert r.value == pytest.approx(0.27 + 2.2 * p, abs=1e-12)
        assert r.grad["p"] == pytest.approx(2.2, abs=1e-12)
    finally:
        sg.unregister_distribution("MyBernEnum")


def test_declared_support_enumerates_a_vector_node(backend, register):
    register(bernoulli(backend, support=[0.0, 1.0]))
    # z_i independent: E[prod_i (1 + z_i)] = prod_i (1 + p_i); d/dp_j = prod_{i != j} (1 + p_i)
    q = np.array([0.2, 0.5, 0.9])
    r = sg.estimate("E[exp(sum(log(1 + z))), z ~ MyBern(p)]", {"p": q}, n=2, backend=backend, seed=0)
    assert r.plan.node("z").estimator == "enumerate" and "8 states" in str(r.plan)
    assert r.value == pytest.approx(np.prod(1 + q), rel=1e-12)
    np.testing.assert_allclose(r.grad["p"], np.prod(1 + q) / (1 + q), rtol=1e-12)


# --- a user location-scale law: pathwise when declared -----------------------------------------

def test_declared_pathwise_law_is_pathwise_and_matches_closed_forms(backend, register):
    register(location_scale(backend))
    mu, s = 0.7, 1.3
    text = "E[z**2, z ~ MyLoc(mu, s)]"
    r = sg.estimate(text, {"mu": mu, "s": s}, n=N, backend=backend, seed=2)
    assert r.plan.node("z").estimator == "pathwise"
    assert_estimate(r, value=mu**2 + s**2, grad={"mu": 2 * mu, "s": 2 * s})
    # the built-in Normal draws loc + scale * (the node's normal stream): the same numbers
    b = sg.estimate("E[z**2, z ~ Normal(mu, s)]", {"mu": mu, "s": s}, n=N, backend=backend, seed=2)
    assert r.grad["mu"] == pytest.approx(b.grad["mu"], rel=1e-12) and r.grad["s"] == pytest.approx(b.grad["s"], rel=1e-12)
    # a cost not differentiable in z: the score function, from the user's log_prob
    r = sg.estimate("E[z > 0, z ~ MyLoc(mu, 1)]", {"mu": mu}, n=N, backend=backend, seed=4)
    assert r.plan.node("z").estimator == "score"
    assert_estimate(r, value=norm.cdf(mu), grad={"mu": norm.pdf(mu)})


def test_undeclared_pathwise_gets_the_score_function(backend, register):
    register(location_scale(backend, name="MyLocNoPath", pathwise=False))
    text = "E[z**2, z ~ MyLocNoPath(mu, s)]"
    plan = sg.plan(text)
    assert plan.node("z").estimator == "score" and "no pathwise sampler" in str(plan)
    r = sg.estimate(text, {"mu": 0.5, "s": 0.8}, n=N, backend=backend, seed=6)
    assert_estimate(r, value=0.25 + 0.64, grad={"mu": 1.0, "s": 1.6})
    with pytest.raises(sg.PlanError, match="no pathwise sampler"):
        sg.plan(text, estimators={"z": "pathwise"})
    with pytest.raises(sg.PlanError):
        sg.plan(text, estimators={"z": "enumerate"})
    with pytest.raises(sg.PlanError):
        sg.plan(text, estimators={"z": "relaxed"})


def test_parameter_constraints_are_checked(register):
    register(location_scale("torch"))
    with pytest.raises(sg.StochgradError, match=r"z ~ MyLoc\(mu, s\): parameter 'scale' \(given as `s`\) must be > 0"):
        sg.estimate("E[z, z ~ MyLoc(mu, s)]", {"mu": 0.0, "s": -1.0}, n=10, backend="torch", seed=0)


# --- text, printing, embedded form ---------------------------------------------------------

def test_parse_print_round_trip_and_embedded_form(register):
    law = register(location_scale("torch"))
    for text in ("E[z**2, z ~ MyLoc(mu, s)]", "E[z, z ~ MyLoc(scale=s, loc=mu)]", "E[z + y, z ~ MyLoc(mu, 1), y ~ MyLoc(z, 2)]"):
        e = sg.parse(text)
        assert sg.parse(str(e)) == e
        assert fast_parse(text, {}, MAX_DEPTH) == parse_with_lark(text) == e  # both parsers build the same IR
    mu, s, z = sg.symbols("mu s z")
    assert sg.E(z**2, z=law(mu, s)) == sg.parse("E[z**2, z ~ MyLoc(mu, s)]")
    with pytest.raises(sg.StochgradError, match="no parameter 'scal'.*did you mean 'scale'"):
        sg.parse("E[z, z ~ MyLoc(mu, scal=s)]")


# --- a sequence law: an autoregressive policy, score function, leave-one-out ----------------

T, V = 3, 2


def _policy_numpy(W, y):
    """log q(y) of the autoregressive policy with logits W[previous token] (row V: the start)."""
    prev, out = V, 0.0
    for t in range(T):
        logits = W[prev]
        out += logits[int(y[t])] - np.log(np.exp(logits).sum())
        prev = int(y[t])
    return out


def _expected_reward(W):
    """E[number of 1s], by brute force over every sequence (independent of stochgrad)."""
    import itertools

    return sum(np.exp(_policy_numpy(W, y)) * sum(y) for y in itertools.product(range(V), repeat=T))


def torch_policy(name="Policy", support=None):
    def sample(p, noise):
        u = noise("uniform", (T,))
        rows = u.shape[0]
        W = p["W"].expand(rows, V + 1, V)  # a sample axis of size 1 or rows (estimate: a copy per sample)
        every = torch.arange(rows)
        prev = torch.full((rows,), V, dtype=torch.long)
        tokens = []
        for t in range(T):  # a loop over time steps, vectorized over samples (inverse-CDF draw)
            cdf = torch.cumsum(torch.softmax(W[every, prev], -1), -1)
            tok = (u[:, t:t + 1] > cdf[:, :-1]).sum(-1)
            tokens.append(tok)
            prev = tok
        return torch.stack(tokens, -1).to(torch.float64)

    def log_prob(p, y):
        tok = y.long()
        rows = tok.shape[0]
        W = p["W"].expand(rows, V + 1, V)
        prev = torch.cat([torch.full_like(tok[:, :1], V), tok[:, :-1]], -1)
        logp = torch.log_softmax(W[torch.arange(rows)[:, None], prev], -1).gather(-1, tok.unsqueeze(-1)).squeeze(-1)
        return logp.sum(-1)  # (rows,): the sequence's log-probability

    return sg.UserDistribution(name, ("W",), sample=sample, log_prob=log_prob, value_shape=lambda shapes: (T,),
                               discrete=True, event_rank=1, support=support)


def test_sequence_policy_gradient_matches_brute_force(register):
    import itertools

    register(torch_policy())
    rng = np.random.default_rng(0)
    W = rng.normal(size=(V + 1, V))
    h = 1e-6
    exact = np.zeros_like(W)
    for idx in np.ndindex(W.shape):  # central differences of the brute-force expectation
        d = np.zeros_like(W)
        d[idx] = h
        exact[idx] = (_expected_reward(W + d) - _expected_reward(W - d)) / (2 * h)
    text = "E[sum(y), y ~ Policy(W)]"
    r = sg.estimate(text, {"W": W}, n=N, backend="torch", seed=1)
    assert r.plan.node("y").estimator == "score"
    assert_estimate(r, value=_expected_reward(W), grad={"W": exact})
    # with the support declared (every sequence), the sum is exact
    seqs = np.array(list(itertools.product(range(V), repeat=T)), dtype=float)
    register(torch_policy("PolicyExact", support=lambda event: seqs))
    e = sg.estimate("E[sum(y), y ~ PolicyExact(W)]", {"W": W}, n=2, backend="torch", seed=0)
    assert e.plan.node("y").estimator == "enumerate"
    assert e.value == pytest.approx(_expected_reward(W), rel=1e-10)
    np.testing.assert_allclose(e.grad["W"], exact, atol=1e-7)


def test_compiled_objective_trains_module_weights_through_log_prob(register):
    register(torch_policy())
    W = torch.zeros(V + 1, V, dtype=torch.float64, requires_grad=True)
    f = sg.compile("E[sum(y), y ~ Policy(W)]", backend="torch", n=64, seed=0)
    opt = torch.optim.Adam([W], lr=0.1)
    for _ in range(60):
        opt.zero_grad()
        (-f(W=W)).backward()
        opt.step()
    assert _expected_reward(W.detach().numpy()) > 2.5  # from 1.5 at W = 0, towards 3


# --- errors --------------------------------------------------------------------------------

def _law(sample, log_prob=None, name="Bad", **extra):
    return sg.UserDistribution(name, ("p",), sample=sample,
                               log_prob=log_prob or (lambda p, x: x * torch.log(p["p"])), discrete=True, **extra)


@pytest.mark.parametrize("sample, match", [
    (lambda p, noise: noise("uniform", (2,)), r"Bad: sample\(\) returned torch.Tensor of shape \(7, 2\).*expected"
                                              r" shape \(7,\)"),
    (lambda p, noise: (noise("uniform") < 0.5), r"Bad: sample\(\) returned .*torch.bool.*not floating point.*as floats"),
    (lambda p, noise: noise("uniform").numpy(), r"Bad: sample\(\) returned numpy.ndarray.*not a torch.Tensor"),
    (lambda p, noise: p["p"] * 0.0, r"Bad: sample\(\) drew no noise"),
    (lambda p, noise: noise("unifrom"), r"noise\('unifrom'\).*did you mean 'uniform'"),
    (lambda p, noise: noise("uniform") / 0.0, r"Bad: sample\(\) returned inf at index \(0,\)"),
    (lambda p, noise: 1 / "x", r"Bad: sample\(\) raised TypeError"),
])
def test_a_bad_sampler_is_named(register, sample, match):
    register(_law(sample))
    with pytest.raises(sg.StochgradError, match=match):
        sg.estimate("E[z, z ~ Bad(p)]", {"p": 0.5}, n=7, backend="torch", seed=0)


@pytest.mark.parametrize("log_prob, match", [
    (lambda p, x: torch.log(x) + p["p"], r"Bad: log_prob\(\) of its own samples -inf at index \(\d+,\)"),
    (lambda p, x: torch.stack([x, x], -1), r"Bad: log_prob\(\) returned torch.Tensor of shape \(64, 2\).*prefix"),
    (lambda p, x: (x * p["p"]).sum(), r"Bad.log_prob\(\) returned .*a single number"),
    (lambda p, x: 0.0, r"Bad: log_prob\(\) returned the number 0.0"),
])
def test_a_bad_log_prob_is_named(register, log_prob, match):
    register(_law(lambda p, noise: (noise("uniform") < p["p"]).to(torch.float64), log_prob))
    with pytest.raises(sg.StochgradError, match=match):
        sg.estimate("E[z, z ~ Bad(p)]", {"p": 0.5}, n=64, backend="torch", seed=0)


def test_bad_value_shape_and_support_are_named(register):
    register(sg.UserDistribution("BadShape", ("p",), sample=lambda p, noise: noise("uniform"),
                                 log_prob=lambda p, x: x, value_shape=lambda shapes: "T"))
    with pytest.raises(sg.StochgradError, match=r"BadShape: value_shape\(\).*tuple of integers"):
        sg.plan("E[z, z ~ BadShape(p)]", {"p": ()})
    register(bernoulli("torch", name="BadSupport", support=[[0.0, 1.0]]))
    with pytest.raises(sg.StochgradError, match=r"BadSupport: its support has shape \(1, 2\)"):
        sg.plan("E[z, z ~ BadSupport(p)]", {"p": ()})


def test_names_and_declarations_are_checked(register):
    with pytest.raises(sg.StochgradError, match="taken by the built-in distribution Normal"):
        sg.register_distribution(location_scale("torch", name="Normal"))
    with pytest.raises(sg.StochgradError, match="built-in function exp"):
        sg.register_distribution(location_scale("torch", name="exp"))
    with pytest.raises(sg.StochgradError, match="reserved"):
        location_scale("torch", name="KL")
    assert sg.DISTRIBUTIONS["Normal"].name == "Normal" and "exp" not in sg.DISTRIBUTIONS
    register(bernoulli("torch"))
    with pytest.raises(sg.ParseError, match="unknown distribution 'MyBren'.*did you mean 'MyBern'"):
        sg.parse("E[z, z ~ MyBren(p)]")
    node = bernoulli("torch", name="Unregistered")(0.5)  # built by name; running it needs the law
    with pytest.raises(sg.StochgradError, match="unknown distribution 'Unregistered'"):
        sg.estimate(sg.E(sg.symbols("b"), b=node), {}, n=4, seed=0, backend="torch")
    with pytest.raises(sg.StochgradError, match="discrete law has no pathwise"):
        bernoulli("torch", name="X", pathwise=True)
    with pytest.raises(sg.StochgradError, match="declare discrete=True"):
        sg.UserDistribution("X", ("p",), sample=abs, log_prob=abs, support=[0.0, 1.0])
    with pytest.raises(sg.StochgradError, match="sample must be callable"):
        sg.UserDistribution("X", ("p",), sample=3, log_prob=abs)
    with pytest.raises(sg.StochgradError, match="unknown constraint 'postive'.*did you mean 'positive'"):
        sg.UserDistribution("X", {"p": "postive"}, sample=abs, log_prob=abs)
    with pytest.raises(sg.StochgradError, match="built-in distribution"):
        sg.unregister_distribution("Normal")
    with pytest.raises(sg.StochgradError, match="user function 'MyBern' has the name of the distribution"):
        sg.parse("E[z, z ~ Normal(0, 1)]", functions={"MyBern": abs})


def test_replacing_a_user_distribution_forgets_old_plans(register):
    register(location_scale("torch", name="MyLocSwap", pathwise=True))
    assert sg.plan("E[z**2, z ~ MyLocSwap(mu, 1)]").node("z").estimator == "pathwise"
    register(location_scale("torch", name="MyLocSwap", pathwise=False))
    assert sg.plan("E[z**2, z ~ MyLocSwap(mu, 1)]").node("z").estimator == "score"


def test_sequence_policy_gradient_example_climbs():
    import pathlib
    import re
    import subprocess
    import sys

    script = pathlib.Path(__file__).resolve().parent.parent / "examples" / "sequence_policy_gradient.py"
    out = subprocess.run([sys.executable, str(script), "--steps", "75"], capture_output=True, text=True,
                         check=True).stdout
    assert "y ~ Policy(prompt): score (leave-one-out baseline)" in out
    rewards = [float(x) for x in re.findall(r"mean reward ([\d.]+) / 4", out)]
    assert len(rewards) == 4 and rewards[0] < 2.0 and rewards[-1] > 3.0  # from about 4/3 (uniform) towards 4


def test_user_law_after_an_enumerated_node_and_in_a_kl(backend, register):
    register(location_scale(backend))
    # z ~ Bernoulli(p) enumerated (each copy of the samples draws its own noise for y): E[z + y] = 2p
    r = sg.estimate("E[z + y**2, z ~ Bernoulli(p), y ~ MyLoc(z, s)]", {"p": 0.3, "s": 0.5}, n=N, backend=backend, seed=7)
    assert r.plan.node("z").estimator == "enumerate" and r.plan.node("y").estimator == "pathwise"
    # E[y^2 | z] = z^2 + s^2, so E = p + p + s^2; d/dp = 2, d/ds = 2 s
    assert_estimate(r, value=0.6 + 0.25, grad={"p": 2.0, "s": 1.0})
    # a Monte Carlo KL through the user's log_prob: KL(N(mu, 1) || N(0, 1)) = mu^2 / 2
    r = sg.estimate("KL(MyLoc(mu, 1) || Normal(0, 1))", {"mu": 0.5}, n=N, backend=backend, seed=8)
    assert_estimate(r, value=0.125, grad={"mu": 0.5})


def test_compare_and_min_variance_see_a_user_law(register):
    register(location_scale("torch"))
    text = "E[z > 0, z ~ MyLoc(mu, 1)]"
    plan = sg.plan(text, {"mu": 0.3}, policy="min_variance", backend="torch", seed=0)
    assert plan.node("z").estimator == "score"
    rows = {row.estimator: row for row in sg.compare(text, {"mu": 0.3}, n=20_000, backend="torch", seed=0).rows}
    score = rows["score (leave-one-out baseline)"]
    assert score.unbiased and abs(score.grad["mu"] - norm.pdf(0.3)) < 6 * score.stderr["mu"]
    assert rows["pathwise"].grad["mu"] == 0.0 and not rows["pathwise"].unbiased  # through a comparison


def test_autograd_sampler_outputs_are_checked(register):
    register(sg.UserDistribution("BadAg", ("p",), sample=lambda p, noise: list(noise("uniform")),
                                 log_prob=lambda p, x: x * anp.log(p["p"]), discrete=True))
    with pytest.raises(sg.StochgradError, match=r"BadAg: sample\(\) returned list"):
        sg.estimate("E[z, z ~ BadAg(p)]", {"p": 0.5}, n=5, backend="autograd", seed=0)
    register(sg.UserDistribution("BadAg2", ("p",), sample=lambda p, noise: anp.where(noise("uniform") < p["p"], 1.0, 0.0),
                                 log_prob=lambda p, x: anp.log(x) * p["p"], discrete=True))
    with pytest.raises(sg.StochgradError, match=r"BadAg2: log_prob\(\) of its own samples -inf"):
        sg.estimate("E[z, z ~ BadAg2(p)]", {"p": 0.5}, n=50, backend="autograd", seed=0)


def test_declared_ranks_undo_the_alignment_of_parameters(register):
    seen = []

    def sample(p, noise):
        seen.append((tuple(p["W"].shape[1:]), tuple(p["c"].shape[1:])))
        return p["c"][..., None] + p["W"].transpose(-1, -2) + noise("normal")

    def log_prob(p, x):
        t = x - p["c"][..., None] - p["W"].transpose(-1, -2)
        return (-0.5 * t * t).sum(-1) - math.log(2 * math.pi)  # (rows, 3): one per row of c

    # z[i, j] = c[i] + W[j, i] + eps: shape c + (2,); E[sum z] = 2 sum(c) + sum(W), exactly so pathwise
    register(sg.UserDistribution("Pair", ("W", "c"), sample=sample, log_prob=log_prob, pathwise=True,
                                 ranks={"W": 2, "c": 1}, value_shape=lambda s: s["c"] + (s["W"][0],)))
    W, c = np.arange(6.0).reshape(2, 3), np.array([0.5, -1.0, 2.0])
    r = sg.estimate("E[sum(z), z ~ Pair(W, c)]", {"W": W, "c": c}, n=1000, backend="torch", seed=0)
    assert set(seen) == {((2, 3), (3,))}  # without ranks, c would arrive as (1, 3)
    assert r.plan.node("z").shape == (3, 2)
    np.testing.assert_allclose(r.grad["c"], 2.0, rtol=1e-12)
    np.testing.assert_allclose(r.grad["W"], 1.0, rtol=1e-12)
    assert_estimate(r, value=2 * c.sum() + W.sum())
    with pytest.raises(sg.StochgradError, match=r"Pair: parameter 'c' has shape \(2, 3\), but its declared rank is 1"):
        sg.plan("E[sum(z), z ~ Pair(W, c)]", {"W": (2, 3), "c": (2, 3)})
    with pytest.raises(sg.StochgradError, match="ranks names 'd', which is not a parameter"):
        sg.UserDistribution("Pair2", ("W", "c"), sample=sample, log_prob=log_prob, ranks={"d": 1})


def test_second_derivative_of_a_user_law_by_dice(register):
    register(bernoulli("torch"))
    # E = 0.27 + 2.2 s(a), s = sigmoid: d2/da2 = 2.2 s (1 - s) (1 - 2 s)
    a0 = 0.8
    s = 1 / (1 + math.exp(-a0))
    f = sg.compile(f"E[{F}, z ~ MyBern(sigmoid(a))]", backend="torch", n=20_000, seed=0)
    firsts, seconds = [], []
    for _ in range(20):  # independent calls: their spread gives the standard error
        a = torch.tensor(a0, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(f(a=a), a, create_graph=True)
        (h,) = torch.autograd.grad(g, a)
        firsts.append(g.item())
        seconds.append(h.item())
    for values, exact in ((firsts, 2.2 * s * (1 - s)), (seconds, 2.2 * s * (1 - s) * (1 - 2 * s))):
        se = np.std(values, ddof=1) / math.sqrt(len(values))
        assert abs(np.mean(values) - exact) < 5 * se
    assert abs(np.mean(seconds)) > 5 * np.std(seconds, ddof=1) / math.sqrt(20)  # a zero second derivative fails
