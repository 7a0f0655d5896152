"""VonMises(loc, concentration): sampler, density, entropy, KL and the implicit pathwise gradient.

References are independent of the code under test: ``scipy.stats.vonmises`` (density, CDF, entropy,
moments), ``scipy.special.i0e``/``i1e`` (the Bessel identities ``E[cos(z - loc)] = A(k) = I1/I0`` and
``A'(k) = 1 - A/k - A^2``), ``scipy.integrate.quad`` (KL), central differences of scipy's CDF (the
implicit derivative ``dtheta/dk``), and a Kolmogorov-Smirnov test of the samples against scipy's CDF.
"""

from __future__ import annotations

import autograd
import numpy as np
import pytest
import scipy.special as sps
import scipy.stats as ss
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

import stochgrad as sg
from conftest import grad_of
from stochgrad import vonmises
from stochgrad.noise import NoiseSource
from stochgrad.testing import assert_estimate

N = 200_000
LAW = sg.DISTRIBUTIONS["VonMises"]


def _native(B, **params):
    return {k: B.asarray(np.array([v], dtype=float)) for k, v in params.items()}


def _draws(backend, k, n, seed=0):
    """``n`` gradient-free draws of theta = z - loc for concentration ``k`` (one noise stream per draw)."""
    B = sg.get_backend(backend)
    noise = NoiseSource(B, seed, 0, n)
    streams = iter(range(1 << 10))

    def draw(kind, shape, *params):
        return noise.draw(0, next(streams), kind, tuple(shape), *params)

    return B.to_numpy(vonmises.centred_sample(B, B.asarray(np.array([k])), draw, ()))


# -- primitives ---------------------------------------------------------------------------------------

def test_bessel_primitives_match_scipy_in_value_and_derivative(backend):
    """Values against scipy; derivatives against the identities i0e' = i1e - i0e, i1e' = i0e - i1e (1 + 1/x)
    (x > 0; i1e'(0) = 1/2), themselves checked here once against central differences of scipy."""
    x = np.array([1e-8, 0.3, 2.0, 10.5, 80.0, 700.0, 1e4])
    B = sg.get_backend(backend)
    for name, ref, slope in (("i0e", sps.i0e, sps.i1e(x) - sps.i0e(x)),
                             ("i1e", sps.i1e, sps.i0e(x) - sps.i1e(x) * (1 + 1 / x))):
        np.testing.assert_allclose(B.to_numpy(B.fn[name](B.asarray(x))), ref(x), rtol=1e-12, atol=0)
        if backend == "torch":
            t = torch.tensor(np.append(x, 0.0), requires_grad=True)
            (g,) = torch.autograd.grad(B.fn[name](t).sum(), t)
            got = g.numpy()
        elif backend == "jax":
            import jax

            got = np.asarray(jax.vmap(jax.grad(B.fn[name]))(np.append(x, 0.0)))
        else:
            got = autograd.elementwise_grad(B.fn[name])(np.append(x, 0.0))
        y, h = x[1:], 1e-6 * x[1:]  # (differences at 1e-8 would be all rounding)
        np.testing.assert_allclose(slope[1:], (ref(y + h) - ref(y - h)) / (2 * h), rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(got[:-1], slope, rtol=1e-10, atol=1e-14)
        if name == "i1e":
            assert got[-1] == 0.5


# -- density, entropy, KL -----------------------------------------------------------------------------

@settings(deadline=None, max_examples=25)
@given(loc=st.floats(-3.0, 3.0), k=st.floats(1e-3, 500.0))
def test_log_prob_and_entropy_match_scipy(loc, k):
    ref = ss.vonmises(k, loc=loc)
    x = loc + np.linspace(-3.1, 3.1, 31)
    for backend in ("autograd", "torch"):
        B = sg.get_backend(backend)
        p = _native(B, loc=loc, concentration=k)
        np.testing.assert_allclose(B.to_numpy(LAW.log_prob(B, p, B.asarray(x))), ref.logpdf(x), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(B.to_numpy(LAW.entropy(B, p)), [ref.entropy()], rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize(("m1", "k1", "m2", "k2"), [(0.3, 2.0, -0.5, 0.7), (1.0, 15.0, 1.2, 40.0), (0.0, 0.05, 2.0, 3.0)])
def test_kl_closed_form_matches_quadrature(m1, k1, m2, k2, backend):
    p, q = ss.vonmises(k1, loc=m1), ss.vonmises(k2, loc=m2)
    exact = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), m1 - np.pi, m1 + np.pi,
                           epsabs=1e-13, epsrel=1e-12, limit=400)[0]
    r = sg.estimate("KL(VonMises(a, b) || VonMises(c, d))", {"a": m1, "b": k1, "c": m2, "d": k2}, n=4,
                    backend=backend, seed=0)
    assert "closed form" in str(r.plan)
    assert r.value == pytest.approx(exact, rel=1e-8, abs=1e-11)


# -- the sampler --------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1e-9, 0.05, 1.0, 4.0, 10.5, 60.0, 2000.0])
def test_samples_follow_scipy_cdf(k, backend):
    theta = _draws(backend, k, 40_000)
    assert np.all(np.abs(theta) < np.pi)
    # a wrong sampler (e.g. the wrapped-Cauchy proposal itself, or a wrong sign) fails with p ~ 0
    assert ss.kstest(theta, ss.vonmises(k).cdf).pvalue > 1e-6


def test_samples_are_reproducible_and_backends_agree():
    a, b = _draws("autograd", 3.0, 5000, seed=7), _draws("torch", 3.0, 5000, seed=7)
    np.testing.assert_array_equal(a, _draws("autograd", 3.0, 5000, seed=7))
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)  # float64 on the CPU: the same uniform noise


def test_samples_left_pending_get_more_passes(monkeypatch):
    """One proposal per pass: about a third of the samples need a second pass and some need several;
    the law stays exact."""
    monkeypatch.setattr(vonmises, "ROUNDS", 1)
    monkeypatch.setattr(vonmises, "MAX_PASSES", 64)
    theta = _draws("autograd", 2.0, 20_000)
    assert ss.kstest(theta, ss.vonmises(2.0).cdf).pvalue > 1e-6


def test_no_accepted_proposal_raises_rather_than_a_wrong_value(monkeypatch):
    monkeypatch.setattr(vonmises, "ROUNDS", 1)
    monkeypatch.setattr(vonmises, "MAX_PASSES", 1)
    with pytest.raises(sg.StochgradError, match="VonMises sampler: .* samples had no accepted proposal in 1 rounds"):
        sg.estimate("E[z, z ~ VonMises(0, k)]", {"k": 2.0}, n=1000, seed=0)


@pytest.mark.parametrize("k", [0.5, 8.0, 40.0])
def test_moments_match_scipy(k, backend):
    ref = ss.vonmises(k, loc=0.4)
    r1 = sg.estimate("E[z, z ~ VonMises(0.4, k)]", {"k": k}, n=N, backend=backend, seed=2)
    r2 = sg.estimate("E[z**2, z ~ VonMises(0.4, k)]", {"k": k}, n=N, backend=backend, seed=2)
    assert_estimate(r1, value=ref.mean())
    assert_estimate(r2, value=ref.var() + ref.mean() ** 2)


# -- the implicit gradient ----------------------------------------------------------------------------

@settings(deadline=None, max_examples=40)
@given(u=st.floats(0.002, 0.998), k=st.floats(0.01, 400.0))
def test_dtheta_dk_is_the_implicit_derivative(u, k):
    """dtheta/dk = -(dF/dk) / p at the quantile theta = F^{-1}(u) (scipy's), with
    dF/dk = int_{-pi}^{theta} p(t) (cos t - A(k)) dt (d log p / dk = cos t - A) by quadrature."""
    ref = ss.vonmises(k)
    theta = float(ref.ppf(u))
    a = sps.i1e(k) / sps.i0e(k)
    dF = integrate.quad(lambda t: ref.pdf(t) * (np.cos(t) - a), -np.pi, theta, epsabs=1e-14, epsrel=1e-12,
                        limit=200, points=[0.0] if theta > 0 else None)[0]
    exact = -dF / ref.pdf(theta)
    for backend in ("autograd", "torch"):
        B = sg.get_backend(backend)
        got = B.to_numpy(vonmises.dtheta_dk(B, B.asarray(np.array([theta])), B.asarray(np.array([k]))))[0]
        assert got == pytest.approx(exact, rel=1e-5, abs=1e-7 * abs(theta) / k + 1e-10), backend


def _bessel_ratio(k):
    return sps.i1e(k) / sps.i0e(k)


@pytest.mark.parametrize("k", [0.3, 2.0, 10.0, 11.0, 50.0])
def test_pathwise_gradient_of_mean_cosine_is_the_bessel_identity(k, backend):
    """E[cos(z - loc)] = A(k) and dA/dk = 1 - A/k - A^2; and the cost does not move with loc."""
    a = _bessel_ratio(k)
    r = sg.estimate("E[cos(z - m), z ~ VonMises(m, k)]", {"m": 0.7, "k": k}, n=N, backend=backend, seed=3)
    assert r.plan.node("z").estimator == "pathwise"
    assert_estimate(r, value=a, grad={"m": 0.0, "k": 1.0 - a / k - a * a})


@pytest.mark.parametrize("k", [1.5, 25.0])
def test_pathwise_gradient_of_second_moment_matches_scipy(k, backend):
    def second(loc, kk):  # quadrature of scipy's density over one period (scipy's var() takes ~3 s a call)
        d = ss.vonmises(kk, loc=loc)
        return integrate.quad(lambda z: z * z * d.pdf(z), loc - np.pi, loc + np.pi, epsabs=1e-13, epsrel=1e-12,
                              limit=200)[0]

    loc, h = -0.6, 1e-4
    grad = {"m": (second(loc + h, k) - second(loc - h, k)) / (2 * h),
            "k": (second(loc, k * (1 + h)) - second(loc, k * (1 - h))) / (2 * h * k)}
    r = sg.estimate("E[z**2, z ~ VonMises(m, k)]", {"m": loc, "k": k}, n=N, backend=backend, seed=4)
    assert_estimate(r, value=second(loc, k), grad=grad)


def test_a_wrong_concentration_gradient_is_rejected(backend):
    a = _bessel_ratio(2.0)
    r = sg.estimate("E[cos(z - m), z ~ VonMises(m, k)]", {"m": 0.7, "k": 2.0}, n=N, backend=backend, seed=3)
    with pytest.raises(AssertionError, match="d/dk"):
        assert_estimate(r, grad={"k": 1.1 * (1.0 - a / 2.0 - a * a)})


def test_second_derivative_is_refused_by_name(backend):
    f = sg.compile("E[cos(z), z ~ VonMises(0, k)]", backend=backend, n=64, seed=0)
    pattern = r"^z ~ VonMises\(0, k\): no second derivative through its pathwise gradient.*estimators=\{'z': 'score'\}"
    with pytest.raises(sg.PlanError, match=pattern):
        if backend == "torch":
            k = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
            (g,) = torch.autograd.grad(f(k=k), k, create_graph=True)
            torch.autograd.grad(g, k)
        else:
            grad_of(backend)(grad_of(backend)(lambda k: f(k=k)))(2.0)


def test_score_function_is_flagged_biased_for_a_non_periodic_cost():
    node = sg.plan("E[z**2, z ~ VonMises(m, k)]", estimators={"z": "score"}).node("z")
    assert node.biased and "VonMises's support depends on its parameters" in node.reason
