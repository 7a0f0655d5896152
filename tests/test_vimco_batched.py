"""VIMCO per example: batched K-sample bounds sum_i logmeanexp_k T[k, i] with one latent per example.

The references are independent of stochgrad: a brute-force enumeration of every joint state of the whole
(K, N, D) Bernoulli tensor, with the gradient of the joint expectation derived by hand (it knows nothing of
examples or pairings); a batched VIMCO written by hand in torch on the very samples stochgrad draws.
Numbers measured here (seed 1, n = 20,000; batch 4, K = 3, D = 1): the per-sample variance of d/da_i,
whole log q pairing over per-example pairing, 10.0, 12.9, 4.4, 2.2 for the 4 examples (asserted: > 1.8; the
score function with a leave-one-out over samples: 21, 26, 19, 4.9); the per-example estimator is within 1.1 se
of the enumeration, and a deliberately wrong variant (the per-copy score terms dropped: "detached") is 47 - 253
se off.  Both backends give the same numbers.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit, logsumexp

import stochgrad as sg
from stochgrad.backend import get_backend
from stochgrad.errors import PlanError
from stochgrad.noise import NoiseSource

LOGW = ("sum(log_prob(Bernoulli(0.5), z) + log_prob(Normal(2 * z - 1, 1), x)"
        " - log_prob(Bernoulli(logits=a), z), axis=-1)")  # (K, N): one log weight per copy and example


def batched(k: int) -> str:
    return f"E[sum(logmeanexp({LOGW}, axis=0)), z ~ iid({k}, Bernoulli(logits=a))]"


def _enumerated(a: np.ndarray, x: np.ndarray, k: int) -> tuple[float, np.ndarray, np.ndarray]:
    """E[sum_i logmeanexp_k w_{k,i}] and its gradient in a and x (both (N, D)) by brute force over the
    2^(K N D) joint states.  By hand, with f(c) = sum_i logmeanexp_k w_{k,i}(c), s = sigmoid(a):
    d/da sum_c q(c) f(c) = sum_c q(c) [f(c) sum_k (c_k - s) + sum_k w~_{k,i} d w_{k,i} / da_i],
    d w_{k,i} / da_i = -(c_{k,i} - s_i), d w_{k,i} / dx_i = -(x_i - (2 c_{k,i} - 1))."""
    n, d = a.shape
    s = expit(a)
    c = np.array(list(itertools.product([0.0, 1.0], repeat=k * n * d))).reshape(-1, k, n, d)
    logq = c * np.log(s) + (1 - c) * np.log1p(-s)
    w = (math.log(0.5) - 0.5 * (x - (2 * c - 1)) ** 2 - 0.5 * math.log(2 * math.pi) - logq).sum(-1)  # (S, K, N)
    f = (logsumexp(w, axis=1) - math.log(k)).sum(-1)
    q = np.exp(logq.sum((1, 2, 3)))
    wt = np.exp(w - logsumexp(w, axis=1, keepdims=True))[..., None]  # (S, K, N, 1)
    score = (c - s).sum(1)  # d log q(c) / da: (S, N, D)
    ga = (q[:, None, None] * (f[:, None, None] * score - (wt * (c - s)).sum(1))).sum(0)
    gx = (q[:, None, None] * (wt * (2 * c - 1 - x)).sum(1)).sum(0)
    return float((q * f).sum()), ga, gx


def _within(r, name, want, z=5.0) -> bool:
    return bool(np.all(np.abs(np.asarray(r.grad[name]) - want) < z * np.asarray(r.stderr[name]) + 1e-9))


@settings(max_examples=3, deadline=None)
@given(st.lists(st.floats(-2.0, 2.0), min_size=4, max_size=4), st.sampled_from([2, 3]),
       st.sampled_from(["autograd", "torch"]))
def test_per_example_vimco_is_unbiased_against_enumeration(logits, k, backend):
    """2 images, 2 Bernoulli latents each, K = 2 or 3: 2^8 or 2^12 joint states."""
    a = np.asarray(logits).reshape(2, 2)
    x = np.array([[0.5, -1.0], [1.2, 0.1]])
    value, ga, gx = _enumerated(a, x, k)
    r = sg.estimate(batched(k), dict(a=a, x=x), n=20_000, seed=4, backend=backend, estimators={"z": "vimco"})
    assert "paired per example over 2 examples" in str(r.plan) and not r.plan.node("z").biased
    assert abs(r.value - value) < 5 * r.value_stderr
    assert _within(r, "a", ga) and _within(r, "x", gx), (r.grad["a"], ga, r.stderr["a"])


def test_per_example_pairing_has_lower_variance_per_example_at_batch_4(backend):
    a = np.array([[0.4], [-1.0], [0.2], [1.1]])
    x = np.array([[0.7], [-0.3], [1.5], [-1.2]])
    _, ga, _ = _enumerated(a, x, 3)
    runs = {p: sg.estimate(batched(3), dict(a=a, x=x), n=20_000, seed=1, backend=backend,
                           estimators={"z": f"vimco:pairing={p}"}) for p in ("example", "whole")}
    assert runs["example"].value == pytest.approx(runs["whole"].value, abs=1e-12)  # the same samples
    for r in runs.values():  # both unbiased
        assert _within(r, "a", ga)
    ratio = (np.asarray(runs["whole"].stderr["a"]) / np.asarray(runs["example"].stderr["a"])) ** 2
    assert np.all(ratio > 1.8), ratio  # measured 10.0, 12.9, 4.4, 2.2: the other 3 examples' bound noise is gone
    assert "with the whole log q per copy (pairing='whole' was asked)" in str(runs["whole"].plan)
    # the check has power: without the per-copy score terms the same 5-se check fails
    wrong = sg.estimate(batched(3), dict(a=a, x=x), n=20_000, seed=1, backend=backend, estimators={"z": "detached"})
    assert not _within(runs["example"], "a", np.asarray(wrong.grad["a"]))


def test_hand_written_batched_vimco_in_torch_gives_the_same_gradient():
    """Batched VIMCO by hand on the samples stochgrad draws (node 0's first uniform stream, z = u < sigmoid(a)):
    each example's leave-one-out signal times that example's own log q, to 1e-10 in float64."""
    k, n, seed = 3, 2_000, 9
    a0 = np.array([[0.3, -0.8], [1.0, 0.2], [-0.4, 0.6]])
    x0 = np.array([[0.5, -1.2], [0.1, 0.9], [-0.7, 0.3]])
    r = sg.estimate(batched(k), dict(a=a0, x=x0), n=n, seed=seed, backend="torch", estimators={"z": "vimco"})
    u = NoiseSource(get_backend("torch"), seed, 0, n).draw(0, 0, "uniform", (k, 3, 2))
    a = torch.tensor(a0, requires_grad=True)
    x = torch.tensor(x0, requires_grad=True)
    z = (u < torch.sigmoid(a).detach()).double()  # (n, K, N, D)
    logq = z * a - torch.nn.functional.softplus(a)
    w = (math.log(0.5) - 0.5 * (x - (2 * z - 1)) ** 2 - 0.5 * math.log(2 * math.pi) - logq).sum(-1)  # (n, K, N)
    bound = torch.logsumexp(w, 1) - math.log(k)  # (n, N)
    loo = []
    for j in range(k):  # w_j replaced by the arithmetic mean of the other copies' log weights, per example
        others = torch.cat([w[:, :j], w[:, j + 1:]], 1)
        loo.append(torch.logsumexp(torch.cat([others, others.mean(1, keepdim=True)], 1), 1) - math.log(k))
    signal = (bound[:, None] - torch.stack(loo, 1)).detach()  # (n, K, N)
    lq = logq.sum(-1)  # log q(z_{k,i}): (n, K, N)
    (bound + (signal * (lq - lq.detach())).sum(1)).sum(-1).mean().backward()
    assert r.value == pytest.approx(bound.sum(-1).mean().item(), abs=1e-12)
    np.testing.assert_allclose(np.asarray(r.grad["a"]), a.grad.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(r.grad["x"]), x.grad.numpy(), rtol=0, atol=1e-10)


def test_an_example_gradient_does_not_see_other_examples_data(backend):
    """On the same samples, moving image 1's observation leaves image 0's gradient exactly unchanged with the
    per-example pairing (its score sees only its own bound), but not with the whole pairing.  DReG: the same
    holds already (its weights w~ are per bound, its gradient pathwise through each example's own weights), so
    it needed no change."""
    a = np.array([[0.3], [-0.5]])
    runs = {(p, x1): sg.estimate(batched(3), dict(a=a, x=np.array([[0.4], [x1]])), n=500, seed=2, backend=backend,
                                 estimators={"z": f"vimco:pairing={p}"}) for p in ("example", "whole") for x1 in (0.0, 3.0)}
    g = {key: np.asarray(r.grad["a"])[0, 0] for key, r in runs.items()}
    assert g["example", 0.0] == pytest.approx(g["example", 3.0], abs=1e-12)
    assert abs(g["whole", 0.0] - g["whole", 3.0]) > 1e-3
    gauss = ("E[sum(logmeanexp(log_prob(Normal(0, 1), z) + log_prob(Normal(z, 1), x) - log_prob(Normal(mu, 0.8), z),"
             " axis=0)), z ~ iid(3, Normal(mu, 0.8))]")
    mu = np.array([0.3, -0.5])
    d = [np.asarray(sg.estimate(gauss, dict(mu=mu, x=np.array([0.4, x1])), n=500, seed=2, backend=backend,
                                estimators={"z": "dreg"}).grad["mu"])[0] for x1 in (0.0, 3.0)]
    assert d[0] == pytest.approx(d[1], abs=1e-12)


def test_plan_says_per_example_or_why_not():
    shapes = {"a": np.zeros((2, 2)), "x": np.zeros((2, 2))}
    assert "paired per example over 2 examples" in str(sg.plan(batched(3), shapes, estimators={"z": "vimco"}))
    # image 0's latent in every image's term: not per example, the whole pairing, and the reason
    cross = batched(3).replace("axis=-1), axis=0)", "axis=-1) + z[:, 0:1, 0], axis=0)")
    p = str(sg.plan(cross, shapes, estimators={"z": "vimco"}))
    assert "paired with the whole log q per copy (`z[:, 0:1, 0]` indexes the examples' axis)" in p
    summed = batched(3).replace("axis=-1), axis=0)", "axis=-1) + sum(z, axis=(1, 2)), axis=0)")
    assert "paired with the whole log q per copy" in str(sg.plan(summed.replace("axis=(1, 2)", "axis=1"), shapes,
                                                                 estimators={"z": "vimco"}))
    assert "(the shapes are unknown" in str(sg.plan(batched(3), estimators={"z": "vimco"}))
    one = "E[sum(logmeanexp(z - log_prob(Normal(mu, 1), z), axis=0)), z ~ iid(2, Normal(mu, 1))]"
    assert "no batch axis of 2 or more examples" in str(sg.plan(one, {"mu": 0.0}, estimators={"z": "vimco"}))
    with pytest.raises(PlanError, match=r"vimco's pairing must be 'example' or 'whole', got 'rows'"):
        sg.plan(batched(3), shapes, estimators={"z": "vimco:pairing=rows"})


def test_the_cross_example_fallback_stays_unbiased(backend):
    """T_{k,i} = w_{k,i} + z_{k,0,0} (image 0's first latent in every image's term): the whole pairing, which
    the enumeration (with f changed to match) confirms."""
    a, x = np.array([[0.4], [-0.6]]), np.array([[0.3], [-0.8]])
    text = batched(3).replace("axis=-1), axis=0)", "axis=-1) + z[:, 0:1, 0], axis=0)")
    r = sg.estimate(text, dict(a=a, x=x), n=20_000, seed=3, backend=backend, estimators={"z": "vimco"})
    s = expit(a)
    c = np.array(list(itertools.product([0.0, 1.0], repeat=6))).reshape(-1, 3, 2, 1)
    logq = c * np.log(s) + (1 - c) * np.log1p(-s)
    w = (math.log(0.5) - 0.5 * (x - (2 * c - 1)) ** 2 - 0.5 * math.log(2 * math.pi) - logq).sum(-1) + c[:, :, :1, 0]
    f = (logsumexp(w, axis=1) - math.log(3)).sum(-1)
    q = np.exp(logq.sum((1, 2, 3)))
    wt = np.exp(w - logsumexp(w, axis=1, keepdims=True))[..., None]
    ga = (q[:, None, None] * (f[:, None, None] * (c - s).sum(1) - (wt * (c - s)).sum(1))).sum(0)
    assert _within(r, "a", ga), (r.grad["a"], ga)


def test_vimco_digits_example_runs():
    example = Path(__file__).resolve().parent.parent / "examples" / "vimco_digits.py"
    out = subprocess.run([sys.executable, str(example), "--steps", "3", "--latent", "4", "--k", "2", "--batch", "8",
                          "--n-test", "20"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "vimco" in out and "score" in out and "held-out" in out


def test_a_bound_with_a_further_axis_pairs_each_element_with_its_example(backend):
    """T of shape (K, N, D) (no sum over the latents): N D scalar bounds, element (i, d) paired with example
    i's log q (summed over d); the exact gradient is that of N D independent one-latent bounds."""
    a, x = np.array([[0.5, -1.0], [0.3, 1.2]]), np.array([[0.2, -0.4], [1.1, -0.9]])
    text = batched(3).replace(", axis=-1), axis=0)", "), axis=0)").replace("E[sum(logmeanexp(sum(", "E[sum(logmeanexp((")
    r = sg.estimate(text, dict(a=a, x=x), n=20_000, seed=5, backend=backend, estimators={"z": "vimco"})
    assert "paired per example over 2 examples" in str(r.plan)
    value, ga, gx = _enumerated(a.reshape(4, 1), x.reshape(4, 1), 3)
    assert abs(r.value - value) < 5 * r.value_stderr
    assert _within(r, "a", ga.reshape(2, 2)) and _within(r, "x", gx.reshape(2, 2)), (r.grad["a"], ga)


def test_a_compiled_objective_pairs_per_example_too():
    """sg.compile plans at the call's shapes: image 0's gradient does not move with image 1's data (a fresh
    objective per call: the same noise)."""
    def grad0(pairing: str, x1: float) -> float:
        f = sg.compile(batched(3), backend="torch", n=500, seed=2, estimators={"z": f"vimco:pairing={pairing}"})
        a = torch.tensor([[0.3], [-0.5]], dtype=torch.float64, requires_grad=True)
        f(a=a, x=torch.tensor([[0.4], [x1]], dtype=torch.float64)).backward()
        return a.grad[0, 0].item()

    assert grad0("example", 0.0) == pytest.approx(grad0("example", 3.0), abs=1e-12)
    assert abs(grad0("whole", 0.0) - grad0("whole", 3.0)) > 1e-3
