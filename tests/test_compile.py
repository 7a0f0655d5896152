"""sg.compile: native objectives for training loops, and higher-order derivatives (DiCE)."""

import math

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import torch

import stochgrad as sg


def _t(x):
    return torch.tensor(x, dtype=torch.float64, requires_grad=True)


def test_torch_training_loop_finds_the_minimum():
    f = sg.compile("E[(z - 3)**2, z ~ Normal(mu, sigma)]", backend="torch", n=64, seed=0)
    mu, log_sigma = _t(0.0), _t(0.0)
    opt = torch.optim.Adam([mu, log_sigma], lr=0.05)
    for _ in range(600):
        opt.zero_grad()
        f(mu=mu, sigma=log_sigma.exp()).backward()
        opt.step()
    # E = (mu - 3)^2 + sigma^2: minimum at mu = 3, sigma -> 0
    assert abs(mu.item() - 3) < 0.1 and log_sigma.exp().item() < 0.2
    assert len(f._plans) == 1 and f.calls == 600  # planned once, fresh noise every call


def test_gradient_matches_the_closed_form_on_average():
    # average many calls: mean of d/dmu equals 2 (mu - 3); the standard error comes from the calls
    f = sg.compile("E[(z - 3)**2, z ~ Normal(mu, 1)]", backend="torch", n=32, seed=1)
    grads = []
    for _ in range(400):
        mu = _t(1.0)
        f(mu=mu).backward()
        grads.append(mu.grad.item())
    se = np.std(grads, ddof=1) / math.sqrt(len(grads))
    assert abs(np.mean(grads) - (-4.0)) < 5 * se


def test_module_parameters_receive_gradients():
    net = torch.nn.Linear(2, 1).double()
    x = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    f = sg.compile("E[y**2, y ~ Normal(m, 1)]", backend="torch", n=16, seed=2)
    f(m=net(x).squeeze()).backward()
    assert net.weight.grad is not None and torch.all(torch.isfinite(net.weight.grad))
    assert net.weight.grad.abs().sum() > 0


def test_second_derivative_pathwise_torch():
    # d^2/dmu^2 E[z^3] = 6 mu for z ~ N(mu, 1)
    f = sg.compile("E[z**3, z ~ Normal(mu, 1)]", backend="torch", n=200_000, seed=3)
    mu = _t(0.7)
    (g,) = torch.autograd.grad(f(mu=mu), mu, create_graph=True)
    (h,) = torch.autograd.grad(g, mu)
    assert abs(g.item() - 3 * (0.7**2 + 1)) < 0.05 and abs(h.item() - 4.2) < 0.05


@pytest.mark.parametrize("estimator", ["enumerate", "score", "score:baseline=none"])
def test_second_derivative_discrete_torch(estimator):
    # E[f(y)] = s f1 + (1 - s) f0 with s = sigmoid(l): d^2/dl^2 = s (1-s)(1-2s)(f1 - f0)
    l0, f1, f0 = 0.4, 3.0, -1.0
    f = sg.compile("E[4 * y - 1, y ~ Bernoulli(logits=l)]", backend="torch", n=400_000, seed=4,
                   estimators={"y": estimator})
    l = _t(l0)
    (g,) = torch.autograd.grad(f(l=l), l, create_graph=True)
    (h,) = torch.autograd.grad(g, l)
    s = 1 / (1 + math.exp(-l0))
    exact_g, exact_h = s * (1 - s) * (f1 - f0), s * (1 - s) * (1 - 2 * s) * (f1 - f0)
    tol = 1e-9 if estimator == "enumerate" else 0.05
    assert abs(g.item() - exact_g) < tol and abs(h.item() - exact_h) < tol


def test_autograd_objective_and_second_derivative():
    f = sg.compile("E[z**3, z ~ Normal(mu, 1)]", backend="autograd", n=200_000, seed=5)
    g = autograd.grad(lambda m: f(mu=m))
    h = autograd.grad(g)
    assert abs(g(0.7) - 3 * 1.49) < 0.05 and abs(h(0.7) - 4.2) < 0.05
    # score-function second derivative for a comparison: d^2/dmu^2 Phi(mu) = -mu phi(mu)
    f2 = sg.compile("E[z > 0, z ~ Normal(mu, 1)]", backend="autograd", n=400_000, seed=6)
    h2 = autograd.grad(autograd.grad(lambda m: f2(mu=m)))(0.5)
    assert abs(h2 - (-0.5 * math.exp(-0.125) / math.sqrt(2 * math.pi))) < 0.03
    assert isinstance(f(mu=anp.array(0.3)), float) or np.ndim(f(mu=anp.array(0.3))) == 0


def test_moving_average_state_carries_across_calls():
    ema = sg.MovingAverage(decay=0.8)
    f = sg.compile("E[(b - 0.45)**2, b ~ Bernoulli(logits=l)]", backend="torch", n=8, seed=7,
                   estimators={"b": sg.Score(baseline=ema)})
    for _ in range(5):
        f(l=_t(0.0)).backward()
    assert ema.updates == 5 and 0.2 < float(ema.value) < 0.31


def test_compile_errors():
    with pytest.raises(sg.ValidationError, match=r"n \(samples per call\) must be an integer >= 1"):
        sg.compile("E[z, z ~ Normal(mu, 1)]", n=0)
    f = sg.compile("E[z, z ~ Normal(mu, 1)]", n=4, backend="torch")
    with pytest.raises(sg.ValidationError, match="parameter 'mu' is missing"):
        f()
    with pytest.raises(sg.ValidationError, match=r"unknown parameter 'nu'"):
        f(mu=_t(0.0), nu=_t(1.0))
