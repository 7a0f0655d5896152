"""InverseGamma and Chi2: transforms of a standard gamma draw, pathwise by implicit reparameterization.

With ``g ~ Gamma(a, 1)`` differentiable in ``a`` (``Backend.implicit_gamma``, Figurnov et al. 2018; see
:mod:`stochgrad.gammas`, whose first-order limit these share):

* ``InverseGamma(concentration a, rate b) = b / g``: density ``b^a / Gamma(a) z^(-a-1) exp(-b/z)``,
  entropy ``a + log(b Gamma(a)) - (1 + a) psi(a)``;
* ``Chi2(df) = 2 g`` with ``a = df / 2`` (``Gamma(df/2, rate 1/2)``): density
  ``z^(df/2-1) exp(-z/2) / (2^(df/2) Gamma(df/2))``, entropy ``df/2 + log(2 Gamma(df/2)) + (1 - df/2) psi(df/2)``.

(Johnson, Kotz & Balakrishnan, *Continuous Univariate Distributions* vol. 1, ch. 17-18; the entropies
are ``-E[log p]`` with ``E[log g] = psi(a)``.)  ``b / g`` is formed as ``exp(log b - log g)`` kept inside
the float range: a gamma draw of a small concentration can be as small as the smallest float.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .continuous import _exp_in_range
from .distributions import Param, positive, register_distribution
from .gammas import _Implicit
from .types import Array

if TYPE_CHECKING:
    from .backend import Backend

P = Mapping[str, Array]


class InverseGamma(_Implicit):
    name = "InverseGamma"
    params = (Param("concentration", positive, "shape a"), Param("rate", positive, "rate b (the scale of 1/z)"))
    doc = "InverseGamma(concentration, rate): rate / Gamma(concentration, 1), density b^a z^(-a-1) exp(-b/z) / Gamma(a)"

    def rsample(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> Array:
        log = B.fn["log"]
        g = self.gamma(B, draw, shape, p["concentration"])
        return _exp_in_range(B, log(p["rate"]) - log(g))

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        a, b, log = p["concentration"], p["rate"], B.fn["log"]
        return a * log(b) - B.fn["lgamma"](a) - (a + 1.0) * log(x) - b / x

    def entropy(self, B: Backend, p: P) -> Array | None:
        a = p["concentration"]
        return a + B.fn["log"](p["rate"]) + B.fn["lgamma"](a) - (1.0 + a) * B.fn["digamma"](a)


class Chi2(_Implicit):
    name = "Chi2"
    params = (Param("df", positive, "degrees of freedom"),)
    doc = "Chi2(df): the chi-squared law, Gamma(df / 2, rate 1/2)"

    def rsample(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> Array:
        return 2.0 * self.gamma(B, draw, shape, 0.5 * p["df"])

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        a = 0.5 * p["df"]
        return (a - 1.0) * B.fn["log"](x) - 0.5 * x - a * math.log(2.0) - B.fn["lgamma"](a)

    def entropy(self, B: Backend, p: P) -> Array | None:
        a = 0.5 * p["df"]
        return a + math.log(2.0) + B.fn["lgamma"](a) + (1.0 - a) * B.fn["digamma"](a)


for _cls in (InverseGamma, Chi2):
    register_distribution(_cls())
