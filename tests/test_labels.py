"""Integer data in log_prob (stochgrad.labels): Categorical class labels and integer counts.

References are scipy's (``special.log_softmax``, ``stats.*.logpmf``) and the hand-derived gradient of a
labelled log-softmax in the logits, ``onehot(y) - softmax(logits)``; the one-hot path is the second,
independent route for the same numbers.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import special, stats

import stochgrad as sg
from stochgrad.errors import StochgradError, ValidationError

LABELS = "E[sum(log_prob(Categorical(logits=l), y)) + 0 * z, z ~ Normal(0, 1)]"


@st.composite
def labelled(draw):
    n, k = draw(st.integers(1, 6)), draw(st.integers(2, 6))
    logits = np.array(draw(st.lists(st.floats(-3, 3), min_size=n * k, max_size=n * k))).reshape(n, k)
    y = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)), dtype=np.int64)
    return logits, y


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=labelled())
def test_labels_match_scipy_and_the_hand_gradient(backend, case):
    logits, y = case
    r = sg.estimate(LABELS, {"l": logits, "y": y}, n=8, seed=0, backend=backend)
    ls = special.log_softmax(logits, axis=1)
    assert r.value == pytest.approx(ls[np.arange(len(y)), y].sum(), rel=1e-10, abs=1e-10)
    hand = np.eye(logits.shape[1])[y] - np.exp(ls)
    np.testing.assert_allclose(r.grad["l"], hand, atol=1e-10)
    assert "y" not in r.grad  # data: never differentiated


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=labelled())
def test_labels_equal_the_one_hot_value_and_gradient(backend, case):
    logits, y = case
    onehot = np.eye(logits.shape[1])[y]
    a = sg.estimate(LABELS, {"l": logits, "y": y}, n=8, seed=0, backend=backend)
    b = sg.estimate(LABELS, {"l": logits, "y": onehot}, n=8, seed=0, backend=backend, wrt=["l"])
    assert a.value == pytest.approx(b.value, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(a.grad["l"], b.grad["l"], atol=1e-12)


def test_labels_broadcast_over_batch_shapes_and_indices(backend):
    rng = np.random.default_rng(0)
    shared = rng.normal(size=4)  # one law for every label: (4,) logits, (3, 5) labels -> (3, 5)
    y = rng.integers(0, 4, size=(3, 5))
    r = sg.estimate(LABELS, {"l": shared, "y": y}, n=8, seed=0, backend=backend)
    assert r.value == pytest.approx(special.log_softmax(shared)[y].sum(), rel=1e-12)
    per = rng.normal(size=(5, 4))  # logits (5, 4) against labels (3, 5): rows broadcast
    r = sg.estimate(LABELS, {"l": per, "y": y}, n=8, seed=0, backend=backend)
    assert r.value == pytest.approx(special.log_softmax(per, axis=1)[np.arange(5), y].sum(), rel=1e-12)
    cols = rng.integers(0, 4, size=(5, 2))  # an index of the labels: y[:, 1]
    text = "E[sum(log_prob(Categorical(logits=l), y[:, 1])) + 0 * z, z ~ Normal(0, 1)]"
    r = sg.estimate(text, {"l": per, "y": cols}, n=8, seed=0, backend=backend)
    assert r.value == pytest.approx(special.log_softmax(per, axis=1)[np.arange(5), cols[:, 1]].sum(), rel=1e-12)


COUNTS = [
    ("Poisson(a)", {"a": np.array([0.5, 2.0, 3.5])}, np.array([0, 2, 7]), lambda y, a: stats.poisson(a).logpmf(y)),
    ("Binomial(6, a)", {"a": np.array([0.2, 0.5, 0.9])}, np.array([0, 3, 6]), lambda y, a: stats.binom(6, a).logpmf(y)),
    (
        "Geometric(a)",
        {"a": np.array([0.3, 0.6, 0.9])},
        np.array([0, 1, 4]),
        lambda y, a: stats.geom(a, loc=-1).logpmf(y),
    ),  # failures before the first success, as scipy's loc=-1
    ("Bernoulli(a)", {"a": np.array([0.2, 0.5, 0.9])}, np.array([0, 1, 1]), lambda y, a: stats.bernoulli(a).logpmf(y)),
]


@pytest.mark.parametrize("law, params, y, reference", COUNTS, ids=[c[0] for c in COUNTS])
def test_integer_counts_match_scipy_and_the_float_path(backend, law, params, y, reference):
    text = f"E[sum(log_prob({law}, y)) + 0 * z, z ~ Normal(0, 1)]"
    a = sg.estimate(text, {**params, "y": y}, n=8, seed=0, backend=backend)
    assert a.value == pytest.approx(reference(y, *params.values()).sum(), rel=1e-10)
    b = sg.estimate(text, {**params, "y": y.astype(float)}, n=8, seed=0, backend=backend, wrt=["a"])
    assert a.value == pytest.approx(b.value, rel=1e-12)
    np.testing.assert_allclose(a.grad["a"], b.grad["a"], rtol=1e-10)
    assert set(a.grad) == {"a"}


BAD = [
    (LABELS, {"l": np.zeros((3, 4)), "y": np.array([0, 4, 1])}, "entry 4 at index (1,)"),
    (LABELS, {"l": np.zeros((3, 4)), "y": np.array([0, 1, -1])}, "entry -1 at index (2,)"),
    (
        "E[sum(log_prob(Poisson(a), y)) + 0 * z, z ~ Normal(0, 1)]",
        {"a": np.ones(2), "y": np.array([3, -2])},
        "not a Poisson count",
    ),
    (
        "E[sum(log_prob(Bernoulli(a), y)) + 0 * z, z ~ Normal(0, 1)]",
        {"a": np.full(2, 0.5), "y": np.array([1, 2])},
        "not a Bernoulli value (0 or 1)",
    ),
]


@pytest.mark.parametrize("text, params, message", BAD)
def test_data_out_of_range_names_the_parameter_and_entry(backend, text, params, message):
    with pytest.raises(StochgradError, match=r"parameter 'y' has " if "entry" in message else "parameter 'y'") as info:
        sg.estimate(text, params, n=8, seed=0, backend=backend)
    assert message in str(info.value)


def test_integer_data_has_no_gradient_and_float_labels_get_a_hint():
    params = {"l": np.zeros((3, 4)), "y": np.array([0, 1, 2])}
    with pytest.raises(ValidationError, match="'y', which was given integer values"):
        sg.estimate(LABELS, params, n=8, seed=0, wrt=["y"])
    with pytest.raises(StochgradError, match="class labels must be an integer array"):
        sg.estimate(LABELS, {**params, "y": np.array([0.0, 1.0, 2.0])}, n=8, seed=0)


def test_a_plan_is_made_for_the_kind_of_its_data():
    text = "E[sum(log_prob(Poisson(a), y)) + 0 * z, z ~ Normal(0, 1)]"
    floats = {"a": np.ones(2), "y": np.array([1.0, 2.0])}
    p = sg.plan(text, floats)
    with pytest.raises(ValidationError, match="made for real \\(float\\) values of parameter 'y'"):
        p.estimate({"a": np.ones(2), "y": np.array([1, 2])}, n=8, seed=0)
    q = sg.plan(text, {"a": np.ones(2), "y": np.array([1, 2])})
    with pytest.raises(ValidationError, match="made for integer values of parameter 'y'"):
        q.estimate(floats, n=8, seed=0)
    assert q.estimate({"a": np.ones(2), "y": np.array([1, 2])}, n=8, seed=0).value == pytest.approx(
        stats.poisson(1.0).logpmf([1, 2]).sum(), rel=1e-12
    )


def test_compiled_objective_plans_once_per_kind():
    torch = pytest.importorskip("torch")
    f = sg.compile(LABELS, backend="torch", n=4, seed=0)
    logits = torch.tensor(np.random.default_rng(1).normal(size=(3, 4)), requires_grad=True)
    labels = torch.tensor([2, 0, 3])
    ls = special.log_softmax(logits.detach().numpy(), axis=1)
    by_labels = f(l=logits, y=labels)
    (g1,) = torch.autograd.grad(by_labels, logits)
    by_onehot = f(l=logits, y=torch.eye(4, dtype=torch.float64)[labels])
    (g2,) = torch.autograd.grad(by_onehot, logits)
    again = f(l=logits, y=labels)  # the integer plan again, after the float one
    expected = ls[np.arange(3), labels.numpy()].sum()
    for v in (by_labels, by_onehot, again):
        assert v.item() == pytest.approx(expected, rel=1e-12)
    hand = np.eye(4)[labels.numpy()] - np.exp(ls)
    np.testing.assert_allclose(g1.numpy(), hand, atol=1e-12)
    np.testing.assert_allclose(g2.numpy(), hand, atol=1e-12)
    with pytest.raises(StochgradError, match="entry 7 at index \\(1,\\)"):
        f(l=logits, y=torch.tensor([0, 7, 1]))


def test_a_classifier_likelihood_in_the_dsl(backend):
    # Bayesian softmax regression: E_w[sum_i log softmax(x_i @ w)[y_i]], w ~ Normal(m, s) (pathwise);
    # the labelled and one-hot forms see the same noise, so they agree to rounding
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(10, 3)), rng.integers(0, 4, size=10)
    text = "E[sum(log_prob(Categorical(logits=x @ w), y)), w ~ Normal(m, s)]"
    params = {"x": x, "m": rng.normal(size=(3, 4)) * 0.3, "s": np.full((3, 4), 0.2)}
    a = sg.estimate(text, {**params, "y": y}, n=2_000, seed=5, backend=backend, wrt=["m", "s"])
    b = sg.estimate(text, {**params, "y": np.eye(4)[y]}, n=2_000, seed=5, backend=backend, wrt=["m", "s"])
    assert a.value == pytest.approx(b.value, rel=1e-10)
    for k in ("m", "s"):
        np.testing.assert_allclose(a.grad[k], b.grad[k], rtol=1e-8, atol=1e-10)
