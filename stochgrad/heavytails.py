"""StudentT, HalfNormal and HalfCauchy: pathwise samplers, log densities and entropies.

**StudentT(df, loc, scale)** is ``loc + scale * N / sqrt(G / df)`` with ``N ~ Normal(0, 1)`` and
``G ~ Chi2(df) = Gamma(df / 2, rate 1/2)``, i.e. ``G = 2 g`` with ``g`` a standard gamma draw of
concentration ``df / 2``; so ``z = loc + scale * N * sqrt(df / (2 g))``.  The draw ``g`` is
differentiable in ``df`` by implicit reparameterization (``Backend.implicit_gamma``; Figurnov et al.
2018, see :mod:`stochgrad.gammas`), so ``z`` is pathwise in all three parameters (to the first order in
``df``).  Density (e.g. Johnson, Kotz & Balakrishnan, *Continuous Univariate Distributions* vol. 2, ch. 28),
with ``t = (z - loc) / scale``::

    log p = lgamma((df+1)/2) - lgamma(df/2) - log(pi df)/2 - log scale - (df+1)/2 log(1 + t^2/df)
    H     = (df+1)/2 (psi((df+1)/2) - psi(df/2)) + log(sqrt(df) B(df/2, 1/2)) + log scale

**HalfNormal(scale)** is ``scale * |N|``: ``log p = log 2 - t^2/2 - log scale - log(2 pi)/2`` on
``z >= 0`` and ``H = log(pi e scale^2 / 2) / 2``.

**HalfCauchy(scale)** is the inverse CDF ``scale * tan(pi u / 2)``, ``u ~ U(0, 1)`` (the CDF is
``2/pi atan(z/scale)``): ``log p = log(2/pi) - log scale - log(1 + t^2)`` and ``H = log(2 pi scale)``
(the Cauchy's entropy ``log(4 pi scale)`` less ``log 2``: folding a symmetric law halves its support
and doubles its density).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .continuous import held_standard
from .distributions import HALF_LOG_2PI, Distribution, InverseCDF, Param, positive, real, register_distribution
from .gammas import _Implicit
from .types import Array

if TYPE_CHECKING:
    from .backend import Backend

P = Mapping[str, Array]
_LOG_2 = math.log(2.0)


class StudentT(_Implicit):
    name = "StudentT"
    params = (
        Param("df", positive, "degrees of freedom"),
        Param("loc", real, "location"),
        Param("scale", positive, "scale"),
    )
    doc = "StudentT(df, loc, scale): loc + scale * Normal(0, 1) / sqrt(Chi2(df) / df); pathwise in all three"

    def standard(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> Array:
        """``N * sqrt(df / (2 g))``, ``g ~ Gamma(df / 2, 1)``: a standard StudentT draw, pathwise in df."""
        df = p["df"]
        g = self.gamma(B, draw, shape, 0.5 * df)
        return draw("normal", shape) * B.fn["sqrt"](df / (2.0 * g))

    def rsample(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> Array:
        return p["loc"] + p["scale"] * self.standard(B, p, draw, shape)

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        return self._standard_log_prob(B, p, (x - p["loc"]) / p["scale"])

    def sample_and_log_prob(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> tuple[Array, Array]:
        # log q from the standard draw, without the cancellation in z - loc (see stochgrad.continuous)
        held = {k: B.stop_gradient(v) for k, v in p.items()}
        t0 = B.stop_gradient(self.standard(B, held, draw, shape))
        z = B.stop_gradient(p["loc"] + p["scale"] * t0)
        return z, self._standard_log_prob(B, p, held_standard(B, t0, p["loc"], p["scale"]))

    @staticmethod
    def _standard_log_prob(B: Backend, p: P, t: Array) -> Array:
        df, lg, log = p["df"], B.fn["lgamma"], B.fn["log"]
        half = 0.5 * (df + 1.0)
        return lg(half) - lg(0.5 * df) - 0.5 * log(math.pi * df) - log(p["scale"]) - half * B.fn["log1p"](t * t / df)

    def entropy(self, B: Backend, p: P) -> Array | None:
        df, lg, psi = p["df"], B.fn["lgamma"], B.fn["digamma"]
        half = 0.5 * (df + 1.0)
        log_beta = lg(0.5 * df) + 0.5 * math.log(math.pi) - lg(half)  # B(df/2, 1/2); Gamma(1/2) = sqrt(pi)
        return half * (psi(half) - psi(0.5 * df)) + 0.5 * B.fn["log"](df) + log_beta + B.fn["log"](p["scale"])


class HalfNormal(Distribution):
    name = "HalfNormal"
    params = (Param("scale", positive, "scale of the folded Normal(0, scale)"),)
    doc = "HalfNormal(scale): |Normal(0, scale)|, on z >= 0"

    def rsample(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> Array:
        return p["scale"] * B.fn["abs"](draw("normal", shape))

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        t = x / p["scale"]
        return _LOG_2 - 0.5 * t * t - B.fn["log"](p["scale"]) - HALF_LOG_2PI

    def entropy(self, B: Backend, p: P) -> Array | None:
        return 0.5 * math.log(0.5 * math.pi * math.e) + B.fn["log"](p["scale"])


class HalfCauchy(InverseCDF):
    name = "HalfCauchy"
    params = (Param("scale", positive, "scale of the folded Cauchy(0, scale)"),)
    doc = "HalfCauchy(scale): |Cauchy(0, scale)|, on z >= 0; heavy-tailed, no mean"

    def icdf(self, B: Backend, p: P, u: Array) -> Array:
        return p["scale"] * B.fn["tan"](0.5 * math.pi * u)

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        t = x / p["scale"]
        return math.log(2.0 / math.pi) - B.fn["log"](p["scale"]) - B.fn["log1p"](t * t)

    def entropy(self, B: Backend, p: P) -> Array | None:
        return math.log(2.0 * math.pi) + B.fn["log"](p["scale"])


for _cls in (StudentT, HalfNormal, HalfCauchy):
    register_distribution(_cls())
