"""Closed-form KL divergences for the laws of :mod:`stochgrad.heavytails`, :mod:`stochgrad.gammafamily`
and :mod:`stochgrad.vonmises`, added to :data:`stochgrad.kl.KL_FORMULAS`.

* HalfNormal: ``log(s2/s1) + s1^2 / (2 s2^2) - 1/2``.  Folding two symmetric laws about 0 doubles both
  densities on ``z >= 0``, so ``log p/q`` and hence the divergence are those of ``Normal(0, s1)`` against
  ``Normal(0, s2)``.
* HalfCauchy: the same argument and the Cauchy formula (Chyzak & Nielsen 2019) with both locations 0,
  ``log((s1 + s2)^2 / (4 s1 s2))``.
* InverseGamma (shape ``a``, rate ``b``): KL is invariant under the bijection ``z -> 1/z``, which maps
  ``InverseGamma(a, b)`` to ``Gamma(a, rate b)``, so it is the gamma formula of :mod:`stochgrad.kl`.
* Chi2: ``Chi2(df) = Gamma(df/2, rate 1/2)``: the gamma formula, also against a Gamma either way.
* VonMises (Mardia & Jupp 2000; e.g. Kitagawa & Rowley 2022):
  ``log(I0(k2) / I0(k1)) + A(k1) (k1 - k2 cos(m1 - m2))``, ``A = I1 / I0``, computed with ``i0e``/``i1e``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .kl import KL_FORMULAS, _gamma
from .types import Array

if TYPE_CHECKING:
    from .backend import Backend

P = Mapping[str, Array]


def _half_normal(B: Backend, p: P, q: P) -> Array:
    s1, s2 = p["scale"], q["scale"]
    return B.fn["log"](s2) - B.fn["log"](s1) + s1 * s1 / (2.0 * s2 * s2) - 0.5


def _half_cauchy(B: Backend, p: P, q: P) -> Array:
    s1, s2 = p["scale"], q["scale"]
    return 2.0 * B.fn["log"](s1 + s2) - B.fn["log"](s1) - B.fn["log"](s2) - math.log(4.0)


def _as_gamma(p: P) -> dict[str, Array]:
    """A Chi2's or a Gamma's parameters as a Gamma's."""
    return {"concentration": 0.5 * p["df"], "rate": 0.0 * p["df"] + 0.5} if "df" in p else dict(p)


def _gamma_like(B: Backend, p: P, q: P) -> Array:
    return _gamma(B, _as_gamma(p), _as_gamma(q))


def _von_mises(B: Backend, p: P, q: P) -> Array:
    (m1, k1), (m2, k2) = (p["loc"], p["concentration"]), (q["loc"], q["concentration"])
    i0e, log = B.fn["i0e"], B.fn["log"]
    i0_1 = i0e(k1)
    a1 = B.fn["i1e"](k1) / i0_1
    return log(i0e(k2)) + k2 - log(i0_1) - k1 + a1 * (k1 - k2 * B.fn["cos"](m1 - m2))


NEW_FORMULAS: dict[tuple[str, str], Callable[[Any, P, P], Array]] = {
    ("HalfNormal", "HalfNormal"): _half_normal,
    ("HalfCauchy", "HalfCauchy"): _half_cauchy,
    ("InverseGamma", "InverseGamma"): _gamma,
    ("Chi2", "Chi2"): _gamma_like,
    ("Chi2", "Gamma"): _gamma_like,
    ("Gamma", "Chi2"): _gamma_like,
    ("VonMises", "VonMises"): _von_mises,
}
KL_FORMULAS.update(NEW_FORMULAS)
