"""Issue 14's leftovers: ``log_prob`` / ``entropy`` of an ``iid(K, D)`` law.

``iid(K, D)`` read as a law has batch shape ``(K, *batch of D)`` (Pyro's ``D.expand((K,))``): its
``log_prob`` keeps the copies axis (each copy's own log density) and its entropy is ``D``'s repeated
``K`` times.  References: scipy.stats, and the hand derivative ``d/dm log N(x; m, s) = (x - m) / s**2``.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import stochgrad as sg
from stochgrad.testing import assert_estimate


def _one(text, params, backend, **kw):
    return sg.estimate(text, params, n=kw.pop("n", 4), backend=backend, seed=kw.pop("seed", 0), **kw)


# -- 1. log_prob(iid(K, D), x) and entropy(iid(K, D)) ------------------------------------------

def test_log_prob_of_iid_keeps_the_copies_axis(backend):
    x = np.array([-0.5, 0.3, 2.0])
    r = _one("log_prob(iid(3, Normal(m, s)), x)", {"m": 0.4, "s": 1.3, "x": x}, backend)
    np.testing.assert_allclose(r.value, stats.norm(0.4, 1.3).logpdf(x), rtol=1e-12)
    assert r.value_stderr.shape == (3,)
    # d/dm sum_k log N(x_k; m, s) = sum_k (x_k - m) / s^2
    np.testing.assert_allclose(r.grad["m"], np.sum((x - 0.4) / 1.3**2), rtol=1e-10)


def test_a_value_without_the_copies_axis_is_broadcast_over_them(backend):
    m = np.array([0.0, 1.0])
    r = _one("log_prob(iid(4, Normal(m, 2)), 0.5)", {"m": m}, backend)
    assert r.value.shape == (4, 2)
    np.testing.assert_allclose(r.value, np.broadcast_to(stats.norm(m, 2).logpdf(0.5), (4, 2)), rtol=1e-12)
    np.testing.assert_allclose(r.grad["m"], 4 * (0.5 - m) / 4, rtol=1e-10)


def test_log_prob_of_an_iid_event_law(backend):
    loc, tril = np.array([0.5, -1.0]), np.array([[1.2, 0.0], [0.4, 0.7]])
    xs = np.array([[0.0, 0.0], [1.0, -2.0], [0.3, 0.1]])
    r = _one("log_prob(iid(3, MultivariateNormal(loc, scale_tril=L)), x)", {"loc": loc, "L": tril, "x": xs}, backend)
    np.testing.assert_allclose(r.value, stats.multivariate_normal(loc, tril @ tril.T).logpdf(xs), rtol=1e-10)


@pytest.mark.parametrize("k", [2, 5])
def test_the_iwae_bound_written_with_the_iid_law_is_the_same_bound(backend, k):
    params = {"m": 0.2, "s": 0.9, "x": 1.0}
    body = "log_prob(Normal(z, 1), x) + log_prob(Normal(0, 1), z) - log_prob({q}, z)"
    runs = [sg.estimate(f"E[logmeanexp({body.format(q=q)}, axis=0), z ~ iid({k}, Normal(m, s))]", params,
                        n=2000, backend=backend, seed=3) for q in ("Normal(m, s)", f"iid({k}, Normal(m, s))")]
    assert runs[1].value == pytest.approx(runs[0].value, abs=1e-10)
    for name in ("m", "s", "x"):
        assert float(runs[1].grad[name]) == pytest.approx(float(runs[0].grad[name]), abs=1e-9)


@pytest.mark.parametrize("est", ["stl", "dreg"])
def test_stl_and_dreg_see_the_iid_law_as_q(backend, est):
    params = {"m": 0.2, "s": 0.9, "x": 1.0}
    body = "log_prob(Normal(z, 1), x) + log_prob(Normal(0, 1), z) - log_prob({q}, z)"
    runs = [sg.estimate(f"E[logmeanexp({body.format(q=q)}, axis=0), z ~ iid(3, Normal(m, s))]", params, n=2000,
                        backend=backend, seed=3, estimators={"z": est}) for q in ("Normal(m, s)", "iid(3, Normal(m, s))")]
    for name in ("m", "s"):
        assert float(runs[1].grad[name]) == pytest.approx(float(runs[0].grad[name]), abs=1e-9)
    assert "found no log_prob" not in str(runs[1].plan)


def test_sum_over_the_copies_is_the_joint_log_q(backend):
    # E_q[sum_k log q(z_k)] = -K H[q] = -K (1/2 log(2 pi e s^2)); pathwise d/dm = 0 exactly, d/ds = -K / s
    r = sg.estimate("E[sum(log_prob(iid(3, Normal(m, s)), z)), z ~ iid(3, Normal(m, s))]", {"m": 0.5, "s": 1.5},
                    n=20_000, backend=backend, seed=1)
    assert_estimate(r, value=-3 * stats.norm(0, 1.5).entropy(), grad={"m": 0.0, "s": -3 / 1.5})


def test_entropy_of_iid_closed_form_and_monte_carlo(backend):
    s = np.array([0.5, 2.0])
    r = _one("entropy(iid(3, Normal(0, s)))", {"s": s}, backend)
    np.testing.assert_allclose(r.value, np.broadcast_to(stats.norm(0, s).entropy(), (3, 2)), rtol=1e-12)
    np.testing.assert_allclose(r.grad["s"], 3 / s, rtol=1e-10)  # d/ds (1/2) log(2 pi e s^2) = 1 / s, 3 copies
    lam = np.array([0.7, 3.0])  # Poisson: no closed form, rewritten as E[-log_prob(iid(2, D), h), h ~ iid(2, D)]
    mc = sg.estimate("entropy(iid(2, Poisson(lam)))", {"lam": lam}, n=40_000, backend=backend, seed=4)
    assert mc.value.shape == (2, 2)
    assert_estimate(mc, value=np.broadcast_to(stats.poisson(lam).entropy(), (2, 2)))
    assert "entropy(iid(2, Poisson(lam))): Monte Carlo" in str(mc.plan)


def test_a_value_with_other_copies_than_the_law_is_refused(backend):
    with pytest.raises(sg.StochgradError, match="has 3 copies but the value has 4 on that axis"):
        _one("log_prob(iid(3, Normal(0, 1)), x)", {"x": np.zeros(4)}, backend)


def test_the_plate_analysis_reads_the_copies_axis_of_an_iid_law(backend):
    # sum over the copies of per-copy terms: each copy's score pairs with its own term (inferred plate)
    lam = np.array([0.7, 3.0])
    r = sg.estimate("E[sum(log_prob(iid(2, Poisson(lam)), h)), h ~ iid(2, Poisson(lam))]", {"lam": lam}, n=40_000,
                    backend=backend, seed=5)
    assert "plate over 2 iid copies (inferred" in str(r.plan)
    assert_estimate(r, value=-2 * stats.poisson(lam).entropy().sum())


@settings(max_examples=25)
@given(k=st.integers(1, 4), batch=st.lists(st.integers(1, 3), max_size=2), with_k=st.booleans(),
       seed=st.integers(0, 2**16))
def test_log_prob_of_iid_over_shapes(k, batch, with_k, seed):
    rng = np.random.default_rng(seed)
    m, s = rng.normal(size=batch), rng.uniform(0.5, 2.0, size=batch)
    x = rng.normal(size=((k,) if with_k else ()) + tuple(batch))
    for backend in ("autograd", "torch"):
        r = _one(f"log_prob(iid({k}, Normal(m, s)), x)", {"m": m, "s": s, "x": x}, backend)
        want = np.broadcast_to(stats.norm(m, s).logpdf(x), (k,) + tuple(batch))
        assert np.shape(r.value) == want.shape
        np.testing.assert_allclose(r.value, want, rtol=1e-10)
        e = _one(f"entropy(iid({k}, Normal(m, s)))", {"m": m, "s": s}, backend)
        np.testing.assert_allclose(e.value, np.broadcast_to(stats.norm(m, s).entropy(), (k,) + tuple(batch)),
                                   rtol=1e-10)


# -- 2. MultivariateNormal over batches: loc (..., d), scale_tril / covariance (..., d, d) ----------

def _tril(rng, batch, d):
    a = rng.normal(size=tuple(batch) + (d, d))
    return np.tril(a, -1) + np.eye(d) * np.exp(0.3 * rng.normal(size=tuple(batch) + (d, 1)))


def _kl_by_hand(m1, s1, m2, s2):
    # KL(N(m1, S1) || N(m2, S2)) = 1/2 (tr(S2^-1 S1) + (m2 - m1)' S2^-1 (m2 - m1) - d + log det S2 - log det S1)
    inv, dm = np.linalg.inv(s2), m2 - m1
    return 0.5 * (np.trace(inv @ s1) + dm @ inv @ dm - len(m1) + np.linalg.slogdet(s2)[1] - np.linalg.slogdet(s1)[1])


def _mvn_check(backend, loc, tril, x, form):
    batch = np.broadcast_shapes(loc.shape[:-1], tril.shape[:-2], x.shape[:-1])
    cov = tril @ np.swapaxes(tril, -1, -2)
    arg = "scale_tril=L" if form == "tril" else "covariance_matrix=S"
    p = {"loc": loc, "L": tril, "x": x} if form == "tril" else {"loc": loc, "S": cov, "x": x}
    lp = _one(f"log_prob(MultivariateNormal(loc, {arg}), x)", p, backend)
    p.pop("x")
    ent = _one(f"entropy(MultivariateNormal(loc, {arg}))", p, backend)
    kl = _one(f"KL(MultivariateNormal(loc, {arg}) || MultivariateNormal(0 * loc, {arg.replace('=L', '=2 * L')}))"
              if form == "tril" else f"KL(MultivariateNormal(loc, {arg}) || MultivariateNormal(0 * loc, {arg}))", p,
              backend)
    assert np.shape(lp.value) == batch
    assert np.shape(ent.value) == np.shape(kl.value) == np.broadcast_shapes(loc.shape[:-1], tril.shape[:-2])
    ls = np.broadcast_to(loc, batch + loc.shape[-1:])
    cs = np.broadcast_to(cov, batch + cov.shape[-2:])
    xs = np.broadcast_to(x, batch + x.shape[-1:])
    scale2 = 4.0 if form == "tril" else 1.0
    values = [np.asarray(r.value) for r in (lp, ent, kl)]
    for i in np.ndindex(*batch):  # row by row: scipy's density, entropy; the KL by hand
        law = stats.multivariate_normal(ls[i], cs[i])
        assert values[0][i] == pytest.approx(law.logpdf(xs[i]), rel=1e-9, abs=1e-9)
        j = i[len(batch) - values[1].ndim:]  # the parameters' batch index
        assert values[1][j] == pytest.approx(law.entropy(), rel=1e-9, abs=1e-9)
        assert values[2][j] == pytest.approx(_kl_by_hand(ls[i], cs[i], 0 * ls[i], scale2 * cs[i]), rel=1e-8, abs=1e-9)
    # d/dloc sum log N(x; loc, S) = sum over the broadcast rows of S^-1 (x - loc), reduced to loc's shape
    g = np.linalg.solve(cs, (xs - ls)[..., None])[..., 0]
    g = g.sum(axis=tuple(range(len(batch) - (loc.ndim - 1)))) if len(batch) > loc.ndim - 1 else g
    g = g.sum(axis=tuple(a for a in range(loc.ndim - 1) if loc.shape[a] == 1), keepdims=True) if loc.ndim > 1 else g
    np.testing.assert_allclose(lp.grad["loc"], g.reshape(loc.shape), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("form", ["tril", "cov"])
@pytest.mark.parametrize("loc_b, tril_b, x_b", [((3,), (), ()), ((), (4,), ()), ((3, 1), (4,), ()), ((), (), (5,)),
                                                 ((2,), (2,), (2,))])
def test_batched_multivariate_normal_row_by_row(backend, form, loc_b, tril_b, x_b):
    rng = np.random.default_rng(sum(loc_b) + 10 * sum(tril_b) + 100 * sum(x_b))
    d = 3
    _mvn_check(backend, rng.normal(size=loc_b + (d,)), _tril(rng, tril_b, d), rng.normal(size=x_b + (d,)), form)


@settings(max_examples=20)
@given(d=st.integers(1, 3), loc_b=st.lists(st.sampled_from([1, 2]), max_size=2),
       tril_b=st.lists(st.sampled_from([1, 2]), max_size=2), seed=st.integers(0, 2**16))
def test_batched_multivariate_normal_over_shapes(d, loc_b, tril_b, seed):
    rng = np.random.default_rng(seed)
    for backend in ("autograd", "torch"):
        _mvn_check(backend, rng.normal(size=tuple(loc_b) + (d,)), _tril(rng, tril_b, d), rng.normal(size=(d,)), "tril")


def test_batched_multivariate_normal_samples(backend):
    # E[z] = loc per row; E[sum (z - loc)^2] = tr(S) per row, within 6 standard errors
    rng = np.random.default_rng(0)
    loc, tril = rng.normal(size=(3, 1, 2)), _tril(rng, (4,), 2)
    r = sg.estimate("E[z, z ~ MultivariateNormal(loc, scale_tril=L)]", {"loc": loc, "L": tril}, n=20_000,
                    backend=backend, seed=6)
    assert r.value.shape == (3, 4, 2)
    assert_estimate(r, value=np.broadcast_to(loc, (3, 4, 2)))
    v = sg.estimate("E[sum((z - loc) ** 2, axis=-1), z ~ MultivariateNormal(loc, scale_tril=L)]", {"loc": loc, "L": tril},
                    n=20_000, backend=backend, seed=7)
    assert_estimate(v, value=np.broadcast_to(np.trace(tril @ np.swapaxes(tril, -1, -2), axis1=-2, axis2=-1), (3, 4)))


def test_a_scalar_loc_is_refused_by_name_everywhere(backend):
    for text in ("log_prob(MultivariateNormal(loc, scale_tril=L), x)", "entropy(MultivariateNormal(loc, scale_tril=L))"):
        with pytest.raises(sg.StochgradError, match="parameter 'loc' must have the d = 2 coordinates"):
            _one(text, {"loc": 0.5, "L": np.eye(2), "x": np.zeros(2)} if "x)" in text else {"loc": 0.5, "L": np.eye(2)},
                 backend)


# -- 3. fuse=True with gather (index) parameters -----------------------------------------------

def test_fused_objective_gathers_like_the_eager_one():
    torch = pytest.importorskip("torch")
    from stochgrad.backends.torch import cxx_compiler

    if cxx_compiler() is None:
        pytest.skip("torch.compile on the CPU needs a C++ compiler")
    # eight-schools-like: theta[school] gathered, a pathwise node; fused and eager from the same seed
    text = "E[sum((y - theta[school] - z) ** 2), z ~ Normal(mu, 1)]"
    fused, eager = (sg.compile(text, backend="torch", n=64, seed=2, fuse=f) for f in (True, False))
    y = torch.tensor([1.0, -0.5, 2.0, 0.3], dtype=torch.float64)
    for school in (np.array([0, 1, 1, 2]), np.array([0, 1, 1, 2]), np.array([2, 2, 0, 1])):
        out = []
        for f in (fused, eager):
            theta = torch.tensor([0.1, 0.4, -0.3], dtype=torch.float64, requires_grad=True)
            mu = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
            v = f(y=y, theta=theta, school=school, mu=mu)
            out.append((v.detach(), *torch.autograd.grad(v, [theta, mu])))
        for a, b in zip(*out):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        # the gradient by hand: d/dtheta_j = -2 sum_{i: school_i = j} E[y_i - theta_j - z] (E z = mu)
        want = -2 * np.bincount(school, weights=y.numpy() - np.array([0.1, 0.4, -0.3])[school] - 0.2, minlength=3)
        se = 2 * np.bincount(school, minlength=3) / 8  # 2 c_j (mean of 64 draws of z - mu), sd 1/8
        assert np.all(np.abs(out[0][1].numpy() - want) <= 6 * se)
    assert len(fused._fused) == 2  # one graph per set of indices (the repeated one reused)
    with pytest.raises(sg.StochgradError, match="index parameter 'school' has entry 5, out of range"):
        fused(y=y, theta=torch.zeros(3, dtype=torch.float64), school=np.array([0, 1, 5, 2]), mu=0.0)


# -- 5. StudentT || StudentT: Monte Carlo, and the plan says why ---------------------------------

def test_student_t_kl_is_monte_carlo_and_the_plan_says_why(backend):
    # the reference: numerical quadrature of p log(p / q) with scipy (no closed form is known)
    from scipy import integrate

    p, q = stats.t(3, 0.3, 1.0), stats.t(5, 0.0, 2.0)
    exact = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), -np.inf, np.inf)[0]
    r = sg.estimate("KL(StudentT(3, m, 1) || StudentT(5, 0, 2))", {"m": 0.3}, n=40_000, backend=backend, seed=8)
    assert_estimate(r, value=exact)
    assert "no closed form in elementary functions is known for two Student t laws" in str(r.plan)
    other = sg.estimate("KL(Gamma(2, 1) || Exponential(1))", {}, n=16, backend=backend, seed=0)
    assert other.plan.notes[0].endswith("(plan above; no closed form is registered for (Gamma, Exponential))")
