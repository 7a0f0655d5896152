"""Categorical DisARM (the stick-breaking form, :mod:`stochgrad.estimators.disarm`) and IndeCateR
(:mod:`stochgrad.estimators.indecater`).

Closed forms come from a numpy brute-force enumeration written here: for ``z`` of ``D`` independent
rows over ``K`` classes with ``p = softmax(t)`` row-wise, ``E[f] = sum_s f(s) P(s)``,
``P(s) = prod_d p_{d s_d}``, and ``dE/dt_{dk} = sum_s f(s) P(s) ([s_d = k] - p_{dk})`` (for probs,
``dE/dp_{dk} = sum_s f(s) P(s) ([s_d = k] / p_{dk} - 1 / sum_j p_{dj})``, the law normalizing them).
Each z-test allows 6 standard errors of the run itself: IndeCateR's samples are independent, and
DisARM's reported standard error counts its antithetic pairs (tests/test_arm_disarm.py checks that
against replicate runs).  Power: the deliberately wrong variants below (sticks with the class
probabilities left un-renormalized; IndeCateR summing element 1 only) fail the same z-test by
dozens of standard errors.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stochgrad as sg
import stochgrad.estimators.disarm as disarm_module
from stochgrad.estimators import IndeCateR

# couples the rows (a square and a cosine of sums over all of them)
COST = "E[(sum(z * w) - 0.4) ** 2 + cos(2 * sum(z * v)), z ~ Categorical(logits=t)]"


def softmax(t: np.ndarray) -> np.ndarray:
    e = np.exp(t - t.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def f_numpy(Z: np.ndarray, w: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (np.sum(Z * w, (1, 2)) - 0.4) ** 2 + np.cos(2 * np.sum(Z * v, (1, 2)))


def enumeration(p: np.ndarray, f) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every joint state (indices (S, D), one-hot (S, D, K)), its probability and its cost."""
    D, K = p.shape
    idx = np.array(list(itertools.product(range(K), repeat=D)))
    onehot = np.eye(K)[idx]
    prob = np.prod(p[np.arange(D), idx], axis=1)
    return onehot, prob, f(onehot)


def exact_logits(t: np.ndarray, f) -> np.ndarray:
    p = softmax(t)
    onehot, prob, cost = enumeration(p, f)
    return np.einsum("s,sdk->dk", cost * prob, onehot) - np.sum(cost * prob) * p


def exact_probs(q: np.ndarray, f) -> np.ndarray:
    p = q / q.sum(-1, keepdims=True)
    onehot, prob, cost = enumeration(p, f)
    return np.einsum("s,sdk->dk", cost * prob, onehot) / q - np.sum(cost * prob) / q.sum(-1, keepdims=True)


def setting(D: int, K: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"t": rng.normal(size=(D, K)), "w": rng.normal(size=(D, K)), "v": rng.normal(size=(D, K))}


def z_test(r, var: str, exact: np.ndarray, k: float = 6.0) -> bool:
    g, se = np.asarray(r.grad[var]), np.asarray(r.stderr[var])
    return bool(np.all(np.abs(g - exact) <= k * se + 1e-9))


def run(text: str, at: dict, est, n: int, seed: int = 1, backend: str = "autograd", var: str = "t"):
    return sg.estimate(text, at, n=n, seed=seed, backend=backend, estimators={"z": est}, wrt=[var])


# -- unbiasedness against the enumeration -----------------------------------------------------------

@pytest.mark.parametrize("est,n", [("disarm", 20000), ("arm", 20000), ("indecater", 3000)])
def test_unbiased_vs_enumeration(backend: str, est: str, n: int) -> None:
    at = setting(2, 3)
    exact = exact_logits(at["t"], lambda Z: f_numpy(Z, at["w"], at["v"]))
    r = run(COST, at, est, n, backend=backend)
    assert z_test(r, "t", exact), (r.grad["t"], exact, r.stderr["t"])
    assert np.all(r.stderr["t"] > 0)


@pytest.mark.parametrize("n,chunk", [(8001, None), (8000, 999)])
def test_disarm_odd_n_and_odd_chunks(n: int, chunk: int | None) -> None:
    """The pairing is the Bernoulli one: an odd count (or odd chunks) leaves a sample unpaired."""
    at = setting(2, 3)
    exact = exact_logits(at["t"], lambda Z: f_numpy(Z, at["w"], at["v"]))
    r = sg.estimate(COST, at, n=n, seed=7, chunk_size=chunk, estimators={"z": "disarm"}, wrt=["t"])
    assert z_test(r, "t", exact), (r.grad["t"], exact, r.stderr["t"])


@pytest.mark.parametrize("est,n", [("disarm", 20000), ("indecater", 3000)])
def test_probs_and_upstream_chain_rule(backend: str, est: str, n: int) -> None:
    """probs (the law normalizes them: the gradient is that of q / sum(q)), and logits ``t * x``
    built from an upstream parameter x (dE/dx = sum(t dE/dlogits))."""
    at = setting(2, 3, seed=4)
    f = lambda Z: f_numpy(Z, at["w"], at["v"])  # noqa: E731
    q = softmax(at["t"])
    r = sg.estimate(COST.replace("logits=t", "probs=q"), {"q": q, "w": at["w"], "v": at["v"]}, n=n, seed=2,
                    backend=backend, estimators={"z": est}, wrt=["q"])
    assert z_test(r, "q", exact_probs(q, f)), (r.grad["q"], exact_probs(q, f), r.stderr["q"])
    x = 1.3
    r = sg.estimate(COST.replace("logits=t", "logits=t * x"), {**at, "x": x}, n=n, seed=3, backend=backend,
                    estimators={"z": est}, wrt=["x"])
    exact = float(np.sum(at["t"] * exact_logits(at["t"] * x, f)))
    assert abs(float(r.grad["x"]) - exact) <= 6 * float(r.stderr["x"]), (r.grad["x"], exact, r.stderr["x"])


@st.composite
def shapes_and_logits(draw):
    D, K = draw(st.integers(1, 3)), draw(st.integers(2, 4))
    flat = draw(st.lists(st.floats(-2.0, 2.0), min_size=D * K, max_size=D * K))
    return np.array(flat).reshape(D, K)


@settings(max_examples=5, deadline=None)
@given(shapes_and_logits(), st.sampled_from(["disarm", "indecater"]), st.sampled_from(["autograd", "torch"]))
def test_unbiased_over_logits_and_sizes(t: np.ndarray, est: str, backend: str) -> None:
    D, K = t.shape
    at = {**setting(D, K, seed=D * 10 + K), "t": t}
    exact = exact_logits(t, lambda Z: f_numpy(Z, at["w"], at["v"]))
    r = run(COST, at, est, 8000 if est == "disarm" else 1000, backend=backend)
    assert z_test(r, "t", exact), (r.grad["t"], exact, r.stderr["t"])


def test_indecater_bernoulli_vs_enumeration(backend: str) -> None:
    """Bernoulli arrays are IndeCateR's K = 2 case (values 0 and 1)."""
    p, c = np.array([0.3, 0.6, 0.8]), 1.5
    text = "E[(z[0] + 2 * z[1] * z[0] - z[2] + 0.3) ** 2 * c, z ~ Bernoulli(probs=p)]"
    states = np.array(list(itertools.product([0.0, 1.0], repeat=3)))
    cost = (states[:, 0] + 2 * states[:, 1] * states[:, 0] - states[:, 2] + 0.3) ** 2 * c
    q = np.where(states == 1, p, 1 - p)
    exact = np.array([np.sum(cost * np.prod(np.delete(q, d, axis=1), axis=1) * np.where(states[:, d] == 1, 1.0, -1.0))
                      for d in range(3)])
    r = sg.estimate(text, {"p": p, "c": c}, n=3000, seed=5, backend=backend, estimators={"z": "indecater"})
    assert z_test(r, "p", exact), (r.grad["p"], exact, r.stderr["p"])
    assert float(r.grad["c"]) == pytest.approx(float(r.value) / c, rel=1e-12)  # the cost's direct gradient
    assert abs(float(r.value) - np.sum(cost * np.prod(q, axis=1))) <= 6 * float(r.value_stderr)


# -- variance --------------------------------------------------------------------------------------

def test_disarm_variance_below_score_loo_at_two_evaluations(backend: str) -> None:
    """One antithetic pair against score with a leave-one-out baseline on two samples (two cost
    evaluations each), the DisARM paper's comparison, on the RELAX-style toy ``(z . c - 0.499)^2``
    over three classes: total variance over 400 seeds about 0.0052 (disarm) vs 0.0093 (score)."""
    text = "E[(sum(z * c) - 0.499) ** 2, z ~ Categorical(logits=t)]"
    at = {"t": np.array([0.2, -0.3, 0.1]), "c": np.array([0.0, 1.0, 0.5])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one pair: no standard error
        var = {est: np.array([run(text, at, est, 2, seed=s, backend=backend).grad["t"] for s in range(400)]).var(0).sum()
               for est in ("disarm", "score")}
    assert var["disarm"] < 0.75 * var["score"], var


def test_indecater_exact_on_a_factorised_cost(backend: str) -> None:
    """A cost that is a sum over the rows: each row's classes are summed exactly and the other rows'
    terms cancel (sum_k grad q_d(k) = 0), so IndeCateR's variance is zero (up to rounding), where
    score with a leave-one-out baseline at the same cost evaluations (12 per IndeCateR sample) is not."""
    D, K = 4, 3
    rng = np.random.default_rng(0)
    at = {"t": rng.normal(size=(D, K)), "c": np.array([0.0, 1.0, 2.0]), "b": np.array([0.5, 1.2, 0.1, 1.9])}
    text = "E[sum((z @ c - b) ** 2), z ~ Categorical(logits=t)]"
    ri = run(text, at, "indecater", 200, backend=backend)
    rs = run(text, at, "score", 200 * D * K, backend=backend)
    exact = exact_logits(at["t"], lambda Z: np.sum((Z @ at["c"] - at["b"]) ** 2, axis=1))
    assert np.allclose(ri.grad["t"], exact, atol=1e-10)
    assert np.sum(ri.stderr["t"] ** 2) < 1e-20 < 1e-6 < np.sum(rs.stderr["t"] ** 2)
    assert ri.plan.node("z").reason.endswith("12 cost evaluations per sample")


# -- deliberately wrong variants fail the same test -------------------------------------------------

def test_wrong_stick_probabilities_are_caught(monkeypatch) -> None:
    """Sticks with q_j = p_j (not renormalized by the mass left) sample the wrong law: biased."""
    right = disarm_module.binary_form

    def wrong(name, var, d, B, p, shape):
        theta, _, sticks, to_value = right(name, var, d, B, p, shape)
        lp = d.log_softmax(B, p)[..., :shape[-1] - 1]
        theta = lp - B.fn["log1p"](-B.fn["exp"](lp))  # logit(p_j)
        return theta, B.fn["sigmoid"](theta), sticks, to_value

    at = setting(2, 3)
    exact = exact_logits(at["t"], lambda Z: f_numpy(Z, at["w"], at["v"]))
    assert z_test(run(COST, at, "disarm", 20000), "t", exact)
    monkeypatch.setattr(disarm_module, "binary_form", wrong)
    assert not z_test(run(COST, at, "disarm", 20000), "t", exact)


class FirstRowOnly(IndeCateR):
    """Wrong: keeps only element 1's copies in the gradient (forgets the sum over elements)."""

    def sample_copies(self, d, B, p, draw, shape):
        values, q = super().sample_copies(d, B, p, draw, shape)
        k, n = shape[-1], B.shape(values)[0] - B.shape(q)[0]
        keep = np.zeros(B.shape(q)[0])
        keep[:k * n] = 1.0
        return values, q * B.asarray(keep)


def test_indecater_without_the_sum_over_elements_is_caught() -> None:
    at = setting(2, 3)
    exact = exact_logits(at["t"], lambda Z: f_numpy(Z, at["w"], at["v"]))
    assert z_test(run(COST, at, IndeCateR(), 3000), "t", exact)
    assert not z_test(run(COST, at, FirstRowOnly(), 3000), "t", exact)


# -- refusals, plan text, pricing --------------------------------------------------------------------

@pytest.mark.parametrize("text,params,est,match", [
    ("E[z ** 2, z ~ Normal(m, 1.0)]", {"m": 0.1}, "indecater", r"z ~ Normal.*indecater needs a Categorical or Bernoulli"),
    ("E[z, z ~ Poisson(r)]", {"r": 1.0}, "disarm", r"z ~ Poisson.*disarm needs a Bernoulli node or a Categorical"),
    ("E[sum(z), z ~ Categorical(logits=t)]", {"t": np.zeros((40, 30))}, "indecater",
     r"indecater on z: 40 elements x 30 classes = 1200 cost evaluations per sample exceed its budget of 1024"),
    ("E[sum(z), z ~ Categorical(logits=t)]", {"t": np.zeros((4, 3))}, "indecater:budget=0", r"indecater: budget must be"),
    ("E[sum(z) * y, y ~ Normal(m, 1.0), z ~ Categorical(logits=t)]", {"t": np.zeros((4, 3)), "m": 0.0}, "indecater",
     r"indecater: z must be the only random node of its expectation \(it has y, z\)"),
    ("E[sum(z), z ~ Categorical(logits=t)]", {"t": np.zeros((4, 1))}, "disarm", r"disarm on z: a Categorical over 1 class"),
])
def test_refusals_are_named(text: str, params: dict, est: str, match: str) -> None:
    with pytest.raises(sg.PlanError, match=match):
        sg.estimate(text, params, n=10, seed=0, estimators={"z": est})


def test_budget_option_and_the_price() -> None:
    text, at = "E[sum(z[0]), z ~ Categorical(logits=t)]", {"t": np.zeros((10, 13))}
    with pytest.raises(sg.PlanError, match="130 cost evaluations per sample exceed its budget of 100"):
        sg.estimate(text, at, n=4, seed=0, estimators={"z": "indecater:budget=100"})
    r = sg.estimate(text, at, n=4, seed=0, estimators={"z": "indecater:budget=130"})
    assert "130 cost evaluations per sample" in str(r.plan) and np.all(np.isfinite(r.grad["t"]))
    node = sg.plan("E[sum(z), z ~ Categorical(logits=t)]", {"t": np.zeros((5, 3))}).node("z")
    assert IndeCateR().evaluations(3 ** 5, node) == 15  # D x K, what min_variance weighs variance by


def test_min_variance_prices_indecater_and_skips_a_refusing_candidate() -> None:
    text = "E[(sum(z @ c) - 2.5) ** 2, z ~ Categorical(logits=t)]"
    at = {"t": np.array([[0.1, 0.5, -0.2], [0.0, 0.3, 0.4]]), "c": np.array([1.0, 2.0, 3.0])}
    reason = sg.plan(text, at, policy="min_variance", seed=0, enumerate_budget=2).node("z").reason
    assert "indecater" in reason and "disarm" in reason, reason
    # with a second random node indecater refuses (only random node): the pilot goes on without it
    two = "E[sum(z @ c) * y, y ~ Normal(m, 1.0), z ~ Categorical(logits=t)]"
    reason = sg.plan(two, {**at, "m": 0.5}, policy="min_variance", seed=0, enumerate_budget=2).node("z").reason
    assert "refused here: indecater" in reason, reason
