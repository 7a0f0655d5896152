"""Every user function's output is checked: one value per sample, a native floating array of the
backend's dtype, or a Python number for a constant; anything else is an error naming the function,
what it returned and what was expected (stochgrad/userfn.py)."""

import autograd.numpy as anp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import stochgrad as sg
from stochgrad.testing import assert_estimate

N = 64


def _ones(backend, shape, dtype=None):
    if backend == "torch":
        return torch.ones(shape, dtype=dtype or torch.float64)
    return np.ones(shape, dtype=dtype or np.float64)


def _wrong_output(backend, kind, k):
    """A user function of one per-sample input ``z`` (shape ``(N,)``) returning a wrong kind of value."""
    t = backend == "torch"
    return {
        "sum over samples": lambda z: z.sum(),  # the defect of issue 12: n times the mean, "exact"
        "keepdims sum": lambda z: z.sum(0, keepdims=True) if not t else z.sum(0, keepdim=True),
        "wrong leading size": lambda z: _ones(backend, (k,)) * z[:k].sum(),
        "transposed": lambda z: (z[:, None] * _ones(backend, (k,))).T,
        "None": lambda z: None,
        "str": lambda z: "1.0",
        "list": lambda z: [1.0] * N,
        "bool": lambda z: True,
        "foreign array": (lambda z: np.ones(N)) if t else (lambda z: torch.ones(N, dtype=torch.float64)),
        "integer array": lambda z: _ones(backend, (N,), torch.int64 if t else np.int64),
        "bool array": lambda z: z > 0,
        "lower precision": lambda z: _ones(backend, (N,), torch.float32 if t else np.float32),
    }[kind]


KINDS = ["sum over samples", "keepdims sum", "wrong leading size", "transposed", "None", "str", "list", "bool",
         "foreign array", "integer array", "bool array", "lower precision"]


@pytest.mark.parametrize("backend", ["autograd", "torch"])
@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(KINDS), k=st.integers(2, N - 1), compiled=st.booleans())
def test_wrong_outputs_are_errors_naming_the_function(backend, kind, k, compiled):
    e = sg.parse("E[f(z) + z, z ~ Normal(mu, 1)]", functions={"f": _wrong_output(backend, kind, k)})
    with pytest.raises(sg.StochgradError, match=r"user function f\(\) returned .*expected an array of the "
                                                 rf"{backend} backend") as info:
        if compiled:
            mu = torch.tensor(0.3, dtype=torch.float64, requires_grad=True) if backend == "torch" else 0.3
            sg.compile(e, n=N, backend=backend, seed=0)(mu=mu)
        else:
            sg.estimate(e, {"mu": 0.3}, n=N, backend=backend, seed=0)
    message = str(info.value)
    if kind in ("sum over samples", "keepdims sum", "wrong leading size", "transposed"):
        assert f"inputs with {N} samples" in message and f"leading sample axis of size {N}" in message
    if kind == "lower precision":
        assert "dtype='float32'" in message


def test_the_sum_of_issue_12_names_type_shape_and_dtype(backend):
    e = sg.parse("E[f(z), z ~ Normal(mu, 1)]", functions={"f": lambda z: z.sum()})
    kind = {"torch": "torch.Tensor", "autograd": "autograd.numpy.numpy_boxes.ArrayBox"}.get(backend, r"jax\S+Tracer")
    with pytest.raises(sg.StochgradError, match=rf"user function f\(\) returned {kind} of shape \(\), dtype "
                                                 rf"(torch\.)?float64 for inputs with 1000 samples"):
        sg.estimate(e, {"mu": 0.7}, n=1000, backend=backend, seed=0)


def test_a_raising_function_is_named_and_chained(backend):
    def broken(z):
        raise KeyError("weights")

    e = sg.parse("E[f(z), z ~ Normal(mu, 1)]", functions={"f": broken})
    with pytest.raises(sg.StochgradError, match=r"user function f\(\) raised KeyError: 'weights' \(called on "
                                                 r"arguments of shapes \(10,\)\)") as info:
        sg.estimate(e, {"mu": 0.7}, n=10, backend=backend, seed=0)
    assert isinstance(info.value.__cause__, KeyError)


def test_float32_module_under_float64_says_dtype_float32():
    torch.manual_seed(0)
    layer = torch.nn.Linear(1, 1)  # float32 weights
    fn = sg.UserFunction(lambda z: layer(z.unsqueeze(-1)).squeeze(-1), name="dec")
    e = sg.parse("E[dec(z)**2, z ~ Normal(mu, 1)]", functions={"dec": fn})
    with pytest.raises(sg.StochgradError, match=r"user function dec\(\) raised RuntimeError: .*Double and Float.*"
                                                 r"the backend computes in torch.float64.*dtype='float32'"):
        sg.estimate(e, {"mu": 0.5}, n=100, backend="torch", seed=0)
    cast = sg.UserFunction(lambda z: layer(z.float().unsqueeze(-1)).squeeze(-1), name="dec")
    with pytest.raises(sg.StochgradError, match=r"user function dec\(\) returned torch.Tensor of shape \(100,\), dtype "
                                                 r"torch.float32: its dtype is torch.float32, but the backend computes "
                                                 r"in torch.float64: pass dtype='float32'"):
        sg.estimate(sg.parse("E[dec(z)**2, z ~ Normal(mu, 1)]", functions={"dec": cast}), {"mu": 0.5}, n=100,
                    backend="torch", seed=0)
    # with dtype="float32" throughout it runs: E[(w z + b)^2] = (w mu + b)^2 + w^2, d/dmu = 2 w (w mu + b)
    w, b = layer.weight.item(), layer.bias.item()
    r = sg.estimate(e, {"mu": 0.5}, n=20_000, backend="torch", seed=1, backend_options={"dtype": "float32"})
    assert_estimate(r, value=(w * 0.5 + b) ** 2 + w**2, grad={"mu": 2 * w * (w * 0.5 + b)})


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_right_outputs_pass_and_give_the_closed_form(backend, dtype):
    # elementwise f(z) = z**2 and a parameter-only g(mu) (sample axis 1): E[z^2 + g] = mu^2 + 1 + 3 mu
    if backend == "torch":
        f, g = (lambda z: z * z), (lambda m: 3.0 * m)
    elif backend == "jax":
        import jax.numpy as jnp

        f, g = (lambda z: jnp.square(z)), (lambda m: 3.0 * m)
    else:
        f, g = (lambda z: anp.square(z)), (lambda m: 3.0 * m)
    e = sg.parse("E[f(z) + g(mu), z ~ Normal(mu, 1)]", functions={"f": f, "g": g})
    r = sg.estimate(e, {"mu": 0.4}, n=20_000, backend=backend, seed=2, backend_options={"dtype": dtype})
    assert_estimate(r, value=0.16 + 1 + 1.2, grad={"mu": 0.8 + 3.0})


def test_constants_and_scalar_outputs_of_parameters_stay_allowed(backend):
    # a Python float is a constant; estimate gives parameters one copy per sample, so s(mu) must keep that axis
    total = (lambda m: m.sum(-1)) if backend == "torch" else (lambda m: anp.sum(m, -1))
    e = sg.parse("E[c(z) + s(mu) * z, z ~ Normal(0, 1)]", functions={"c": lambda z: 2.5, "s": total})
    r = sg.estimate(e, {"mu": np.array([0.5, 1.5])}, n=20_000, backend=backend, seed=3)
    assert_estimate(r, value=2.5, grad={"mu": np.zeros(2)})  # E[z] = 0 at every mu
    # a sum over all axes there would add up the samples' copies: refused
    whole = (lambda m: m.sum()) if backend == "torch" else (lambda m: anp.sum(m))
    with pytest.raises(sg.StochgradError, match=r"user function s\(\) returned .* shape \(\).* for inputs with 100 samples"):
        sg.estimate(sg.parse("E[s(mu) * z, z ~ Normal(0, 1)]", functions={"s": whole}), {"mu": np.ones(2)}, n=100,
                    backend=backend, seed=3)


def test_a_scalar_output_of_inputs_shared_by_all_samples_is_one_value():
    # in a compiled objective parameters have a sample axis of size 1: a 0-d result is their one value
    f = sg.compile(sg.parse("E[s(mu) * z**2, z ~ Normal(0, 1)]", functions={"s": lambda m: m.sum()}), n=20_000,
                   backend="torch", seed=5)
    mu = torch.tensor([0.5, 1.5], dtype=torch.float64, requires_grad=True)
    value = f(mu=mu)
    (grad,) = torch.autograd.grad(value, [mu])
    # E[sum(mu) z^2] = sum(mu): d/dmu_i = E[z^2] = 1, sd(z^2) = sqrt(2)
    se = np.sqrt(2 / 20_000)
    assert abs(value.item() - 2.0) < 6 * 2.0 * se and np.all(np.abs(grad.numpy() - 1.0) < 6 * se)


def test_inputs_with_sample_axes_1_and_n_need_one_value_per_sample(backend):
    # f(z, c): z varies per sample, c is the same for all (a compiled objective's parameter, or one held
    # constant by wrt): one value per sample is still needed, so an output with a sample axis of 1 is refused
    text = "E[f(z, c), z ~ Normal(mu, 1)]"
    e = sg.parse(text, functions={"f": lambda z, c: c * 2.0})
    message = (r"user function f\(\) returned .* leading axis has size 1, for inputs with 50 samples \(arguments of "
               r"shapes \(50,\), \(1,\)\)")
    with pytest.raises(sg.StochgradError, match=message):
        sg.estimate(e, {"mu": 0.5, "c": 1.0}, n=50, backend=backend, seed=0, wrt="mu")
    with pytest.raises(sg.StochgradError, match=message):
        sg.compile(e, n=50, backend=backend, seed=0)(mu=0.5, c=1.0)
    e = sg.parse(text, functions={"f": lambda z, c: z * c})
    r = sg.estimate(e, {"mu": 0.5, "c": 2.0}, n=20_000, backend=backend, seed=4, wrt="mu")
    assert_estimate(r, value=1.0, grad={"mu": 2.0})  # E[c z] = c mu
