"""REBAR and RELAX under ``batch_axes`` (each example's cost paired with its own log p), and the
copies-based estimators that stay refused there.

Exact values are written here with numpy, by brute force per example: for ``b_i ~ Bernoulli(sigmoid
(theta_i))`` elementwise, ``dE[f_i(b_i)]/dtheta_i = sum_b f_i(b) p(b) (b - p_i)`` over the 2**D states
of example ``i`` (and zero across examples).  Tolerances: 6 standard errors of the estimate;
``test_batch_wrong_pairing_fails`` shows that the sample size detects an estimator that pairs each
example's cost with the other example's log p (its score part then has mean zero: biased).
"""

import itertools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

import stochgrad as sg
from stochgrad.errors import PlanError, StochgradError
from stochgrad.estimators import Rebar, register_estimator, unregister_estimator

THETA2 = np.array([[0.4, -1.0, 1.5], [0.2, 0.7, -0.3]])  # two examples of three Bernoulli elements
W2 = np.array([[1.0, -2.0, 0.5], [0.5, 1.5, -1.0]])
BATCH = "E[sum(w * b, axis=-1)**2 + b[:, 0] * b[:, 2], b ~ Bernoulli(logits=theta)]"  # per example


def batch_cost(b, w):
    return np.sum(w * b) ** 2 + b[0] * b[2]


def exact_batch(theta, w):
    """Brute force per example: (values (N,), gradients (N, D))."""
    values, grads = np.zeros(len(theta)), np.zeros_like(theta)
    for i, (t, wi) in enumerate(zip(theta, w)):
        p = 1 / (1 + np.exp(-t))
        for bits in itertools.product([0.0, 1.0], repeat=len(t)):
            b = np.array(bits)
            pb = np.prod(np.where(b == 1, p, 1 - p))
            values[i] += pb * batch_cost(b, wi)
            grads[i] += pb * batch_cost(b, wi) * (b - p)
    return values, grads


def rowwise_net(backend):
    """A fixed control-variate net, row-wise: relaxed logits (n, N, 3) -> (n, N)."""
    rng = np.random.default_rng(7)
    a, c = rng.normal(size=(3, 4)), float(rng.normal())
    if backend == "torch":
        ta = torch.tensor(a)
        return lambda z: torch.tanh(z @ ta).sum(-1) * 0.5 + c
    import autograd.numpy as anp
    return lambda z: anp.sum(anp.tanh(anp.dot(z, a)), -1) * 0.5 + c


def estimate(backend, spec, n=4000, seed=3, batch_axes=1, theta=THETA2, w=W2, text=BATCH):
    return sg.estimate(text, {"theta": theta, "w": w}, n=n, seed=seed, backend=backend,
                       estimators={"b": spec}, batch_axes=batch_axes)


def close(r, values, grads):
    v, vse = np.asarray(r.value), np.asarray(r.value_stderr)
    g, se = np.asarray(r.grad["theta"]), np.asarray(r.stderr["theta"])
    assert v.shape == values.shape and g.shape == grads.shape
    assert np.all(np.abs(v - values) <= 6 * vse + 1e-9), (v, values, vse)
    assert np.all(np.abs(g - grads) <= 6 * se + 1e-9), (g, grads, se)


@pytest.mark.parametrize("spec", ["rebar", "rebar:temperature=0.3,scale=0.8", "relax"])
def test_batch_unbiased_per_example(backend, spec):
    """batch_axes=1: one value and one gradient row per example, each unbiased (brute force)."""
    made = sg.Relax(surrogate=rowwise_net(backend), learn=False) if spec == "relax" else spec
    close(estimate(backend, made), *exact_batch(THETA2, W2))


def test_batch_one_example_equals_no_batch_axes(backend):
    """A batch of one example: batch_axes=1 and the same program without batch_axes draw the same
    noise and pair the same cost with the same log p, so they give the same numbers (REBAR; RELAX's
    net without batch_axes takes one value per sample, a different contract)."""
    theta, w = THETA2[:1], W2[:1]
    for spec in ("rebar", "rebar:temperature=0.2,scale=1.5"):
        a = estimate(backend, spec, n=500, theta=theta, w=w)
        b = estimate(backend, spec, n=500, theta=theta, w=w, batch_axes=0)
        np.testing.assert_allclose(np.asarray(a.grad["theta"]), np.asarray(b.grad["theta"]), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.asarray(a.value), np.asarray(b.value), rtol=1e-12)


def test_batch_pairing_lowers_the_stderr():
    """Per-example pairing (batch_axes=1) against the whole log p (inferred plate, batch_axes=0): both
    unbiased (checked), the per-example one with smaller standard errors (no cross-example noise)."""
    exact = exact_batch(THETA2, W2)
    a, b = estimate("torch", "rebar"), estimate("torch", "rebar", batch_axes=0)
    close(a, *exact)
    assert np.allclose(np.asarray(b.grad["theta"]), exact[1], atol=6 * np.max(b.stderr["theta"]))
    assert np.mean(np.asarray(a.stderr["theta"])) < np.mean(np.asarray(b.stderr["theta"]))


@dataclass(frozen=True)
class _SwappedExamples(Rebar):
    """Deliberately wrong: example i's cost paired with example 1-i's log p (biased)."""

    name: ClassVar[str] = "rebar_swapped"

    def sample_copies(self, d, B, p, draw, shape):
        values, logq = super().sample_copies(d, B, p, draw, shape)
        return values, logq.flip(1)  # torch (the test runs on torch)


def test_batch_wrong_pairing_fails():
    register_estimator(_SwappedExamples)
    try:
        r = estimate("torch", "rebar_swapped")
    finally:
        unregister_estimator("rebar_swapped")
    _, grads = exact_batch(THETA2, W2)
    assert np.any(np.abs(np.asarray(r.grad["theta"]) - grads) > 6 * np.asarray(r.stderr["theta"]))


def test_batch_learning_relax_objective():
    """A torch objective with batch_axes=1 and a learning RELAX (row-wise net): the value is the sum
    over the examples of f(b), theta's gradient (one call, n = 8000) matches brute force within 6 standard errors of the
    fixed estimate, and the net's parameters get a gradient (the variance gradient)."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1),
                              torch.nn.Flatten(1)).double()
    spec = sg.Relax(surrogate=net)
    f = sg.compile(BATCH, backend="torch", n=8000, seed=5, estimators={"b": spec}, batch_axes=1)
    theta, w = torch.tensor(THETA2, requires_grad=True), torch.tensor(W2)
    out = f(theta=theta, w=w)
    out.backward()
    r = estimate("torch", sg.Relax(surrogate=net, learn=False), n=8000, seed=5)
    values, grads = exact_batch(THETA2, W2)
    assert np.all(np.abs(theta.grad.numpy() - grads) <= 6 * np.asarray(r.stderr["theta"]))
    assert abs(float(out) - values.sum()) <= 6 * np.sqrt(np.sum(np.asarray(r.value_stderr) ** 2))
    assert all(q.grad is not None and torch.all(torch.isfinite(q.grad)) for q in spec.control_parameters())
    assert any(float(q.grad.abs().sum()) > 0 for q in spec.control_parameters())


def test_batch_refuses_a_cost_summed_over_the_examples():
    text = "E[sum(w * b)**2, b ~ Bernoulli(logits=theta)]"
    with pytest.raises(StochgradError, match="batch_axes=1.*one cost per example"):
        estimate("torch", "rebar", n=10, text=text)


@pytest.mark.parametrize("name", ["mvd", "indecater"])
def test_batch_others_stay_refused(name):
    with pytest.raises(PlanError, match=f"{name}: b cannot sit inside an enumeration or a batch_axes run .{name} pairs"):
        estimate("torch", name, n=10)
