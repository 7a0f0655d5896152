"""ARM and DisARM (:mod:`stochgrad.estimators.disarm`) on Bernoulli nodes.

Closed forms come from a numpy brute-force enumeration written here: for ``z ~ Bernoulli(p)^D``,
``d/dp_d E[f(z)] = sum_b f(b) d/dp_d prod_k p_k^{b_k} (1 - p_k)^{1 - b_k}``.  The samples of one
run are antithetic pairs (correlated), so the run's own per-sample ``stderr`` does not apply: the
standard error is measured from independent replicate runs (different seeds), and each z-test
allows 6 of them.  Power: a wrong weight (``w = u - 1/2``, the sign flipped) gives the negated
gradient, dozens of standard errors away, which :func:`test_wrong_sign_is_caught` checks.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stochgrad as sg
from stochgrad.errors import StochgradError

COST = "E[(z[0] + 2 * z[1] - z[2] + 0.3)**2 * c, z ~ Bernoulli(probs=p)]"  # coupled across elements


def f_numpy(b: np.ndarray, c: float) -> np.ndarray:
    return (b[..., 0] + 2 * b[..., 1] - b[..., 2] + 0.3) ** 2 * c


def exact_grad(p: np.ndarray, c: float) -> np.ndarray:
    states = np.array(list(itertools.product([0.0, 1.0], repeat=len(p))))
    q = np.where(states == 1, p, 1 - p)  # (S, D)
    f = f_numpy(states, c)
    grad = np.empty(len(p))
    for d in range(len(p)):
        others = np.prod(np.delete(q, d, axis=1), axis=1)
        grad[d] = np.sum(f * others * np.where(states[:, d] == 1, 1.0, -1.0))
    return grad


def replicates(text: str, params: dict, est: str, backend: str, *, reps: int, n: int, var: str = "p") -> np.ndarray:
    return np.array([sg.estimate(text, params, n=n, seed=100 + s, backend=backend, estimators={"z": est}).grad[var]
                     for s in range(reps)])


@pytest.mark.parametrize("est", ["arm", "disarm"])
def test_unbiased_vs_enumeration(backend: str, est: str) -> None:
    p, c = np.array([0.3, 0.6, 0.8]), 1.5
    g = replicates(COST, {"p": p, "c": c}, est, backend, reps=16, n=2000)
    mean, se = g.mean(0), g.std(0, ddof=1) / np.sqrt(len(g))
    assert np.all(np.abs(mean - exact_grad(p, c)) <= 6 * se + 1e-12), (mean, exact_grad(p, c), se)


@pytest.mark.parametrize("n,chunk", [(2001, None), (2000, 333)])
def test_odd_n_and_odd_chunks_unbiased(n: int, chunk: int | None) -> None:
    """An odd count (or odd chunks, pairs formed inside each chunk) leaves one sample unpaired."""
    p, c = np.array([0.3, 0.6, 0.8]), 1.5
    g = np.array([sg.estimate(COST, {"p": p, "c": c}, n=n, seed=300 + s, chunk_size=chunk, backend="autograd",
                              estimators={"z": "disarm"}).grad["p"] for s in range(12)])
    mean, se = g.mean(0), g.std(0, ddof=1) / np.sqrt(len(g))
    assert np.all(np.abs(mean - exact_grad(p, c)) <= 6 * se + 1e-12), (mean, exact_grad(p, c), se)


@settings(max_examples=4, deadline=None)
@given(st.lists(st.floats(0.05, 0.95), min_size=3, max_size=3), st.sampled_from(["arm", "disarm"]))
def test_unbiased_over_probs(probs: list[float], est: str) -> None:
    p, c = np.array(probs), 1.0
    g = replicates(COST, {"p": p, "c": c}, est, "autograd", reps=10, n=2000)
    mean, se = g.mean(0), g.std(0, ddof=1) / np.sqrt(len(g))
    assert np.all(np.abs(mean - exact_grad(p, c)) <= 6 * se + 1e-9), (mean, exact_grad(p, c), se)


def test_logits_chain_rule(backend: str) -> None:
    theta = np.array([-0.5, 0.2, 1.0])
    p = 1 / (1 + np.exp(-theta))
    text = "E[(z[0] + 2 * z[1] - z[2] + 0.3)**2 * c, z ~ Bernoulli(logits=t)]"
    g = replicates(text, {"t": theta, "c": 1.0}, "disarm", backend, reps=12, n=2000, var="t")
    exact = exact_grad(p, 1.0) * p * (1 - p)  # dp/dtheta = p (1 - p)
    mean, se = g.mean(0), g.std(0, ddof=1) / np.sqrt(len(g))
    assert np.all(np.abs(mean - exact) <= 6 * se + 1e-9), (mean, exact, se)


def test_wrong_sign_is_caught() -> None:
    """The test above has the power to see a wrong estimator: the negated ARM gradient fails it."""
    p, c = np.array([0.3, 0.6, 0.8]), 1.5
    g = -replicates(COST, {"p": p, "c": c}, "arm", "autograd", reps=16, n=2000)
    mean, se = g.mean(0), g.std(0, ddof=1) / np.sqrt(len(g))
    assert np.any(np.abs(mean - exact_grad(p, c)) > 6 * se)


@pytest.mark.parametrize("text,params", [
    ("E[(z - 0.499)**2, z ~ Bernoulli(probs=p)]", {"p": 0.6}),  # the RELAX toy
    (COST, {"p": np.array([0.3, 0.6, 0.8]), "c": 1.0}),  # a vector cost
])
def test_disarm_variance_at_most_arm(backend: str, text: str, params: dict) -> None:
    """Same seeds, same uniforms: DisARM is ARM averaged over u given the pair (Rao-Blackwell)."""
    arm = replicates(text, params, "arm", backend, reps=300, n=2)
    dis = replicates(text, params, "disarm", backend, reps=300, n=2)
    assert np.all(dis.var(0) <= arm.var(0) + 1e-12), (dis.var(0), arm.var(0))


def test_relax_toy_unbiased() -> None:
    # d/dp E[(z - 0.499)^2] = 0.501^2 - 0.499^2 = 0.002
    g = replicates("E[(z - 0.499)**2, z ~ Bernoulli(probs=p)]", {"p": 0.6}, "disarm", "torch", reps=10, n=1000)
    assert abs(g.mean() - 0.002) <= 6 * g.std(ddof=1) / np.sqrt(len(g)) + 1e-12


@pytest.mark.parametrize("est", ["arm", "disarm"])
def test_refusals(est: str) -> None:
    with pytest.raises(sg.PlanError, match=f"{est} needs a Bernoulli node.*Normal"):
        sg.estimate("E[z**2, z ~ Normal(m, 1.0)]", {"m": 0.1}, n=10, seed=0, estimators={"z": est})
    with pytest.raises(StochgradError, match="at least 2 samples"):
        sg.estimate("E[z, z ~ Bernoulli(probs=p)]", {"p": 0.3}, n=1, seed=0, estimators={"z": est})
    with pytest.raises(StochgradError, match="enumerated node"):
        sg.estimate("E[z * y, y ~ Bernoulli(probs=0.4), z ~ Bernoulli(probs=p)]", {"p": 0.3}, n=10, seed=0,
                    estimators={"y": "enumerate", "z": est})
    with pytest.raises(StochgradError, match="differ from sample to sample"):
        sg.estimate("E[z, x ~ Normal(m, 1.0), z ~ Bernoulli(logits=x)]", {"m": 0.3}, n=10, seed=0,
                    estimators={"x": "score", "z": est})


def test_not_picked_by_default() -> None:
    plan = sg.plan("E[(z - 0.499)**2, z ~ Bernoulli(probs=p)]", {"p": 0.6})
    assert "arm" not in str(plan).lower()


@pytest.mark.parametrize("backend", ["autograd", "torch"])
@pytest.mark.parametrize("n", [2000, 2001])
def test_a_runs_standard_error_counts_pairs(backend, n):
    """Partners share their noise, so a run's reported standard error must be that of the mean of
    independent pairs: it agrees with the spread of 120 independent runs (treating the n samples as
    independent would report about 1/sqrt(2) of it, and fail the lower bound)."""
    text = "E[sum((z - 0.45)**2 * c), z ~ Bernoulli(p)]"
    at = {"p": np.array([0.3, 0.6]), "c": np.array([1.0, -2.0])}
    runs = [sg.estimate(text, at, n=n, seed=s, backend=backend, estimators={"z": "disarm"}, wrt=["p"])
            for s in range(120)]
    spread = np.std([r.grad["p"] for r in runs], axis=0, ddof=1)
    reported = np.sqrt(np.mean([np.square(r.stderr["p"]) for r in runs], axis=0))
    ratio = reported / spread  # the sd of 120 runs is known to about 6.5%: bounds at about 3 of those
    assert np.all((ratio > 0.82) & (ratio < 1.22)), ratio


@pytest.mark.parametrize("backend", ["autograd", "torch"])
@pytest.mark.parametrize("est", ["arm", "disarm"])
def test_a_second_derivative_is_refused_by_name(backend, est):
    """First order only: differentiating a compiled objective twice is an error naming the node, not
    a silently wrong Hessian; the first derivative still runs."""
    import autograd
    import torch

    f = sg.compile("E[sum((z - 0.45)**2), z ~ Bernoulli(p)]", backend=backend, n=64, seed=0,
                   estimators={"z": est})
    pattern = rf"z ~ Bernoulli: no second derivative through {est}"
    if backend == "torch":
        p = torch.tensor([0.3, 0.6], dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(f(p=p), p, create_graph=True)
        assert torch.all(torch.isfinite(g))
        with pytest.raises(sg.PlanError, match=pattern):
            torch.autograd.grad(g.sum(), p)
    else:
        at = np.array([0.3, 0.6])
        assert np.all(np.isfinite(autograd.grad(lambda p: f(p=p))(at)))
        with pytest.raises(sg.PlanError, match=pattern):
            autograd.jacobian(autograd.grad(lambda p: f(p=p)))(at)
