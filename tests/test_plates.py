"""Plate inference (stochgrad.plates): a cost that is a sum over axis 0 of per-example terms pairs
each example's score term with its own cost, by default, and the plan says so.

Closed forms are derived by hand and computed in numpy: for ``z ~ Categorical(logits=L)`` (one-hot
rows) and a reward table ``R``, ``E[sum(z * R)] = sum_i p_i . R_i`` and ``d/dL_ij = p_ij (R_ij - p_i . R_i)``;
for ``z ~ Bernoulli(logits=l)``, ``d/dl_i E[f(z)] = E[f(z) (z_i - s_i)]`` with ``s = sigmoid(l)``,
summed exactly over the ``2^N`` states.  Statistical checks use the reported standard errors
(stochgrad.testing.assert_estimate, false-failure rate 1e-6 shared by all entries).
"""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stochgrad as sg
from stochgrad.testing import assert_estimate

RNG = np.random.default_rng(14)
L64, R64 = RNG.normal(size=(64, 5)), RNG.normal(size=(64, 5))
PLATE = "plate over 64 examples (inferred: the cost is a sum over axis 0 of per-example terms)"


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _categorical_closed_form(L, R):
    p = _softmax(L)
    mean = (p * R).sum(axis=1, keepdims=True)
    return (p * R).sum(), p * (R - mean)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def test_the_64_context_case_is_as_quiet_as_a_declared_plate(backend):
    """Issue 14: 64 independent contexts, cost a sum of per-context rewards.  The default plan's
    gradient stderr is within 1.5x of the per-example one (batch_axes=1) and far below the joint
    one (the issue measured 64x the variance); all three are unbiased."""
    params, n = {"L": L64, "R": R64}, 4000
    value, grad = _categorical_closed_form(L64, R64)
    default = sg.estimate("E[sum(z * R), z ~ Categorical(logits=L)]", params, n=n, backend=backend, seed=0,
                          estimators={"z": "score"})  # the per-example score function (the default is exact)
    declared = sg.estimate("E[sum(z * R, axis=-1), z ~ Categorical(logits=L)]", params, n=n, backend=backend,
                           seed=0, batch_axes=1)
    joint = sg.estimate("E[sum(z * R) * 1, z ~ Categorical(logits=L)]", params, n=n, backend=backend, seed=0)
    assert PLATE in str(default.plan.node("z"))
    assert "joint over 64 examples (the cost term `sum(z * R) * 1` is not a sum over the examples" in str(joint.plan)
    for r in (default, joint):
        assert_estimate(r, value=value, grad={"L": grad})
    assert_estimate(declared, value=(_softmax(L64) * R64).sum(axis=1), grad={"L": grad})
    se_default, se_declared = (np.sqrt(np.mean(r.stderr["L"] ** 2)) for r in (default, declared))
    se_joint = np.sqrt(np.mean(joint.stderr["L"] ** 2))
    assert se_default <= 1.5 * se_declared and se_declared <= 1.5 * se_default
    assert se_joint > 5 * se_default  # variance ratio > 25 (about 64 in the issue)
    exact = sg.estimate("E[sum(z * R), z ~ Categorical(logits=L)]", params, n=8, backend=backend, seed=0)
    assert exact.plan.node("z").estimator == "enumerate_examples" and PLATE in str(exact.plan.node("z"))
    np.testing.assert_allclose(exact.grad["L"], grad, rtol=1e-9, atol=1e-12)  # each context's 5 arms, summed
    assert np.all(exact.stderr["L"] == 0)


def test_bernoulli_rows_with_weights(backend):
    """E[sum(z * w)], z ~ Bernoulli(logits=l) of shape (64,): d/dl_i = w_i s_i (1 - s_i)."""
    l, w = RNG.normal(size=64), RNG.normal(size=64)
    s = _sigmoid(l)
    r = sg.estimate("E[sum(z * w), z ~ Bernoulli(logits=l)]", {"l": l, "w": w}, n=4000, backend=backend, seed=1)
    assert PLATE in str(r.plan)
    assert_estimate(r, value=(s * w).sum(), grad={"l": w * s * (1 - s)})
    joint = sg.estimate("E[sum(z * w) * 1, z ~ Bernoulli(logits=l)]", {"l": l, "w": w}, n=4000, backend=backend, seed=1)
    assert np.mean(joint.stderr["l"] ** 2) > 20 * np.mean(r.stderr["l"] ** 2)


def test_mean_and_a_global_node_beside_the_plate(backend):
    """E[mean(z * w * g)] with a global g ~ Bernoulli(q): E = q mean(s w); d/dq = mean(s w),
    d/dl_i = q w_i s_i (1 - s_i) / N.  g's score pairs with the whole mean, z's per example."""
    l, w, q = RNG.normal(size=8), RNG.normal(size=8), 0.3
    s = _sigmoid(l)
    text = "E[mean(z * w * g), g ~ Bernoulli(probs=q), z ~ Bernoulli(logits=l)]"
    r = sg.estimate(text, {"l": l, "w": w, "q": q}, n=20000, backend=backend, seed=2,
                    estimators={"g": "score", "z": "score"})
    assert "plate over 8 examples" in str(r.plan.node("z")) and "plate" not in str(r.plan.node("g"))
    assert_estimate(r, value=q * (s * w).mean(), grad={"q": (s * w).mean(), "l": q * w * s * (1 - s) / 8})


def test_a_node_drawn_row_by_row_from_a_plated_node(backend):
    """y_i ~ Bernoulli(0.2 + 0.6 z_i): E[sum(y * w)] = sum w_i (0.2 + 0.6 s_i),
    d/dl_i = 0.6 w_i s_i (1 - s_i); both nodes plated."""
    l, w = RNG.normal(size=6), RNG.normal(size=6)
    s = _sigmoid(l)
    text = "E[sum(y * w), z ~ Bernoulli(logits=l), y ~ Bernoulli(probs=0.2 + 0.6 * z)]"
    r = sg.estimate(text, {"l": l, "w": w}, n=20000, backend=backend, seed=3, estimators={"z": "score", "y": "score"})
    assert all("plate over 6 examples" in str(r.plan.node(v)) for v in "zy")
    assert_estimate(r, value=(w * (0.2 + 0.6 * s)).sum(), grad={"l": 0.6 * w * s * (1 - s)})


def _exact(f, l):
    """E[f(z)] and d/dl for z ~ Bernoulli(logits=l), summed over the 2^N states."""
    s = _sigmoid(l)
    states = np.array(list(itertools.product([0.0, 1.0], repeat=len(l))))
    prob = np.prod(np.where(states == 1, s, 1 - s), axis=1)
    cost = f(states)
    return (prob * cost).sum(), ((prob * cost)[:, None] * (states - s)).sum(axis=0)


W3 = np.array([1.5, -2.0, 0.5])
MIXING = [  # (text, numpy cost over states (S, N), reason in the plan)
    ("E[sum(z) * sum(z * w), z ~ Bernoulli(logits=l)]", lambda z: z.sum(1) * (z * W3).sum(1),
     "is not a sum over the examples"),
    ("E[sum(z * sum(z * w)), z ~ Bernoulli(logits=l)]", None, "`sum(z * w)` sums over the examples"),
    ("E[sum(z * w - mean(z)), z ~ Bernoulli(logits=l)]", None, "`mean(z)` sums over the examples"),
    ("E[sum(ident(z * w)), z ~ Bernoulli(logits=l)]", None, "uses the user function ident()"),
    ("E[sum(z * mean(z * w, axis=0)), z ~ Bernoulli(logits=l)]", None, "sums over the examples"),
]


@pytest.mark.parametrize("text, cost, why", MIXING)
def test_terms_that_mix_rows_stay_joint_and_unbiased(backend, text, cost, why):
    l, w = np.array([0.4, -0.7, 1.1]), W3
    costs = {1: lambda z: (z * (z * w).sum(1, keepdims=True)).sum(1), 2: lambda z: (z * w - z.mean(1, keepdims=True)).sum(1),
             3: lambda z: (z * w).sum(1), 4: lambda z: (z * (z * w).mean(1, keepdims=True)).sum(1)}
    f = cost or costs[[m[0] for m in MIXING].index(text)]
    expr = sg.parse(text, functions={"ident": lambda x: x})
    r = sg.estimate(expr, {"l": l, "w": w}, n=20000, backend=backend, seed=4, estimators={"z": "score"})
    line = str(r.plan.node("z"))
    assert "joint over 3 examples" in line and why in line and "declare batch_axes=1" in line and "plate over" not in line
    value, grad = _exact(f, l)
    assert_estimate(r, value=value, grad={"l": grad})


@st.composite
def _expressions(draw, depth=2):
    """(DSL text, numpy function of z (S, N), w (1, N)) of a row-wise expression of z and w."""
    if depth == 0 or draw(st.booleans()):
        atom = draw(st.sampled_from(["z", "w", "1.5", "z * w"]))
        fns = {"z": lambda z, w: z, "w": lambda z, w: w, "1.5": lambda z, w: np.full((1, 1), 1.5),
               "z * w": lambda z, w: z * w}  # numpy broadcasting of (states, N), (1, N) and (1, 1)
        return atom, fns[atom]
    kind = draw(st.sampled_from(["+", "-", "*", "exp", "sigmoid", "neg"]))
    a, fa = draw(_expressions(depth - 1))
    if kind in ("exp", "sigmoid"):
        g = np.exp if kind == "exp" else _sigmoid
        return f"{kind}({a})", lambda z, w: g(fa(z, w))
    if kind == "neg":
        return f"-({a})", lambda z, w: -fa(z, w)
    b, fb = draw(_expressions(depth - 1))
    op = {"+": np.add, "-": np.subtract, "*": np.multiply}[kind]
    return f"({a}) {kind} ({b})", lambda z, w: op(fa(z, w), fb(z, w))


@settings(deadline=None, max_examples=8)
@given(n=st.integers(2, 4), body=_expressions(), reduce=st.sampled_from(["sum", "mean"]), data=st.data())
@pytest.mark.parametrize("backend_name", ["autograd", "torch"])
def test_inferred_plates_are_unbiased_for_random_rowwise_costs(backend_name, n, body, reduce, data):
    """Random row-wise costs sum(t) / mean(t): a plate is inferred (when t depends on z) and the
    value and gradient match the exact ones, summed over the 2^N states in numpy."""
    text, fn = body
    l = np.array(data.draw(st.lists(st.floats(-1.5, 1.5), min_size=n, max_size=n)))
    w = np.array(data.draw(st.lists(st.floats(-2, 2), min_size=n, max_size=n)))
    expr = f"E[{reduce}({text}), z ~ Bernoulli(logits=l)]"
    params = {"l": l, "w": w} if "w" in text else {"l": l}
    # no baseline: the samples are then independent, so the reported stderr is exact (leave-one-out
    # couples them at order 1/n, which matters where a row's score term is almost deterministic)
    r = sg.estimate(expr, params, n=8000, backend=backend_name, seed=5, estimators={"z": "score:baseline=none"},
                    wrt=["l"])
    if "z" in text:
        assert f"plate over {n} examples" in str(r.plan.node("z"))
    value, grad = _exact(lambda z: np.broadcast_to(getattr(fn(z, w[None]), reduce)(axis=1), (len(z),)), l)
    assert_estimate(r, value=value, grad={"l": grad})


def test_plate_with_the_other_baselines_and_the_compiled_objective(backend):
    """No baseline and a moving average keep the plate unbiased; sg.compile runs the same plan."""
    l, w = RNG.normal(size=5), RNG.normal(size=5)
    s = _sigmoid(l)
    text = "E[sum((z - w)**2), z ~ Bernoulli(logits=l)]"  # d/dl_i = ((1 - w_i)^2 - w_i^2) s_i (1 - s_i)
    exact = (1 - 2 * w) * s * (1 - s)
    for est in ("score:baseline=none", "score:baseline=ema"):
        r = sg.estimate(text, {"l": l, "w": w}, n=20000, chunk_size=2000, backend=backend, seed=6,
                        estimators={"z": est}, wrt=["l"])
        assert "plate over 5 examples" in str(r.plan.node("z"))
        assert_estimate(r, grad={"l": exact})
    r = sg.estimate(text, {"l": l, "w": w}, n=64, backend="torch", seed=7, estimators={"z": "score"})
    import torch

    f = sg.compile(text, n=64, backend="torch", seed=7, estimators={"z": "score"})
    lt, wt = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (l, w))
    value = f(l=lt, w=wt)
    gl, gw = torch.autograd.grad(value, [lt, wt])
    assert value.item() == pytest.approx(r.value, rel=1e-9)
    np.testing.assert_allclose(gl.numpy(), r.grad["l"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gw.numpy(), r.grad["w"], rtol=1e-9, atol=1e-12)


def test_a_declared_plate_the_cost_violates_stays_an_error(backend):
    message = (r"batch_axes=1: the cost term `sum\(z \* R\)` depends on z, which has 1 batch axis"
               r" \(independent examples\), but the term has 0 axes: keep one cost per example")
    with pytest.raises(sg.StochgradError, match=message):
        sg.estimate("E[sum(z * R), z ~ Categorical(logits=L)]", {"L": L64, "R": R64}, n=10, backend=backend,
                    seed=0, batch_axes=1)


def test_plan_text():
    shapes = {"L": (64, 5), "R": (64, 5)}
    plan = sg.plan("E[sum(z * R), z ~ Categorical(logits=L)]", shapes)
    assert PLATE in str(plan)
    user = sg.parse("E[sum(f(z) * R), z ~ Categorical(logits=L)]", functions={"f": lambda x: x})
    text = str(sg.plan(user, shapes))
    assert ("joint over 64 examples (in the cost term `sum(f(z) * R)`, uses the user function f(); declare"
            " batch_axes=1, with one cost per example, if the rows are independent)") in text
    rows = sg.plan("E[sum(z * R, axis=0), z ~ Categorical(logits=L)]", shapes)  # a vector per example left
    assert "joint over 64 examples (the cost term `sum(z * R, axis=0)` leaves more than one value" in str(rows)
    each = "E[sum(z * R, axis=-1), z ~ Categorical(logits=L)]"  # one cost per example: a vector-valued expectation
    assert "joint over 64 examples (the cost term `sum(z * R, axis=-1)` keeps one value per example" in str(
        sg.plan(each, shapes))
    declared = str(sg.plan(each, shapes, batch_axes=1))
    assert "plate declared (batch_axes=1)" in declared and "joint over" not in declared
    scalar = sg.plan("E[z * 2, z ~ Bernoulli(logits=l)]", {"l": ()}, estimators={"z": "score"})
    assert "plate" not in str(scalar) and "joint" not in str(scalar)


def test_second_derivatives_under_an_inferred_plate():
    """DiCE's magic box per example keeps higher orders unbiased: for E[sum(z * w)] the Hessian in
    l is diagonal, w_i s_i (1 - s_i) (1 - 2 s_i); the off-diagonal entries are exactly 0 (each
    example's cost pairs with its own log q only).  The mean and stderr are over independent seeds."""
    import torch

    l, w = np.array([0.3, -0.8, 1.2]), np.array([1.0, -2.0, 0.5])
    s = _sigmoid(l)
    lt, wt = torch.tensor(l, requires_grad=True), torch.tensor(w)
    hessians = []
    for seed in range(12):
        f = sg.compile("E[sum(z * w), z ~ Bernoulli(logits=l)]", n=4000, backend="torch", seed=seed,
                       estimators={"z": "score"})
        (g,) = torch.autograd.grad(f(l=lt, w=wt), [lt], create_graph=True)
        hessians.append(np.stack([torch.autograd.grad(g[i], [lt], retain_graph=True)[0].numpy() for i in range(3)]))
    h = np.array(hessians)
    assert np.all(h[:, ~np.eye(3, dtype=bool)] == 0.0)
    diag = h[:, np.arange(3), np.arange(3)]
    exact = w * s * (1 - s) * (1 - 2 * s)
    assert np.all(np.abs(diag.mean(0) - exact) <= 6 * diag.std(0, ddof=1) / np.sqrt(len(h)))


def test_examples_on_a_later_axis_of_the_term(backend):
    """z of shape (4,) times W of shape (3, 4): the examples are axis 1 of the term.  E[mean(z * W)]
    = mean(s W), d/dl_i = s_i (1 - s_i) sum_m W_mi / 12."""
    l, W = np.array([0.3, -0.8, 1.2, 0.1]), RNG.normal(size=(3, 4))
    s = _sigmoid(l)
    r = sg.estimate("E[mean(z * W), z ~ Bernoulli(logits=l)]", {"l": l, "W": W}, n=20000, backend=backend, seed=8,
                    estimators={"z": "score"})
    assert "plate over 4 examples" in str(r.plan)
    assert_estimate(r, value=(s * W).mean(), grad={"l": s * (1 - s) * W.sum(0) / 12})
