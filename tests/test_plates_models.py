"""Plate inference through model-shaped nodes (stochgrad.platemodels): ``log_prob(D(args), x)``,
``a @ b`` and basic indexing keep each example's cost with its own row, so the default plan pairs
it per example, as a declared ``batch_axes=1`` plan does; terms that mix rows stay joint.

Closed forms are hand-derived for ``h ~ Bernoulli(logits=L)`` with ``p = sigmoid(L)``:
``d/dL_ij E[sum_ij h_ij a_ij] = p_ij (1 - p_ij) a_ij`` for a constant ``a``; the log density of
``Bernoulli(logits=c)`` is ``h c - softplus(c)``, so ``E[sum log_prob(Bernoulli(logits=c), h)]``
has ``d/dL = p (1 - p) c`` and ``d/dc_j = sum_i (p_ij - sigmoid(c_j))``.  For a nonlinear
per-row cost the expectation is a numpy sum over the ``2^5`` states of each row (independent rows).
Statistical checks use the reported standard errors (stochgrad.testing.assert_estimate).
"""

import itertools

import numpy as np
import pytest

import stochgrad as sg
from stochgrad.testing import assert_estimate

RNG = np.random.default_rng(91)
L, C, W = RNG.normal(size=(32, 5)), RNG.normal(size=5), RNG.normal(size=(5, 3))
V, M = RNG.normal(size=(32, 3)), RNG.normal(size=(32, 4))
PLATE = "plate over 32 examples (inferred: the cost is a sum over axis 0 of per-example terms)"
BINARY = np.array(list(itertools.product((0.0, 1.0), repeat=5)))  # the 32 states of one row


def _sig(x):
    return 1 / (1 + np.exp(-x))


P = _sig(L)
LOGPROB = "sum(sum(log_prob(Bernoulli(logits=c), h), axis=-1))"
CASES = [  # (cost, declared per-example cost, params, value, grads)
    (LOGPROB, "sum(log_prob(Bernoulli(logits=c), h), axis=-1)", {"L": L, "c": C},
     (P * C - np.logaddexp(0, C)).sum(), {"L": P * (1 - P) * C, "c": (P - _sig(C)).sum(axis=0)}),
    ("sum(sum(h @ W, axis=-1))", "sum(h @ W, axis=-1)", {"L": L, "W": W},
     (P @ W).sum(), {"L": P * (1 - P) * W.sum(axis=1), "W": np.repeat(P.sum(axis=0)[:, None], 3, axis=1)}),
    ("sum(h[:, 1:4] * 2)", "sum(h[:, 1:4] * 2, axis=-1)", {"L": L},
     2 * P[:, 1:4].sum(), {"L": np.pad(2 * (P * (1 - P))[:, 1:4], ((0, 0), (1, 1)))}),
]


def _expr(cost):
    return f"E[{cost}, h ~ Bernoulli(logits=L)]"


@pytest.mark.parametrize("cost,declared,params,value,grad", CASES, ids=["log_prob", "matmul", "index"])
def test_per_example_models_are_plated_like_a_declared_plate(backend, cost, declared, params, value, grad):
    inferred = sg.estimate(_expr(cost), params, n=3000, backend=backend, seed=3, estimators={"h": "score"})
    plate = sg.estimate(_expr(declared), params, n=3000, backend=backend, seed=3, batch_axes=1)
    assert PLATE in str(inferred.plan.node("h"))
    assert "plate declared (batch_axes=1)" in str(plate.plan)
    for name in params:  # the same seed, the same per-example surrogate: the same numbers
        np.testing.assert_allclose(inferred.grad[name], plate.grad[name], rtol=1e-9, atol=1e-12)
    assert_estimate(inferred, value=value, grad=grad)
    _exact_by_default(_expr(cost), params, backend, value, grad)


def _exact_by_default(expr, params, backend, value, grad):
    """The default plan enumerates each row's 32 states side by side: the closed form, to rounding."""
    r = sg.estimate(expr, params, n=4, backend=backend, seed=0)
    assert r.plan.node("h").estimator == "enumerate_examples" and PLATE in str(r.plan.node("h"))
    np.testing.assert_allclose(r.value, value, rtol=1e-9, atol=1e-10)
    for name, g in grad.items():
        np.testing.assert_allclose(r.grad[name], g, rtol=1e-9, atol=1e-10)


def _row_brute_force(Y):
    """E and gradients of sum_i log_prob(Bernoulli(logits=h_i @ W), Y_i), enumerating each row."""
    value, gL, gW = 0.0, np.zeros_like(L), np.zeros_like(W)
    eta = BINARY @ W  # (32 states, 3)
    g = (Y[:, None, :] * eta[None] - np.logaddexp(0, eta)[None]).sum(-1)  # (rows, states)
    q = np.prod(np.where(BINARY[None] == 1, P[:, None], 1 - P[:, None]), axis=-1)  # (rows, states)
    value = (q * g).sum()
    gL = np.einsum("is,is,isj->ij", q, g, BINARY[None] - P[:, None])
    gW = np.einsum("is,sj,isk->jk", q, BINARY, Y[:, None, :] - _sig(eta)[None])
    return value, gL, gW


def test_a_nonlinear_per_row_model_matches_row_enumeration(backend):
    Y = (RNG.random(size=(32, 3)) < 0.5).astype(float)
    cost = "sum(log_prob(Bernoulli(logits=h @ W), Y))"
    params = {"L": L, "W": W, "Y": Y}
    r = sg.estimate(_expr(cost), params, n=3000, backend=backend, seed=5, estimators={"h": "score"})
    d = sg.estimate(_expr("sum(log_prob(Bernoulli(logits=h @ W), Y), axis=-1)"), params, n=3000, backend=backend,
                    seed=5, batch_axes=1)
    assert PLATE in str(r.plan.node("h"))
    value, gL, gW = _row_brute_force(Y)
    for name in ("L", "W"):
        np.testing.assert_allclose(r.grad[name], d.grad[name], rtol=1e-9, atol=1e-12)
    assert_estimate(r, value=value, grad={"L": gL, "W": gW})
    _exact_by_default(_expr(cost), params, backend, value, {"L": gL, "W": gW})


NEGATIVE = [  # (cost, params, reason, value, grad of L)
    ("sum(h[:, 0] @ V)", {"L": L, "V": V}, "`h[:, 0] @ V` contracts the examples' axis",
     P[:, 0] @ V.sum(axis=1), np.pad((P * (1 - P))[:, :1] * V.sum(axis=1, keepdims=True), ((0, 0), (0, 4)))),
    ("sum(transpose(h) @ M)", {"L": L, "M": M}, "`transpose(h) @ M` contracts the examples' axis",
     (P * M.sum(axis=1, keepdims=True)).sum(), P * (1 - P) * M.sum(axis=1, keepdims=True)),
    ("sum(h[0] * 3)", {"L": L}, "`h[0]` indexes the examples' axis",
     3 * P[0].sum(), np.pad(3 * (P * (1 - P))[:1], ((0, 31), (0, 0)))),
]


@pytest.mark.parametrize("cost,params,why,value,gL", NEGATIVE, ids=["contract", "transpose", "index-row"])
def test_terms_that_contract_the_examples_stay_joint_and_unbiased(backend, cost, params, why, value, gL):
    r = sg.estimate(_expr(cost), params, n=3000, backend=backend, seed=7)
    text = str(r.plan.node("h"))
    assert "joint over 32 examples" in text and why in text
    assert_estimate(r, value=value, grad={"L": gL})


def test_a_compiled_objective_prints_its_declared_plate():
    obj = sg.compile(_expr("sum(h @ W, axis=-1)"), n=10, batch_axes=1)
    text = str(obj.plan(L=(32, 5), W=(5, 3)))
    assert "plate declared (batch_axes=1)" in text and "joint over" not in text
    assert str(sg.plan(_expr("sum(h @ W, axis=-1)"), {"L": L, "W": W}, batch_axes=1)) == text


PLANS = [  # (expression, params, plated?)
    ("E[sum(log_prob(Categorical(logits=c), h)), h ~ Categorical(logits=L)]", {"L": L, "c": C}, True),
    ("E[sum(M @ transpose(h)), h ~ Bernoulli(logits=L)]", {"L": L, "M": M[:5, :].T}, True),  # a column axis of b
    ("E[sum(M @ h), h ~ Bernoulli(logits=L)]", {"L": L, "M": M.T}, False),  # contracted in b
    ("E[sum(h @ transpose(h)), h ~ Bernoulli(logits=L)]", {"L": L}, False),  # rows on both sides
    ("E[sum(log_prob(Dirichlet(concentration=a), h)), h ~ Bernoulli(logits=l)]",  # examples as an event axis
     {"l": L[:, 0], "a": np.ones(32)}, False),
    ("E[sum(maximum(h, sum(h))), h ~ Bernoulli(logits=L)]", {"L": L}, False),  # every argument is analyzed
    ("E[sum(softmax(h, axis=0)), h ~ Bernoulli(logits=L)]", {"L": L}, False),
    ("E[sum(softmax(h)), h ~ Bernoulli(logits=L)]", {"L": L}, True),
]


@pytest.mark.parametrize("expr,params,plated", PLANS)
def test_the_plan_text_says_which_terms_are_per_example(expr, params, plated):
    text = str(sg.plan(expr, params).node("h"))
    assert (PLATE in text) == plated and ("joint over 32 examples" in text) == (not plated)
