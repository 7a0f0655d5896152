"""RELAX (``sg.Relax(surrogate=net)``) and learnable REBAR (``sg.Rebar(learn=True)``).

Exact gradients are brute-force enumerations written here with numpy:
``dL/dtheta_i = sum_b f(b) p(b) (b_i - p_i)`` over all ``2**D`` states of ``b ~ Bernoulli(sigmoid(theta))``.
Tolerances are 6 standard errors of the estimate; ``test_wrong_variant_fails`` shows that the sample
size detects a control variate that is not resampled conditionally on ``b`` (measured: up to 48
standard errors off, seed 3).  The learning tests measure the single-sample variance of d/dtheta on
the RELAX toy ``f(b) = (b - 0.499)**2`` at theta = 0 from 20000 independent draws of ``sg.estimate``
(``stderr**2 * n``) before and after training a compiled torch objective with Adam.
"""

import itertools
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import stochgrad as sg
from conftest import numpy_of
from _bernoulli_exact import exact
from stochgrad.errors import PlanError, StochgradError
from stochgrad.estimators import register_estimator, unregister_estimator
from stochgrad.estimators.relax import Relax

RNG = np.random.default_rng(0)
W1, B1, W2 = RNG.normal(size=(3, 6)), RNG.normal(size=6), RNG.normal(size=6)
COSTS = {  # DSL text over b (a length-3 vector) and w -> the same cost in numpy, per state
    "sum(w * b)**2": lambda b, w: np.sum(w * b) ** 2,
    "exp(sum(w * b))": lambda b, w: np.exp(np.sum(w * b)),
    "(b[0] - b[1] * b[2] - 0.3)**2": lambda b, w: (b[0] - b[1] * b[2] - 0.3) ** 2,
}
THETA, W = np.array([0.4, -1.0, 1.5]), np.array([1.0, -2.0, 0.5])
TOY = "E[(b - 0.499)**2, b ~ Bernoulli(logits=theta)]"


def mlp(backend):
    """A fixed random network of the relaxed logits (n, 3) -> (n,), native to the backend."""
    if backend == "torch":
        a, c, d = (torch.tensor(x) for x in (W1, B1, W2))
        return lambda z: torch.tanh(z @ a + c) @ d
    xp = numpy_of(backend)
    return lambda z: xp.dot(xp.tanh(xp.dot(z, W1) + B1), W2)


class Net(torch.nn.Module):
    """A learnable control variate: z (n,) or (n, dim) -> (n,) (the surrogate's contract)."""

    def __init__(self, dim=1):
        super().__init__()
        torch.manual_seed(0)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(dim, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()

    def forward(self, z):
        return self.mlp(z.reshape(z.shape[0], -1)).reshape(-1)


def run(text, theta, backend, spec, n=4000, seed=3):
    params = {"theta": theta, "w": W} if "w" in text else {"theta": theta}
    return sg.estimate(f"E[{text}, b ~ Bernoulli(logits=theta)]", params, n=n, seed=seed, backend=backend,
                       estimators={"b": spec})


def close(r, value, grad):
    assert abs(r.value - value) <= 6 * r.value_stderr + 1e-9
    g, se = np.asarray(r.grad["theta"]), np.asarray(r.stderr["theta"])
    assert np.all(np.abs(g - grad) <= 6 * se + 1e-9), (g, grad, se)


@pytest.mark.parametrize("cost_term", [True, False], ids=["eta_f_plus_net", "net_only"])
@pytest.mark.parametrize("text", sorted(COSTS))
def test_unbiased_vs_enumeration(backend, text, cost_term):
    """Fixed parameters (sg.estimate), both backends, both control variates."""
    close(run(text, THETA, backend, Relax(surrogate=mlp(backend), cost_term=cost_term)), *exact(COSTS[text], THETA, W))


@settings(max_examples=5)
@given(probs=st.lists(st.floats(0.05, 0.95), min_size=3, max_size=3), text=st.sampled_from(sorted(COSTS)),
       seed=st.integers(0, 1000), scale=st.floats(-2.0, 2.0), temperature=st.floats(0.1, 2.0))
def test_unbiased_property(probs, text, seed, scale, temperature):
    """Unbiased for every probability vector, temperature and scale (a random fixed net)."""
    theta = np.log(np.array(probs) / (1 - np.array(probs)))
    spec = Relax(surrogate=mlp("torch"), temperature=temperature, scale=scale, learn=False)
    close(run(text, theta, "torch", spec, n=2000, seed=seed), *exact(COSTS[text], theta, W))


@dataclass(frozen=True)
class _Unconditioned(Relax):
    """Deliberately wrong: z~ = z (v chosen so that u~ = u), so the control variate in the score term
    depends on b and is not cancelled: g = [f(b) - c(z)] grad log p(b) (biased)."""

    name: ClassVar[str] = "relax_wrong"

    def sample_copies(self, d, B, p, draw, shape):
        raw, logq = super().sample_copies(d, B, p, draw, shape)
        n = B.shape(raw)[0] // 4
        b, u, _, logits = (raw[k * n:(k + 1) * n] for k in range(4))
        q = B.fn["sigmoid"](logits)
        v = b * (u - (1 - q)) / q + (1 - b) * u / (1 - q)
        return B.concat([b, u, v, logits]), logq


def test_wrong_variant_fails():
    register_estimator(_Unconditioned)
    try:
        r = run("sum(w * b)**2", THETA, "torch", _Unconditioned(surrogate=mlp("torch")))
    finally:
        unregister_estimator("relax_wrong")
    _, grad = exact(COSTS["sum(w * b)**2"], THETA, W)
    assert np.any(np.abs(np.asarray(r.grad["theta"]) - grad) > 6 * np.asarray(r.stderr["theta"]))


# -- learning by the variance gradient (torch objectives) ------------------------------------------


def toy_variance(spec, n=20000):
    """The single-sample variance of d/dtheta at theta = 0 (current parameters, fixed), and the estimate."""
    r = sg.estimate(TOY, {"theta": 0.0}, n=n, seed=11, backend="torch", estimators={"b": spec})
    return float(r.stderr["theta"]) ** 2 * n, r


def train(spec, steps, n=16, lr=0.01):
    """Adam on theta and the spec's control parameters, through the user's ordinary backward()."""
    f = sg.compile(TOY, backend="torch", n=n, seed=0, estimators={"b": spec})
    theta = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    assert f.control_parameters() == spec.control_parameters()
    opt = torch.optim.Adam([theta, *f.control_parameters()], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        f(theta=theta).backward()
        opt.step()
    return theta


@pytest.mark.parametrize("cost_term", [True, False], ids=["eta_f_plus_net", "net_only"])
def test_relax_learning_lowers_the_variance_below_rebar_and_score(cost_term):
    """Measured: score (no baseline) 0.0156, REBAR at its defaults 0.0223; RELAX (eta f(s(z)) + net)
    with the random initial net 0.104, after 100 steps 3.7e-4, after 300 steps 1.3e-5; net only: 0.103,
    after 200 steps 4.1e-7.  Asked: after 200 steps below 1/20 of its start and 1/10 of both others,
    and falling between 100 and 200 steps."""
    spec = sg.Relax(surrogate=Net(), cost_term=cost_term)
    start, _ = toy_variance(spec)
    train(spec, 100)
    middle, _ = toy_variance(spec)
    train(spec, 100)
    end, r = toy_variance(spec)
    score, _ = toy_variance("score:baseline=none")
    rebar, _ = toy_variance("rebar")
    assert end < middle < 0.05 * start, (start, middle, end)
    assert end < 0.1 * min(score, rebar), (end, score, rebar)
    assert abs(float(r.grad["theta"]) - 0.002 * 0.25) <= 6 * float(r.stderr["theta"])  # still unbiased


def test_learnable_rebar_moves_and_its_variance_falls():
    """Measured: 0.0223 at the defaults (temperature 0.5, scale 1); after 100 steps 0.0160 (temperature
    0.80, scale 0.35); the toy's best REBAR is near scale 0 (plain score, 0.0156)."""
    spec = sg.Rebar(learn=True)
    start, _ = toy_variance(spec)
    train(spec, 100)
    end, _ = toy_variance(spec)
    temperature, scale = spec.current()
    assert abs(math.log(temperature / 0.5)) > 0.2 and abs(scale - 1.0) > 0.3, spec.current()
    assert end < 0.85 * start, (start, end)


def _mean_square(spec, theta, n, seed):
    """mean_i g_i**2 of the fixed estimator on the given noise, from sg.estimate's mean and stderr."""
    r = sg.estimate(TOY, {"theta": theta}, n=n, seed=seed, backend="torch", estimators={"b": spec})
    g, se = float(r.grad["theta"]), float(r.stderr["theta"])
    return se ** 2 * (n - 1) + g ** 2


def test_variance_gradient_is_the_finite_difference_of_the_mean_square():
    """On one call's noise (an objective's first call draws sg.estimate's noise at the same seed), the
    gradient the objective gives log_temperature and scale is d/dphi mean_i g_i**2, by central
    differences of the fixed estimator's mean square."""
    n, seed, theta, t, s, h = 256, 5, 0.3, 0.7, 0.8, 1e-5
    spec = sg.Rebar(temperature=t, scale=s, learn=True)
    f = sg.compile(TOY, backend="torch", n=n, seed=seed, estimators={"b": spec})
    th = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    f(theta=th).backward()
    dt = (_mean_square(sg.Rebar(temperature=t * math.exp(h), scale=s), theta, n, seed)
          - _mean_square(sg.Rebar(temperature=t * math.exp(-h), scale=s), theta, n, seed)) / (2 * h)
    ds = (_mean_square(sg.Rebar(temperature=t, scale=s + h), theta, n, seed)
          - _mean_square(sg.Rebar(temperature=t, scale=s - h), theta, n, seed)) / (2 * h)
    log_t, scale = spec.control_parameters()
    assert log_t.grad.item() == pytest.approx(dt, rel=1e-5) and scale.grad.item() == pytest.approx(ds, rel=1e-5)
    assert abs(dt) > 1e-3 and abs(ds) > 1e-3
    fixed = sg.estimate(TOY, {"theta": theta}, n=n, seed=seed, backend="torch", estimators={"b": sg.Rebar(t, s)})
    assert th.grad.item() == pytest.approx(float(fixed.grad["theta"]), rel=1e-9)  # the model gets J^T g


def test_net_gradient_is_the_finite_difference_of_the_mean_square():
    """The same for a weight of RELAX's network (perturbed in place)."""
    n, seed, theta, h = 256, 5, 0.3, 1e-5
    net = Net()
    spec = sg.Relax(surrogate=net)
    f = sg.compile(TOY, backend="torch", n=n, seed=seed, estimators={"b": spec})
    f(theta=torch.tensor(theta, dtype=torch.float64, requires_grad=True)).backward()
    bias = net.mlp[2].bias
    fixed = sg.Relax(surrogate=net, learn=False)
    with torch.no_grad():
        bias += h
        up = _mean_square(fixed, theta, n, seed)
        bias -= 2 * h
        down = _mean_square(fixed, theta, n, seed)
        bias += h
    assert bias.grad.item() == pytest.approx((up - down) / (2 * h), rel=1e-5)
    assert all(q.grad is not None and torch.isfinite(q.grad).all() for q in spec.control_parameters())


def test_control_parameters_get_the_variance_gradient_whatever_the_sign_of_the_loss():
    """loss = f and loss = -f: the model's gradient flips, the control parameters' does not (the
    variance gradient ignores the slope the objective's use gives it)."""
    grads = []
    for sign in (1.0, -1.0):
        spec = sg.Relax(surrogate=Net(2))
        f = sg.compile("E[sum((b - 0.3)**2 * w), b ~ Bernoulli(logits=theta)]", backend="torch", n=32, seed=2,
                       estimators={"b": spec})
        theta = torch.tensor([0.2, -0.5], dtype=torch.float64, requires_grad=True)
        (sign * f(theta=theta, w=torch.tensor([1.0, -2.0], dtype=torch.float64))).backward()
        grads.append((theta.grad.clone(), [q.grad.clone() for q in spec.control_parameters()]))
    (t1, c1), (t2, c2) = grads
    assert torch.allclose(t1, -t2) and t1.abs().sum() > 0
    assert all(torch.equal(a, b) for a, b in zip(c1, c2)) and any(a.abs().sum() > 0 for a in c1)


def test_learning_objective_gradient_is_unbiased():
    """One call of a learning objective (n = 10000) against enumeration: J^T g for theta (behind the
    logits), the plain pathwise df(b)/dw for w (used by the cost directly); tolerance 6 standard
    errors of sg.estimate's fixed RELAX at the same n (whose w-gradient also has the control variate's
    zero-mean part, so its stderr is an upper scale for the learning objective's)."""
    text, n = "E[sum(w * b)**2, b ~ Bernoulli(logits=theta)]", 10000
    spec = sg.Relax(surrogate=Net(3))
    f = sg.compile(text, backend="torch", n=n, seed=4, estimators={"b": spec})
    theta, w = (torch.tensor(x, requires_grad=True) for x in (THETA, W))
    f(theta=theta, w=w).backward()
    r = sg.estimate(text, {"theta": THETA, "w": W}, n=n, seed=4, backend="torch", estimators={"b": spec})
    _, grad = exact(COSTS["sum(w * b)**2"], THETA, W)
    p = 1 / (1 + np.exp(-THETA))
    dw = sum(np.prod(np.where(np.array(b) == 1, p, 1 - p)) * 2 * np.sum(W * b) * np.array(b)
             for b in itertools.product([0.0, 1.0], repeat=3))
    assert np.all(np.abs(theta.grad.numpy() - grad) <= 6 * np.asarray(r.stderr["theta"]))
    assert np.all(np.abs(w.grad.numpy() - dw) <= 6 * np.asarray(r.stderr["w"]))


@pytest.mark.parametrize("make", [lambda: sg.Rebar(learn=True), lambda: sg.Relax(surrogate=Net())],
                         ids=["rebar", "relax"])
def test_learning_objective_refuses_a_second_derivative(make):
    """The learning surrogate is first order too: the shared guard refuses a second derivative by name."""
    spec = make()
    f = sg.compile(TOY, backend="torch", n=8, seed=0, estimators={"b": spec})
    theta = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(f(theta=theta), theta, create_graph=True)
    with pytest.raises(PlanError, match=f"no second derivative through {spec.name}"):
        torch.autograd.grad(g, theta)


# -- refusals --------------------------------------------------------------------------------------


def test_refuses_non_bernoulli():
    with pytest.raises(PlanError, match="relax needs a Bernoulli or Categorical node.*Normal"):
        sg.estimate("E[z**2, z ~ Normal(mu, 1.0)]", {"mu": 0.0}, n=10, estimators={"z": Relax(surrogate=abs)})


def test_refuses_without_a_surrogate():
    with pytest.raises(PlanError, match="relax needs a surrogate network.*sg.Relax"):
        sg.estimate(TOY, {"theta": 0.0}, n=10, estimators={"b": "relax"})


@pytest.mark.parametrize("text", ["b > 0.5", "where(b > 0.5, 1.0, 0.0)"])
def test_refuses_cost_not_differentiable_in_the_relaxed_value(text):
    with pytest.raises(PlanError, match="relax evaluates and differentiates the cost at relaxed values of b"):
        sg.estimate(f"E[{text}, b ~ Bernoulli(logits=theta)]", {"theta": 0.0}, n=10,
                    estimators={"b": Relax(surrogate=lambda z: z * 0.0)})


@pytest.mark.parametrize("spec", [lambda: sg.Rebar(learn=True), lambda: Relax(surrogate=lambda z: 0.1 * z)],
                         ids=["rebar", "relax"])
def test_learning_on_the_autograd_backend_is_refused_by_name(spec):
    s = spec()
    f = sg.compile(TOY, backend="autograd", n=8, seed=0, estimators={"b": s})
    with pytest.raises(PlanError, match=f"{s.name}: learn=True trains the control variate with torch"):
        f(theta=0.0)
    fixed = sg.compile(TOY, backend="autograd", n=8, seed=0, estimators={"b": sg.Rebar(learn=False)})
    assert np.isfinite(fixed(theta=0.0))


def test_fuse_is_refused_for_learned_parameters():
    f = sg.compile(TOY, backend="torch", n=8, seed=0, estimators={"b": sg.Rebar(learn=True)}, fuse=True)
    with pytest.raises(PlanError, match="fuse=True cannot carry the running state of b's estimator.*fuse=False"):
        f(theta=torch.tensor(0.0, dtype=torch.float64, requires_grad=True))


def test_refuses_bad_options():
    with pytest.raises(PlanError, match="learn must be True or False"):
        sg.estimate(TOY, {"theta": 0.0}, n=10, estimators={"b": "rebar:learn=1"})
    with pytest.raises(PlanError, match="surrogate must be a callable"):
        Relax(surrogate=3.0)
    with pytest.raises(PlanError, match="temperature must be a finite number > 0"):
        Relax(surrogate=abs, temperature=0.0)


def test_refuses_a_surrogate_of_the_wrong_shape():
    with pytest.raises(StochgradError, match=r"surrogate must return one value per sample, shape \(10,\)"):
        run("sum(w * b)", THETA, "torch", Relax(surrogate=lambda z: z), n=10)


def test_refuses_a_cost_with_several_values_per_sample():
    with pytest.raises(StochgradError, match="relax: the surrogate needs the cost of b's expectation to be one value"):
        run("w * b", THETA, "torch", Relax(surrogate=mlp("torch")), n=10)
