"""VonMises(loc, concentration): a law on the circle, pathwise by implicit reparameterization.

Density ``p(z) = exp(k cos(z - loc)) / (2 pi I0(k))`` (``k`` the concentration), computed as
``k (cos(z - loc) - 1) - log(2 pi i0e(k))`` with ``i0e(k) = exp(-k) I0(k)`` so that nothing overflows;
entropy ``log(2 pi I0(k)) - k A(k)``, ``A = I1 / I0 = i1e / i0e`` (Mardia & Jupp, *Directional
Statistics*, 2000, sec. 3.5.4).  Samples are ``z = loc + theta`` with ``theta`` in ``(-pi, pi)``: not
wrapped, so ``dz/dloc = 1`` and ``E[z] = loc``; the density is periodic.  That interval moves with
``loc``, so the distribution declares a moving support (the score function is flagged biased for it).

**Sampler** (Best & Fisher 1979, *Appl. Statist.* 28, 152-157): propose ``theta`` from a wrapped
Cauchy, ``cos theta = (1 + r cos(pi u1)) / (r + cos(pi u1))`` with ``r = (1 + rho^2) / (2 rho)``,
``rho = (tau - sqrt(2 tau)) / (2k)``, ``tau = 1 + sqrt(1 + 4 k^2)``; with ``c = k (r - cos theta)``,
accept when ``c (2 - c) > u2`` or ``log(c / u2) + 1 - c >= 0``; the sign comes from ``u3``.  Written
without cancellation (``rho = 2 k tau / ((q + 1)(tau + sqrt(2 tau)))``, ``q = sqrt(1 + 4 k^2)``;
``r - cos theta = (r^2 - 1) / (r + cos(pi u1))``, ``r^2 - 1 = (1 - rho^2)^2 / (4 rho^2)``,
``r + cos(pi u1) = (1 - rho)^2 / (2 rho) + 2 cos^2(pi u1 / 2)``).  The loop is vectorized: each pass
draws :data:`ROUNDS` proposals per sample at once (stochgrad's uniform noise, so seeds reproduce) and
keeps the first accepted.  Each proposal is accepted with probability at least 0.65 (Best & Fisher's
efficiency bound), so a sample with none accepted in a pass has probability below ``0.35^16 < 6e-8``;
such samples (counted exactly) get a further pass of fresh noise, up to :data:`MAX_PASSES`, after which
a :class:`~stochgrad.errors.StochgradError` is raised rather than a wrong value returned.

**Gradient** (implicit reparameterization, Figurnov et al. 2018): holding the CDF ``F(theta; k)``
fixed, ``dtheta/dk = -(dF/dk) / p(theta; k)``, attached with ``Backend.implicit_grad`` (first order;
a second derivative is refused by name, as for the gamma family).  ``dF/dk`` comes from

* ``k < 10.5``: the Fourier series ``F = 1/2 + theta / (2 pi) + (1/pi) sum_n (I_n(k) / I_0(k)) sin(n theta) / n``,
  nested as ``v_n = r_n (sin(n theta) / n + v_{n+1})`` with the Bessel ratios ``r_n = I_n / I_{n-1} =
  k / (2n + k r_{n+1})`` (backward recurrence from ``r_{N+1} = 0``, ``N = 30`` terms), differentiated
  in ``k`` along the recurrence: ``dr_n/dk = (2n - k^2 dr_{n+1}) / (2n + k r_{n+1})^2``;
* ``k >= 10.5``: Hill's normal approximation (G. W. Hill, ACM TOMS 3, 1977, Algorithm 518)
  ``F ~ Phi(xi)``, ``xi = s - s^3 / D^2``, ``s = sqrt(2/pi) sin(theta/2) / i0e(k)``,
  ``D = (24k - 2 s^2 - 16) / 3 - (s^4 + 7/4 s^2 + 167/2) / (24k - 53 - s^2)``, whose derivative
  ``phi(xi) dxi/dk`` is written out by the chain rule (``ds/dk = s (1 - A(k))``) and divided by the
  density in log space.

(The same split as TensorFlow Probability's ``von_mises_cdf``; both agree with scipy's CDF derivative
to ~1e-8 over the whole range, see tests/test_vonmises.py.)  Very large concentrations lose relative
precision in small angles through ``acos`` (about ``eps * k``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .distributions import HALF_LOG_2PI, Param, positive, real, register_distribution
from .errors import StochgradError
from .gammas import _Implicit
from .types import Array

if TYPE_CHECKING:
    from .backend import Backend

P = Mapping[str, Array]
#: proposals drawn per sample in one pass of the vectorized rejection sampler, and passes at most
ROUNDS, MAX_PASSES = 16, 8
#: terms of the CDF's Fourier series, and the concentration from which Hill's normal approximation is used
SERIES_TERMS, SERIES_BELOW = 30, 10.5
_LOG_2PI = math.log(2.0 * math.pi)


def _proposals(B: Backend, k: Array, draw: Any, shape: tuple[int, ...]) -> tuple[Array, Array]:
    """One pass: ``(theta, pending)`` of shape ``(count, *shape)``, ``theta`` the first accepted of
    :data:`ROUNDS` Best-Fisher proposals, ``pending`` 1.0 where none was accepted (``theta`` 0 there).
    ``k`` is gradient-free, of the samples' rank."""
    fn = B.fn
    ks = B.shape(k)
    k = B.reshape(fn["clip"](k, 1e-12, 1e300), (ks[0], 1, *ks[1:]))  # a rounds axis; k < 1e-12: uniform
    u1, u2, u3 = (draw("uniform", (ROUNDS, *shape)) for _ in range(3))
    q = fn["sqrt"](1.0 + 4.0 * k * k)
    tau = 1.0 + q
    rho = 2.0 * k * tau / ((q + 1.0) * (tau + fn["sqrt"](2.0 * tau)))
    half = fn["cos"](0.5 * math.pi * u1)
    r_plus_z = (1.0 - rho) * (1.0 - rho) / (2.0 * rho) + 2.0 * half * half  # r + cos(pi u1)
    r = (1.0 + rho * rho) / (2.0 * rho)
    f = (1.0 + r * (2.0 * half * half - 1.0)) / r_plus_z  # cos theta
    one_minus = 1.0 - rho * rho
    c = k * (one_minus * one_minus / (4.0 * rho * rho)) / r_plus_z  # k (r - f)
    accept = fn["clip"](fn["gt"](c * (2.0 - c), u2) + fn["ge"](fn["log"](c / u2) + 1.0 - c, 0.0), 0.0, 1.0)
    candidate = (2.0 * fn["ge"](u3, 0.5) - 1.0) * fn["acos"](fn["clip"](f, -1.0, 1.0))
    theta: Array = 0.0
    pending: Array = 1.0
    for i in range(ROUNDS):  # the first accepted round: a fixed number of array operations
        a = accept[:, i]
        theta = theta + (pending * a) * candidate[:, i]
        pending = pending * (1.0 - a)
    return theta, pending


def centred_sample(B: Backend, k: Array, draw: Any, shape: tuple[int, ...]) -> Array:
    """Gradient-free draws of ``theta = z - loc`` in ``(-pi, pi)``, shape ``(count, *shape)``."""
    theta, pending = _proposals(B, k, draw, shape)
    passes = 1
    while True:
        left = B.item(B.sum(pending, tuple(range(len(B.shape(pending))))))
        if left == 0:
            return theta
        if passes == MAX_PASSES:
            raise StochgradError(
                f"VonMises sampler: {int(left)} samples had no accepted proposal in"
                f" {ROUNDS * MAX_PASSES} rounds (the concentration is out of its working range)"
            )
        more, still = _proposals(B, k, draw, shape)
        theta, pending, passes = theta + pending * more, pending * still, passes + 1


def dtheta_dk(B: Backend, theta: Array, k: Array) -> Array:
    """``dtheta/dk = -(dF/dk) / p(theta; k)`` at fixed CDF (see the module docstring); gradient-free inputs."""
    fn = B.fn
    log_pdf_core = lambda kk: kk * (fn["cos"](theta) - 1.0) - _LOG_2PI - fn["log"](fn["i0e"](kk))  # noqa: E731
    # Fourier series for k < SERIES_BELOW (evaluated at k capped there, so both branches stay finite)
    ks = fn["clip"](k, 0.0, SERIES_BELOW)
    r: Array = 0.0
    dr: Array = 0.0
    v: Array = 0.0
    dv: Array = 0.0
    for n in range(SERIES_TERMS, 0, -1):
        den = 2.0 * n + ks * r
        r, dr = ks / den, (2.0 * n - ks * ks * dr) / (den * den)
        m = fn["sin"](n * theta) / n + v
        v, dv = r * m, dr * m + r * dv
    series = -(dv / math.pi) / fn["exp"](log_pdf_core(ks))
    # Hill's normal approximation for k >= SERIES_BELOW (evaluated at k at least that)
    kn = fn["clip"](k, SERIES_BELOW, 1e300)
    i0, i1 = fn["i0e"](kn), fn["i1e"](kn)
    s = math.sqrt(2.0 / math.pi) * fn["sin"](0.5 * theta) / i0
    ds = s * (1.0 - i1 / i0)
    s2 = s * s
    e = 24.0 * kn - 53.0 - s2
    de = 24.0 - 2.0 * s * ds
    num = s2 * s2 + 1.75 * s2 + 83.5
    dnum = (4.0 * s2 * s + 3.5 * s) * ds
    d = (24.0 * kn - 2.0 * s2 - 16.0) / 3.0 - num / e
    dd = (24.0 - 4.0 * s * ds) / 3.0 - (dnum * e - num * de) / (e * e)
    xi = s - s2 * s / (d * d)
    dxi = ds - 3.0 * s2 * ds / (d * d) + 2.0 * s2 * s * dd / (d * d * d)
    log_ratio = fn["clip"](-0.5 * xi * xi - HALF_LOG_2PI - log_pdf_core(kn), -745.0, 700.0)  # phi(xi) / p
    normal = -fn["exp"](log_ratio) * dxi
    low = fn["lt"](k, SERIES_BELOW)
    return low * series + (1.0 - low) * normal


class VonMises(_Implicit):
    name = "VonMises"
    params = (Param("loc", real, "mean direction"), Param("concentration", positive, "concentration kappa"))
    #: samples lie in (loc - pi, loc + pi), an interval that moves with loc: the score function misses its
    #: boundary terms for a cost that is not 2 pi-periodic (the plan flags it biased)
    fixed_support = False
    doc = (
        "VonMises(loc, concentration): density exp(k cos(z - loc)) / (2 pi I0(k)); samples loc + theta,"
        " theta in (-pi, pi)"
    )

    def rsample(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> Array:
        k = p["concentration"]
        theta = centred_sample(B, B.stop_gradient(k), draw, shape)
        slope = dtheta_dk(B, theta, B.stop_gradient(k))
        return p["loc"] + B.implicit_grad(k, theta, slope, self.refusal(draw))

    def sample(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> Array:
        return B.stop_gradient(p["loc"]) + centred_sample(B, B.stop_gradient(p["concentration"]), draw, shape)

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        k = p["concentration"]
        return k * (B.fn["cos"](x - p["loc"]) - 1.0) - _LOG_2PI - B.fn["log"](B.fn["i0e"](k))

    def entropy(self, B: Backend, p: P) -> Array | None:
        k = p["concentration"]
        i0 = B.fn["i0e"](k)
        return _LOG_2PI + B.fn["log"](i0) + k * (1.0 - B.fn["i1e"](k) / i0)


register_distribution(VonMises())
