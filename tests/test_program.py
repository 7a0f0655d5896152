"""Plan -> program (stochgrad.program): built once per plan, run with no tree walk, equal to references.

* A program is built once per planned root: an objective builds one per set of parameter shapes,
  and ``estimate`` runs of the same expression and shapes reuse it (counted by ``program.builds``).
* A run walks no tree: once built, neither the compiler's entry point, nor the IR's ``children``,
  nor the planner is called by a later call (monkeypatched to raise).
* Results: the folded program equals the traced one (which folds nothing and evaluates every
  constant at run time) on identical noise for Hypothesis-drawn expressions, both backends; a
  deterministic arithmetic expression equals its numpy evaluation (written independently below);
  enumeration, leave-one-out, moving-average and plate paths give their closed forms within 6 se.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import stochgrad as sg
from stochgrad import ir, program
from stochgrad.backend import get_backend
from stochgrad.errors import StochgradError
from stochgrad.functions import make_call
from stochgrad.noise import BLOCK, NoiseSource
from stochgrad.planner import plan
from stochgrad.program import Frame, lower
from stochgrad.sampleaxis import with_sample_axis
from stochgrad.testing.strategies import expressions, params_for_expression

TEXT = "E[z**2, z ~ Normal(mu, sigma)]"


def _torch_params(**values):
    torch = pytest.importorskip("torch")
    return {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in values.items()}


def _call(f, backend, **values):
    if backend == "torch":
        return float(f(**_torch_params(**values)).detach())
    return float(f(**{k: np.asarray(v, dtype=float) for k, v in values.items()}))


def test_an_objective_builds_one_program_per_shape_signature(backend):
    # an expression no other test plans (plans, and so programs, are shared between objectives)
    f = sg.compile(f"E[z**2 + {len(backend)}.25, z ~ Normal(mu, sigma)]", backend=backend, n=64, seed=0)
    before = program.builds()
    for _ in range(3):
        _call(f, backend, mu=0.5, sigma=1.5)
    assert program.builds() - before == 1
    for _ in range(2):
        _call(f, backend, mu=[0.5, 1.0], sigma=1.5)  # a new shape: a new plan, a new program
    assert program.builds() - before == 2


def test_estimate_runs_reuse_the_program_of_their_plan(backend):
    params = {"mu": 0.3, "sigma": 1.2}
    sg.estimate(TEXT, params, n=100, backend=backend, seed=1)
    before = program.builds()
    a = sg.estimate(TEXT, params, n=100, backend=backend, seed=1)
    b = sg.estimate(TEXT, params, n=3 * BLOCK + 5, backend=backend, seed=1, chunk_size=BLOCK)  # chunks
    assert program.builds() == before
    assert a.grad == sg.estimate(TEXT, params, n=100, backend=backend, seed=1).grad
    assert abs(b.grad["mu"] - 2 * 0.3) < 6 * b.stderr["mu"]


@pytest.mark.parametrize("text, estimators", [
    (TEXT, None),
    ("E[(b - 0.45)**2 + mu, b ~ Bernoulli(probs=p)]", {"b": "score"}),
    ("E[sum(y * w), y ~ Categorical(logits=w)]", {"y": "enumerate"}),
    ("E[(b - 0.45)**2 + mu, b ~ Bernoulli(probs=p)]", {"b": "score:baseline=ema"}),
])
def test_a_call_walks_no_tree_and_plans_nothing(backend, monkeypatch, text, estimators):
    values = {"mu": 0.5, "sigma": 1.5, "p": 0.3, "w": [0.1, -0.4, 0.7]}
    e = sg.parse(text)
    f = sg.compile(e, backend=backend, n=32, seed=3, estimators=estimators)
    needed = {k: v for k, v in values.items() if k in f.parameters}
    first = _call(f, backend, **needed)

    def refuse(*args, **kwargs):
        raise AssertionError("a tree walk or planning during a run")

    monkeypatch.setattr(ir.Expr, "children", refuse)
    monkeypatch.setattr(program.compile._Builder, "compile", refuse)
    monkeypatch.setattr(sg.compiled, "plan", refuse)
    second = _call(f, backend, **needed)
    assert math.isfinite(first) and math.isfinite(second)


def _run(B, root, params, seed, trace=None):
    """The per-sample surrogate of ``root`` (numpy) on the noise of ``seed``, or the error's type."""
    native = with_sample_axis(B, {k: B.asarray(np.asarray(v, dtype=float)) for k, v in params.items()})
    prog = lower(root, trace) if trace is not None else program.compile.Program(root)
    try:
        with np.errstate(all="ignore"):
            out = prog.run(Frame(B, native, NoiseSource(B, seed, 0, 8, blocked=False)))
        return B.to_numpy(out)
    except (StochgradError, ValueError, ArithmeticError) as err:
        return type(err)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                                         HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_folded_program_equals_the_unfolded_traced_one(backend, data):
    """Folding constants (IEEE), the arithmetic tape and the one-operator fast path change no number:
    the traced program, which evaluates every constant and operator as a separate step, agrees."""
    e = data.draw(expressions(("mu", "sigma"), max_depth=3))
    try:
        p = plan(e, shapes={"mu": (), "sigma": ()})
    except StochgradError:
        assume(False)
        return
    params = {"mu": 0.7, "sigma": 1.3} | data.draw(params_for_expression(e))
    B = get_backend(backend)
    seen = []
    folded = _run(B, p.root, params, 5)
    traced = _run(B, p.root, params, 5, trace=lambda e, v, fr: seen.append(e))
    if isinstance(folded, type) or isinstance(traced, type):
        assert folded == traced
        return
    np.testing.assert_array_equal(folded, traced)
    assert seen  # the trace saw the steps


_OPS = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "**": np.power}
_FNS = {"exp": np.exp, "log": np.log, "abs": np.abs, "sin": np.sin, "tanh": np.tanh}


def _numpy_value(e, env):
    """An independent reference: the expression evaluated with numpy float64 (IEEE) semantics."""
    if isinstance(e, ir.Num):
        return np.float64(e.value)
    if isinstance(e, ir.Name):
        return np.float64(env[e.id])
    if isinstance(e, ir.Neg):
        return -_numpy_value(e.operand, env)
    if isinstance(e, ir.Call):
        return _FNS[e.fn](_numpy_value(e.args[0], env))
    return _OPS[e.op](_numpy_value(e.left, env), _numpy_value(e.right, env))


@st.composite
def _arithmetic(draw, depth=4):
    if depth == 0 or draw(st.booleans()):
        return draw(st.one_of(st.sampled_from([ir.Name("mu"), ir.Name("sigma")]),
                              st.sampled_from([0.5, 2.0, 3.0, -1.25, 0.1, 1e-7]).map(ir.Num)))
    kind = draw(st.sampled_from(["op", "op", "neg", "fn"]))
    if kind == "neg":
        return ir.negate(draw(_arithmetic(depth - 1)))
    if kind == "fn":
        return make_call(draw(st.sampled_from(sorted(_FNS))), (draw(_arithmetic(depth - 1)),), ())
    return ir.BinOp(draw(st.sampled_from(sorted(_OPS))), draw(_arithmetic(depth - 1)), draw(_arithmetic(depth - 1)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(e=_arithmetic(), mu=st.floats(0.2, 3.0), sigma=st.floats(0.2, 3.0))
def test_deterministic_arithmetic_equals_numpy(backend, e, mu, sigma):
    with np.errstate(all="ignore"):
        expected = _numpy_value(e, {"mu": mu, "sigma": sigma})
    assume(np.isfinite(expected) and abs(expected) < 1e100)
    B = get_backend(backend)
    try:
        p = plan(e, shapes={"mu": (), "sigma": ()})
    except StochgradError:
        assume(False)
        return
    got = _run(B, p.root, {"mu": mu, "sigma": sigma}, 0)
    assert not isinstance(got, type)
    np.testing.assert_allclose(got.reshape(-1)[0], expected, rtol=1e-12, atol=1e-300)


def test_enumeration_is_exact(backend):
    """E[y * mu + y**2 * w, y ~ Categorical(probs=q)], y one-hot, summed exactly over its 3 states:
    entry k is q_k (mu + w_k); d/dmu of the sum is sum_k q_k = 1; no spread."""
    q, w = np.array([0.2, 0.5, 0.3]), np.array([1.0, -2.0, 4.0])
    r = sg.estimate("E[y * mu + y**2 * w, y ~ Categorical(probs=q)]", {"mu": 1.5, "q": q, "w": w}, n=10,
                    backend=backend, seed=0, estimators={"y": "enumerate"}, wrt=["mu"])
    np.testing.assert_allclose(r.value, q * (1.5 + w), rtol=1e-12)
    assert r.grad["mu"] == pytest.approx(1.0, rel=1e-12) and r.stderr["mu"] == pytest.approx(0.0, abs=1e-12)


def test_enumeration_then_sampling_draws_independent_noise_per_copy(backend):
    """A node sampled after an enumerated one: E[b * z], b ~ Bernoulli(0.3), z ~ Normal(mu, 1):
    value 0.3 mu, d/dmu 0.3 (closed form), within 6 se."""
    r = sg.estimate("E[b * z, b ~ Bernoulli(probs=0.3), z ~ Normal(mu, 1)]", {"mu": 2.0}, n=4000,
                    backend=backend, seed=2, estimators={"b": "enumerate"})
    assert abs(r.value - 0.6) < 6 * r.value_stderr and abs(r.grad["mu"] - 0.3) < 6 * r.stderr["mu"] + 1e-12


@pytest.mark.parametrize("baseline", ["loo", "ema", "none"])
def test_score_baselines_are_unbiased(backend, baseline):
    """d/dp E[(b - 0.45)**2 + 3, b ~ Bernoulli(p)] = 0.1 by hand (see tests/test_baseline_state.py)."""
    r = sg.estimate("E[(b - 0.45)**2 + 3, b ~ Bernoulli(probs=p)]", {"p": 0.3}, n=20000, backend=backend, seed=7,
                    estimators={"b": f"score:baseline={baseline}"})
    assert abs(r.grad["p"] - 0.1) < 6 * r.stderr["p"]
    assert r.value == pytest.approx(0.7 * 3.2025 + 0.3 * 3.3025, abs=6 * r.value_stderr)


def test_plate_pairs_each_example_with_its_own_cost_and_refuses_a_summed_one(backend):
    """batch_axes=1: d/dp_i E[sum((b - t)**2)] = (1 - t_i)^2 - t_i^2 = 1 - 2 t_i per example."""
    t = np.array([0.1, 0.5, 0.9])
    r = sg.estimate("E[(b - t)**2, b ~ Bernoulli(probs=p)]", {"p": np.full(3, 0.4), "t": t}, n=20000,
                    backend=backend, seed=3, estimators={"b": "score"}, batch_axes=1, wrt=["p"])
    assert np.all(np.abs(r.grad["p"] - (1 - 2 * t)) <= 6 * r.stderr["p"] + 1e-12)
    assert r.stderr["p"][1] < 1e-12  # example 1's cost is the same for b = 0 and 1: paired with its own, no spread
    with pytest.raises(StochgradError, match="batch_axes=1: the cost term"):
        sg.estimate("E[sum((b - t)**2), b ~ Bernoulli(probs=p)]", {"p": np.full(3, 0.4), "t": t}, n=10,
                    backend=backend, seed=3, estimators={"b": "score"}, batch_axes=1)


def test_moving_average_state_is_the_objectives_and_advances_once_per_call(backend):
    f = sg.compile("E[(b - 0.45)**2 + 3, b ~ Bernoulli(probs=p)]", backend=backend, n=16, seed=1,
                   estimators={"b": "score:baseline=ema"})
    for calls in (1, 2, 3):
        _call(f, backend, p=0.3)
        assert f.baseline_state["b"].updates == calls
