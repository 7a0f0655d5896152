"""Learned (input-dependent) score-function baselines: ``sg.Score(baseline=sg.Baseline(fn, inputs))``.

Closed forms are hand derivations: for ``z ~ Bernoulli(p)``, ``p = sigmoid(t)`` and cost
``(z - x)**2``, ``E[f | x] = p (1 - x)**2 + (1 - p) x**2 = x**2 + p (1 - 2x)`` and
``d/dt E = p (1 - p) (1 - 2x)``; for ``z ~ Normal(mu, 1)`` and cost ``z * x``, ``d/dmu = x``.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stochgrad as sg

BERN = "E[(z - x)**2, z ~ Bernoulli(sigmoid(t))]"


def sigmoid(t):
    return 1.0 / (1.0 + math.exp(-t))


def dE_dt(t, x):
    p = sigmoid(t)
    return p * (1 - p) * (1 - 2 * x)


def affine(a, c):
    """A fixed baseline a + c x (plain arithmetic: runs on both backends' arrays)."""
    def fn(x):
        return a + c * x
    return fn


@pytest.mark.parametrize("backend", ["autograd", "torch"])
@settings(max_examples=4)
@given(a=st.floats(-20, 20), c=st.floats(-10, 10), t=st.floats(-1.5, 1.5), x=st.floats(-2, 2))
def test_any_fixed_baseline_is_unbiased(backend, a, c, t, x):
    # n = 4000: stderr of d/dt ~ |f - b| p(1-p)/sqrt(n); a baseline wrongly left unstopped in the score
    # term, or one reading z, would shift the mean by O(p(1-p)) -- tens of standard errors here.
    spec = sg.Score(baseline=sg.Baseline(affine(a, c), inputs=("x",)))
    r = sg.estimate(BERN, {"t": t, "x": x}, n=4000, seed=1, backend=backend, estimators={"z": spec})
    assert abs(r.grad["t"] - dE_dt(t, x)) <= 6 * r.stderr["t"] + 1e-9
    p = sigmoid(t)
    assert abs(r.value - (x * x + p * (1 - 2 * x))) <= 6 * r.value_stderr + 1e-9
    assert "learned baseline fn(x)" in str(r.plan)


@pytest.mark.parametrize("backend", ["autograd", "torch"])
def test_fixed_baseline_on_a_normal_node(backend):
    spec = sg.Score(baseline=sg.Baseline(affine(3.0, 2.0), inputs=("x",)))
    r = sg.estimate("E[z * x, z ~ Normal(mu, 1)]", {"mu": 0.5, "x": 1.5}, n=4000, seed=2, backend=backend,
                    estimators={"z": spec})
    assert abs(r.grad["mu"] - 1.5) <= 6 * r.stderr["mu"]
    assert abs(r.grad["x"] - 0.5) <= 6 * r.stderr["x"]  # the baseline's input is stopped: no bias in d/dx


def test_the_z_test_has_power():
    # the same run against a closed form off by 0.15 (~20% of the gradient; stderr ~ 0.018) fails
    spec = sg.Score(baseline=sg.Baseline(affine(5.0, 0.0), inputs=("x",)))
    r = sg.estimate(BERN, {"t": 0.3, "x": 2.0}, n=4000, seed=1, backend="autograd", estimators={"z": spec})
    assert abs(r.grad["t"] - (dE_dt(0.3, 2.0) + 0.15)) > 6 * r.stderr["t"]


@pytest.mark.parametrize("backend", ["autograd", "torch"])
@pytest.mark.parametrize("goal", ["minimize", "maximize"])
def test_value_is_unchanged(backend, goal):
    spec = sg.Score(baseline=sg.Baseline(affine(1.0, -0.5), inputs=("x",), goal=goal))
    f = sg.compile(BERN, n=16, backend=backend, seed=3, estimators={"z": spec})
    g = sg.compile(BERN, n=16, backend=backend, seed=3, estimators={"z": sg.Score(baseline=None)})
    for _ in range(3):
        # equal up to rounding ([]L (v - b) + b is v in exact arithmetic; the fit term is exactly 0)
        assert float(f(t=0.2, x=0.7)) == pytest.approx(float(g(t=0.2, x=0.7)), rel=1e-12, abs=1e-12)


torch = pytest.importorskip("torch")
D = torch.float64


class Quadratic(torch.nn.Module):
    """b(x) = w0 + w1 x + w2 x^2: can represent E[f | x] = x^2 + p (1 - 2x) exactly."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3, dtype=D))

    def forward(self, x):
        return self.w[0] + self.w[1] * x + self.w[2] * x * x


def _conditional_error(net, t):
    xs = torch.linspace(-2, 2, 41, dtype=D)
    p = sigmoid(t)
    with torch.no_grad():
        return float(torch.mean((net(xs) - (xs ** 2 + p * (1 - 2 * xs))) ** 2))


def _train(goal, steps=1000, seed=0):
    torch.manual_seed(0)
    net = Quadratic()
    f = sg.compile(BERN, n=1, backend="torch", seed=seed,
                   estimators={"z": sg.Score(baseline=sg.Baseline(net, inputs=("x",), goal=goal))})
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    xs = np.random.default_rng(seed).uniform(-2, 2, size=steps)
    t = torch.tensor(0.4, dtype=D)
    before = _conditional_error(net, 0.4)
    for x in xs:
        opt.zero_grad()
        out = f(t=t, x=torch.tensor(x, dtype=D))
        (out if goal == "minimize" else -out).backward()  # the user's optimizer descends (or ascends) f
        opt.step()
    return net, f, before, _conditional_error(net, 0.4)


@pytest.mark.parametrize("goal", ["minimize", "maximize"])
def test_learned_baseline_trains(goal):
    # E[(f - b)^2 | x] = Var[f | x] + (E[f | x] - b(x))^2: the second part must fall (from ~ 7.6 at b = 0)
    _, _, before, after = _train(goal)
    assert after < 0.1 * before


def test_wrong_sign_does_not_train():
    # ascending an objective whose baseline was declared for minimisation grows the error
    torch.manual_seed(0)
    net = Quadratic()
    f = sg.compile(BERN, n=1, backend="torch", seed=0,
                   estimators={"z": sg.Score(baseline=sg.Baseline(net, inputs=("x",)))})
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    before = _conditional_error(net, 0.4)
    for x in np.random.default_rng(0).uniform(-2, 2, size=40):
        opt.zero_grad()
        (-f(t=torch.tensor(0.4, dtype=D), x=torch.tensor(x, dtype=D))).backward()
        opt.step()
    assert _conditional_error(net, 0.4) > before


def _grads(f, calls, seed):
    xs = np.random.default_rng(seed).uniform(-2, 2, size=calls)
    out = []
    for x in xs:
        t = torch.tensor(0.4, dtype=D, requires_grad=True)
        f(t=t, x=torch.tensor(x, dtype=D)).backward()
        out.append((float(t.grad), dE_dt(0.4, x)))
    return np.array(out)


def test_learned_baseline_lowers_variance_and_stays_unbiased():
    # contextual toy with n = 1 (leave-one-out has no other sample): a baseline of x removes most of
    # the score term's variance, which a constant cannot (E[f | x] ranges over [0.4, 5.6])
    net, f, _, _ = _train("minimize")
    for prm in net.parameters():
        prm.requires_grad_(False)  # frozen for the measurement
    with_b = _grads(f, 400, seed=7)
    without = _grads(sg.compile(BERN, n=1, backend="torch", seed=0, estimators={"z": sg.Score(baseline=None)}), 400, 7)
    err_b, err_0 = with_b[:, 0] - with_b[:, 1], without[:, 0] - without[:, 1]
    assert np.var(err_b) < 0.3 * np.var(err_0)
    assert abs(err_b.mean()) <= 6 * err_b.std(ddof=1) / math.sqrt(len(err_b))


def test_minimize_and_maximize_train_in_opposite_directions():
    grads = []
    for goal in ("minimize", "maximize"):
        net = Quadratic()
        f = sg.compile(BERN, n=8, backend="torch", seed=5,
                       estimators={"z": sg.Score(baseline=sg.Baseline(net, inputs=("x",), goal=goal))})
        f(t=torch.tensor(0.1, dtype=D), x=torch.tensor(1.0, dtype=D)).backward()
        grads.append(net.w.grad.clone())
    assert torch.allclose(grads[0], -grads[1]) and float(grads[0].abs().sum()) > 0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy * torch tensor, in the wrong-shape case
@pytest.mark.parametrize("backend", ["autograd", "torch"])
@pytest.mark.parametrize("fn, inputs, match", [
    (lambda z: z, ("z",), "its own sample"),
    (lambda y: y, ("y",), "sampled after z"),
    (lambda q: q, ("q",), "not a parameter or variable"),
    (lambda x: x * np.ones((2, 3)), ("x",), "one baseline per sample"),
])
def test_refusals(backend, fn, inputs, match):
    text = "E[(z - x)**2 + y, z ~ Bernoulli(sigmoid(t)), y ~ Normal(z, 1)]"
    spec = sg.Score(baseline=sg.Baseline(fn, inputs=inputs))
    with pytest.raises(sg.PlanError, match=match):
        sg.estimate(text, {"t": 0.1, "x": 1.0}, n=3, seed=0, backend=backend, estimators={"z": spec, "y": "pathwise"})


def test_bad_specs():
    with pytest.raises(sg.PlanError, match="callable"):
        sg.Baseline(3.0)
    with pytest.raises(sg.PlanError, match="goal"):
        sg.Baseline(abs, goal="descend")
    with pytest.raises(sg.PlanError, match="enumerates"):
        sg.estimate("E[(z - x)**2 + k, z ~ Bernoulli(sigmoid(t)), k ~ Bernoulli(0.3)]", {"t": 0.1, "x": 1.0}, n=4,
                    seed=0, estimators={"z": sg.Score(baseline=sg.Baseline(affine(0, 1), inputs=("x",))),
                                        "k": "enumerate"})


@pytest.mark.parametrize("backend", ["autograd", "torch"])
def test_a_constant_baseline_and_a_non_array(backend):
    r = sg.estimate(BERN, {"t": -0.5, "x": 1.5}, n=4000, seed=4, backend=backend,
                    estimators={"z": sg.Score(baseline=sg.Baseline(lambda: 2.0))})
    assert abs(r.grad["t"] - dE_dt(-0.5, 1.5)) <= 6 * r.stderr["t"]
    with pytest.raises(sg.PlanError, match="not an array"):
        sg.estimate(BERN, {"t": 0.1, "x": 1.0}, n=3, seed=0, backend=backend,
                    estimators={"z": sg.Score(baseline=sg.Baseline(lambda x: "b", inputs=("x",)))})


@pytest.mark.parametrize("backend", ["autograd", "torch"])
def test_per_example_baseline_under_a_plate(backend):
    # the plate is inferred (sum of per-example terms); fn returns one baseline per example, shape (1, K)
    t, x = np.array([0.3, -0.4, 1.0]), np.array([2.0, -1.0, 0.5])
    p = 1 / (1 + np.exp(-t))
    exact = p * (1 - p) * (1 - 2 * x)
    text = "E[sum((z - x)**2), z ~ Bernoulli(sigmoid(t))]"
    spec = sg.Score(baseline=sg.Baseline(lambda x: x ** 2 + 0.5 * (1 - 2 * x), inputs=("x",)))
    r = sg.estimate(text, {"t": t, "x": x}, n=4000, seed=0, backend=backend, estimators={"z": spec})
    assert np.all(np.abs(np.asarray(r.grad["t"]) - exact) <= 6 * np.asarray(r.stderr["t"]) + 1e-9)
    plain = sg.estimate(text, {"t": t, "x": x}, n=4000, seed=0, backend=backend,
                        estimators={"z": sg.Score(baseline=None)})
    assert np.all(np.asarray(r.stderr["t"])[:2] < 0.3 * np.asarray(plain.stderr["t"])[:2])


@pytest.mark.parametrize("seed", [1, 4])
def test_fused_objective_trains_the_same_baseline(seed):
    """``fuse=True`` (one call computes value and gradient) gives the baseline's parameters, the
    model's gradient and the value of the unfused objective, for the same seed."""
    torch = pytest.importorskip("torch")
    results = []
    for fuse in (False, True):
        torch.manual_seed(0)
        net = torch.nn.Linear(1, 1).double()
        spec = sg.Score(baseline=sg.Baseline(lambda x, net=net: net(x.reshape(-1, 1)).reshape(-1), inputs=("x",)))
        f = sg.compile("E[(z - x) ** 2 + z, z ~ Normal(x, 1)]", backend="torch", n=64, seed=seed,
                       estimators={"z": spec}, fuse=fuse)
        x = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
        out = f(x=x)
        out.backward()
        results.append((out.item(), x.grad.item(), net.weight.grad.item(), net.bias.grad.item()))
    assert all(math.isfinite(v) for v in results[0]) and results[0][2] != 0.0
    np.testing.assert_allclose(results[1], results[0], rtol=1e-10, atol=1e-12)
