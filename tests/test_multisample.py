"""The "stl" estimator (sticking the landing, Roeder et al. 2017) on a Gaussian toy.

p(z) = N(0, 1), p(x | z) = N(x; z, 1), q = N(mu, sigma).  The ELBO's gradient is derived with
sympy from the closed-form expectation (never from stochgrad); the exact posterior is
N(x / 2, 1 / 2), where STL's per-sample gradient is exactly zero.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import stochgrad as sg
from stochgrad.errors import PlanError

ELBO = ("E[log_prob(Normal(0, 1), z) + log_prob(Normal(z, 1), x) - log_prob(Normal(mu, sigma), z),"
        " z ~ Normal(mu, sigma)]")


def _exact_grad(mu: float, sigma: float, x: float) -> dict[str, float]:
    m, s, X = sympy.symbols("m s X", real=True)
    # E_q[z^2] = m^2 + s^2, E_q[(X - z)^2] = (X - m)^2 + s^2, H[q] = log(s) + log(2 pi e) / 2
    elbo = (-(m**2 + s**2) / 2 - ((X - m) ** 2 + s**2) / 2 - sympy.log(2 * sympy.pi)
            + sympy.log(s) + sympy.log(2 * sympy.pi * sympy.E) / 2)
    at = {m: mu, s: sigma, X: x}
    return {k: float(sympy.diff(elbo, v).subs(at)) for k, v in (("mu", m), ("sigma", s), ("x", X))}


@pytest.mark.parametrize("mu, sigma, x", [(0.3, 0.6, 1.0), (-0.4, 1.3, 0.5)])
def test_stl_is_unbiased_for_the_elbo_gradient(backend, mu, sigma, x):
    exact = _exact_grad(mu, sigma, x)
    r = sg.estimate(ELBO, dict(mu=mu, sigma=sigma, x=x), n=20_000, seed=3, backend=backend,
                    estimators={"z": "stl"})
    for k, g in exact.items():
        se = float(r.stderr[k])
        assert se > 0, k
        assert abs(float(r.grad[k]) - g) < 5 * se + 1e-9, (k, float(r.grad[k]), g, se)
    assert "stl stops Normal(mu, sigma)'s parameters in 1 log_prob" in str(r.plan)


def _agrees(r, exact) -> bool:
    return all(abs(float(r.grad[k]) - g) < 5 * float(r.stderr[k]) + 1e-9 for k, g in exact.items())


def test_a_wrong_estimator_fails_the_same_check(backend):
    """The naive "detached" estimator (no path through z, no score term) is biased here; at this
    sample size the 5-SE check rejects it, while STL and the score function pass."""
    mu, sigma, x = 0.3, 0.6, 1.0
    exact = _exact_grad(mu, sigma, x)

    def run(est):
        return sg.estimate(ELBO, dict(mu=mu, sigma=sigma, x=x), n=20_000, seed=3, backend=backend,
                           estimators={"z": est})

    assert _agrees(run("stl"), exact) and _agrees(run("score"), exact)
    assert not _agrees(run("detached"), exact)


@settings(max_examples=4, deadline=None)
@given(st.floats(-2.0, 2.0))
def test_zero_variance_at_the_exact_posterior_for_any_observation(x):
    r = sg.estimate(ELBO, dict(mu=x / 2, sigma=np.sqrt(0.5), x=x), n=64, seed=1, backend="autograd",
                    estimators={"z": "stl"})
    assert float(r.stderr["mu"]) < 1e-10 and float(r.stderr["sigma"]) < 1e-10


def test_stl_has_zero_variance_at_the_exact_posterior_and_pathwise_does_not(backend):
    x = 0.8
    params = dict(mu=x / 2, sigma=np.sqrt(0.5), x=x)
    stl = sg.estimate(ELBO, params, n=2_000, seed=5, backend=backend, estimators={"z": "stl"})
    full = sg.estimate(ELBO, params, n=2_000, seed=5, backend=backend, estimators={"z": "pathwise"})
    for k in ("mu", "sigma"):
        assert abs(float(stl.grad[k])) < 1e-10 and float(stl.stderr[k]) < 1e-10, k
        assert float(full.stderr[k]) > 1e-3, k  # the score term's noise that STL removes
    assert float(stl.value) == pytest.approx(float(full.value))  # the same Monte Carlo value


def test_stl_inside_an_iid_bound_stops_the_base_law():
    text = ("E[logmeanexp(log_prob(Normal(0, 1), z) + log_prob(Normal(z, 1), x) - log_prob(Normal(mu, sigma), z),"
            " axis=0), z ~ iid(3, Normal(mu, sigma))]")
    p = sg.plan(text, estimators={"z": "stl"})
    assert "stl stops Normal(mu, sigma)'s parameters in 1 log_prob(Normal(mu, sigma), z)" in str(p)
    # inside logmeanexp the removed score term is weighted by the normalized weights: not zero-mean
    assert p.node("z").biased and "1 of them inside a nonlinear function" in str(p)
    elbo = sg.plan("E[sum(log_prob(Normal(0, 1), z) - 2 * log_prob(Normal(mu, sigma), z)) / 2, z ~ Normal(mu, sigma)]",
                   estimators={"z": "stl"})
    assert not elbo.node("z").biased and "nonlinear" not in str(elbo)  # sum, -, a constant factor: linear


def test_stl_refuses_a_node_without_a_pathwise_sampler_and_notes_a_cost_without_log_q():
    with pytest.raises(PlanError, match="no pathwise sampler"):
        sg.plan("E[z, z ~ Bernoulli(p)]", estimators={"z": "stl"})
    p = sg.plan("E[z ** 2, z ~ Normal(mu, 1)]", estimators={"z": "stl"})
    assert "stl found no log_prob(Normal(mu, 1), z) in the cost; it is plain pathwise here" in str(p)
    # another law's log_prob of z is the model's, not q's: not stopped
    p = sg.plan("E[log_prob(Normal(0, 1), z), z ~ Normal(mu, 1)]", estimators={"z": "stl"})
    assert "stl found no log_prob" in str(p)


def test_a_parameter_shared_by_p_and_q_keeps_its_model_gradient(backend):
    """A parameter in both p and q: only q's log_prob is stopped, p's keeps its gradient."""
    text = "E[log_prob(Normal(a, 1), z) - log_prob(Normal(a, sigma), z), z ~ Normal(a, sigma)]"
    # closed form: E[-(z-a)^2/2] - log(2 pi)/2 + H[q] = -sigma^2/2 - log(2 pi)/2 + log(sigma) + log(2 pi e)/2
    sigma = 0.7
    r = sg.estimate(text, dict(a=0.2, sigma=sigma), n=20_000, seed=7, backend=backend, estimators={"z": "stl"})
    assert abs(float(r.grad["a"])) < 5 * float(r.stderr["a"]) + 1e-12
    g = -sigma + 1 / sigma
    assert abs(float(r.grad["sigma"]) - g) < 5 * float(r.stderr["sigma"]), (float(r.grad["sigma"]), g)


def test_stl_in_a_compiled_objective_matches_estimate():
    torch = pytest.importorskip("torch")
    f = sg.compile(ELBO, backend="torch", n=4_000, seed=11, estimators={"z": "stl"})
    mu = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    f(mu=mu, sigma=sigma, x=torch.tensor(1.0, dtype=torch.float64)).backward()
    exact = _exact_grad(0.3, 0.6, 1.0)
    se = sg.estimate(ELBO, dict(mu=0.3, sigma=0.6, x=1.0), n=4_000, seed=11, estimators={"z": "stl"}).stderr
    assert abs(float(mu.grad) - exact["mu"]) < 5 * float(se["mu"])
    assert abs(float(sigma.grad) - exact["sigma"]) < 5 * float(se["sigma"])
