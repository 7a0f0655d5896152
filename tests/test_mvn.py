"""MultivariateNormal: log_prob, entropy, KL against scipy / numpy hand formulas; pathwise gradients;
constraint errors naming the parameter.  Both backends, float64."""

import numpy as np
import pytest
import scipy.stats as ss
from hypothesis import given, settings, strategies as st

import stochgrad as sg
from stochgrad.distributions import lookup

L3 = np.array([[1.0, 0.0, 0.0], [0.5, 2.0, 0.0], [-0.3, 0.4, 0.7]])
MU3 = np.array([1.0, -2.0, 0.5])


def _tril(rng, d):
    return np.tril(rng.normal(size=(d, d)), -1) + np.diag(rng.uniform(0.3, 2.0, d))


@settings(deadline=None, max_examples=15)
@given(d=st.integers(1, 4), seed=st.integers(0, 1000), backend=st.sampled_from(["autograd", "torch"]))
def test_log_prob_and_entropy_match_scipy(d, seed, backend):
    rng = np.random.default_rng(seed)
    L, mu, x = _tril(rng, d), rng.normal(size=d), rng.normal(size=(5, d))
    B, law = sg.get_backend(backend), lookup("MultivariateNormal")
    ref = ss.multivariate_normal(mu, L @ L.T)
    for p in ({"loc": mu, "scale_tril": L}, {"loc": mu, "covariance_matrix": L @ L.T}):
        q = {k: B.asarray(v[None]) for k, v in p.items()}
        got = B.to_numpy(law.log_prob(B, q, B.asarray(x)))
        np.testing.assert_allclose(got, ref.logpdf(x), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(B.to_numpy(law.entropy(B, q)), ref.entropy(), rtol=1e-10)


@pytest.mark.parametrize("backend", ["autograd", "torch"])
def test_kl_matches_the_hand_formula(backend):
    rng = np.random.default_rng(3)
    L1, L2, m1, m2 = _tril(rng, 3), _tril(rng, 3), rng.normal(size=3), rng.normal(size=3)
    S1, S2 = L1 @ L1.T, L2 @ L2.T
    inv = np.linalg.inv(S2)
    want = 0.5 * (np.trace(inv @ S1) + (m2 - m1) @ inv @ (m2 - m1) - 3 + np.log(np.linalg.det(S2) / np.linalg.det(S1)))
    r = sg.estimate("KL(MultivariateNormal(a, scale_tril=A) || MultivariateNormal(b, covariance_matrix=S))",
                    {"a": m1, "A": L1, "b": m2, "S": S2}, n=4, backend=backend, seed=0)
    np.testing.assert_allclose(r.value, want, rtol=1e-10)
    # d/dA of KL(N(0, A A^T) || N(0, I)) = A - diag(1 / A_ii) on the lower triangle (hand-derived)
    r = sg.estimate("KL(MultivariateNormal(z0, A) || MultivariateNormal(z0, I))",
                    {"z0": np.zeros(3), "A": L3, "I": np.eye(3)}, n=4, backend=backend, seed=0, wrt=["A"])
    np.testing.assert_allclose(r.grad["A"], L3 - np.diag(1 / np.diag(L3)), atol=1e-12)


@pytest.mark.parametrize("backend", ["autograd", "torch"])
def test_pathwise_gradient_of_the_second_moment(backend):
    n = 40_000
    r = sg.estimate("E[sum(z**2), z ~ MultivariateNormal(mu, scale_tril=L)]", {"mu": MU3, "L": L3},
                    n=n, backend=backend, seed=0)
    assert abs(r.value - (MU3 @ MU3 + np.sum(L3 * L3))) < 5 * r.value_stderr
    assert np.all(np.abs(r.grad["mu"] - 2 * MU3) < 5 * r.stderr["mu"] + 1e-12)
    lower = np.tril(np.ones((3, 3), bool))
    assert np.all(np.abs(r.grad["L"] - 2 * L3)[lower] < 5 * r.stderr["L"][lower])
    assert np.all(r.grad["L"][~lower] == 0.0)  # the upper triangle is not a parameter
    c = sg.estimate("E[sum(z**2), z ~ MultivariateNormal(mu, covariance_matrix=S)]", {"mu": MU3, "S": L3 @ L3.T},
                    n=n, backend=backend, seed=0)
    np.testing.assert_allclose(c.value, r.value, rtol=1e-9)  # the same noise, the same factor
    assert np.all(np.abs(c.grad["S"] - np.eye(3)) < 5 * c.stderr["S"] + 1e-12)  # d trace(S) / dS = I


@pytest.mark.parametrize("backend", ["autograd", "torch"])
def test_sample_mean_and_batched_loc(backend):
    n = 20_000
    locs = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    r = sg.estimate("E[z, z ~ MultivariateNormal(m, scale_tril=L)]", {"m": locs, "L": L3}, n=n, backend=backend, seed=1)
    assert np.shape(r.value) == (2, 3)
    assert np.all(np.abs(r.value - locs) < 5 * r.value_stderr)
    S = L3 @ L3.T  # E[z_i^2] = mu_i^2 + S_ii
    r = sg.estimate("E[z * z, z ~ MultivariateNormal(m, scale_tril=L)]", {"m": locs, "L": L3}, n=n, backend=backend, seed=2)
    assert np.all(np.abs(r.value - (locs**2 + np.diag(S))) < 5 * r.value_stderr)


@pytest.mark.parametrize("backend", ["autograd", "torch"])
def test_bad_parameters_are_named(backend):
    text = "E[sum(z), z ~ MultivariateNormal(mu, scale_tril=L)]"
    upper = L3.copy()
    upper[0, 2] = 0.3
    with pytest.raises(sg.StochgradError, match=r"'scale_tril' must be lower-triangular: its entry \[0, 2\]"):
        sg.estimate(text, {"mu": MU3, "L": upper}, n=10, backend=backend, seed=0)
    neg = L3.copy()
    neg[1, 1] = -1.0
    with pytest.raises(sg.StochgradError, match=r"'scale_tril' must have a positive diagonal: its entry \[1, 1\]"):
        sg.estimate(text, {"mu": MU3, "L": neg}, n=10, backend=backend, seed=0)
    with pytest.raises(sg.StochgradError, match="'covariance_matrix' must be positive definite"):
        sg.estimate("E[sum(z), z ~ MultivariateNormal(mu, covariance_matrix=S)]",
                    {"mu": MU3, "S": np.array([[1.0, 2, 0], [2, 1, 0], [0, 0, 1]])}, n=10, backend=backend, seed=0)
    with pytest.raises(sg.StochgradError, match="'covariance_matrix' must be symmetric"):
        sg.estimate("E[sum(z), z ~ MultivariateNormal(mu, covariance_matrix=S)]",
                    {"mu": MU3, "S": np.array([[1.0, 0.5, 0], [0, 1, 0], [0, 0, 1]])}, n=10, backend=backend, seed=0)
    with pytest.raises(sg.StochgradError, match="parameter 'loc' must have the d = 3 coordinates"):
        sg.estimate(text, {"mu": np.zeros(2), "L": L3}, n=10, backend=backend, seed=0)


def test_round_trip_and_embedded_constructor():
    for text in ["E[sum(z), z ~ MultivariateNormal(mu, scale_tril=L)]",
                 "E[sum(z), z ~ MultivariateNormal(mu, covariance_matrix=S)]"]:
        e = sg.parse(text)
        assert sg.parse(str(e)) == e
    mu, L, z = sg.symbols("mu L z")
    assert sg.E(sg.sum(z), z=sg.MultivariateNormal(mu, scale_tril=L)) == sg.parse(
        "E[sum(z), z ~ MultivariateNormal(mu, scale_tril=L)]")
