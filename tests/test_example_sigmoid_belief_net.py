"""examples/sigmoid_belief_net.py against a numpy brute-force sum over the 2^5 = 32 latent states.

Values: log p(x) = logsumexp_h [log p(h) + log p(x|h)] and ELBO = sum_h q(h|x) f(h),
f = log p(x|h) + log p(h) - log q(h|x).  Gradients, hand-derived: with posterior weights
r_h = p(h|x) and s = sigmoid(h W + b), d log p(x)/dW = sum_h r_h h (x - s)^T, d/db = sum_h r_h (x - s),
d/dc = sum_h r_h (h - sigmoid(c)); for the ELBO the same with q(h) for r_h (f's W, b, c terms), and for
the encoder logits a = x V + d, d ELBO/da = sum_h q(h) (h - sigmoid(a)) (f(h) - 1).
"""

import itertools
import pathlib
import sys

import numpy as np
import pytest

import stochgrad as sg

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "examples"))
import sigmoid_belief_net as sbn

STATES = np.array(list(itertools.product([0.0, 1.0], repeat=sbn.H)))  # (32, 5)


def sig(a):
    return 1 / (1 + np.exp(-a))


def log_bern(logits, y):
    return y * logits - np.logaddexp(0, logits)


def params(seed=1):
    rng = np.random.default_rng(seed)
    x = (rng.random(sbn.D) < 0.4).astype(float)
    return {"W": rng.standard_normal((sbn.H, sbn.D)), "b": 0.5 * rng.standard_normal(sbn.D),
            "c": rng.standard_normal(sbn.H), "V": 0.3 * rng.standard_normal((sbn.D, sbn.H)),
            "d": rng.standard_normal(sbn.H), "x": x}


def brute_loglik(W, b, c, x):
    logits = STATES @ W + b                                   # (32, 64)
    joint = log_bern(c, STATES).sum(1) + log_bern(logits, x).sum(1)
    m = joint.max()
    value = m + np.log(np.exp(joint - m).sum())
    r = np.exp(joint - value)                                 # p(h | x)
    res = x - sig(logits)
    return value, {"W": np.einsum("s,sk,sj->kj", r, STATES, res), "b": r @ res,
                   "c": r @ (STATES - sig(c))}


def brute_elbo(W, b, c, V, d, x):
    a = x @ V + d
    logq = log_bern(a, STATES).sum(1)
    q = np.exp(logq)
    logits = STATES @ W + b
    f = log_bern(logits, x).sum(1) + log_bern(c, STATES).sum(1) - logq
    res = x - sig(logits)
    ga = (q * (f - 1)) @ (STATES - sig(a))
    return q @ f, {"W": np.einsum("s,sk,sj->kj", q, STATES, res), "b": q @ res, "c": q @ (STATES - sig(c)),
                   "V": np.outer(x, ga), "d": ga}


@pytest.mark.parametrize("backend", ["torch", "autograd"])
@pytest.mark.parametrize("seed", [1, 2])
def test_enumerated_loglik_and_elbo_equal_brute_force(backend, seed):
    p = params(seed)
    lp = {k: p[k] for k in ("W", "b", "c", "x")}
    plan = sg.plan(sbn.LOGLIK, lp, backend=backend)
    assert "enumerate" in str(plan) and "32 states" in str(plan)
    est = sg.estimate(sbn.LOGLIK, lp, n=2, backend=backend, seed=0, wrt=("W", "b", "c"))
    value, grad = brute_loglik(p["W"], p["b"], p["c"], p["x"])
    assert abs(float(est.value) - value) < 1e-10
    for k in grad:
        np.testing.assert_allclose(np.asarray(est.grad[k]), grad[k], rtol=0, atol=1e-10, err_msg=k)

    plan = sg.plan(sbn.ELBO1, p, backend=backend)
    assert "enumerate" in str(plan) and "32 states" in str(plan)
    est = sg.estimate(sbn.ELBO1, p, n=2, backend=backend, seed=0, wrt=("W", "b", "c", "V", "d"))
    value, grad = brute_elbo(p["W"], p["b"], p["c"], p["V"], p["d"], p["x"])
    assert abs(float(est.value) - value) < 1e-10
    for k in grad:
        np.testing.assert_allclose(np.asarray(est.grad[k]), grad[k], rtol=0, atol=1e-10, err_msg=k)


def test_batched_exact_loglik_equals_brute_force():
    p = params(3)
    x = sbn.load()[1][:7]
    got = sbn.exact_loglik(p, x)
    want = [brute_loglik(p["W"], p["b"], p["c"], xi)[0] for xi in x]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def test_minibatch_plan_is_score_with_loo():
    text = str(sg.plan(sbn.ELBO, sbn.shapes(32), backend="torch", batch_axes=1))
    assert "score (leave-one-out baseline)" in text and "plate declared (batch_axes=1)" in text


def test_short_training_raises_the_exact_elbo():
    theta, history = sbn.train(steps=120, batch=32, n=4, lr=0.02, seed=0, report=40, verbose=False)
    assert history[-1] > history[0] + 3  # the minibatch ELBO climbs (about -33 to -27 nats)
    x = sbn.load()[0][:40]
    before = np.mean([brute_elbo(**sbn.init(0), x=xi)[0] for xi in x])
    after = np.mean([brute_elbo(**theta, x=xi)[0] for xi in x])
    assert after > before + 5
    ll = np.mean([brute_loglik(theta["W"], theta["b"], theta["c"], xi)[0] for xi in x])
    assert ll >= after - 1e-9  # log p(x) bounds the ELBO


@pytest.mark.parametrize("backend", ["torch", "autograd"])
def test_minibatch_score_gradient_is_unbiased_and_plated(backend):
    """The training objective's gradient (score function, LOO baseline, batch_axes=1) averages to the
    sum of the per-image brute-force ELBO gradients, within 6 standard errors; the planner's own plan of
    the summed ELBO infers the same plate (through log_prob and @) and gives the same numbers."""
    p = params(1)
    theta = {k: p[k] for k in sbn.NAMES}
    x = sbn.load()[0][:4]
    want = {k: sum(brute_elbo(**theta, x=xi)[1][k] for xi in x) for k in sbn.NAMES}
    est = sg.estimate(sbn.ELBO, {**theta, "x": x}, n=20000, backend=backend, seed=0, batch_axes=1)
    assert np.shape(est.value) == (4,)
    np.testing.assert_allclose(est.value, [brute_elbo(**theta, x=xi)[0] for xi in x], rtol=0, atol=0.1)
    for k in sbn.NAMES:
        g, se = np.asarray(est.grad[k]), np.asarray(est.stderr[k])
        zero = se == 0  # a pixel off in every image: V's row has no gradient at all
        np.testing.assert_array_equal(g[zero], want[k][zero], err_msg=k)
        assert np.all(np.abs(g - want[k])[~zero] < 6 * se[~zero]), k
    joint = sg.estimate(sbn.ELBO_SUMMED, {**theta, "x": x}, n=20000, backend=backend, seed=0,
                        estimators={"h": "score"})
    assert "plate over 4 examples (inferred" in str(joint.plan)
    for k in sbn.NAMES:
        np.testing.assert_allclose(joint.grad[k], est.grad[k], rtol=1e-9, atol=1e-12, err_msg=k)
        np.testing.assert_allclose(joint.stderr[k], est.stderr[k], rtol=1e-9, atol=1e-12, err_msg=k)
    exact = sg.estimate(sbn.ELBO_SUMMED, {**theta, "x": x}, n=4, backend=backend, seed=0)  # the default plan
    assert exact.plan.node("h").estimator == "enumerate_examples", exact.plan
    for k in sbn.NAMES:  # each image's 32 states summed exactly: the brute-force gradient, to rounding
        np.testing.assert_allclose(exact.grad[k], want[k], rtol=1e-9, atol=1e-10, err_msg=k)


def test_script_prints_the_plans_and_a_climbing_elbo():
    import re
    import subprocess

    script = pathlib.Path(sbn.__file__)
    out = subprocess.run([sys.executable, str(script), "--steps", "80", "--test", "20", "--report", "20"],
                         capture_output=True, text=True, check=True).stdout
    assert out.count("enumerate — finite support: exact sum over 32 states") == 2
    assert "plate over 32 examples (inferred" in out and "plate declared (batch_axes=1)" in out
    elbos = [float(v) for v in re.findall(r"minibatch ELBO +(-?[\d.]+)", out)]
    assert len(elbos) == 4 and elbos[-1] > elbos[0]
    start, end = map(float, re.search(r"(-[\d.]+) at the start, (-[\d.]+) after", out).groups())
    assert end > start + 5
    elbo = float(re.search(r"exact ELBO of the same images (-[\d.]+)", out).group(1))
    assert elbo <= end + 1e-3  # the ELBO bounds log p(x) (both printed to 3 decimals)
