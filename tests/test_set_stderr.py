"""The reported standard error of the set estimators (``unordered_set``, Kool et al. 2020; ``sum_and_sample``,
Liu et al. 2019) is honest on rare high-cost categories: over many independent seeds, the mean reported
``SE**2`` matches the spread of the estimates (both estimate ``Var/n``).

Issue 15 saw the stderr "understate the spread across seeds" with a rare high-cost state.  That is the
rare-event effect every Monte Carlo stderr has (plain score included): in most seeds the rare state is
never drawn, the SE is ~0 there, so the *mean* SE (and the median) sits below the spread -- but ``SE**2`` is
still unbiased for the variance of the estimate, which this test checks.  The statistic
``D_i = (v_i - mean v)**2 * S / (S - 1) - SE_i**2`` has mean 0 when the SE is right; it is z-tested with its own
standard error (6 SE), over category counts, set sizes and rare-event probabilities.
"""

import numpy as np
import pytest

import stochgrad as sg

SEEDS = 200


def _calibration(K, k, rare, spec, seeds=SEEDS, n=100, scale=1.0):
    theta = np.zeros(K)
    theta[-1] = np.log(rare * (K - 1) / (1 - rare))  # the last state has probability `rare`
    w = np.zeros(K)
    w[-1] = 1.0 / rare  # a rare, high-cost state: E f = 1
    vals, ses, gs, gses = [], [], [], []
    for seed in range(seeds):
        r = sg.estimate(
            "E[sum(z * w), z ~ Categorical(logits=theta)]",
            {"theta": theta, "w": w},
            n=n,
            backend="autograd",
            seed=seed,
            estimators={"z": f"{spec}:k={k}"},
            wrt=["theta"],
        )
        vals.append(r.value)
        ses.append(r.value_stderr * scale)
        gs.append(np.asarray(r.grad["theta"])[-1])
        gses.append(np.asarray(r.stderr["theta"])[-1] * scale)
    out = []
    for v, s in ((np.array(vals), np.array(ses)), (np.array(gs), np.array(gses))):
        d = (v - v.mean()) ** 2 * seeds / (seeds - 1) - s**2
        spread = d.std(ddof=1) / np.sqrt(seeds)
        if spread <= 1e-12 * (1 + v.mean() ** 2):  # exact (the set is the support, or the rest enumerated)
            assert np.all(s <= 1e-9) and np.ptp(v) <= 1e-9, (v, s)
            spread = 1.0
        out.append(d.mean() / spread)
    return out


CASES = [(3, 2, 0.05), (5, 2, 0.01), (5, 3, 0.005), (8, 4, 0.02), (8, 2, 0.002)]


@pytest.mark.parametrize("spec", ["unordered_set", "sum_and_sample"])
@pytest.mark.parametrize(("K", "k", "rare"), CASES)
def test_stderr_squared_matches_spread_over_seeds(spec, K, k, rare):
    zv, zg = _calibration(K, k, rare, spec)
    assert abs(zv) < 6 and abs(zg) < 6, (spec, K, k, rare, zv, zg)


def test_the_check_detects_a_too_small_stderr():
    """The same statistic fails a stderr half its size (so the test above has power)."""
    zv, zg = _calibration(5, 2, 0.05, "unordered_set", scale=0.5)
    assert zv > 6 and zg > 6, (zv, zg)
