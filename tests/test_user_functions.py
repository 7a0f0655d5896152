"""User functions inside expressions: backend-native black boxes, differentiable or not."""

import math

import autograd.numpy as anp
import numpy as np
import pytest
import torch
from scipy.stats import norm

import stochgrad as sg
from stochgrad.testing import assert_estimate


def test_autograd_user_function_equals_the_builtin_on_the_same_noise():
    text = "E[f(z) * z, z ~ Normal(mu, s)]"
    user = sg.estimate(sg.parse(text, functions={"f": anp.sin}), {"mu": 0.3, "s": 1.2}, n=5000,
                       backend="autograd", seed=1)
    builtin = sg.estimate("E[sin(z) * z, z ~ Normal(mu, s)]", {"mu": 0.3, "s": 1.2}, n=5000,
                          backend="autograd", seed=1)
    assert user.value == builtin.value and user.grad == builtin.grad


def test_torch_module_parameters_receive_the_right_gradient():
    # dec(z) = w z + b; E[(dec(z) - 1)^2], z ~ N(mu, 1) = (w mu + b - 1)^2 + w^2
    torch.manual_seed(0)
    dec = torch.nn.Linear(1, 1).double()
    fn = sg.UserFunction(lambda z: dec(z.unsqueeze(-1)).squeeze(-1), name="dec")
    f = sg.compile(sg.parse("E[(dec(z) - 1)**2, z ~ Normal(mu, 1)]", functions={"dec": fn}),
                   backend="torch", n=4000, seed=2)
    mu = 0.6
    grads = []
    for _ in range(30):
        dec.zero_grad()
        f(mu=torch.tensor(mu, dtype=torch.float64)).backward()
        grads.append(dec.weight.grad.item())
    w, b = dec.weight.item(), dec.bias.item()
    exact = 2 * (w * mu + b - 1) * mu + 2 * w
    se = np.std(grads, ddof=1) / math.sqrt(len(grads))
    assert abs(np.mean(grads) - exact) < 5 * se + 1e-9


def test_non_differentiable_user_function_gets_the_score_function(backend):
    # (z > 0) + 0 * z keeps z's dtype on both backends; torch's (z > 0) * 1.0 would be float32 (refused under float64)
    step = sg.UserFunction(lambda z: (z > 0) + 0 * z, differentiable=False)
    e = sg.parse("E[step(z), z ~ Normal(mu, 1)]", functions={"step": step})
    node = sg.plan(e).node("z")
    assert node.estimator == "score" and "non-differentiable function `step(z)`" in node.reason
    r = sg.estimate(e, {"mu": 0.4}, n=40_000, backend=backend, seed=3)
    assert_estimate(r, value=norm.cdf(0.4), grad={"mu": norm.pdf(0.4)})


def test_embedded_form_and_round_trip():
    loglik = sg.UserFunction(lambda x, z: -(x - z) ** 2, name="loglik")
    x, z, mu = sg.symbols("x z mu")
    e = sg.E(loglik(x, z), z=sg.Normal(mu, 1))
    assert e == sg.parse("E[loglik(x, z), z ~ Normal(mu, 1)]", functions={"loglik": loglik})
    assert sg.parse(str(e), functions={"loglik": loglik}) == e
    other = sg.UserFunction(lambda x, z: x * z, name="loglik")
    assert sg.parse(str(e), functions={"loglik": other}) != e  # a different callable, a different expression
    r = sg.estimate(e, {"x": 1.0, "mu": 0.5}, n=20_000, seed=4)
    assert_estimate(r, value=-(0.25 + 1), grad={"x": -1.0, "mu": 1.0})


def test_user_function_errors():
    with pytest.raises(sg.ParseError, match=r"unknown function 'logli' \(did you mean 'loglik'\?\)"):
        sg.parse("E[logli(z), z ~ Normal(0, 1)]", functions={"loglik": abs})
    with pytest.raises(sg.ParseError, match=r"user function loglik\(\) takes positional arguments only"):
        sg.parse("E[loglik(z, axis=1), z ~ Normal(0, 1)]", functions={"loglik": abs})
    with pytest.raises(sg.ParseError, match=r"user function 'exp' would hide the built-in exp\(\)"):
        sg.parse("E[exp(z), z ~ Normal(0, 1)]", functions={"exp": abs})
    with pytest.raises(sg.ParseError, match=r"user function 'f' must be callable, got int"):
        sg.parse("E[f(z), z ~ Normal(0, 1)]", functions={"f": 3})
    with pytest.raises(sg.ParseError, match="unknown function 'loglik'"):
        sg.parse("E[loglik(z), z ~ Normal(0, 1)]")
