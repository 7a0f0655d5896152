"""Moving-average baseline state belongs to the run or the objective, never to the spec.

``MovingAverage(decay)`` is configuration; ``estimate`` starts a fresh state per call (carried
across its chunks), a compiled objective owns one across its calls (``f.baseline_state``):
``b_1 = m_1``, ``b_t = decay b_{t-1} + (1 - decay) m_t`` with ``m_t`` the call's mean of the cost
terms that depend on the node, and
call ``t`` uses ``b_{t-1}``.  Exact gradient used below, by hand: for
``E[(b - 0.45)**2 + 3, b ~ Bernoulli(p)]`` the cost is ``3.2025`` at ``b = 0`` and ``3.3025`` at
``b = 1``, so ``d/dp = 0.1``."""

import math

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import torch

import stochgrad as sg
from stochgrad.noise import BLOCK
from stochgrad.testing import assert_estimate

TEXT = "E[(b - 0.45)**2 + 3, b ~ Bernoulli(p)]"
EXACT = 0.1
CONFIGS = [("autograd", {}), ("torch", {}), ("torch", {"dtype": "float32"})]


def _value_and_grad(f, backend, options, p=0.3):
    """One call of objective ``f``: (value, d/dp) as floats."""
    if backend == "torch":
        x = torch.tensor(p, dtype=torch.float32 if options else torch.float64, requires_grad=True)
        v = f(p=x)
        (g,) = torch.autograd.grad(v, [x])
        return float(v.detach()), float(g)
    v, g = autograd.value_and_grad(lambda q: f(p=q))(anp.float64(p))
    return float(v), float(g)


@pytest.mark.parametrize("backend, options", CONFIGS)
def test_same_seed_estimates_are_identical_with_one_ema_spec(backend, options):
    """Old defect: the second call started from the state the first left in the spec."""
    estimators = {"b": sg.Score(baseline=sg.MovingAverage(0.7))}
    run = [sg.estimate(TEXT, {"p": 0.3}, n=2 * BLOCK + 100, backend=backend, seed=4, estimators=estimators,
                       chunk_size=BLOCK, backend_options=options) for _ in range(2)]
    assert run[0].grad == run[1].grad and run[0].value == run[1].value and run[0].stderr == run[1].stderr
    # the baseline does enter (chunks 2 and 3 use it): the result differs from no baseline
    none = sg.estimate(TEXT, {"p": 0.3}, n=2 * BLOCK + 100, backend=backend, seed=4, chunk_size=BLOCK,
                       estimators={"b": "score:baseline=none"}, backend_options=options)
    assert none.grad["p"] != run[0].grad["p"] and none.stderr["p"] > 1.2 * run[0].stderr["p"]


@pytest.mark.parametrize("backend, options", CONFIGS)
def test_objectives_from_one_spec_are_independent(backend, options):
    """Old defect: two objectives compiled from one spec shared (and advanced) one baseline."""
    estimators = {"b": "score:baseline=ema"}
    f = sg.compile(TEXT, n=16, backend=backend, seed=9, estimators=estimators, backend_options=options)
    g = sg.compile(TEXT, n=16, backend=backend, seed=9, estimators=estimators, backend_options=options)
    first = [_value_and_grad(f, backend, options) for _ in range(3)]
    second = [_value_and_grad(g, backend, options) for _ in range(3)]
    assert first == second  # g starts fresh, whatever f did
    assert f.baseline_state["b"].updates == g.baseline_state["b"].updates == 3
    assert f.baseline_state["b"] is not g.baseline_state["b"]


@pytest.mark.parametrize("backend, options", CONFIGS)
def test_objective_state_advances_as_documented(backend, options):
    decay = 0.6
    f = sg.compile(TEXT, n=16, backend=backend, seed=3, estimators={"b": sg.Score(baseline=sg.MovingAverage(decay))},
                   backend_options=options)
    plain = sg.compile(TEXT, n=16, backend=backend, seed=3, estimators={"b": "score:baseline=none"}, backend_options=options)
    assert len(f.baseline_state) == 0
    expected = None
    for t in range(4):
        (m, grad), (m0, grad0) = _value_and_grad(f, backend, options), _value_and_grad(plain, backend, options)
        assert m == m0  # the value of a call is its mean cost, with or without a baseline
        if t == 0:
            assert grad == grad0  # the first call has no baseline yet
        else:
            assert grad != grad0
        m -= 3.0  # the average is of the cost terms the node scores: (b - 0.45)**2, not the constant 3
        expected = m if expected is None else decay * expected + (1 - decay) * m
        state = f.baseline_state["b"]
        assert state.updates == t + 1
        np.testing.assert_allclose(state.value, expected, rtol=1e-5 if options else 1e-12)
    f.baseline_state.reset()
    assert len(f.baseline_state) == 0
    assert _value_and_grad(f, backend, options)[1] == _value_and_grad(plain, backend, options)[1]  # fresh again


def test_state_of_another_shape_is_an_error_not_a_broadcast():
    f = sg.compile("E[b, b ~ Bernoulli(p)]", n=8, backend="torch", seed=0, estimators={"b": "score:baseline=ema"},
                   batch_axes=1)
    f(p=torch.full((3,), 0.3, dtype=torch.float64, requires_grad=True))
    with pytest.raises(sg.StochgradError, match=r"moving-average baseline of b holds a value of shape \(3,\), but"
                                                r" this batch's costs have shape \(5,\)"):
        f(p=torch.full((5,), 0.3, dtype=torch.float64, requires_grad=True))


@pytest.mark.parametrize("backend, options", CONFIGS)
def test_ema_baseline_gradient_is_unbiased_in_estimate(backend, options):
    r = sg.estimate(TEXT, {"p": 0.3}, n=6 * BLOCK, backend=backend, seed=21, chunk_size=BLOCK,
                    estimators={"b": "score:baseline=ema"}, backend_options=options)
    assert_estimate(r, grad={"p": EXACT})


@pytest.mark.parametrize("backend, options", CONFIGS)
def test_ema_baseline_gradient_is_unbiased_across_objective_calls(backend, options):
    """Calls of n = 8 with the baseline from earlier calls: the mean gradient over calls is
    the exact one, within 5 standard errors of that mean (calls are independent given the state)."""
    f = sg.compile(TEXT, n=8, backend=backend, seed=13, estimators={"b": "score:baseline=ema"}, backend_options=options)
    grads = np.array([_value_and_grad(f, backend, options)[1] for _ in range(600)])
    se = grads.std(ddof=1) / math.sqrt(len(grads))
    assert abs(grads.mean() - EXACT) < 5 * se
    # and the baseline matters: with the constant 3 in the cost, no baseline is far noisier
    g = sg.compile(TEXT, n=8, backend=backend, seed=13, estimators={"b": "score:baseline=none"}, backend_options=options)
    plain = np.array([_value_and_grad(g, backend, options)[1] for _ in range(100)])
    assert plain.std() > 5 * grads[100:].std()


def test_spec_is_configuration_only():
    a, b = sg.Score(baseline=sg.MovingAverage(0.9)), sg.Score(baseline="ema")
    assert a == b and hash(a) == hash(b) and a.baseline.decay == 0.9
    with pytest.raises(AttributeError):
        a.baseline.decay = 0.5  # frozen
    for bad in (1.0, -0.1, True, "0.5"):
        with pytest.raises(sg.PlanError, match=r"moving-average decay must be in \[0, 1\)"):
            sg.MovingAverage(bad)
    with pytest.raises(sg.PlanError, match="a MovingAverage holds no state"):
        sg.MovingAverage().reset()
    assert "moving-average baseline, decay 0.9" in str(sg.plan(TEXT, estimators={"b": b}))
