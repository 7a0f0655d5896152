"""compare's frontier: the K-sample-bound estimators (vimco, dreg) are listed by compare where they apply.

vimco and dreg are ``compared``; on a cost that is not a K-sample bound their ``rewrite_cost`` refuses
(PlanError) and compare skips them, so a plain expectation's table is unchanged.
"""

from __future__ import annotations

import numpy as np

import stochgrad as sg

LOGW = "log_prob(Normal(0, 1), z) + log_prob(Normal(z, 1), x) - log_prob(Normal(mu, sigma), z)"


def _names(c) -> list[str]:
    return [r.estimator.split()[0] for r in c.rows]


def test_compare_lists_dreg_on_a_gaussian_k_sample_bound(backend):
    c = sg.compare(f"E[logmeanexp({LOGW}, axis=0), z ~ iid(3, Normal(mu, sigma))]",
                   dict(mu=0.3, sigma=0.8, x=1.0), n=2000, seed=1, backend=backend)
    names = _names(c)
    assert "dreg" in names
    assert "dreg" in c.table()


def test_compare_lists_vimco_on_a_bernoulli_k_sample_bound(backend):
    logw = ("sum(log_prob(Bernoulli(0.5), z) + log_prob(Normal(2 * z - 1, 1), x)"
            " - log_prob(Bernoulli(logits=a), z), axis=-1)")
    expr = f"E[logmeanexp({logw}, axis=0), z ~ iid(4, Bernoulli(logits=a))]"
    c = sg.compare(expr, dict(a=np.array([0.4, -0.3]), x=np.array([0.7, -1.2])), n=2000, seed=1, backend=backend)
    names = _names(c)
    assert "vimco" in names and "dreg" not in names  # dreg needs a reparameterizable law
    row = c.rows[names.index("vimco")]
    assert row.unbiased and all(np.isfinite(np.asarray(v)).all() for v in row.grad.values())
    assert "vimco" in c.table()


def test_compare_skips_them_on_a_plain_expectation(backend):
    c = sg.compare("E[z**2, z ~ Normal(mu, 1.0)]", dict(mu=0.5), n=500, seed=1, backend=backend)
    names = _names(c)
    assert "vimco" not in names and "dreg" not in names
    assert "pathwise" in names or any("pathwise" in r.estimator for r in c.rows)


def test_min_variance_picks_vimco_over_score_on_a_k_sample_bernoulli_bound(backend):
    """vimco is ``piloted`` (unbiased wherever it applies); on an 8-example, K = 5 bound (2^40 joint
    states: nothing enumerates) its pilot cost (variance x evaluations, deterministic for a fixed seed, so
    machine load cannot flip it) was 2.6 against the score function's 7.6 (ratio 2.9 > the pilot's margin 2)."""
    logw = ("sum(log_prob(Bernoulli(0.5), z) + log_prob(Normal(2 * z - 1, 1), x)"
            " - log_prob(Bernoulli(logits=a), z), axis=-1)")
    expr = f"E[logmeanexp({logw}, axis=0), z ~ iid(5, Bernoulli(logits=a))]"
    values = dict(a=np.linspace(-0.6, 0.6, 8), x=np.linspace(-1.2, 0.9, 8))
    node = sg.plan(expr, values, policy="min_variance", seed=1, backend=backend).node("z")
    assert node.estimator == "vimco" and not node.biased
    assert "score (leave-one-out baseline)" in node.reason and "vimco" in node.reason


def test_min_variance_pilots_enumeration_only_within_the_budget(backend):
    """A 2-example, K = 5 bound has 2^10 joint states.  Enumeration's pilot cost is zero variance, so
    within the budget the pilot picks it; with ``enumerate_budget=1`` it must not be a candidate at all
    (it used to win regardless of the budget)."""
    logw = ("sum(log_prob(Bernoulli(0.5), z) + log_prob(Normal(2 * z - 1, 1), x)"
            " - log_prob(Bernoulli(logits=a), z), axis=-1)")
    expr = f"E[logmeanexp({logw}, axis=0), z ~ iid(5, Bernoulli(logits=a))]"
    values = dict(a=np.array([-0.4, 0.3]), x=np.array([-1.0, 0.8]))
    wide = sg.plan(expr, values, policy="min_variance", seed=1, backend=backend, enumerate_budget=4096).node("z")
    assert wide.spec.enumerates, wide.reason
    tight = sg.plan(expr, values, policy="min_variance", seed=1, backend=backend, enumerate_budget=1).node("z")
    assert not tight.spec.enumerates, tight.reason
    assert "enumerat" not in tight.reason.split("pilot", 1)[-1], tight.reason
