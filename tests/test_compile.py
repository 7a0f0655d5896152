"""sg.compile: native objectives for training loops, and higher-order derivatives (DiCE)."""

import math

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
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


def derivatives(f, x0, calls, **fixed):
    """First and second derivatives of ``f`` at ``x0`` over independent calls: their means and
    standard errors (each call draws fresh noise, so the calls are independent estimates)."""
    out = []
    for _ in range(calls):
        x = _t(x0)
        (g,) = torch.autograd.grad(f(**fixed, **{"x": x}), x, create_graph=True)
        (h,) = torch.autograd.grad(g, x)
        out.append((g.item(), h.item()))
    a = np.array(out)
    return a.mean(axis=0), a.std(axis=0, ddof=1) / math.sqrt(calls)


def test_second_derivative_pathwise_torch():
    # d/dmu E[z^3] = 3 (mu^2 + 1) and d^2/dmu^2 = 6 mu for z ~ N(mu, 1); within 5 standard errors
    f = sg.compile("E[z**3, z ~ Normal(x, 1)]", backend="torch", n=20_000, seed=3)
    (g, h), (se_g, se_h) = derivatives(f, 0.7, 20)
    assert abs(g - 3 * (0.7**2 + 1)) < 5 * se_g and abs(h - 4.2) < 5 * se_h


@pytest.mark.parametrize("estimator", ["enumerate", "score", "score:baseline=none"])
def test_second_derivative_discrete_torch(estimator):
    # E[f(y)] = s f1 + (1 - s) f0 with s = sigmoid(l): d/dl = s(1-s)(f1 - f0), d^2/dl^2 = s(1-s)(1-2s)(f1 - f0)
    l0, f1, f0 = 0.4, 3.0, -1.0
    f = sg.compile("E[4 * y - 1, y ~ Bernoulli(logits=x)]", backend="torch", n=20_000, seed=4,
                   estimators={"y": estimator})
    (g, h), (se_g, se_h) = derivatives(f, l0, 20)
    s = 1 / (1 + math.exp(-l0))
    exact_g, exact_h = s * (1 - s) * (f1 - f0), s * (1 - s) * (1 - 2 * s) * (f1 - f0)
    if estimator == "enumerate":  # exact: no spread at all
        assert se_g < 1e-12 and abs(g - exact_g) < 1e-9 and abs(h - exact_h) < 1e-9
    else:
        assert abs(g - exact_g) < 5 * se_g and abs(h - exact_h) < 5 * se_h


def test_autograd_objective_and_second_derivative():
    # pathwise: d^2/dmu^2 E[z^3] = 6 mu; score function through a comparison: d^2/dmu^2 Phi(mu) = -mu phi(mu)
    cases = [("E[z**3, z ~ Normal(mu, 1)]", 0.7, 4.2),
             ("E[z > 0, z ~ Normal(mu, 1)]", 0.5, -0.5 * math.exp(-0.125) / math.sqrt(2 * math.pi))]
    for text, mu, exact in cases:
        f = sg.compile(text, backend="autograd", n=20_000, seed=5)
        h = autograd.grad(autograd.grad(lambda m: f(mu=m)))
        hs = np.array([h(mu) for _ in range(20)])  # independent calls: fresh noise each
        assert abs(hs.mean() - exact) < 5 * hs.std(ddof=1) / math.sqrt(len(hs)), text
    assert np.ndim(f(mu=anp.array(0.3))) == 0


def test_moving_average_state_carries_across_calls():
    ema = sg.MovingAverage(decay=0.8)
    f = sg.compile("E[(b - 0.45)**2, b ~ Bernoulli(logits=l)]", backend="torch", n=8, seed=7,
                   estimators={"b": sg.Score(baseline=ema)})
    for _ in range(5):
        f(l=_t(0.0)).backward()
    state = f.baseline_state["b"]  # the objective's state; the spec holds only the decay
    assert state.updates == 5 and 0.2 < float(state.value) < 0.31


def test_compile_errors():
    with pytest.raises(sg.ValidationError, match=r"n \(samples per call\) must be an integer >= 1"):
        sg.compile("E[z, z ~ Normal(mu, 1)]", n=0)
    f = sg.compile("E[z, z ~ Normal(mu, 1)]", n=4, backend="torch")
    with pytest.raises(sg.ValidationError, match="parameter 'mu' is missing"):
        f()
    with pytest.raises(sg.ValidationError, match=r"unknown parameter 'nu'"):
        f(mu=_t(0.0), nu=_t(1.0))


@pytest.mark.parametrize("text, params, message", [
    ("E[z**2, z ~ Normal(mu, sigma)]", {"mu": 0.0, "sigma": -1.0},
     r"z ~ Normal\(mu, sigma\): parameter 'scale' \(given as `sigma`\) must be > 0 and finite, got -1.0"),
    ("E[z**2, z ~ Normal(mu, sigma)]", {"mu": math.nan, "sigma": 1.0}, r"parameter 'loc' \(given as `mu`\) must be finite, got nan"),
    ("E[y, y ~ Bernoulli(p)]", {"p": 1.5}, r"parameter 'probs' \(given as `p`\) must be in \[0, 1\], got 1.5"),
    ("E[x, x ~ Binomial(m, 0.5)]", {"m": 2.5}, r"parameter 'total_count' \(given as `m`\) must be a non-negative integer, got 2.5"),
    ("E[z, z ~ Uniform(a, b)]", {"a": 2.0, "b": 1.0}, r"parameter 'high' must be > 'low', got low=2.0, high=1.0"),
])
@pytest.mark.parametrize("backend", ["torch", "autograd"])
def test_scalar_parameters_are_checked_on_every_call(text, params, message, backend):
    """A compiled objective checks scalar parameters as Python floats (no numpy copy): the same errors."""
    f = sg.compile(text, backend=backend, n=8, seed=0)
    with pytest.raises(sg.StochgradError, match=message):
        if backend == "torch":
            f(**{k: _t(v) for k, v in params.items()})
        else:
            autograd.grad(lambda *xs: f(**dict(zip(params, xs))), 0)(*params.values())


def test_validate_false_skips_parameter_checks():
    """validate=False (torch.distributions' validate_args=False): no check, so no error and no host copy;
    the default checks on every call."""
    text = "E[z**2, z ~ Normal(mu, sigma)]"
    checked = sg.compile(text, backend="torch", n=8, seed=0)
    with pytest.raises(sg.StochgradError, match=r"z ~ Normal\(mu, sigma\): parameter 'scale'"):
        checked(mu=_t(0.0), sigma=_t(-1.0))
    unchecked = sg.compile(text, backend="torch", n=8, seed=0, validate=False)
    same = sg.compile(text, backend="torch", n=8, seed=0)
    # z = mu + sigma * eps is still computed: with sigma = -1 the value equals sigma = +1's (z**2 is even in sigma)
    assert unchecked(mu=_t(0.0), sigma=_t(-1.0)).item() == pytest.approx(same(mu=_t(0.0), sigma=_t(1.0)).item())
    with pytest.raises(sg.ValidationError, match="validate must be True or False"):
        sg.compile(text, backend="torch", n=8, validate="no")


_SURROGATE_CASES = [
    ("E[(b - 0.45)**2, b ~ Bernoulli(logits=l)]", {"b": "score"}),                        # baseline folded into the term
    ("E[(b - 0.45)**2, b ~ Bernoulli(logits=l)]", {"b": "score:baseline=none"}),          # plain score term
    ("E[x * y + x, x ~ Bernoulli(p), y ~ Normal(mu, 1)]", {"x": "score"}),                # cost with a pathwise gradient too
    ("E[(x + y)**2, x ~ Bernoulli(p), y ~ Bernoulli(q)]", {"x": "enumerate", "y": "score"}),  # enumeration weights
    ("E[x * y + y, x ~ Bernoulli(p), y ~ Bernoulli(q)]", {"x": "score", "y": "score"}),   # a term scored by two nodes
]
_AT = {"l": 0.3, "p": 0.3, "q": 0.6, "mu": 0.5}


@pytest.mark.parametrize("text, est", _SURROGATE_CASES)
@pytest.mark.parametrize("backend", ["torch", "autograd"])
def test_estimate_first_order_surrogate_equals_dice_objective(text, est, backend):
    """``estimate`` builds score terms as ``v + stop(v) (L - stop L)``, objectives as DiCE's
    ``[](L) v``: with the same seed and noise (one block, so one leave-one-out group) the value and
    the gradient agree to round-off."""
    params = {k: v for k, v in _AT.items() if k in sg.parameters(sg.parse(text))}
    names = list(params)
    r = sg.estimate(text, params, n=2000, backend=backend, estimators=est, seed=11)
    f = sg.compile(text, n=2000, backend=backend, estimators=est, seed=11)
    if backend == "torch":
        xs = [_t(params[k]) for k in names]
        value = f(**dict(zip(names, xs)))
        grads = [g.item() for g in torch.autograd.grad(value, xs)]
        value = value.item()
    else:  # one call (each call of an objective draws new noise)
        grads, value = autograd.grad_and_aux(lambda xs: (lambda v: (v, v))(f(**dict(zip(names, xs)))))(
            [params[k] for k in names])
        value = autograd.tracer.getval(value)
    assert r.value == pytest.approx(float(value), rel=1e-9, abs=1e-12)
    for k, g in zip(names, grads):
        assert r.grad[k] == pytest.approx(float(g), rel=1e-9, abs=1e-12), k


_MODELS = [  # (text, {variable: its distribution's family})
    ("E[x * y + x * mu, x ~ Bernoulli(p), y ~ Bernoulli(q)]", {"x": "discrete", "y": "discrete"}),
    ("E[(x + y - mu)**2, x ~ Bernoulli(logits=a), y ~ Normal(mu * x, 1)]", {"x": "discrete", "y": "continuous"}),
    ("E[E[x * y, y ~ Bernoulli(q)] + x, x ~ Bernoulli(p)]", {"x": "discrete", "y": "discrete"}),
    ("E[x * mu + y**2, x ~ Normal(mu, 1), y ~ Bernoulli(p)]", {"x": "continuous", "y": "discrete"}),
]
_CHOICES = {"discrete": ["score", "score:baseline=none", "enumerate"],
            "continuous": ["pathwise", "score", "score:baseline=none"]}


@given(data=st.data())
@settings(max_examples=30)
def test_first_order_surrogate_equals_dice_on_random_plans(data):
    """Property: for any of these models, any choice of estimators and parameter values, ``estimate``'s
    first-order surrogate and a compiled objective's DiCE surrogate give the same value and gradient
    from the same noise (torch, n = 300, one noise block)."""
    text, families = data.draw(st.sampled_from(_MODELS))
    est = {v: data.draw(st.sampled_from(_CHOICES[f]), label=v) for v, f in families.items()}
    at = {"p": data.draw(st.floats(0.05, 0.95)), "q": data.draw(st.floats(0.05, 0.95)),
          "a": data.draw(st.floats(-3, 3)), "mu": data.draw(st.floats(-2, 2))}
    seed = data.draw(st.integers(0, 2**31))
    names = list(sg.parameters(sg.parse(text)))
    params = {k: at[k] for k in names}
    r = sg.estimate(text, params, n=300, backend="torch", estimators=est, seed=seed)
    f = sg.compile(text, n=300, backend="torch", estimators=est, seed=seed)
    xs = [_t(params[k]) for k in names]
    value = f(**dict(zip(names, xs)))
    grads = torch.autograd.grad(value, xs, allow_unused=True)
    assert r.value == pytest.approx(value.item(), rel=1e-8, abs=1e-10)
    for k, g in zip(names, grads):
        assert r.grad[k] == pytest.approx(0.0 if g is None else g.item(), rel=1e-8, abs=1e-10), k


@pytest.mark.parametrize("est", ["score", "score:baseline=none"])
def test_first_order_surrogate_equals_dice_with_a_plate(est):
    """``batch_axes=1`` (each example's score term pairs with its own cost): the same agreement."""
    text = "E[(x - t)**2, x ~ Bernoulli(logits=l)]"  # one cost per example
    l, t = np.array([0.3, -1.0, 2.0]), np.array([1.0, 0.0, 0.5])
    r = sg.estimate(text, {"l": l, "t": t}, n=500, backend="torch", estimators={"x": est}, seed=5, batch_axes=1)
    f = sg.compile(text, n=500, backend="torch", estimators={"x": est}, seed=5, batch_axes=1)
    lt, tt = _t(l), _t(t)
    value = f(l=lt, t=tt)
    gl, gt = torch.autograd.grad(value, [lt, tt])
    assert r.value.sum() == pytest.approx(value.item(), rel=1e-9)
    np.testing.assert_allclose(r.grad["l"], gl.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(r.grad["t"], gt.numpy(), rtol=1e-9, atol=1e-12)


def test_a_plate_needs_one_cost_per_example():
    """A cost summed over the examples under ``batch_axes=1`` would be counted once per example: an error."""
    text = "E[sum((x - t)**2), x ~ Bernoulli(logits=l)]"
    message = (r"batch_axes=1: the cost term `sum\(\(x - t\) \*\* 2\)` depends on x, which has 1 batch axis"
               r" \(independent examples\), but the term has 0 axes: keep one cost per example")
    score = {"x": "score"}
    with pytest.raises(sg.StochgradError, match=message):
        sg.estimate(text, {"l": np.zeros(3), "t": np.ones(3)}, n=10, batch_axes=1, estimators=score)
    with pytest.raises(sg.StochgradError, match=message):
        sg.compile(text, n=10, backend="torch", batch_axes=1, estimators=score)(l=_t([0.0, 0.0, 0.0]), t=_t([1.0, 1.0, 1.0]))
    sg.estimate(text, {"l": np.zeros(3), "t": np.ones(3)}, n=10, estimators=score)  # fine without a plate
