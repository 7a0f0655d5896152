"""Options, parameter values, names and native inputs are checked by name (stochgrad/validation.py),
and shapes broadcast per node and per operation, not across the whole expression."""

import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import stochgrad as sg
from stochgrad.testing import assert_estimate

TEXT = "E[z**2, z ~ Normal(mu, 1)]"
BOTH = pytest.mark.parametrize("backend", ["autograd", "torch"])

not_a_count = st.one_of(
    st.text(max_size=3), st.floats(allow_nan=True).filter(lambda x: not float(x).is_integer()),
    st.booleans(), st.none(), st.lists(st.integers(1, 3), max_size=2), st.integers(-5, -1), st.just(1.0),
)


# -- integer options -----------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(option=st.sampled_from(["n", "chunk_size", "batch_axes"]), value=not_a_count, compiled=st.booleans())
def test_counts_must_be_integers_by_name(option, value, compiled):
    if option == "chunk_size" and compiled:
        return  # compile has no chunk_size
    if value is None and (option == "chunk_size" or (option == "n" and not compiled)):
        return  # chunk_size=None is the default; estimate's n is required
    kwargs = {"n": 10, option: value}
    with pytest.raises(sg.ValidationError, match=rf"^{option}( \([a-z ]+\))? must be an integer >= [01], got "
                                                 + re.escape(repr(value))):
        if compiled:
            sg.compile(TEXT, backend="torch", **kwargs)
        else:
            sg.estimate(TEXT, {"mu": 0.5}, seed=0, **kwargs)


def test_numpy_integers_are_counts():
    r = sg.estimate(TEXT, {"mu": 0.5}, n=np.int64(16), chunk_size=np.int32(8), seed=0)
    assert r.n == 16 and type(r.n) is int


@pytest.mark.parametrize("wrt", [5, [1], {"mu": 1}, 2.5])
def test_wrt_must_name_parameters(wrt):
    with pytest.raises(sg.ValidationError, match=r"wrt must"):
        sg.estimate(TEXT, {"mu": 0.5}, n=10, seed=0, wrt=wrt)


@BOTH
def test_batch_axes_beyond_a_node_rank_names_the_node(backend):
    message = (r"batch_axes=5, but no random node has that many axes: the widest, z ~ Normal\(mu, 1\), has shape \(\) \(0 axes\)")
    with pytest.raises(sg.ValidationError, match=message):
        sg.estimate(TEXT, {"mu": 0.5}, n=10, seed=0, backend=backend, batch_axes=5)
    with pytest.raises(sg.ValidationError, match=message):
        sg.compile(TEXT, n=10, seed=0, backend=backend, batch_axes=5)(mu=0.5)
    with pytest.raises(sg.ValidationError, match=r"batch_axes=2, but no random node has that many axes: the widest, z ~ Normal\(mu, 1\), has shape \(3,\)"):
        sg.estimate(TEXT, {"mu": np.zeros(3)}, n=10, seed=0, backend=backend, batch_axes=2)
    r = sg.estimate("E[sum(z**2), z ~ Normal(mu, 1)]", {"mu": np.zeros(3)}, n=10, seed=0, backend=backend, batch_axes=1)
    assert r.grad["mu"].shape == (3,)


# -- keywords --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("caller", ["estimate", "compile"])
def test_a_misspelt_keyword_is_a_type_error_with_did_you_mean(caller):
    run = (lambda **kw: sg.estimate(TEXT, {"mu": 0.5}, n=10, **kw)) if caller == "estimate" else \
        (lambda **kw: sg.compile(TEXT, n=10, **kw))
    with pytest.raises(TypeError, match=re.escape(f"{caller}() got an unexpected keyword argument 'sead' (did you mean"
                                                  " 'seed'?); backend options for torch are: device, dtype")):
        run(backend="torch", sead=0)
    with pytest.raises(TypeError, match=re.escape(f"{caller}() got an unexpected keyword argument 'devise' (did you mean"
                                                  " 'device'?); backend options for torch are: device, dtype")):
        run(backend="torch", devise="cpu")
    with pytest.raises(TypeError, match=re.escape(f"{caller}() got an unexpected keyword argument 'device'; backend"
                                                  " options for autograd are: dtype")):
        run(backend="autograd", device="cpu")
    with pytest.raises(sg.StochgradError, match=r"got an unexpected keyword argument 'batch_axis' \(did you mean "
                                                r"'batch_axes'\?\)"):
        run(backend="autograd", batch_axis=1)  # also a StochgradError: one except catches all bad input


@pytest.mark.parametrize("backend", ["autograd", "torch"])
@pytest.mark.parametrize("dtype", ["int64", "foo", 3, "complex128", "float16x"])
def test_dtype_option_must_name_a_float_type(backend, dtype):
    with pytest.raises(sg.ValidationError, match=rf"{backend} backend option dtype={re.escape(repr(dtype))}: the dtype must be"):
        sg.estimate(TEXT, {"mu": 0.5}, n=10, seed=0, backend=backend, backend_options={"dtype": dtype})


# -- parameter values ----------------------------------------------------------------------------------------
BAD_VALUES = {
    "string": ("1.5", r"got '1.5' \(a string is not read as a number\)"),
    "bool": (True, r"got a bool"),
    "bool array": (np.array([True, False]), r"got a bool array"),
    "complex": (1 + 2j, r"is complex"),
    "complex array": (np.array([1.0, 2j]), r"is complex"),
    "object array": (np.array([1.0, None], dtype=object), r"dtype object"),
    "None": (None, r"got None"),
    "ragged": ([[1.0], [1.0, 2.0]], r"must be a number or an array of numbers"),
    "complex tensor": (torch.tensor([1 + 1j]), r"complex"),
    "bool tensor": (torch.tensor(True), r"bool"),
}


@BOTH
@pytest.mark.parametrize("kind", list(BAD_VALUES))
def test_parameter_values_must_be_real_numbers(backend, kind):
    value, message = BAD_VALUES[kind]
    with pytest.raises(sg.ValidationError, match=rf"parameter 'mu' .*{message}"):
        sg.estimate(TEXT, {"mu": value}, n=10, seed=0, backend=backend)
    if kind in ("complex tensor", "bool tensor") and backend == "autograd":
        message = r"the autograd backend takes numpy arrays"
    with pytest.raises(sg.ValidationError, match=rf"parameter 'mu' .*{message}"):
        sg.compile(TEXT, n=10, seed=0, backend=backend)(mu=value)


@pytest.mark.parametrize("params", [[1, 2], (("mu", 1.0),), "mu=1", 3.0])
def test_params_must_be_a_mapping(params):
    with pytest.raises(sg.ValidationError, match=r"params must be a mapping from parameter names to values"):
        sg.estimate(TEXT, params, n=10, seed=0)


@BOTH
def test_integer_values_are_numbers(backend):
    a = sg.estimate(TEXT, {"mu": 1}, n=100, seed=0, backend=backend)
    b = sg.estimate(TEXT, {"mu": np.array(1.0)}, n=100, seed=0, backend=backend)
    assert a.value == b.value and a.grad == b.grad


# -- names of user functions ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name, message", [
    ("E", "'E' is reserved"), ("KL", "'KL' is reserved"), ("a b", "is not a valid name"), ("1x", "is not a valid name"),
    ("", "is not a valid name"), ("Normal", "has the name of the distribution Normal"),
    ("Categorical", "has the name of the distribution"), ("exp", "would hide the built-in exp()"),
])
def test_function_names_must_be_free_identifiers(name, message):
    with pytest.raises(sg.ParseError, match=re.escape(message)):
        sg.parse("E[z, z ~ Normal(0, 1)]", functions={name: abs})
    if name:
        with pytest.raises(sg.StochgradError, match=re.escape(message)):
            sg.UserFunction(abs, name=name)


# -- native inputs -------------------------------------------------------------------------------------------
def test_estimate_detaches_a_tensor_that_requires_grad():
    mu = torch.tensor([0.5, -1.0], dtype=torch.float64, requires_grad=True)
    a = sg.estimate(TEXT, {"mu": mu}, n=200, seed=1, backend="torch")
    b = sg.estimate(TEXT, {"mu": np.array([0.5, -1.0])}, n=200, seed=1, backend="torch")
    assert np.array_equal(a.value, b.value) and np.array_equal(a.grad["mu"], b.grad["mu"])
    assert mu.grad is None  # estimate makes its own leaves


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("given", ["numpy", "list", "int", "int tensor", "float"])
def test_compiled_torch_converts_numbers_to_constants(dtype, given):
    base = torch.tensor([1.0, 2.0], dtype=getattr(torch, dtype))
    value = {"numpy": np.array([1.0, 2.0]), "list": [1.0, 2.0], "int": None, "int tensor": torch.tensor([1, 2]),
             "float": None}[given]
    if given in ("int", "float"):
        base, value = base[:1].reshape(()), (1 if given == "int" else 1.0)
    f = sg.compile(TEXT, n=50, seed=3, backend="torch", backend_options={"dtype": dtype})
    g = sg.compile(TEXT, n=50, seed=3, backend="torch", backend_options={"dtype": dtype})
    out = f(mu=value)
    assert out.dtype == getattr(torch, dtype) and not out.requires_grad
    assert torch.equal(out, g(mu=base))


@pytest.mark.parametrize("tensor, message", [
    (torch.tensor(1.0, dtype=torch.float32), r"its dtype is torch.float32, but the backend computes in torch.float64: "
                                             r"pass dtype='float32'"),
    (torch.tensor(1.0, dtype=torch.float64, device="meta"), r"it is on device meta, but the backend's device is cpu"),
    (torch.tensor(1 + 1j), r"complex64 tensor"),
    (torch.tensor([True]), r"torch.bool tensor"),
])
def test_compiled_torch_names_a_tensor_it_refuses(tensor, message):
    with pytest.raises(sg.ValidationError, match=rf"parameter 'mu'.*{message}"):
        sg.compile(TEXT, n=10, seed=0, backend="torch")(mu=tensor)


def test_compiled_autograd_refuses_torch_tensors_and_takes_numpy():
    f = sg.compile(TEXT, n=10, seed=0, backend="autograd")
    with pytest.raises(sg.ValidationError, match=r"parameter 'mu' is a torch.Tensor; the autograd backend takes numpy"):
        f(mu=torch.tensor(1.0, requires_grad=True))
    assert np.isfinite(f(mu=np.array([1, 2])))


# -- shapes broadcast per node ---------------------------------------------------------------------------
@BOTH
def test_nodes_whose_parameters_do_not_broadcast_together(backend):
    # three Categoricals of 2, 3 and 4 categories: E = sum_j softmax(l_j) . u_j, and
    # d/dl_j = s_j * (u_j - s_j . u_j) (the softmax Jacobian applied to u_j)
    text = ("E[sum(a * u) + sum(b * v) + sum(c * w), a ~ Categorical(logits=l), b ~ Categorical(logits=m),"
            " c ~ Categorical(logits=k)]")
    rng = np.random.default_rng(0)
    p = {"l": rng.normal(size=2), "m": rng.normal(size=3), "k": rng.normal(size=4),
         "u": rng.normal(size=2), "v": rng.normal(size=3), "w": rng.normal(size=4)}
    exact_value, exact_grad = 0.0, {}
    for lg, u in (("l", "u"), ("m", "v"), ("k", "w")):
        s = np.exp(p[lg]) / np.exp(p[lg]).sum()
        exact_value += s @ p[u]
        exact_grad[lg], exact_grad[u] = s * (p[u] - s @ p[u]), s
    for est in (None, {"a": "score", "b": "score", "c": "score"}):
        r = sg.estimate(text, p, n=40_000, seed=6, backend=backend, estimators=est)
        assert_estimate(r, value=exact_value, grad=exact_grad)
    assert sg.compile(text, n=10, seed=0, backend=backend)(**p) is not None


def _vector(backend, k):
    return (lambda x: x[..., None] * torch.ones(k, dtype=torch.float64)) if backend == "torch" else \
        (lambda x: x[..., None] * np.ones(k))


@BOTH
def test_a_mismatch_within_a_node_or_an_operation_is_named(backend):
    with pytest.raises(sg.StochgradError, match=r"shapes \(3,\) and \(4,\) do not broadcast in `Normal\(m, s\)`"):
        sg.estimate("E[z, z ~ Normal(m, s)]", {"m": np.zeros(3), "s": np.ones(4)}, n=10, seed=0, backend=backend)
    with pytest.raises(sg.StochgradError, match=r"shapes \(3,\) and \(4,\) do not broadcast in `z \* a`"):
        sg.estimate("E[z * a, z ~ Normal(m, 1)]", {"m": np.zeros(3), "a": np.ones(4)}, n=10, seed=0, backend=backend)
    # shapes that only a user function's output makes known: named by the lowering
    fn = {"f": _vector(backend, 3)}
    cases = [("E[z, z ~ Normal(f(m), s)]", {"m": 0.0, "s": np.ones(4)}, r"`Normal\(f\(m\), s\)`"),
             ("E[f(z) * a, z ~ Normal(0, 1)]", {"a": np.ones(4)}, r"`f\(z\) \* a`"),
             ("E[f(z) + a, z ~ Normal(0, 1)]", {"a": np.ones(4)}, r"`E\[f\(z\) \+ a, z ~ Normal\(0, 1\)\]`")]
    for text, params, where in cases:
        with pytest.raises(sg.StochgradError, match=r"shapes \(3,\) and \(4,\) do not broadcast in " + where):
            sg.estimate(sg.parse(text, functions=fn), params, n=10, seed=0, backend=backend)
        with pytest.raises(sg.StochgradError, match=r"shapes \(3,\) and \(4,\) do not broadcast in " + where):
            sg.compile(sg.parse(text, functions=fn), n=10, seed=0, backend=backend)(**params)


@BOTH
def test_a_global_latent_beside_a_plate_is_one_shared_variable(backend):
    """Under batch_axes=1 a scalar node (a global latent) has fewer axes than the plate: it is one
    joint variable shared by the examples, and the score function pairs each example's cost with its
    own log q and with the global one.  E[x_i g] = mu_i m, so d/dm = sum(mu), d/dmu_i = m."""
    from stochgrad.testing import assert_estimate

    mu, m = np.array([0.5, -1.0, 2.0]), 1.5
    r = sg.estimate("E[x * g, g ~ Normal(m, 1), x ~ Normal(mu, 1)]", {"mu": mu, "m": m}, n=200_000, seed=3,
                    backend=backend, batch_axes=1, estimators={"g": "score", "x": "score"})
    assert_estimate(r, value=mu * m, grad={"m": mu.sum(), "mu": np.full(3, m)})
