"""Non-finite results and untrustworthy standard errors are reported, never returned silently.

A NaN or infinity in a value, gradient or standard error is counted in ``Estimate.nonfinite``
and named (with the first subexpression that produced it) in a NonFiniteWarning; at n = 1 the
standard errors are undefined and said so; heavy tails (Hill's tail index of the per-sample
contributions below 1.5) raise a HeavyTailWarning, while light-tailed cases never do."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stochgrad as sg
from stochgrad import cli
from stochgrad.diagnostics import HEAVY_TAIL_INDEX, TAIL_FRACTION, TAIL_KEEP, TAIL_SAMPLES, Tail

FIXTURE_OK = [HealthCheck.function_scoped_fixture]


def run(text, params=None, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = sg.estimate(text, params or {}, **kw)
    kinds = {w.category for w in caught}
    return r, caught, kinds


def messages(caught, category):
    return [str(w.message) for w in caught if issubclass(w.category, category)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_nan_from_the_users_body_is_reported_with_its_term(backend, dtype):
    """log of a normal sample is NaN for about half the samples: the value is NaN, reported with the term."""
    if backend == "autograd" and dtype == "float32":
        pytest.skip("autograd computes in float64")
    options = {"dtype": dtype} if backend == "torch" else {}
    r, caught, _ = run("E[log(z) + mu, z ~ Normal(mu, 1)]", {"mu": 0.0}, n=200, seed=1, backend=backend, backend_options=options)
    assert np.isnan(r.value)
    assert r.nonfinite["value"] == 1 and "value_stderr" in r.nonfinite
    (text,) = messages(caught, sg.NonFiniteWarning)
    assert "E[log(z) + mu, z ~ Normal(mu, 1)]" in text and "`log(z)` is NaN in" in text and "of 200 entries" in text


def test_a_gradient_alone_non_finite_is_reported(backend):
    """sqrt has an infinite derivative at 0: the value is finite, the gradient is not."""
    r, caught, _ = run("E[sqrt(mu) + z, z ~ Normal(0, 1)]", {"mu": 0.0}, n=100, seed=0, backend=backend)
    assert np.isfinite(r.value) and not np.isfinite(r.grad["mu"])
    assert "value" not in r.nonfinite and r.nonfinite["grad['mu']"] == 1
    (text,) = messages(caught, sg.NonFiniteWarning)
    assert "grad['mu']" in text


def test_array_results_count_their_non_finite_entries(backend):
    r, caught, _ = run("E[sum(w * log(z)), z ~ Normal(mu, 1)]", {"mu": np.array([5.0, -5.0, 5.0]), "w": np.ones(3)},
                       n=100, seed=0, backend=backend)
    assert r.nonfinite["grad['w']"] == 1  # log(z) is NaN in entry 1 only (z < 0 there)
    assert "grad['mu']" not in r.nonfinite  # w / z is finite for z < 0
    assert "grad['w'] (1 of 3 entries)" in messages(caught, sg.NonFiniteWarning)[0]


def test_float32_overflow_is_reported_where_float64_is_finite():
    pytest.importorskip("torch")
    text, params = "E[exp(100 * z), z ~ Normal(mu, 1)]", {"mu": 0.0}
    r32, caught32, _ = run(text, params, n=1000, seed=0, backend="torch", backend_options={"dtype": "float32"})
    r64, caught64, _ = run(text, params, n=1000, seed=0, backend="torch")
    assert r32.value == np.inf and messages(caught32, sg.NonFiniteWarning)
    assert np.isfinite(r64.value) and not messages(caught64, sg.NonFiniteWarning)


def test_n_equal_1_says_the_standard_error_is_undefined(backend):
    r, caught, _ = run("E[z, z ~ Normal(mu, 1)]", {"mu": 1.0}, n=1, seed=0, backend=backend)
    assert np.isnan(r.value_stderr) and np.isnan(r.stderr["mu"])
    assert r.nonfinite == {"value_stderr": 1, "stderr['mu']": 1}
    (text,) = messages(caught, sg.NonFiniteWarning)
    assert "undefined at n = 1" in text and "non-finite results" not in text
    assert "\u00b1 undefined (n = 1)" in str(r)


def test_finite_results_give_no_warning_and_an_empty_report(backend):
    r, caught, _ = run("E[z**2, z ~ Normal(mu, sigma)]", {"mu": 1.0, "sigma": 2.0}, n=1000, seed=0, backend=backend)
    assert r.nonfinite == {} and not messages(caught, sg.NonFiniteWarning)


# -- heavy tails ------------------------------------------------------------------------------
HEAVY = [
    ("E[z, z ~ Cauchy(mu, 1)]", {"mu": 0.0}),  # tail index 1
    ("E[z, z ~ Weibull(1, k)]", {"k": 0.05}),  # lighter than any power, yet ~0.25 at these n
    ("E[1 / u, u ~ Uniform(0, 1)]", {}),  # Pareto, index 1
    ("E[1 / z, z ~ Normal(mu, 1)]", {"mu": 0.0}),  # index 1 (the density at 0 is positive)
]


@pytest.mark.parametrize("text, params", HEAVY)
def test_heavy_tails_are_flagged(backend, text, params):
    r, caught, _ = run(text, params, n=20_000, seed=3, backend=backend)
    assert "value" in r.heavy_tails and r.heavy_tails["value"] < HEAVY_TAIL_INDEX
    (message,) = messages(caught, sg.HeavyTailWarning)
    assert "value (tail index" in message and "cannot be trusted" in message


def test_weibull_stderr_is_indeed_untrustworthy():
    """Why the warning matters: at concentration 0.05 the reported standard error is far too
    small (the mean is Gamma(1 + 1/0.05) = 20!, hand-derived), so the z-score is huge."""
    r, _, _ = run("E[z, z ~ Weibull(1, k)]", {"k": 0.05}, n=20_000, seed=3)
    exact = float(math.factorial(20))
    assert abs(r.value - exact) > 6 * r.value_stderr and r.heavy_tails


def test_tail_index_is_hills_estimate_of_a_pareto_tail():
    """u ** -0.5 for uniform u has P(X > t) = t ** -2 (hand-derived): the index is 2 within 6 of
    Hill's standard deviations alpha / sqrt(k) (k the smaller of the two orders used: a quarter of
    the largest 1% of the first TAIL_SAMPLES samples)."""
    r, caught, _ = run("E[u ** -0.5, u ~ Uniform(0, 1)]", n=200_000, seed=0)
    k = min(TAIL_SAMPLES // TAIL_FRACTION, TAIL_KEEP - 1) // 4
    assert abs(r.tail_index["value"] - 2.0) < 6 * 2.0 / np.sqrt(k)
    assert not r.heavy_tails and not messages(caught, sg.HeavyTailWarning)


@settings(max_examples=12, deadline=None, suppress_health_check=FIXTURE_OK)
@given(mu=st.floats(-20, 20), sigma=st.floats(0.1, 20), cost=st.sampled_from(
    ["z", "z**2", "z**3", "sin(z)", "z * (z > mu)", "exp(z / sigma)", "(z - mu)**2 + 3"]), seed=st.integers(0, 2**31))
def test_light_tails_never_warn(backend, mu, sigma, cost, seed):
    """The false-alarm property: normal costs up to degree 3 and their score/pathwise gradients.
    (Not rare events: a cost that is nonzero in a handful of the samples, ``z * (z > 0)`` at mu = -3,
    can be flagged, and its standard error does rest on those few.)"""
    r, caught, kinds = run(f"E[{cost}, z ~ Normal(mu, sigma)]", {"mu": mu, "sigma": sigma}, n=12_000, seed=seed,
                           backend=backend)
    assert sg.HeavyTailWarning not in kinds and sg.NonFiniteWarning not in kinds, [str(w.message) for w in caught]
    assert not r.heavy_tails and r.tail_index  # assessed, and clear


@settings(max_examples=12, deadline=None, suppress_health_check=FIXTURE_OK)
@given(p=st.floats(0.01, 0.99), a=st.floats(-10, 10), b=st.floats(-10, 10), seed=st.integers(0, 2**31))
def test_bernoulli_score_functions_never_warn(backend, p, a, b, seed):
    r, caught, kinds = run(f"E[(y - {a})**2 + {b} * y, y ~ Bernoulli(p)]", {"p": p}, n=12_000, seed=seed,
                           backend=backend, estimators={"y": "score"})
    assert sg.HeavyTailWarning not in kinds and not r.heavy_tails, [str(w.message) for w in caught]


@settings(max_examples=20, deadline=None)
@given(data=st.lists(st.floats(-1e6, 1e6), min_size=3, max_size=3000), cuts=st.lists(st.integers(2, 3000), max_size=4))
def test_tail_keeps_the_exact_largest_deviations_across_chunks(data, cuts):
    """Merging chunk by chunk keeps the largest |x - c| (c fixed by the first chunk)."""
    x = np.asarray(data)
    bounds = sorted({0, len(x), *(c for c in cuts if c < len(x))})
    parts = [x[a:b] for a, b in zip(bounds, bounds[1:]) if b - a >= 2]
    t, samples_first = Tail(), Tail()
    for part in parts:
        t.observe(np.stack([part, -part]))  # two entries, one a mirror image
        samples_first.observe(np.ascontiguousarray(np.stack([part, -part]).T).T)  # the other memory layout
    if t.top is not None:
        np.testing.assert_array_equal(samples_first.top, t.top)
    if t.top is None:
        return
    used = np.concatenate(parts)
    for row, values in enumerate([used, -used]):
        dev = np.sort(np.abs(values - t.center[row]))[::-1][:TAIL_KEEP]
        kept = t.top[row][t.top[row] > 0]
        # equal up to rounding: the threshold is compared as x > c + t, not |x - c| > t
        np.testing.assert_allclose(np.sort(kept)[::-1], dev[dev > 0][:kept.size], rtol=1e-12)


# -- the command line -------------------------------------------------------------------------
def _strict_json(text: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"JSON with {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("n", ["1", "100"])
def test_cli_json_is_valid_with_nan(capsys, n):
    code = cli.main(["estimate", "E[log(z) + mu, z ~ Normal(mu, 1)]", "--at", "mu=0", "-n", n, "--seed", "0",
                     "--json", "--no-exact"])
    out, err = capsys.readouterr()
    assert code == 0
    doc = _strict_json(out)
    if n == "1":
        assert doc["value_stderr"] is None and "standard error undefined at n = 1" in err
    else:
        assert doc["value"] is None and doc["nonfinite"]["value"] == 1
        assert "stochgrad: warning:" in err and "`log(z)`" in err
    assert "Warning:" not in err and ".py:" not in err  # a sentence, not a Python warning with a source path


def test_cli_text_says_undefined_and_heavy_tails(capsys):
    cli.main(["estimate", "E[z, z ~ Normal(mu, 1)]", "--at", "mu=1", "-n", "1", "--seed", "0", "--no-exact"])
    out, err = capsys.readouterr()
    assert "undefined (n = 1)" in out and "standard error undefined at n = 1" in err
    cli.main(["estimate", "E[z, z ~ Cauchy(mu, 1)]", "--at", "mu=0", "-n", "20000", "--seed", "0", "--no-exact"])
    out, err = capsys.readouterr()
    assert "stochgrad: warning:" in err and "heavy-tailed" in err and ".py:" not in err


def test_cli_compare_json_is_valid(capsys):
    code = cli.main(["compare", "E[log(z) + mu, z ~ Normal(mu, 1)]", "--at", "mu=0", "-n", "50", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0 and _strict_json(out)["rows"]
