"""Antithetic noise for pathwise and score nodes (:mod:`stochgrad.estimators.antithetic`).

Closed forms, derived by hand here (never from the code under test):

* ``z ~ Normal(mu, s)``, ``g(eps) = exp(mu + s eps)``: ``E g = exp(mu + s^2/2)`` (also ``d/dmu``),
  ``d/ds = s exp(mu + s^2/2)``; ``Var g = e^{2mu + s^2} (e^{s^2} - 1)`` and the partner covariance
  ``Cov(g(eps), g(-eps)) = e^{2mu} - e^{2mu + s^2}``, so ``n`` antithetic samples have the variance of
  the mean ``(Var + Cov) / n``: the ratio to ``n`` independent samples is ``1 - exp(-s^2)``.
* ``E[z**2]`` at ``mu = 0``: the value's integrand ``s^2 eps^2`` is even (each pair is one sample
  twice: variance ratio 2), the ``d/dmu`` integrand ``2 s eps`` is odd (each pair sums to the exact
  ``2 mu = 0``: zero variance).
* ``b ~ Bernoulli(p)`` with the score function and a mean baseline, per sample
  ``g(b) = a (b - p)^2 / (p (1 - p))`` (``f(b) = c + a b``); for the pair ``(u, 1 - u)`` the three
  intervals ``u < min(p, 1-p)``, the middle, and ``u > max(p, 1-p)`` give the pair's law exactly
  (:func:`bernoulli_ratio`).
* Multivariate Bernoulli gradients by brute-force enumeration of the 2^D states (numpy).

Power: the pair-aware standard error is checked against the spread of independent runs; at
``s = 0.5`` a per-sample standard error would be ``1 / sqrt(1 - e^{-0.25}) = 2.1`` times too large.
Plain leave-one-out on antithetic pairs (the partner in the baseline) is biased by ``2m grad / (n (n - 1))``:
:func:`test_leave_pair_out_unbiased_plain_loo_biased` measures both at ``n = 4`` (bias 1/3 of the
gradient, dozens of standard errors).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stochgrad as sg
from stochgrad.backend import get_backend
from stochgrad.estimators import leave_one_out
from stochgrad.estimators.antithetic import leave_pair_out

EXP = "E[exp(z), z ~ Normal(mu, s)]"
Z = 5.5  # z-test threshold in standard errors


def run(text, params, est, backend="autograd", n=20000, seed=1, **kw):
    return sg.estimate(text, params, n=n, seed=seed, backend=backend, estimators={"z": est}, **kw)


def exp_closed(mu, s):
    m = np.exp(mu + s * s / 2)
    var = np.exp(2 * mu + s * s) * (np.exp(s * s) - 1)
    cov = np.exp(2 * mu) - np.exp(2 * mu + s * s)
    return m, s * m, var, cov


def test_pathwise_exp_unbiased_with_lower_variance(backend):
    mu, s = 0.3, 0.8
    m, ds, var, cov = exp_closed(mu, s)
    r = run(EXP, {"mu": mu, "s": s}, "pathwise:antithetic=true", backend)
    plain = run(EXP, {"mu": mu, "s": s}, "pathwise", backend)
    for est, exact, se in [(r.value, m, r.value_stderr), (r.grad["mu"], m, r.stderr["mu"]),
                           (r.grad["s"], ds, r.stderr["s"])]:
        assert abs(est - exact) <= Z * se, (est, exact, se)
    ratio = (r.value_stderr / plain.value_stderr) ** 2  # measured: 0.45 at n = 20000; exact 0.473
    assert ratio == pytest.approx(1 - np.exp(-s * s), abs=0.08), ratio
    assert r.value_stderr == pytest.approx(np.sqrt((var + cov) / 20000), rel=0.1)
    assert "antithetic" in str(r.plan)


def test_even_cost_doubles_variance_odd_gradient_is_exact(backend):
    """At mu = 0: ``z**2`` is even in the noise (pairs are duplicates, variance x2), ``d/dmu`` is odd
    (every pair gives the exact 0); ``d/ds = 2 s eps^2`` is even again."""
    p = {"mu": 0.0, "s": 1.3}
    r = run("E[z**2, z ~ Normal(mu, s)]", p, "pathwise:antithetic=true", backend)
    plain = run("E[z**2, z ~ Normal(mu, s)]", p, "pathwise", backend)
    assert (r.value_stderr / plain.value_stderr) ** 2 == pytest.approx(2.0, rel=0.15)
    assert (r.stderr["s"] / plain.stderr["s"]) ** 2 == pytest.approx(2.0, rel=0.15)
    assert abs(r.grad["mu"]) < 1e-12 and r.stderr["mu"] < 1e-12  # plain: stderr 2 s / sqrt(n) = 0.018
    assert plain.stderr["mu"] > 0.01
    assert abs(r.value - 1.3 ** 2) <= Z * r.value_stderr


@pytest.mark.parametrize("n", [2000, 2001])
def test_reported_stderr_matches_spread_of_runs(backend, n):
    """The run's standard error counts pairs: it matches the spread of 30 independent runs and the
    closed form; a per-sample one would be 2.1 times too large at s = 0.5 (odd n: one unpaired)."""
    mu, s = -0.2, 0.5
    m, _, var, cov = exp_closed(mu, s)
    runs = [run(EXP, {"mu": mu, "s": s}, "pathwise:antithetic=true", backend, n=n, seed=50 + k) for k in range(30)]
    values = np.array([r.value for r in runs])
    reported = np.mean([r.value_stderr for r in runs])
    assert values.std(ddof=1) / reported == pytest.approx(1.0, abs=0.3)  # chi-square: sd of the ratio 0.13
    assert reported == pytest.approx(np.sqrt((var + cov) / (2 * (n // 2))), rel=0.1)
    assert abs(values.mean() - m) <= Z * values.std(ddof=1) / np.sqrt(len(values))


@settings(max_examples=4, deadline=None)
@given(st.floats(-1.0, 1.0), st.floats(0.2, 1.5))
def test_pathwise_unbiased_and_never_worse_on_exp(mu, s):
    m, ds, _, _ = exp_closed(mu, s)
    r = run(EXP, {"mu": mu, "s": s}, "pathwise:antithetic=true", n=8000, seed=3)
    plain = run(EXP, {"mu": mu, "s": s}, "pathwise", n=8000, seed=3)
    assert abs(r.grad["mu"] - m) <= Z * r.stderr["mu"]
    assert abs(r.grad["s"] - ds) <= Z * r.stderr["s"]
    assert r.stderr["mu"] < plain.stderr["mu"]  # exact ratio 1 - exp(-s^2) < 1 for every s


def test_objects_and_text_agree():
    a = run(EXP, {"mu": 0.1, "s": 0.7}, sg.Pathwise(antithetic=True), n=1001)
    b = run(EXP, {"mu": 0.1, "s": 0.7}, "pathwise:antithetic=true", n=1001)
    c = run(EXP, {"mu": 0.1, "s": 0.7}, sg.Score(antithetic=True), n=1001)
    assert a.grad == b.grad and a.value == b.value
    assert c.value == a.value  # the same reflected noise, whichever estimator
    assert sg.Pathwise(antithetic="True") == sg.Pathwise(antithetic=True)


# -- score ------------------------------------------------------------------------------------------

def test_score_normal_unbiased(backend):
    mu, s = 0.3, 0.8
    m, ds, _, _ = exp_closed(mu, s)
    r = run(EXP, {"mu": mu, "s": s}, "score:antithetic=true", backend, n=40000)
    assert "leave-one-pair-out" in str(r.plan)
    assert abs(r.grad["mu"] - m) <= Z * r.stderr["mu"]
    assert abs(r.grad["s"] - ds) <= Z * r.stderr["s"]


def bernoulli_ratio(p: float) -> float:
    """Exact variance ratio (antithetic / independent, same n) of ``g(b) = (b - p)^2 / (p(1-p))``."""
    g1, g0 = (1 - p) ** 2 / (p * (1 - p)), p ** 2 / (p * (1 - p))
    mean = p * g1 + (1 - p) * g0
    iid = p * g1 ** 2 + (1 - p) * g0 ** 2 - mean ** 2
    lo, hi = min(p, 1 - p), max(p, 1 - p)
    mid = g0 + g0 if p < 0.5 else g1 + g1  # both partners 0 (p < 1/2) or both 1 in the middle
    pair = 2 * lo * ((g1 + g0) / 2) ** 2 + (hi - lo) * (mid / 2) ** 2 - mean ** 2
    return 2 * pair / iid  # m = n/2 pairs against n samples


@pytest.mark.parametrize("p", [0.3, 0.8])
def test_score_bernoulli_monotone_cost_lower_variance(backend, p):
    text = "E[3 * z + 1, z ~ Bernoulli(p)]"
    r = sg.estimate(text, {"p": p}, n=20000, seed=5, backend=backend, estimators={"z": "score:antithetic=true"})
    plain = sg.estimate(text, {"p": p}, n=20000, seed=5, backend=backend, estimators={"z": "score"})
    assert abs(r.grad["p"] - 3.0) <= Z * r.stderr["p"]
    ratio = (r.stderr["p"] / plain.stderr["p"]) ** 2  # p = 0.3: measured 0.56, exact 0.571
    assert ratio == pytest.approx(bernoulli_ratio(p), abs=0.1) and ratio < 0.8


COST = "E[(z[0] + 2 * z[1] - z[2] + 0.3)**2, z ~ Bernoulli(probs=p)]"


def exact_bernoulli_grad(p: np.ndarray) -> np.ndarray:
    states = np.array(list(itertools.product([0.0, 1.0], repeat=len(p))))
    q = np.where(states == 1, p, 1 - p)
    f = (states[:, 0] + 2 * states[:, 1] - states[:, 2] + 0.3) ** 2
    return np.array([np.sum(f * np.prod(np.delete(q, d, 1), 1) * np.where(states[:, d] == 1, 1.0, -1.0))
                     for d in range(len(p))])


@settings(max_examples=4, deadline=None)
@given(st.lists(st.floats(0.05, 0.95), min_size=3, max_size=3), st.sampled_from(["loo", "none"]))
def test_score_bernoulli_unbiased_over_probs(probs, baseline):
    p = np.array(probs)
    r = sg.estimate(COST, {"p": p}, n=20000, seed=9, backend="autograd",
                    estimators={"z": f"score:antithetic=true,baseline={baseline}"})
    assert np.all(np.abs(r.grad["p"] - exact_bernoulli_grad(p)) <= Z * r.stderr["p"]), (r.grad, r.stderr)


def test_leave_pair_out_unbiased_plain_loo_biased():
    """Many independent batches of n = 4 (two pairs) and n = 5 on the trailing axis, computed in numpy
    with the baselines under test: leave-pair-out gives the exact d/dmu E[exp(z)]; plain leave-one-out
    (the partner inside the baseline: ``E[f(z_i') grad log q(z_i)] = -grad``) is off by ``grad / (n - 1)``
    on each of the ``2m`` paired samples (measured: +33% at n = 4, +20% at n = 5)."""
    B = get_backend("autograd")
    rng = np.random.default_rng(0)
    mu, s, K = 0.2, 0.9, 200000
    exact = np.exp(mu + s * s / 2)
    for n in (4, 5):
        m = n // 2
        eps = rng.standard_normal((n, K))
        eps[m:2 * m] = -eps[:m]
        z = mu + s * eps
        f, score = np.exp(z), (z - mu) / s ** 2
        for base, bias in [(leave_pair_out(B, f, n), 0.0), (leave_one_out(B, f), 2 * m / (n * (n - 1)))]:
            units = ((f - np.asarray(base)) * score)  # per-sample estimates of d/dmu, pairs dependent
            batch = units.mean(0)
            se = batch.std(ddof=1) / np.sqrt(K)
            assert abs(batch.mean() - exact * (1 + bias)) <= Z * se, (n, bias, batch.mean(), exact)
            if bias:
                assert abs(batch.mean() - exact) > 20 * se


# -- structure: enumeration copies, chunks, compile, refusals -----------------------------------------

def test_inside_enumeration_copies(backend):
    """``z`` sampled in each copy of an enumerated ``k``: pairs are formed inside each copy."""
    mu, s, p = 0.3, 0.8, 0.4
    m, ds, _, _ = exp_closed(mu, s)
    r = sg.estimate("E[exp(z) * (1 + k), k ~ Bernoulli(p), z ~ Normal(mu, s)]", {"mu": mu, "s": s, "p": p},
                    n=20001, seed=3, backend=backend, estimators={"k": "enumerate", "z": "pathwise:antithetic=true"})
    for est, exact, se in [(r.value, m * (1 + p), r.value_stderr), (r.grad["p"], m, r.stderr["p"]),
                           (r.grad["s"], ds * (1 + p), r.stderr["s"])]:
        assert abs(est - exact) <= Z * se, (est, exact, se)


@pytest.mark.parametrize("est", ["pathwise:antithetic=true", "score:antithetic=true"])
def test_chunked_run_pairs_inside_each_chunk(est):
    """Chunks of 65536 (and an odd last one): pairs form inside each chunk, standard errors per pair."""
    mu, s = 0.3, 0.8
    m, ds, _, _ = exp_closed(mu, s)
    r = run(EXP, {"mu": mu, "s": s}, est, n=150001, seed=8, chunk_size=65536)
    assert r.chunk_size == 65536
    for est_, exact, se in [(r.value, m, r.value_stderr), (r.grad["mu"], m, r.stderr["mu"]),
                            (r.grad["s"], ds, r.stderr["s"])]:
        assert abs(est_ - exact) <= Z * se, (est_, exact, se)


def test_compiled_objective_matches_estimate():
    f = sg.compile(EXP, n=64, seed=4, backend="autograd", estimators={"z": "score:antithetic=true"})
    r = sg.estimate(EXP, {"mu": 0.2, "s": 0.6}, n=64, seed=4, backend="autograd",
                    estimators={"z": "score:antithetic=true"})
    assert float(f(mu=0.2, s=0.6)) == pytest.approx(r.value, rel=1e-12)


@pytest.mark.parametrize("text, est, kind", [
    ("E[z, z ~ Gamma(a, 1.0)]", "pathwise:antithetic=true", "gamma"),
    ("E[z, z ~ StudentT(a, 0.0, 1.0)]", "pathwise:antithetic=true", "gamma"),
    ("E[z, z ~ Poisson(a)]", "score:antithetic=true", "poisson"),
])
def test_laws_without_a_reflection_are_refused(backend, text, est, kind):
    with pytest.raises(sg.PlanError, match=rf"antithetic noise on z: its sampler draws {kind} noise"):
        sg.estimate(text, {"a": 2.5}, n=10, backend=backend, estimators={"z": est})


def test_bad_option_refused():
    with pytest.raises(sg.PlanError, match="pathwise: option antithetic must be true or false"):
        run(EXP, {"mu": 0.0, "s": 1.0}, "pathwise:antithetic=maybe", n=10)
    with pytest.raises(sg.PlanError, match="score: option antithetic must be true or false"):
        sg.Score(antithetic=2)


def test_one_sample_runs():
    with pytest.warns(sg.NonFiniteWarning, match="standard errors are undefined at n = 1"):
        r = run(EXP, {"mu": 0.0, "s": 1.0}, "score:antithetic=true", n=1)
    assert np.isfinite(r.value) and np.isfinite(r.grad["mu"])
