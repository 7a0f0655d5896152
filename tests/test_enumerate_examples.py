"""Per-example enumeration (``enumerate_examples``): a plate's examples enumerated side by side.

For ``E[sum_i f_i(z_i)]`` with independent rows ``z_i`` the exact value is ``sum_i sum_s q_i(s) f_i(s)``.
The closed forms here come from brute force in numpy (``itertools.product`` over one example's states,
scipy's ``expit``/``softmax``), never from stochgrad.  The class tested: Bernoulli rows of 1-3 elements
and Categorical rows, costs that are sums over the examples of nonlinear per-example terms, every
backend, value, gradient and (torch) second derivatives; the planner's default (enumerated per example
where the joint support is too large but one example's is not) and the refusals.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit, softmax

import stochgrad as sg

#: per-example costs g(row) of a Bernoulli row b (D elements) and weights r (D,), in DSL and numpy
COSTS = {
    "linear": ("sum(b * r, axis=-1)", lambda b, r: (b * r).sum(-1)),
    "square": ("sum(b * r, axis=-1)**2", lambda b, r: (b * r).sum(-1) ** 2),
    "softplus": ("log(1 + exp(sum(b * r, axis=-1) - 0.5))", lambda b, r: np.log1p(np.exp((b * r).sum(-1) - 0.5))),
}


def exact_bernoulli(logits: np.ndarray, r: np.ndarray, g) -> tuple[float, np.ndarray]:
    """``sum_i E[g(b_i, r_i)]`` and its gradient in the logits, by brute force over one row's states."""
    p = expit(logits)
    value, grad = 0.0, np.zeros_like(logits)
    for s in itertools.product([0.0, 1.0], repeat=logits.shape[1]):
        s = np.array(s)
        q = np.prod(np.where(s == 1, p, 1 - p), axis=1)  # (N,)
        f = g(s[None, :], r)  # (N,)
        value += float((q * f).sum())
        grad += (q * f)[:, None] * (s - p)  # d q / d logit = q (s - p)
    return value, grad


@settings(max_examples=15, deadline=None)
@given(
    examples=st.integers(2, 40),
    width=st.integers(1, 3),
    cost=st.sampled_from(sorted(COSTS)),
    seed=st.integers(0, 2**16),
    backend=st.sampled_from(["autograd", "torch", "jax"]),
)
def test_bernoulli_rows_match_brute_force(examples, width, cost, seed, backend):
    rng = np.random.default_rng(seed)
    logits, r = rng.normal(size=(examples, width)), rng.normal(size=(examples, width))
    text, g = COSTS[cost]
    expr = f"E[sum({text}), b ~ Bernoulli(logits=l)]"
    est = sg.estimate(expr, dict(l=logits, r=r), n=4, seed=seed, backend=backend)
    node = est.plan.nodes[0]
    states = 2**width
    if states**examples <= 1024:  # the joint support fits: plain enumeration
        assert node.estimator == "enumerate", node.reason
    else:
        assert node.estimator == "enumerate_examples", node.reason
        assert f"exact sum over {states:,} states of each of {examples:,} examples" in node.reason
    value, grad = exact_bernoulli(logits, r, g)
    tol = 2e-4 if backend == "jax" else 1e-9  # jax computes in float32 by default
    assert abs(est.value - value) <= tol * (1 + abs(value))
    np.testing.assert_allclose(est.grad["l"], grad, rtol=tol, atol=tol)
    assert np.all(np.asarray(est.stderr["l"]) == 0)


def test_categorical_rows_match_the_closed_form(backend):
    rng = np.random.default_rng(1)
    logits, w = rng.normal(size=(30, 6)), rng.normal(size=(30, 6))
    est = sg.estimate("E[sum(c * w), c ~ Categorical(logits=l)]", dict(l=logits, w=w), n=3, seed=0, backend=backend)
    assert est.plan.nodes[0].estimator == "enumerate_examples"
    p = softmax(logits, axis=1)
    tol = 2e-4 if backend == "jax" else 1e-9
    assert abs(est.value - (p * w).sum()) <= tol * 10
    np.testing.assert_allclose(est.grad["l"], p * (w - (p * w).sum(1, keepdims=True)), atol=tol)
    np.testing.assert_allclose(est.grad["w"], p, atol=tol)


def test_the_64_context_bandit_is_exact_by_default():
    """The issue's case: 64 contexts, 5 arms, a sum of per-context rewards.  The default used to be one
    joint score function (64x the per-example variance); now it is exact, with zero standard error."""
    rng = np.random.default_rng(2)
    logits, reward = rng.normal(size=(64, 5)), rng.normal(size=(64, 5))
    expr = "E[sum(sum(a * reward, axis=-1)), a ~ Categorical(logits=logits)]"
    est = sg.estimate(expr, dict(logits=logits, reward=reward), n=16, seed=3, backend="torch")
    p = softmax(logits, axis=1)
    np.testing.assert_allclose(est.grad["logits"], p * (reward - (p * reward).sum(1, keepdims=True)), atol=1e-12)
    assert np.all(np.asarray(est.stderr["logits"]) == 0)
    assert "plate over 64 examples" in str(est.plan)


def test_second_derivatives_are_exact_on_torch():
    rng = np.random.default_rng(4)
    L, R = rng.normal(size=(12,)), rng.normal(size=(12,))
    f = sg.compile("E[sum(b * r), b ~ Bernoulli(logits=l)]", backend="torch", n=2, seed=0)
    lt = torch.tensor(L, requires_grad=True)
    (g,) = torch.autograd.grad(f(l=lt, r=torch.tensor(R)), lt, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), lt)
    p = expit(L)
    np.testing.assert_allclose(g.detach().numpy(), p * (1 - p) * R, atol=1e-12)
    np.testing.assert_allclose(h.numpy(), p * (1 - p) * (1 - 2 * p) * R, atol=1e-12)  # the diagonal's row sums


def test_a_compiled_objective_runs_it_and_a_declared_plate_keeps_its_contract():
    rng = np.random.default_rng(5)
    L, R = rng.normal(size=(20, 2)), rng.normal(size=(20, 2))
    text = "E[sum(sum(b * r, axis=-1)**2), b ~ Bernoulli(logits=l)]"
    f = sg.compile(text, backend="torch", n=4, seed=0)
    lt = torch.tensor(L, requires_grad=True)
    out = f(l=lt, r=torch.tensor(R))
    (g,) = torch.autograd.grad(out, lt)
    value, grad = exact_bernoulli(L, R, COSTS["square"][1])
    assert abs(out.item() - value) < 1e-9
    np.testing.assert_allclose(g.numpy(), grad, atol=1e-9)
    declared = sg.compile(text, backend="torch", n=4, seed=0, batch_axes=1)  # a summed cost violates the plate
    with pytest.raises(sg.StochgradError, match="batch_axes=1: the cost term .* keep one cost per example"):
        declared(l=lt, r=torch.tensor(R))


def test_the_planner_keeps_score_where_per_example_enumeration_is_not_exact_or_too_large():
    L, R = np.linspace(-1, 1, 40), np.linspace(0, 1, 40)
    params = dict(l=L, r=R)
    joint = sg.plan("E[sum(b) * sum(r), b ~ Bernoulli(logits=l)]", params).node("b")
    assert joint.estimator == "score"  # a product of sums is not a sum of per-example terms
    two = sg.plan("E[sum(b * r) + z, b ~ Bernoulli(logits=l), z ~ Normal(0, 1)]", params).node("b")
    assert two.estimator == "score"  # another random node in the expectation
    tight = sg.plan("E[sum(b * r), b ~ Bernoulli(logits=l)]", params, enumerate_budget=1).node("b")
    assert tight.estimator == "score"  # one example's 2 states exceed a budget of 1
    asked = sg.plan("E[sum(b * r), b ~ Bernoulli(logits=l)]", params, estimators={"b": "score"}).node("b")
    assert asked.estimator == "score"
    poisson = sg.plan("E[sum(x * r), x ~ Poisson(exp(l))]", params).node("x")
    assert poisson.estimator == "score"  # no finite support


def test_requests_it_cannot_serve_are_refused_by_name():
    L, R = np.linspace(-1, 1, 6), np.linspace(0, 1, 6)
    with pytest.raises(sg.PlanError, match="not a sum over b's first axis of per-example terms"):
        sg.estimate("E[sum(b) * sum(r), b ~ Bernoulli(logits=l)]", dict(l=L, r=R), n=4, seed=0,
                    estimators={"b": "enumerate_examples"})
    with pytest.raises(sg.PlanError, match="above the budget of 4"):
        sg.estimate("E[sum(sum(b * r, axis=-1)), b ~ Bernoulli(logits=l)]", dict(l=np.zeros((5, 3)), r=np.ones((5, 3))),
                    n=4, seed=0, estimators={"b": "enumerate_examples:budget=4"})
    with pytest.raises(sg.PlanError, match="enumerate_examples needs a discrete node"):
        sg.estimate("E[sum(z * r), z ~ Normal(l, 1)]", dict(l=L, r=R), n=4, seed=0,
                    estimators={"z": "enumerate_examples"})
    with pytest.raises(sg.PlanError, match="budget must be a whole number"):
        sg.EnumerateExamples(budget=0)
