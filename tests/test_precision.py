"""Score-function log densities from the base noise (Distribution.sample_and_log_prob).

At a scale of a few units in the last place of ``loc``, a float sample ``z`` still resolves its
spread, but ``z - loc`` keeps only a few bits: the old score ``d log q / d loc`` was quantized and
biased (float32 ``Normal(1, 1e-7)``: 15 standard errors off).  The hook computes ``log q`` from the
standard draw instead, with the value and the derivatives of ``log_prob(z)`` at fixed ``z``.
"""


import autograd
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings, strategies as st

import stochgrad as sg
from stochgrad.testing import assert_within_stderr

# -- the hook's log q is log_prob(z): value, first and second derivatives (float64) ----------------

HOOKED = {  # family -> ordinary parameters
    "Normal": {"loc": 0.3, "scale": 1.7}, "LogNormal": {"loc": -0.4, "scale": 0.6},
    "Laplace": {"loc": 1.2, "scale": 0.8}, "Logistic": {"loc": -2.0, "scale": 1.3},
    "Gumbel": {"loc": 0.5, "scale": 2.2}, "Cauchy": {"loc": 3.0, "scale": 0.4},
    "Weibull": {"scale": 1.8, "concentration": 2.5},
    "Exponential": {"rate": 1.6}, "Uniform": {"low": -1.0, "high": 2.5},  # the default hook
}
N = 64


def _hook_and_log_prob(backend, family, values):
    """Per-sample log q from the hook and log_prob(z) of its sample, and their derivatives in each
    parameter up to the second (mixed ones included); each sample has its own copy of the
    parameters, so a gradient of the sum is the per-sample derivative."""
    d, B = sg.DISTRIBUTIONS[family], sg.get_backend(backend)
    names = list(values)
    gen = B.generator(11)

    def draw(kind, shape, *params):
        return B.noise(kind, gen, (N, *shape), *params)

    def both(*leaves):
        p = dict(zip(names, leaves))
        z, logq = d.sample_and_log_prob(B, p, draw, ())
        return logq, d.log_prob(B, p, B.stop_gradient(z))

    start = [np.full(N, v) for v in values.values()]
    out = {}
    if backend == "torch":
        leaves = [torch.tensor(v, requires_grad=True) for v in start]
        for which, f in enumerate(both(*leaves)):
            firsts = torch.autograd.grad(f.sum(), leaves, create_graph=True)
            seconds = [torch.autograd.grad(g.sum(), leaves, allow_unused=True, retain_graph=True) for g in firsts]
            out[which] = [f.detach().numpy()] + [g.detach().numpy() for g in firsts] + [
                np.zeros(N) if h is None else h.detach().numpy() for row in seconds for h in row]
        return out[0], out[1]
    for which in (0, 1):
        def f(*xs, which=which):
            return both(*xs)[which]
        egrad = _jax_egrad if backend == "jax" else autograd.elementwise_grad
        firsts = [egrad(f, i) for i in range(len(names))]
        out[which] = [np.asarray(f(*start))] + [np.asarray(g(*start)) for g in firsts] + [
            np.broadcast_to(egrad(g, j)(*start), (N,)) for g in firsts for j in range(len(names))]
    return out[0], out[1]


def _jax_egrad(fn, i):
    """autograd's elementwise_grad on jax: the gradient of the sum (each sample has its own leaf)."""
    import jax

    return jax.grad(lambda *xs: fn(*xs).sum(), argnums=i)


@pytest.mark.parametrize("family", sorted(HOOKED))
def test_hook_log_q_is_log_prob_of_its_sample_at_every_order(backend, family):
    hook, reference = _hook_and_log_prob(backend, family, HOOKED[family])
    for k, (a, b) in enumerate(zip(hook, reference)):
        assert np.all(np.isfinite(a)), (family, k)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, err_msg=f"{family}: entry {k}")


def test_hook_samples_are_the_pathwise_samples(backend):
    """The hook draws the same noise the sampler does: the same z for the same seed."""
    for family, values in HOOKED.items():
        text = f"E[z, z ~ {family}({', '.join(f'{k}={v}' for k, v in values.items())})]"
        a = sg.estimate(text, {}, n=256, backend=backend, seed=4, estimators={"z": "score"})
        b = sg.estimate(text, {}, n=256, backend=backend, seed=4, estimators={"z": "pathwise"})
        assert a.value == b.value, family


# -- tiny scale at large location: the score estimate stays unbiased ---------------------------------

# family -> (locations, mean of the standard draw t = (z - loc) / scale (of log z for LogNormal),
# scales in units of the last place of loc).  Cauchy has no mean (its hook is checked above).  Laplace
# from 3 units: below, the float sample's own rounding biases E[z] (its density has a kink, so the
# rounding does not average out), for every estimator alike.
LOCATION_SCALE = {
    "Normal": ((1.0, 8.0, 1000.0), 0.0, (1.0, 2.0)), "Logistic": ((1.0, 8.0, 1000.0), 0.0, (1.0, 2.0)),
    "Gumbel": ((1.0, 8.0, 1000.0), float(np.euler_gamma), (1.0, 2.0)),
    "Laplace": ((1.0, 8.0, 1000.0), 0.0, (3.0, 5.0)), "LogNormal": ((16.0, 64.0), 0.0, (1.0, 2.0)),
}
FAMILIES = sorted(LOCATION_SCALE) + ["Weibull"]


@settings(max_examples=30)
@given(family=st.sampled_from(FAMILIES), backend=st.sampled_from(["autograd", "torch"]),
       dtype=st.sampled_from(["float32", "float64"]), where=st.integers(0, 2), k=st.floats(0.0, 1.0))
def test_score_gradient_at_a_scale_of_a_few_ulps_of_loc(family, backend, dtype, where, k):
    """``E[(z - loc) / scale]`` (``log z`` for LogNormal) at a scale of ``k`` units in the last place of
    ``loc`` in the backend's dtype, so that ``z`` resolves its spread but ``z - loc`` keeps only a
    few bits: by hand, ``d/dloc = 1 / scale`` and ``d/dscale = E[t] / scale``.  For
    ``Weibull(lam, c)`` at ``lam = 1`` (``log z = G / c``, ``G`` Gumbel-min with ``E[G] = -gamma``) the
    cost ``c0 * log z`` has ``d/dlam = c0`` and ``d/dc = gamma c0 / c**2``, with ``1 / c`` a few units
    in the last place of 1.  The old score (``log_prob`` of the float sample) fails this, in float32
    by up to 20 standard errors."""
    n = 100_000
    ulps = 1.0 + k  # 1 to 2 units in the last place
    # numpy's float32 exp is off by up to 2 units near 0, so autograd's float32 Weibull sample
    # exp(log(-log u) / c) is itself biased at this spread (its mean, not only its gradient)
    assume(not (family == "Weibull" and backend == "autograd" and dtype == "float32"))
    if family == "Weibull":
        c = 1.0 / (ulps * float(np.spacing(np.array(1.0, dtype=dtype))))
        r = sg.estimate("E[c0 * log(z), z ~ Weibull(lam, c)]", {"lam": 1.0, "c": c, "c0": c}, n=n,
                        backend=backend, backend_options={"dtype": dtype}, seed=17, estimators={"z": "score"})
        exact = {"lam": c, "c": float(np.euler_gamma) / c}
    else:
        locs, mean, (lo, hi) = LOCATION_SCALE[family]
        loc = locs[where % len(locs)]
        scale = (lo + (hi - lo) * k) * float(np.spacing(np.array(loc, dtype=dtype)))
        x = "log(z)" if family == "LogNormal" else "z"
        r = sg.estimate(f"E[({x} - c) / w, z ~ {family}(m, s)]", {"m": loc, "s": scale, "c": loc, "w": scale},
                        n=n, backend=backend, backend_options={"dtype": dtype}, seed=17, estimators={"z": "score"})
        exact = {"m": 1.0 / scale, "s": mean / scale}
    for name, want in exact.items():
        assert_within_stderr(r.grad[name], want, r.stderr[name], alpha=1e-7, comparisons=2, name=f"{family} d/d{name}")


def test_float32_normal_at_a_scale_of_one_ulp(backend):
    """The issue's case at a scale the float32 sample still resolves: E[z**2] at mu = 1, s = 1e-7
    (d/dmu = 2 mu, d/ds = 2 s by hand); the old score was 15 standard errors off in d/dmu."""
    r = sg.estimate("E[z**2, z ~ Normal(mu, s)]", {"mu": 1.0, "s": 1e-7}, n=100_000, backend=backend,
                    backend_options={"dtype": "float32"}, seed=0, estimators={"z": "score"})
    assert_within_stderr([r.grad["mu"], r.grad["s"]], [2.0, 2e-7], [r.stderr["mu"], r.stderr["s"]], alpha=1e-7)
