"""``a @ b``, ``x[...]`` (numpy's basic indexing and a gather by an integer array parameter) and ``pi``.

Expected values come from numpy itself (``np.matmul``, indexing, ``np.bincount``) and from
hand-derived identities: for ``L = sum(W * (A @ B))``, ``dL/dA = W B^T`` and ``dL/dB = A^T W``;
a gather's gradient adds up over repeated indices (``bincount``); for ``z ~ Normal(mu, I)``,
``E[|A z|^2] = |A mu|^2 + trace(A A^T)``, with gradients ``2 A^T A mu`` in ``mu`` and
``2 A (mu mu^T + I)`` in ``A``.  Monte Carlo checks use the estimator's standard error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import stochgrad as sg
from conftest import grad_of
from stochgrad import fastparse, ir, parser, shapes
from stochgrad.arraynodes import Index, MatMul, Slice, index_parameters
from stochgrad.testing import assert_estimate
from _parsecheck import same_as_lark

RNG = np.random.default_rng(20261203)






# ------------------------------------------------------------------ syntax: round trips, both parsers

_ints = st.integers(-4, 4)
_slices = st.builds(Slice, st.none() | _ints, st.none() | _ints, st.none() | st.sampled_from([-2, -1, 1, 2, 3]))


@st.composite
def _items(draw):
    basic = st.one_of(_ints, _slices)
    items = draw(st.lists(basic, min_size=0 if draw(st.booleans()) else 1, max_size=3))
    if draw(st.booleans()):  # a gather: only slices and an ellipsis beside it
        items = [i for i in items if isinstance(i, Slice)]
        items.insert(draw(st.integers(0, len(items))), ir.Name(draw(st.sampled_from(["school", "k"]))))
    if draw(st.booleans()):
        items.insert(draw(st.integers(0, len(items))), Ellipsis)
    return tuple(items) or (0,)


def _exprs():
    leaves = st.one_of(st.sampled_from(["A", "x", "theta"]).map(ir.Name), st.sampled_from([2.0, -1.5, 0.5]).map(ir.Num))
    return st.recursive(leaves, lambda c: st.one_of(
        st.builds(MatMul, c, c),
        st.builds(Index, c, _items()),
        st.builds(ir.BinOp, st.sampled_from(["+", "-", "*", "/", "**"]), c, c),
        c.map(ir.negate),
        c.map(lambda e: sg.sum(e)),
    ), max_leaves=8)


@settings(max_examples=120, deadline=None)
@given(_exprs())
def test_print_parse_round_trip_and_fast_path(e):
    text = str(e)
    assert sg.parse(text) == e
    assert same_as_lark(text, must_be_fast=True) == e
    spaced = text.replace("[", " [ ").replace(":", " : ").replace("@", " @\n# comment\n ").replace(",", " , ")
    assert same_as_lark(spaced, must_be_fast=True) == e


@pytest.mark.parametrize("text, printed", [
    ("A @ x", "A @ x"), ("a * b @ c", "a * b @ c"), ("a * (b @ c)", "a * (b @ c)"), ("a @ b * c", "a @ b * c"),
    ("a @ (b @ c)", "a @ (b @ c)"), ("-a @ b", "-a @ b"), ("-(a @ b)", "-(a @ b)"), ("a @ b ** 2", "a @ b ** 2"),
    ("a + b @ c", "a + b @ c"), ("x[0]", "x[0]"), ("x[-1]", "x[-1]"), ("x[..., 1]", "x[..., 1]"),
    ("x[:, 0]", "x[:, 0]"), ("x[1:3]", "x[1:3]"), ("x[1:3, ::2]", "x[1:3, ::2]"), ("x[::]", "x[:]"),
    ("theta[school]", "theta[school]"), ("(a + b)[0][1:]", "(a + b)[0][1:]"), ("-x[0] ** 2", "-x[0] ** 2"),
    ("exp(x)[0]", "exp(x)[0]"), ("(A @ x)[0]", "(A @ x)[0]"), ("E[z[0], z ~ Normal(m, 1)][1]", "E[z[0], z ~ Normal(m, 1)][1]"),
])
def test_canonical_text(text, printed):
    e = same_as_lark(text, must_be_fast=True)
    assert str(e) == printed and sg.parse(printed) == e


def test_matmul_binds_like_times_and_chains_left():
    a, b, c = sg.symbols("a b c")
    assert sg.parse("a * b @ c") == MatMul(a * b, c)  # Python: (a * b) @ c
    assert sg.parse("a @ b / c") == ir.BinOp("/", MatMul(a, b), c)
    assert sg.parse("a @ b @ c") == MatMul(MatMul(a, b), c)
    assert sg.parse("-a @ b") == MatMul(-a, b) and sg.parse("a @ b ** 2") == MatMul(a, b**2)
    assert MatMul.prec == ir.PREC["*"]


def test_embedded_form_builds_the_text_ir():
    A, x, theta, school = sg.symbols("A x theta school")
    pairs = [
        (A @ x, "A @ x"), (2 @ x if False else x.__rmatmul__(2), "2 @ x"), (x[0], "x[0]"), (x[-1], "x[-1]"),
        (x[..., 1], "x[..., 1]"), (x[:, 0], "x[:, 0]"), (x[1:3], "x[1:3]"), (x[1:3, ::2], "x[1:3, ::2]"),
        (x[np.int64(2)], "x[2]"), (theta[school], "theta[school]"), (theta[:, school], "theta[:, school]"),
        (sg.sum((A @ x) ** 2), "sum((A @ x) ** 2)"),
    ]
    for built, text in pairs:
        assert built == sg.parse(text) and str(built) == text
    assert x[0] != x[1] and hash(x[1:3]) != hash(x[1:2]) and x[0] != x[..., 0]
    with pytest.raises(TypeError, match="not iterable"):
        iter(x)
    with pytest.raises(TypeError, match="pass arrays as parameters by name"):
        A @ np.ones(2)


@pytest.mark.parametrize("text, message, column", [
    ("x[", "unexpected end of input; expected", 3),
    ("a @", "unexpected end of input; expected", 4),
    ("x[1.5]", "index 1.5 is not an integer", 3),
    ("x[0, 1e3]", "index 1e3 is not an integer", 6),
    ("x[]", "unexpected ']'", 3),
    ("x[a + 1]", "unexpected '+'", 5),
    ("x[pi]", "pi is not an integer", 1),
    ("x[0, s]", "an integer and an integer array parameter in one index", 1),
    ("x[s, t]", "at most one integer array parameter per index", 1),
    ("x[..., 0, ...]", "a single ellipsis", 1),
    ("x[::0]", "slice step cannot be zero", 3),
    ("2 * (y @)", "unexpected ')'", 9),
    ("E[theta[z], z ~ Categorical(p)]", "indexes with the random variable 'z'", 3),
    ("E[pi, pi ~ Normal(0, 1)]", "'pi' is reserved", 7),
])
def test_syntax_errors_say_where(text, message, column):
    with pytest.raises(sg.ParseError) as info:
        sg.parse(text)
    assert message in info.value.message and info.value.column == column, str(info.value)
    if "random variable" not in message:  # the scope check comes after either parser
        assert fastparse.fast_parse(text, {}, parser.MAX_DEPTH) is None


def test_fast_path_agrees_at_the_depth_limit():
    for k in range(parser.MAX_DEPTH - 4, parser.MAX_DEPTH + 2):
        for text in ("x" + "[0]" * k, "x" + "[1:2]" * k, "x" + "[...]" * k, "x" + "[k]" * k):
            same_as_lark(text)
    assert same_as_lark("x" + " @ x" * 2000, must_be_fast=True) is not None  # a flat chain is one level


# ------------------------------------------------------------------ pi

def test_pi_is_the_constant():
    assert sg.parse("pi") == ir.Num(math.pi) and sg.parse("2 * pi * r") == 2 * ir.Num(math.pi) * ir.Name("r")
    assert sg.parse("2 * pi * r").span == (0, 10) and sg.parse("pi").span == (0, 2)
    assert same_as_lark("2 * pi * r", must_be_fast=True) == sg.parse("2 * pi * r")
    spelled = f"E[z * {math.pi!r}, z ~ Normal({math.pi!r}, 1)]"
    assert same_as_lark("E[z * pi, z ~ Normal(pi, 1)]", must_be_fast=True) == sg.parse(spelled)
    assert sg.analysis.parameters(sg.parse("pi * r ** 2")) == ("r",)
    r = sg.estimate("sin(pi / 6) * x", {"x": 3.0}, n=2, seed=0)
    assert r.value == pytest.approx(1.5) and r.grad["x"] == pytest.approx(0.5)
    with pytest.raises(sg.StochgradError, match="'pi' is reserved"):
        sg.symbols("pi")
    with pytest.raises(sg.ValidationError, match="'pi' is the constant"):
        sg.estimate("pi * x", {"pi": 3.0, "x": 1.0}, n=2, seed=0)


# ------------------------------------------------------------------ shapes

MATMUL_SHAPES = [((4,), (4,)), ((3, 4), (4,)), ((4,), (4, 5)), ((3, 4), (4, 5)), ((2, 3, 4), (4, 5)),
                 ((2, 3, 4), (2, 4, 5)), ((2, 1, 3, 4), (6, 4, 5)), ((4,), (2, 4, 5)), ((2, 3, 4), (4,))]


@pytest.mark.parametrize("a, b", MATMUL_SHAPES)
def test_matmul_shape_is_numpys(a, b):
    assert shapes.infer(sg.parse("A @ B"), {"A": a, "B": b}) == np.matmul(np.ones(a), np.ones(b)).shape


@pytest.mark.parametrize("a, b, message", [
    ((2, 3), (4,), r"shapes \(2, 3\) and \(4,\) do not match in `A @ B`: the last axis of the left operand \(3\)"),
    ((3,), (2, 4), r"must equal its second-to-last axis of the right one \(2\)"),
    ((), (3,), "at least one axis"),
    ((2, 3, 4), (5, 4, 2), "batch axes"),
])
def test_matmul_shape_mismatch_names_the_text(a, b, message):
    e = sg.parse("1 + A @ B")
    with pytest.raises(sg.StochgradError, match=message) as info:
        shapes.infer(e, {"A": a, "B": b})
    assert info.value.span == (4, 9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.data())
def test_index_shape_is_numpys(shape, data):
    items = data.draw(_items())
    items = tuple(ir.Name("k") if isinstance(i, ir.Name) else i for i in items)
    k = np.zeros(data.draw(st.lists(st.integers(1, 3), max_size=2)), dtype=int)
    key = tuple(k if isinstance(i, ir.Name) else i.as_slice() if isinstance(i, Slice) else i for i in items)
    e = Index(ir.Name("x"), items)
    try:
        expected = np.ones(shape)[key].shape
    except IndexError:
        with pytest.raises(sg.StochgradError):
            shapes.infer(e, {"x": tuple(shape), "k": k.shape})
        return
    assert shapes.infer(e, {"x": tuple(shape), "k": k.shape}) == expected


def test_index_shape_errors():
    with pytest.raises(sg.StochgradError, match=r"index 3 is out of range for axis 1 of length 3 in `x\[0, 3\]`"):
        shapes.infer(sg.parse("x[0, 3]"), {"x": (2, 3)})
    with pytest.raises(sg.StochgradError, match=r"too many indices in `x\[0, 0\]`: 2 for a value with 1 axes"):
        shapes.infer(sg.parse("x[0, 0]"), {"x": (2,)})
    with pytest.raises(sg.StochgradError, match="too many indices"):
        shapes.infer(sg.parse("x[0]"), {})


# ------------------------------------------------------------------ values and gradients

def _run(text, params, backend, n=2, **kw):
    return sg.estimate(text, params, n=n, backend=backend, seed=0, **kw)


@pytest.mark.parametrize("a, b", MATMUL_SHAPES[:6])
def test_matmul_values_and_gradients(backend, a, b):
    A, B = RNG.normal(size=a), RNG.normal(size=b)
    W = RNG.normal(size=np.matmul(A, B).shape)
    r = _run("sum(W * (A @ B))", {"A": A, "B": B, "W": W}, backend)
    assert r.value == pytest.approx(float(np.sum(W * np.matmul(A, B))), rel=1e-12)
    # dL/dA = W B^T, dL/dB = A^T W, with vectors as a row (left) or a column (right), batch axes summed
    A2, B2 = (A[None] if A.ndim == 1 else A), (B[:, None] if B.ndim == 1 else B)
    W2 = W.reshape(np.matmul(A2, B2).shape)
    gA = np.matmul(W2, np.swapaxes(B2, -1, -2))
    gB = np.matmul(np.swapaxes(A2, -1, -2), W2)
    gA = gA.reshape((-1,) + A2.shape[-2:]).sum(0) if gA.ndim > A2.ndim else gA
    gB = gB.reshape((-1,) + B2.shape[-2:]).sum(0) if gB.ndim > B2.ndim else gB
    np.testing.assert_allclose(r.grad["A"], gA.reshape(a), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(r.grad["B"], gB.reshape(b), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(r.grad["W"], np.matmul(A, B), rtol=1e-12, atol=1e-12)


def test_sum_of_matrix_vector_product(backend):
    A, x = RNG.normal(size=(3, 4)), RNG.normal(size=4)
    r = _run("sum(A @ x)", {"A": A, "x": x}, backend)
    assert r.value == pytest.approx((A @ x).sum(), rel=1e-12)
    np.testing.assert_allclose(r.grad["x"], A.sum(0), rtol=1e-12)
    np.testing.assert_allclose(r.grad["A"], np.outer(np.ones(3), x), rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.data(), st.sampled_from(["autograd", "torch"]))
def test_basic_indexing_values_and_gradients(shape, data, backend):
    items = tuple(i for i in data.draw(_items()) if not isinstance(i, ir.Name)) or (0,)
    key = tuple(i.as_slice() if isinstance(i, Slice) else i for i in items)
    x = RNG.normal(size=shape)
    try:
        picked = x[key]
    except IndexError:
        return
    c = RNG.normal(size=picked.shape)
    text = f"sum(c * {Index(ir.Name('x'), items)})"
    r = _run(text, {"x": x, "c": c}, backend)
    expected_grad = np.zeros_like(x)
    expected_grad[key] = c  # basic indexing picks each entry at most once
    assert r.value == pytest.approx(float(np.sum(c * picked)), rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(r.grad["x"], expected_grad, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(r.grad["c"], picked, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("text, key", [
    ("x[0]", (0,)), ("x[-1]", (-1,)), ("x[..., 1]", (Ellipsis, 1)), ("x[:, 0]", (slice(None), 0)),
    ("x[1:3]", (slice(1, 3),)), ("x[1:3, ::2]", (slice(1, 3), slice(None, None, 2))), ("x[::-1, 2]", (slice(None, None, -1), 2)),
])
def test_issue_index_forms(backend, text, key):
    x = RNG.normal(size=(4, 5))
    r = _run(f"sum({text} ** 2)", {"x": x}, backend)
    g = np.zeros_like(x)
    g[key] = 2 * x[key]
    assert r.value == pytest.approx(float(np.sum(x[key] ** 2)), rel=1e-12)
    np.testing.assert_allclose(r.grad["x"], g, rtol=1e-12)


def test_gather_gradient_is_a_bincount(backend):
    theta = RNG.normal(size=8)
    school = np.array([0, 1, 1, 7, 7, 7, -1, 3])
    w = RNG.normal(size=school.shape)
    r = _run("sum(w * theta[school])", {"theta": theta, "school": school, "w": w}, backend)
    assert r.value == pytest.approx(float(np.sum(w * theta[school])), rel=1e-12)
    np.testing.assert_allclose(r.grad["theta"], np.bincount(school % 8, weights=w, minlength=8), rtol=1e-12)
    assert set(r.grad) == {"theta", "w"} and set(r.stderr) == {"theta", "w"}  # the index has no gradient entry
    r = _run("sum(theta[school])", {"theta": theta, "school": list(school)}, backend)
    np.testing.assert_allclose(r.grad["theta"], np.bincount(school % 8, minlength=8), rtol=1e-12)


def test_gather_along_an_axis_with_a_matrix_index(backend):
    theta = RNG.normal(size=(3, 5))
    k = np.array([[0, 4, 4], [2, 0, 1]])
    c = RNG.normal(size=(3, 2, 3))
    r = _run("sum(c * theta[:, k])", {"theta": theta, "k": k, "c": c}, backend)
    assert r.value == pytest.approx(float(np.sum(c * theta[:, k])), rel=1e-12)
    expected = np.zeros_like(theta)
    np.add.at(expected, (slice(None), k), c)
    np.testing.assert_allclose(r.grad["theta"], expected, rtol=1e-12)
    r = _run("sum(theta[..., k][1:, 0])", {"theta": theta, "k": k}, backend)  # gather, then basic indexing
    assert r.value == pytest.approx(float(theta[..., k][1:, 0].sum()), rel=1e-12)


def test_index_parameter_errors(backend):
    theta = RNG.normal(size=8)
    with pytest.raises(sg.StochgradError, match=r"index parameter 'school' has entry 8, out of range for axis 0 of"
                                                 r" length 8 in `theta\[school\]`"):
        _run("sum(theta[school])", {"theta": theta, "school": np.array([0, 8])}, backend)
    with pytest.raises(sg.ValidationError, match="'school' is an index .* must hold integers, got dtype float64"):
        _run("sum(theta[school])", {"theta": theta, "school": np.array([0.0, 1.0])}, backend)
    with pytest.raises(sg.ValidationError, match="must hold integers, got bools"):
        _run("sum(theta[school])", {"theta": theta, "school": np.array([True])}, backend)
    with pytest.raises(sg.ValidationError, match="'school', an index parameter .* no gradient"):
        _run("sum(theta[school])", {"theta": theta, "school": np.array([0])}, backend, wrt=["school"])
    with pytest.raises(sg.StochgradError, match=r"shapes \(2, 3\) and \(4,\) do not match in `A @ x`"):
        _run("sum(A @ x)", {"A": np.ones((2, 3)), "x": np.ones(4)}, backend)
    with pytest.raises(sg.StochgradError, match="indexes with the random variable 'z'"):
        theta_, z, p = sg.symbols("theta z p")
        sg.E(theta_[z], z=sg.Categorical(p))
    assert index_parameters(sg.parse("sum(theta[school]) + x[k][0]")) == ("school", "k")


def test_matmul_inside_an_expectation_pathwise(backend):
    A, mu = RNG.normal(size=(3, 4)), RNG.normal(size=4)
    r = _run("E[sum((A @ z) ** 2), z ~ Normal(mu, 1)]", {"A": A, "mu": mu}, backend, n=20000)
    assert "pathwise" in str(r.plan).lower()
    assert_estimate(r, value=np.sum((A @ mu) ** 2) + np.trace(A @ A.T),
                    grad={"mu": 2 * A.T @ A @ mu, "A": 2 * A @ (np.outer(mu, mu) + np.eye(4))})


def test_random_vector_indexed_and_gathered(backend):
    mu = RNG.normal(size=8)
    school = np.array([0, 1, 1, 7, 7, 7, 3])
    r = _run("E[sum(z[school] ** 2) + z[0] * z[-1], z ~ Normal(mu, 1)]", {"mu": mu, "school": school}, backend,
             n=20000)
    counts = np.bincount(school, minlength=8)
    grad = 2 * mu * counts
    grad[0] += mu[-1]
    grad[-1] += mu[0]
    assert_estimate(r, value=np.sum(mu[school] ** 2 + 1) + mu[0] * mu[-1], grad={"mu": grad})
    assert set(r.grad) == {"mu"}


def test_discrete_variable_through_matmul_and_nested_expectations(backend):
    A, p = RNG.normal(size=(2, 3)), np.array([0.2, 0.5, 0.7])
    r = _run("E[sum((A @ z) ** 2), z ~ Bernoulli(p)]", {"A": A, "p": p}, backend, n=4000)
    # E[z z^T] = p p^T + diag(p (1 - p)), so E|A z|^2 = |A p|^2 + sum_j |A_j|^2 p_j (1 - p_j)
    col = (A ** 2).sum(0)
    assert_estimate(r, value=np.sum((A @ p) ** 2) + col @ (p * (1 - p)),
                    grad={"p": 2 * A.T @ A @ p + col * (1 - 2 * p)})
    mu = RNG.normal(size=3)
    r = _run("sum(A @ E[z, z ~ Normal(mu, 1)]) + E[z, z ~ Normal(mu, 1)][0]", {"A": A, "mu": mu}, backend, n=4000)
    assert_estimate(r, value=np.sum(A @ mu) + mu[0], grad={"mu": A.sum(0) + np.eye(3)[0]})


def test_compiled_objective_gathers(backend):
    theta = RNG.normal(size=6)
    school = np.array([0, 5, 5, 2])
    f = sg.compile("sum(theta[school] ** 2)", n=1, backend=backend, seed=0)
    expected = 2 * theta * np.bincount(school, minlength=6)
    if backend == "torch":
        t = torch.tensor(theta, requires_grad=True)
        f(theta=t, school=torch.tensor(school)).backward()
        np.testing.assert_allclose(t.grad.numpy(), expected, rtol=1e-12)
    else:
        g = grad_of(backend)(lambda t: f(theta=t, school=school))(theta)
        np.testing.assert_allclose(g, expected, rtol=1e-12)
    with pytest.raises(sg.StochgradError, match="has entry 6, out of range"):
        f(theta=theta, school=np.array([6]))
    with pytest.raises(sg.ValidationError, match="must hold integers"):
        f(theta=theta, school=np.array([0.5]))


def test_fast_path_is_exact_at_the_depth_limit():
    for k in range(parser.MAX_DEPTH - 4, parser.MAX_DEPTH + 1):
        for text in ("x" + "[0]" * k, "x" + "[1:]" * k, "x" + "[:]" * k, "x" + "[...]" * k):
            fast = fastparse.fast_parse(text, {}, parser.MAX_DEPTH)
            try:
                parser.parse_with_lark(text)
                accepted = True
            except sg.ParseError:
                accepted = False
            assert (fast is not None) == accepted, text


def test_gather_under_enumeration_and_diagnostics(backend):
    theta, school = np.arange(8.0) / 10, np.array([0, 1, 1, 7])
    r = _run("E[sum(theta[school]) * z, z ~ Bernoulli(p)]", {"theta": theta, "school": school, "p": 0.3}, backend)
    assert "enumerate" in str(r.plan).lower()  # exact: no sampling error
    assert r.value == pytest.approx(0.3 * theta[school].sum()) and r.grad["p"] == pytest.approx(theta[school].sum())
    np.testing.assert_allclose(r.grad["theta"], 0.3 * np.bincount(school, minlength=8))
    with pytest.warns(sg.NonFiniteWarning, match=r"`log\(x\[0:2\]\)` is NaN in 1 of 2 entries"):
        _run("sum(log(x[0:2]))", {"x": np.array([1.0, -1.0, 2.0])}, backend)


def test_backend_take_is_numpys_take(backend):
    B = sg.get_backend(backend)
    x = RNG.normal(size=(2, 5, 3))
    index = np.array([[4, 0], [0, 2], [-0, 1]])
    for axis in (1, 2):
        idx = index % x.shape[axis]
        np.testing.assert_array_equal(B.to_numpy(B.take(B.asarray(x), idx, axis)), np.take(x, idx, axis=axis))
