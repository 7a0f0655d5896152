"""REBAR and RELAX under ``batch_axes`` (each example's cost paired with its own log p), the
copies-based estimators that stay refused there, and REBAR / RELAX for Categorical nodes (the
Gumbel-max construction).

Exact values are written here with numpy, by brute force per example: for ``b_i ~ Bernoulli(sigmoid
(theta_i))`` elementwise, ``dE[f_i(b_i)]/dtheta_i = sum_b f_i(b) p(b) (b - p_i)`` over the 2**D states
of example ``i`` (and zero across examples).  Tolerances: 6 standard errors of the estimate;
``test_batch_wrong_pairing_fails`` shows that the sample size detects an estimator that pairs each
example's cost with the other example's log p (its score part then has mean zero: biased).

Categorical: ``b ~ Categorical(logits=theta)`` one-hot on the last axis, independent elements;
``dE[f(b)]/dtheta = sum_b f(b) p(b) (b - p)`` over the K**G joint states (numpy, here).  The
conditional sampler ``z~ | b`` is checked directly against the Gumbel posterior (argmax consistency
and, per class, a two-sample KS test against the unconditional ``z``: ``(b, z~)`` has ``(b, z)``'s law).
"""

import itertools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import stochgrad as sg
from conftest import numpy_of
from stochgrad.errors import PlanError, StochgradError
from stochgrad.backend import get_backend
from stochgrad.estimators import Rebar, register_estimator, unregister_estimator
from stochgrad.estimators.rebar import relaxed_pair

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
    anp = numpy_of(backend)
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
    assert abs(float(out.detach()) - values.sum()) <= 6 * np.sqrt(np.sum(np.asarray(r.value_stderr) ** 2))
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


# -- Categorical ---------------------------------------------------------------------------------------

CAT_THETA = np.array([[0.4, -1.0, 1.5], [0.2, 0.7, -0.3]])  # two independent Categoricals, K = 3
CAT_W = np.array([[1.0, -2.0, 0.5], [0.5, 1.5, -1.0]])
CAT_COSTS = {  # DSL over one-hot b (G, K) -> numpy; the first couples the elements, the second the classes
    "sum(w * b)**2": lambda b, w: np.sum(w * b) ** 2,
    "exp(sum(w * b, axis=-1))[0] * sum(b[:, 0] + 2 * b[:, 2])": lambda b, w: np.exp(np.sum(w * b, -1))[0]
    * np.sum(b[:, 0] + 2 * b[:, 2]),
}


def exact_cat(cost, theta, w):
    """Brute force over the K**G one-hot states: (value, gradient in the logits)."""
    p = np.exp(theta) / np.exp(theta).sum(-1, keepdims=True)
    g, k = theta.shape
    value, grad = 0.0, np.zeros_like(theta)
    for classes in itertools.product(range(k), repeat=g):
        b = np.eye(k)[list(classes)]
        pb = np.prod(p[np.arange(g), list(classes)])
        value += pb * cost(b, w)
        grad += pb * cost(b, w) * (b - p)
    return value, grad


def cat_net(backend):
    """A fixed control-variate net of the relaxed logits (n, G, K) -> (n,)."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(3, 2))
    if backend == "torch":
        ta = torch.tensor(a)
        return lambda z: torch.tanh(z @ ta).sum((-1, -2))
    anp = numpy_of(backend)
    return lambda z: anp.sum(anp.tanh(anp.dot(z, a)), (-1, -2))


def cat_run(backend, spec, text, theta=CAT_THETA, w=CAT_W, n=4000, seed=3):
    return sg.estimate(f"E[{text}, b ~ Categorical(logits=theta)]", {"theta": theta, "w": w}, n=n, seed=seed,
                       backend=backend, estimators={"b": spec})


def cat_close(r, value, grad):
    assert abs(float(r.value) - value) <= 6 * float(r.value_stderr) + 1e-9
    g, se = np.asarray(r.grad["theta"]), np.asarray(r.stderr["theta"])
    assert np.all(np.abs(g - grad) <= 6 * se + 1e-9), (g, grad, se)


@pytest.mark.parametrize("text", sorted(CAT_COSTS))
@pytest.mark.parametrize("spec", ["rebar", "rebar:temperature=0.3,scale=0.7", "relax"])
def test_categorical_unbiased_vs_enumeration(backend, spec, text):
    made = sg.Relax(surrogate=cat_net(backend), learn=False) if spec == "relax" else spec
    cat_close(cat_run(backend, made, text), *exact_cat(CAT_COSTS[text], CAT_THETA, CAT_W))


@settings(max_examples=6)
@given(st.lists(st.floats(-2.5, 2.5), min_size=4, max_size=4), st.integers(0, 2**16))
def test_categorical_unbiased_property(logits, seed):
    """One Categorical of K = 4 classes, any logits: a cost coupling the classes (z-test, 6 SE)."""
    theta, w = np.array([logits]), np.array([[1.0, -1.5, 0.5, 2.0]])
    text = "(sum(w * b) - 0.3)**2"
    cat_close(cat_run("torch", "rebar", text, theta=theta, w=w, n=2000, seed=seed),
              *exact_cat(lambda b, w: (np.sum(w * b) - 0.3) ** 2, theta, w))


def _pair(wrong=False, n=40000):
    """``b, z, z~`` from the shared sampler (or a wrong one: z~_i without the ``- log v_b`` term) at
    fixed logits, torch."""
    B = get_backend("torch")
    gen = torch.Generator().manual_seed(0)
    logits = torch.tensor([0.5, -1.0, 1.2, 0.0], dtype=torch.float64)
    u, v = (torch.rand((n, 4), generator=gen, dtype=torch.float64) for _ in range(2))
    if not wrong:
        return relaxed_pair(B, logits, u, v, "categorical")
    logp = torch.log_softmax(logits, -1)
    z = logp - torch.log(-torch.log(u))
    b = torch.nn.functional.one_hot(z.argmax(-1), 4).double()
    vb = (b * v).sum(-1, keepdim=True)
    zt = b * -torch.log(-torch.log(vb)) + (1 - b) * -torch.log(-torch.log(v) / logp.exp())
    return b, z, zt


@pytest.mark.parametrize("wrong", [False, True], ids=["shared", "wrong"])
def test_conditional_sampler_is_the_gumbel_posterior(wrong):
    """argmax z~ == b always, and each class's z~ has z's marginal law (KS, p > 1e-3); the wrong
    sampler (truncation dropped) fails both."""
    b, z, zt = (x.detach().numpy() for x in _pair(wrong))
    consistent = np.all(np.argmax(zt, -1) == np.argmax(b, -1))
    assert np.all(np.argmax(z, -1) == np.argmax(b, -1))
    pvalues = [stats.ks_2samp(z[:, i], zt[:, i]).pvalue for i in range(4)]
    if wrong:
        assert not consistent and min(pvalues) < 1e-6, pvalues
    else:
        assert consistent and min(pvalues) > 1e-3, pvalues


@dataclass(frozen=True)
class _Unconditioned(Rebar):
    """Deliberately wrong: s(z) and s(z~) swapped (the unconditional relaxation in the score term)."""

    name: ClassVar[str] = "rebar_unconditioned"

    def sample_copies(self, d, B, p, draw, shape):
        values, logq = super().sample_copies(d, B, p, draw, shape)
        n = B.shape(logq)[0]
        return B.concat([values[:n], values[2 * n:], values[n:2 * n]]), logq


def test_categorical_wrong_variant_fails():
    text = "sum(w * b)**2"
    register_estimator(_Unconditioned)
    try:
        r = cat_run("torch", "rebar_unconditioned", text)
    finally:
        unregister_estimator("rebar_unconditioned")
    _, grad = exact_cat(CAT_COSTS[text], CAT_THETA, CAT_W)
    assert np.any(np.abs(np.asarray(r.grad["theta"]) - grad) > 6 * np.asarray(r.stderr["theta"]))


CAT_TOY = "exp(sum(w * b))"  # one Categorical of 3 classes, costs e, e**-2, e**0.5
TOY_THETA, TOY_W = np.array([[0.3, -0.2, 0.1]]), np.array([[1.0, -2.0, 0.5]])


def toy_exact(b, w):
    return np.exp(np.sum(w * b))


def cat_toy_variance(spec, n=20000):
    r = cat_run("torch", spec, CAT_TOY, theta=TOY_THETA, w=TOY_W, n=n, seed=11)
    return float(np.sum(np.asarray(r.stderr["theta"]) ** 2) * n), r


def test_categorical_rebar_variance_below_plain_score():
    """Measured (sum over the 3 logits of the single-sample gradient variance): score without baseline
    1.886, REBAR at its defaults (temperature 0.5) 0.674, at temperature 1 0.521 (a cost REBAR
    helps; on (sum(w * b) - 0.45)**2, w = (0, 0.5, 1), it does not: 0.026 score, 0.034 REBAR).
    Asked: below 1/2 of the score's, and unbiased."""
    score, _ = cat_toy_variance("score:baseline=none")
    rebar, r = cat_toy_variance("rebar")
    assert rebar < 0.5 * score, (rebar, score)
    cat_close(r, *exact_cat(toy_exact, TOY_THETA, TOY_W))


def train_toy(spec, steps, lr):
    """Adam on the spec's control parameters (theta fixed) through the objective's ordinary backward()."""
    f = sg.compile(f"E[{CAT_TOY}, b ~ Categorical(logits=theta)]", backend="torch", n=16, seed=0,
                   estimators={"b": spec})
    theta, w = torch.tensor(TOY_THETA, requires_grad=True), torch.tensor(TOY_W)
    opt = torch.optim.Adam([*f.control_parameters()], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        f(theta=theta, w=w).backward()
        opt.step()


def test_categorical_learned_rebar_variance_falls():
    """Learned temperature and scale on a Categorical (torch objective, Adam 0.05, 100 steps) from
    temperature 0.2: the variance at the learned values falls below 0.85 of the start's (measured:
    1.67 -> 0.36, temperature 0.2 -> 1.83, scale 1 -> 1.50)."""
    spec = sg.Rebar(learn=True, temperature=0.2)
    start, _ = cat_toy_variance(spec)
    train_toy(spec, 100, 0.05)
    end, _ = cat_toy_variance(spec)
    assert end < 0.85 * start, (start, end, spec.current())


def test_categorical_relax_learning_runs_and_lowers_the_variance():
    """RELAX with a learnable net on a Categorical (torch): the variance at the learned net falls below half the start's (measured, 150 steps: 0.906 -> 0.295; learned
    temperature 0.83, scale 0.51), and stays unbiased."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(1), torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1),
                              torch.nn.Flatten(0)).double()
    spec = sg.Relax(surrogate=net)
    start, _ = cat_toy_variance(spec)
    train_toy(spec, 150, 0.01)
    end, r = cat_toy_variance(spec)
    assert end < 0.5 * start, (start, end)
    cat_close(r, *exact_cat(toy_exact, TOY_THETA, TOY_W))


@pytest.mark.parametrize("spec", ["rebar", "relax_net"])
def test_refuses_other_laws(spec):
    made = sg.Relax(surrogate=abs) if spec == "relax_net" else spec
    name = "relax" if spec == "relax_net" else spec
    with pytest.raises(PlanError, match=f"{name} needs a Bernoulli or Categorical node .* not Poisson"):
        sg.estimate("E[z**2, z ~ Poisson(rate)]", {"rate": 2.0}, n=10, estimators={"z": made})


@pytest.mark.parametrize("spec", ["rebar", "relax_net"])
def test_categorical_refuses_a_cost_not_differentiable_in_the_node(spec):
    made = sg.Relax(surrogate=lambda z: z[:, 0] * 0.0, learn=False) if spec == "relax_net" else spec
    name = "relax" if spec == "relax_net" else spec
    with pytest.raises(PlanError, match=f"{name} evaluates and differentiates the cost at relaxed values of b"):
        sg.estimate("E[sum(b > 0.5), b ~ Categorical(logits=theta)]", {"theta": np.zeros(3)}, n=10,
                    estimators={"b": made})


def test_bench_runs_relax_under_batch_axes():
    """The estimator benchmark's relax hook (a small row-wise net, trained with the model) on the
    batched VAEs (batch_axes=1), Bernoulli and Categorical: measured, finite numbers, not refused."""
    import pathlib
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "benchmarks"))
    import bench_estimators as bench
    results = bench.main(["--quick", "--threads", "1", "--estimators", "relax", "rebar"], out=lambda line: None)
    for rows in results.values():
        for r in rows:
            assert not r["refused"], r
            assert all(np.isfinite(v) for v in [r["variance"], r["var_trained"], *r["at_steps"]]), r
    with pytest.raises(StochgradError, match="relax: unknown bench options"):
        bench.relax_spec(bench.Model("bernoulli", 4, 1, 0, 0), "relax:width=3")


@pytest.mark.parametrize("spec", ["rebar", "relax"])
def test_categorical_batch_unbiased_per_example(backend, spec):
    """batch_axes=1 on a Categorical: two examples, one Categorical of 3 classes each, a per-example
    cost; each example's value and gradient against its own enumeration."""
    text = "E[exp(sum(w * b, axis=-1)), b ~ Categorical(logits=theta)]"
    rng = np.random.default_rng(5)
    a = rng.normal(size=3)
    if backend == "torch":
        ta = torch.tensor(a)
        net = lambda z: torch.tanh(z @ ta)  # noqa: E731  # row-wise: (n, N, K) -> (n, N)
    else:
        anp = numpy_of(backend)
        net = lambda z: anp.tanh(anp.dot(z, a))  # noqa: E731
    made = sg.Relax(surrogate=net, learn=False) if spec == "relax" else spec
    r = estimate(backend, made, text=text, theta=CAT_THETA, w=CAT_W)
    values, grads = np.zeros(2), np.zeros_like(CAT_THETA)
    for i in range(2):
        v, g = exact_cat(lambda b, w: np.exp(np.sum(w * b)), CAT_THETA[i:i + 1], CAT_W[i:i + 1])
        values[i], grads[i] = v, g[0]
    close(r, values, grads)
