"""Sum-and-sample (``estimators={"z": "sum_and_sample:k=3"}``, Liu et al. 2019) and the unordered set
estimator (``"unordered_set:k=4"``, Kool et al. 2020): unbiased against numpy brute-force enumeration,
exact at k >= the states, below the score function with a leave-one-out baseline at equal cost
evaluations on a peaked law, and clear refusals.

The exact values are written here in numpy: ``E f = sum_z q(z) f(z)`` over every joint state (the
product of independent categoricals' / Bernoullis' probabilities), and gradients by central finite
differences of that sum (step 1e-6, error ~1e-9, far below the tolerances).  Statistical tolerances
are 6 standard errors of the estimate; ``test_wrong_variant_fails`` shows the sample sizes detect a
remainder weight treated as a constant, or an unordered-set baseline without its own sample's term.
"""

import itertools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stochgrad as sg
from stochgrad.errors import PlanError, StochgradError
from stochgrad.estimators import SumAndSample, UnorderedSet, register_estimator, unregister_estimator

COSTS = {  # DSL text over z (one-hot, or a 0/1 vector) and w -> the same cost in numpy, per joint state
    "sum(z * w)**2": lambda z, w: np.sum(z * w) ** 2,
    "exp(sum(z * w) / 4)": lambda z, w: np.exp(np.sum(z * w) / 4),
    "where(sum(z * w) > 0.6, 1.0, 0.0) + sum(z * w)": lambda z, w: float(np.sum(z * w) > 0.6) + np.sum(z * w),
}


def _softmax(t):
    e = np.exp(t - t.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _states(law, theta):
    """Every joint state and its probability: one-hot rows per categorical coordinate, or 0/1 vectors."""
    if law == "Categorical":
        t = np.atleast_2d(theta)
        p, (D, K) = _softmax(t), t.shape
        for idx in itertools.product(range(K), repeat=D):
            z = np.eye(K)[list(idx)]
            yield z.reshape(np.shape(theta)), float(np.prod(p[np.arange(D), idx]))
    else:
        p = 1 / (1 + np.exp(-theta))
        for bits in itertools.product([0.0, 1.0], repeat=len(theta)):
            b = np.array(bits)
            yield b, float(np.prod(np.where(b == 1, p, 1 - p)))


def exact_value(cost, law, theta, w):
    return sum(q * cost(z, w) for z, q in _states(law, theta))


def exact(cost, law, theta, w, h=1e-6):
    """Brute force: (value, d/dtheta, d/dw), the gradients by central differences of the exact sum."""
    grads = []
    for which in (0, 1):
        x = [np.array(theta, dtype=float), np.array(w, dtype=float)]
        g = np.zeros_like(x[which])
        for i in np.ndindex(g.shape):
            up, dn = [a.copy() for a in x], [a.copy() for a in x]
            up[which][i] += h
            dn[which][i] -= h
            g[i] = (exact_value(cost, law, *up) - exact_value(cost, law, *dn)) / (2 * h)
        grads.append(g)
    return exact_value(cost, law, theta, w), grads[0], grads[1]


def run(text, law, theta, w, backend, n=3000, seed=0, spec="sum_and_sample", **kw):
    return sg.estimate(f"E[{text}, z ~ {law}(logits=theta)]", {"theta": theta, "w": w}, n=n, seed=seed,
                       backend=backend, estimators={"z": spec}, **kw)


def close(r, value, gtheta, gw, sds=6.0):
    assert abs(r.value - value) <= sds * r.value_stderr + 1e-9, (r.value, value, r.value_stderr)
    for name, g in (("theta", gtheta), ("w", gw)):
        est, se = np.asarray(r.grad[name]), np.asarray(r.stderr[name])
        assert np.all(np.abs(est - g) <= sds * se + 1e-7), (name, est, g, se)


THETA5 = np.array([1.5, 0.5, -0.3, 0.2, -1.0])
W5 = np.array([1.0, -2.0, 3.0, 0.5, 2.0])


SPECS = ["sum_and_sample:k=2", "unordered_set:k=3"]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("text", sorted(COSTS))
def test_unbiased_vs_enumeration(backend, text, spec):
    close(run(text, "Categorical", THETA5, W5, backend, spec=spec, seed=3),
          *exact(COSTS[text], "Categorical", THETA5, W5))


@settings(max_examples=12)
@given(logits=st.lists(st.floats(-3.0, 3.0), min_size=2, max_size=6), k=st.integers(1, 7),
       name=st.sampled_from(["sum_and_sample", "unordered_set"]), text=st.sampled_from(sorted(COSTS)),
       seed=st.integers(0, 1000), backend=st.sampled_from(["autograd", "torch"]))
def test_unbiased_property(logits, k, name, text, seed, backend):
    """Over logits, the number of categories K and k (k >= K included: then exact, zero stderr)."""
    theta = np.array(logits)
    w = np.linspace(-2.0, 3.0, len(theta))
    k = min(max(k, 2), 6) if name == "unordered_set" else k
    r = run(text, "Categorical", theta, w, backend, n=1500, seed=seed, spec=f"{name}:k={k}")
    close(r, *exact(COSTS[text], "Categorical", theta, w))
    if k >= len(theta):
        assert r.value_stderr < 1e-12 and np.all(np.asarray(r.stderr["theta"]) < 1e-12)


@pytest.mark.parametrize("name", ["sum_and_sample", "unordered_set"])
def test_joint_support_of_a_categorical_batch(backend, name):
    """A (2, 3) Categorical: k=4 of its 9 joint states; the cost couples the coordinates."""
    theta = np.array([[1.0, -0.5, 0.3], [0.2, 0.8, -1.2]])
    w = np.array([[1.0, 2.0, -1.0], [0.5, -2.0, 1.5]])
    close(run("sum(z * w)**2", "Categorical", theta, w, backend, spec=f"{name}:k=4", seed=5),
          *exact(COSTS["sum(z * w)**2"], "Categorical", theta, w))


@pytest.mark.parametrize("name", ["sum_and_sample", "unordered_set"])
def test_bernoulli_vector(backend, name):
    """A Bernoulli vector of 3 (8 joint states), k=3."""
    theta, w = np.array([0.4, -1.0, 1.5]), np.array([1.0, -2.0, 0.5])
    text = "exp(sum(z * w) / 4)"
    close(run(text, "Bernoulli", theta, w, backend, spec=f"{name}:k=3", seed=2),
          *exact(COSTS[text], "Bernoulli", theta, w))


@pytest.mark.parametrize("spec", ["sum_and_sample:k=5", "sum_and_sample:k=9", "unordered_set:k=5", "unordered_set:k=6"])
def test_k_at_least_the_states_is_exact(backend, spec):
    r = run("sum(z * w)**2", "Categorical", THETA5, W5, backend, n=50, spec=spec)
    value, gt, gw = exact(COSTS["sum(z * w)**2"], "Categorical", THETA5, W5)
    assert r.value == pytest.approx(value, rel=1e-10) and r.value_stderr < 1e-12
    np.testing.assert_allclose(r.grad["theta"], gt, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(r.grad["w"], gw, rtol=1e-6, atol=1e-7)
    assert np.all(np.asarray(r.stderr["theta"]) < 1e-12) and np.all(np.asarray(r.stderr["w"]) < 1e-12)


PEAKED = np.array([4.0, 1.5, 1.0, 0.0, 0.0, -0.5, -1.0, -1.0, -2.0, -3.0])
W10 = np.linspace(-2.0, 3.0, 10)


def test_variance_below_score_at_equal_evaluations(backend):
    """Peaked law over 10 categories (q of the top 3 = 0.946): sum_and_sample:k=3 at n=1000 (4 cost
    evaluations a sample, 4000 in all) and unordered_set:k=4 at n=1000 (4 evaluations) against
    score + leave-one-out at n=4000.  Measured (seed 1), the variance of the estimate summed over
    the gradient entries: d/dtheta 1.4e-5 (sum_and_sample), 2.5e-5 (unordered_set) against 3.7e-4
    (26x, 15x lower), d/dw 1.1e-5, 1.5e-5 against 7.4e-4 (65x, 49x); value stderr 0.0030, 0.0025
    against 0.0167.  Not every entry is lower: d/dtheta_7, whose f(7) is close to the mean cost, has
    stderr 1.3e-3 (sum_and_sample) against the score's 1e-4 (the remainder's baseline is the mean over
    the rest, not over all).  The test asks for a summed variance 4x lower.  The unordered set's mean
    is not checked here: a set without the top state (probability 1.9e-4) is a rare event that n=1000
    mostly misses, so its standard error, not its mean, is off here (its d/dw_0 is 45 "standard errors"
    from exact at this seed: 1.4e-4 relative; measured mean of its weight over 2e5 numpy draws: -1.6 SE)."""
    for spec, check in (("sum_and_sample:k=3", True), ("unordered_set:k=4", False)):
        _below_score(backend, spec, check)


def _below_score(backend, spec, check):
    sas = run("sum(z * w)**2", "Categorical", PEAKED, W10, backend, n=1000, seed=1, spec=spec)
    sco = run("sum(z * w)**2", "Categorical", PEAKED, W10, backend, n=4000, seed=1, spec="score")
    for name in ("theta", "w"):
        assert np.sum(np.square(sas.stderr[name])) < 0.25 * np.sum(np.square(sco.stderr[name]))
    assert sas.value_stderr < 0.5 * sco.value_stderr
    if check:
        close(sas, *exact(COSTS["sum(z * w)**2"], "Categorical", PEAKED, W10))


@dataclass(frozen=True)
class _ConstantRemainder(SumAndSample):
    """Deliberately wrong: the remainder's weight 1 - q(C) in front of f(z) treated as a constant (the
    term -f(z) grad q(C) dropped): biased by E[f | not C] grad q(C)."""

    name: ClassVar[str] = "sum_and_sample_wrong"

    def remainder(self, B, Q):
        return B.stop_gradient(1.0 - Q)


def test_wrong_variant_fails():
    """The sample size of the tests above detects the dropped term (so they would catch such a bug):
    measured (seed 3), (estimate - exact) / stderr = [+inf, +inf, -32, -88, -37] for the wrong variant
    (its d/dtheta of the two summed categories has no noise left), [-0.9, -0.9, 1.0, 0.4, -1.0] for
    sum_and_sample itself."""
    register_estimator(_ConstantRemainder)
    try:
        r = run("sum(z * w)**2", "Categorical", THETA5, W5, "torch", seed=3, spec="sum_and_sample_wrong:k=2")
    finally:
        unregister_estimator("sum_and_sample_wrong")
    _, gt, _ = exact(COSTS["sum(z * w)**2"], "Categorical", THETA5, W5)
    assert np.any(np.abs(np.asarray(r.grad["theta"]) - gt) > 6 * np.asarray(r.stderr["theta"]))


@dataclass(frozen=True)
class _NoOwnTerm(UnorderedSet):
    """Deliberately wrong: the baseline b(S, s) without its own sample's term p(s) f(s), so that
    E[b | s first] = E f - q(s) f(s) depends on s: biased."""

    name: ClassVar[str] = "unordered_set_wrong"

    def sample_copies(self, d, B, p, draw, shape):
        values, packed = super().sample_copies(d, B, p, draw, shape)
        k = self.k
        n = B.shape(values)[0] // k
        mask = np.ones(k * (k + 2))
        mask[2 * k + np.arange(k) * (k + 1)] = 0.0  # the diagonal blocks (j, j) of the baseline's weights
        return values, packed * B.asarray(np.repeat(mask, n))


def test_wrong_unordered_set_fails():
    """Measured (seed 3, n=3000): (estimate - exact) / stderr = [1.5, 8.4, 1.4, -11.5, -4.3] for the
    wrong variant, [0.7, 0.2, -0.3, -0.3, -0.1] for unordered_set itself."""
    register_estimator(_NoOwnTerm)
    try:
        r = run("sum(z * w)**2", "Categorical", THETA5, W5, "torch", seed=3, spec="unordered_set_wrong:k=3")
    finally:
        unregister_estimator("unordered_set_wrong")
    _, gt, _ = exact(COSTS["sum(z * w)**2"], "Categorical", THETA5, W5)
    assert np.any(np.abs(np.asarray(r.grad["theta"]) - gt) > 6 * np.asarray(r.stderr["theta"]))


def test_parameters_that_differ_per_sample():
    """Logits that depend on an outer random node (a top-k set per sample): the outer x ~ Bernoulli(0.5)
    scored, exact by brute force over x."""
    text = "E[E[sum(z * w)**2, z ~ Categorical(logits=theta * (1 + x))], x ~ Bernoulli(0.5)]"
    theta, w = np.array([1.0, 0.0, -1.0, 0.5]), np.array([1.0, 2.0, -3.0, 4.0])
    r = sg.estimate(text, {"theta": theta, "w": w}, n=4000, seed=4, backend="torch",
                    estimators={"z": "sum_and_sample:k=2", "x": "score"})
    cost = COSTS["sum(z * w)**2"]
    halves = [exact(cost, "Categorical", theta * (1 + x), w) for x in (0, 1)]
    value = 0.5 * (halves[0][0] + halves[1][0])
    gtheta = 0.5 * (halves[0][1] + 2 * halves[1][1])  # d/dtheta of theta * 2 at x = 1
    gw = 0.5 * (halves[0][2] + halves[1][2])
    close(r, value, gtheta, gw)


def test_chunked_run_is_the_unchunked_run(backend):
    """The leave-one-out baseline is grouped by noise block: chunks give the same estimate."""
    a = run("sum(z * w)**2", "Categorical", THETA5, W5, backend, n=3000, seed=8, spec="sum_and_sample:k=2")
    b = run("sum(z * w)**2", "Categorical", THETA5, W5, backend, n=3000, seed=8, spec="sum_and_sample:k=2",
            chunk_size=1000)
    np.testing.assert_allclose(a.grad["theta"], b.grad["theta"], rtol=1e-9, atol=1e-12)
    assert a.value == pytest.approx(b.value, rel=1e-12)


def test_plan_says_k_and_the_evaluations():
    r = run("sum(z * w)**2", "Categorical", THETA5, W5, "torch", n=10, spec="sum_and_sample:k=2")
    line = str(r.plan)
    assert "sum_and_sample (k=2" in line and "3 cost evaluations per sample" in line
    spec = SumAndSample(k=2)
    assert spec.evaluations(5) == 3 and spec.evaluations(2) == 2 and spec.evaluations(None) == 3


def test_compiled_objective_gradient_torch():
    """sg.compile: backprop through the objective gives the estimator (first order); tolerance 6
    standard errors measured by sg.estimate at the same n."""
    torch = pytest.importorskip("torch")
    text = "E[sum(z * w)**2, z ~ Categorical(logits=theta)]"
    f = sg.compile(text, backend="torch", n=4000, seed=2, estimators={"z": "sum_and_sample:k=2"})
    th = torch.tensor(THETA5, dtype=torch.float64, requires_grad=True)
    f(theta=th, w=torch.tensor(W5, dtype=torch.float64)).backward()
    se = np.asarray(run(text[2:text.index(",")], "Categorical", THETA5, W5, "torch", n=4000, seed=2,
                        spec="sum_and_sample:k=2").stderr["theta"])
    _, gt, _ = exact(COSTS["sum(z * w)**2"], "Categorical", THETA5, W5)
    assert np.all(np.abs(th.grad.numpy() - gt) <= 6 * se + 1e-9)


def test_refuses_non_categorical():
    with pytest.raises(PlanError, match="sum_and_sample needs a Categorical or Bernoulli node; this node is Normal"):
        sg.estimate("E[z**2, z ~ Normal(mu, 1.0)]", {"mu": 0.0}, n=10, estimators={"z": "sum_and_sample"})


def test_refuses_a_large_joint_support():
    with pytest.raises(PlanError, match=r"sum_and_sample .* 16384 joint states exceed 4096.*use score"):
        sg.estimate("E[sum(z), z ~ Categorical(logits=theta)]", {"theta": np.zeros((7, 4))}, n=10,
                    estimators={"z": "sum_and_sample"})


def test_refuses_a_second_random_node():
    with pytest.raises(StochgradError, match="sum_and_sample: z must be the only random node"):
        sg.estimate("E[sum(z * w) + y, z ~ Categorical(logits=theta), y ~ Normal(0, 1)]",
                    {"theta": THETA5, "w": W5}, n=10, estimators={"z": "sum_and_sample"})


@pytest.mark.parametrize("opt", ["k=0", "k=1.5", "k=-2", "k=x"])
def test_refuses_bad_k(opt):
    with pytest.raises(PlanError, match="sum_and_sample: k must be an integer >= 1"):
        run("sum(z * w)", "Categorical", THETA5, W5, "torch", n=10, spec=f"sum_and_sample:{opt}")


def test_second_random_node_does_not_break_compare_or_pilots():
    """compare and the min_variance pilots skip sum_and_sample where it refuses the expectation."""
    text = "E[sum(z * w)**2 + y, z ~ Categorical(logits=theta), y ~ Normal(0, 1)]"
    params = {"theta": THETA5, "w": W5}
    c = sg.compare(text, params, n=200, seed=0, backend="torch")
    assert not any("sum_and_sample" in row.estimator for row in c.rows) and c.rows
    r = sg.estimate(text, params, n=200, seed=0, backend="torch", policy="min_variance", enumerate_budget=2)
    z = r.plan.node("z")
    assert not z.estimator.startswith("sum_and_sample")  # not chosen, and listed as refused there
    assert "refused here:" in z.reason and "sum_and_sample" in z.reason.split("refused here:")[1]


def test_pilot_prices_it_by_its_evaluations():
    """Alone in its expectation, the min_variance pilot measures it with k + 1 evaluations a sample."""
    r = sg.estimate("E[sum(z * w)**2, z ~ Categorical(logits=theta)]", {"theta": PEAKED, "w": W10}, n=200, seed=0,
                    backend="torch", policy="min_variance", enumerate_budget=2)
    assert "sum_and_sample (k=3" in str(r.plan)


@pytest.mark.parametrize("opt", ["k=1", "k=7", "k=2.5"])
def test_unordered_set_refuses_bad_k(opt):
    with pytest.raises(PlanError, match=rf"unordered_set: k must be an integer from 2 .* to 6 .*got {opt[2:]}$"):
        run("sum(z * w)", "Categorical", THETA5, W5, "torch", n=10, spec=f"unordered_set:{opt}")


@pytest.mark.parametrize("name", ["sum_and_sample", "unordered_set"])
def test_refusals_name_the_estimator(name):
    with pytest.raises(PlanError, match=f"{name} needs a Categorical or Bernoulli node; this node is Poisson"):
        sg.estimate("E[z, z ~ Poisson(r)]", {"r": 2.0}, n=10, estimators={"z": name})
    with pytest.raises(StochgradError, match=f"{name}: z must be the only random node"):
        sg.estimate("E[sum(z * w) + y, z ~ Categorical(logits=theta), y ~ Normal(0, 1)]",
                    {"theta": THETA5, "w": W5}, n=10, estimators={"z": name})
    with pytest.raises(StochgradError, match=f"{name}: z cannot sit inside an enumeration or a batch_axes run"):
        sg.estimate("E[sum(z * w, axis=-1), z ~ Categorical(logits=theta)]", {"theta": np.zeros((3, 2)),
                    "w": np.ones(2)}, n=10, estimators={"z": name}, batch_axes=1)
    with pytest.raises(StochgradError, match=f"{name}: z cannot sit inside an enumeration"):  # x enumerated outside
        sg.estimate("E[E[sum(z * w), z ~ Categorical(logits=theta * x)], x ~ Bernoulli(0.5)]",
                    {"theta": THETA5, "w": W5}, n=10, estimators={"z": name})


def test_unordered_set_plan_and_evaluations():
    r = run("sum(z * w)**2", "Categorical", THETA5, W5, "torch", n=10, spec="unordered_set:k=3")
    assert "unordered_set (k=3 states without replacement" in str(r.plan) and "3 cost evaluations" in str(r.plan)
    assert UnorderedSet(k=3).evaluations(5) == 3 and UnorderedSet(k=3).evaluations(2) == 2


@pytest.mark.parametrize("k", [2, 3, 4])
def test_unordered_set_weights_are_exact_in_expectation(k):
    """The host weights (stochgrad.estimators.unordered_set.set_weights) averaged over every ordered draw
    without replacement, in numpy: sum_S P(S) w(S, s) = q(s) (the value estimator is unbiased), and the
    gradient estimate sum_s w_s (f_s - b_s) grad log q(s), b_s = sum_s' W[s, s'] f_s', averages to the
    exact q * (f - E f) (logits gradient), to rounding: no Monte Carlo here."""
    from stochgrad.estimators.unordered_set import set_weights

    theta = np.array([2.5, 0.3, -0.7, 1.1, -2.0, 0.0])
    f = np.array([3.0, -1.0, 4.0, 0.5, 9.0, -2.0])
    q = _softmax(theta)
    orders = np.array(list(itertools.permutations(range(len(q)), k)))
    prob, left = np.ones(len(orders)), np.ones(len(orders))
    for i in range(k):  # P(ordered draw) = prod_i q(s_i) / (1 - q(s_1) - ... - q(s_{i-1}))
        prob, left = prob * q[orders[:, i]] / left, left - q[orders[:, i]]
    w, base = set_weights(np.tile(np.log(q), (len(orders), 1)), orders)
    value = np.zeros(len(q))
    grad = np.zeros(len(q))
    fs = f[orders]
    b = np.einsum("nji,ni->nj", base, fs)
    for j in range(k):
        np.add.at(value, orders[:, j], prob * w[:, j])
        score = np.eye(len(q))[orders[:, j]] - q  # grad of log q(s) in the logits
        grad += np.sum((prob * w[:, j] * (fs[:, j] - b[:, j]))[:, None] * score, axis=0)
    np.testing.assert_allclose(value, q, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grad, q * (f - q @ f), rtol=1e-10, atol=1e-13)
