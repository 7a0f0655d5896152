"""A compiled objective never returns a NaN or infinity silently.

With ``validate=True`` (the default) each call reads its returned scalar once and gives a
NonFiniteWarning naming the expression and the first non-finite subexpression; ``validate=False``
(no host read) says nothing; a finite objective never warns (a property over a few models).
"""

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

import stochgrad as sg
from conftest import grad_of
from stochgrad.backends.torch import cxx_compiler
from stochgrad.testing.assertions import assert_within_stderr

DTYPES = ["float32", "float64"]


def _param(backend, dtype, value, grad=False):
    """A native parameter of the backend's dtype: a tensor (torch), a numpy scalar array (autograd)."""
    if backend == "torch":
        return torch.tensor(value, dtype=getattr(torch, dtype), requires_grad=grad)
    return np.asarray(value, dtype=dtype)


def _call(f, backend, dtype, **values):
    return f(**{k: _param(backend, dtype, v) for k, v in values.items()})


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_objective_warns_naming_the_subexpression(backend, dtype):
    f = sg.compile("E[log(z), z ~ Normal(mu, 1)]", backend=backend, n=64, seed=0, backend_options={"dtype": dtype})
    with pytest.warns(sg.NonFiniteWarning) as record:
        out = _call(f, backend, dtype, mu=0.0)  # about half of the samples are negative: log is NaN
    assert math.isnan(float(out))
    message = next(str(w.message) for w in record if w.category is sg.NonFiniteWarning)
    assert "E[log(z), z ~ Normal(mu, 1)]" in message and "nan" in message and "call 0" in message
    assert "`log(z)` is NaN in" in message and "of 64 entries" in message


@pytest.mark.parametrize("dtype", DTYPES)
def test_infinite_objective_warns(backend, dtype):
    f = sg.compile("E[exp(z), z ~ Normal(mu, 1)]", backend=backend, n=16, seed=0, backend_options={"dtype": dtype})
    with pytest.warns(sg.NonFiniteWarning, match=r"the objective's value is inf .*`exp\(z\)` is \+inf"):
        out = _call(f, backend, dtype, mu=1000.0)
    assert float(out) == math.inf


def test_later_calls_are_checked_too(backend):
    f = sg.compile("E[log(z), z ~ Normal(mu, 1)]", backend=backend, n=32, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", sg.NonFiniteWarning)
        assert math.isfinite(float(_call(f, backend, "float64", mu=50.0)))  # every sample positive
    with pytest.warns(sg.NonFiniteWarning, match=r"call 1"):
        _call(f, backend, "float64", mu=0.0)


def test_validate_false_reads_nothing(backend):
    f = sg.compile("E[log(z), z ~ Normal(mu, 1)]", backend=backend, n=64, seed=0, validate=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", sg.NonFiniteWarning)
        assert math.isnan(float(_call(f, backend, "float64", mu=0.0)))


def test_the_check_keeps_the_gradient():
    """The host read does not cut the graph: backward still gives the pathwise gradient 2 mu."""
    f = sg.compile("E[z**2, z ~ Normal(mu, 1)]", backend="torch", n=4000, seed=2)
    mu = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    f(mu=mu).backward()
    assert_within_stderr(float(mu.grad), 3.0, 2.0 / math.sqrt(4000), name="d/dmu")  # sd of 2z is 2


def test_diagnosis_leaves_the_moving_average_state_alone():
    f = sg.compile("E[log(z), z ~ Normal(mu, 1)]", backend="torch", n=16, seed=0,
                   estimators={"z": sg.Score(baseline=sg.MovingAverage(0.9))})
    with pytest.warns(sg.NonFiniteWarning):
        f(mu=torch.tensor(0.0, dtype=torch.float64, requires_grad=True))
    assert f.baseline_state["z"].updates == 1  # the call's own update; re-running it forward adds none


MODELS = [
    ("E[z**2, z ~ Normal(mu, sigma)]", {}),
    ("E[sigmoid(z) * z, z ~ Logistic(mu, sigma)]", {}),
    ("E[z * mu, z ~ Bernoulli(sigmoid(mu))] + KL(Normal(mu, sigma) || Normal(0, 1))", {}),
    ("E[log(z), z ~ LogNormal(mu, sigma)]", {"z": "score"}),
]


@settings(max_examples=12, deadline=None)
@given(model=st.sampled_from(MODELS), mu=st.floats(-3, 3), sigma=st.floats(0.1, 3),
       backend=st.sampled_from(["autograd", "torch"]), dtype=st.sampled_from(DTYPES))
def test_finite_objectives_never_warn(model, mu, sigma, backend, dtype):
    text, estimators = model
    f = sg.compile(text, backend=backend, n=8, seed=3, backend_options={"dtype": dtype}, estimators=estimators)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _call(f, backend, dtype, mu=mu, sigma=sigma)
    assert math.isfinite(float(out))


@pytest.mark.skipif(cxx_compiler() is None, reason="torch.compile on the CPU needs a C++ compiler")
def test_fused_calls_are_checked():
    """The first call runs eagerly; the second runs the compiled function, and is checked after it."""
    f = sg.compile("E[log(z), z ~ Normal(mu, 1)]", backend="torch", n=16, seed=0, fuse=True)
    mu = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    with pytest.warns(sg.NonFiniteWarning, match="call 0"):
        f(mu=mu)
    with pytest.warns(sg.NonFiniteWarning, match=r"call 1.*`log\(z\)` is NaN"):
        assert math.isnan(float(f(mu=mu)))
    assert f._fused  # the second call went through the compiled function


def test_check_gradients_names_non_finite_gradients(backend):
    """The value sqrt(mu) is finite at mu = 0, its derivative is not: only the caller sees it."""
    f = sg.compile("E[z * 0 + sqrt(mu), z ~ Normal(mu, 1)]", backend=backend, n=8, seed=0)
    if backend == "torch":
        mu = torch.tensor([0.0, 4.0], dtype=torch.float64, requires_grad=True)
        f(mu=mu).backward()
        grad = mu.grad
    else:
        grad = grad_of(backend)(lambda m: f(mu=m))(np.array([0.0, 4.0]))
    with pytest.warns(sg.NonFiniteWarning, match=r"non-finite gradients: grad\['mu'\] \(1 entry\)"):
        assert f.check_gradients(mu=grad) == {"grad['mu']": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("error", sg.NonFiniteWarning)
        assert f.check_gradients(mu=grad[1:]) == {}
    with pytest.raises(TypeError, match=r"check_gradients: unknown parameter 'nu'.*parameters are: mu"):
        f.check_gradients(nu=grad)
