"""Continuous distributions with pathwise samplers.

Normal and LogNormal transform standard normal noise (``z = loc + scale*eps``).
All others are :class:`~stochgrad.distributions.InverseCDF` distributions: the
sampler is their inverse CDF applied to ``u ~ U(0, 1)``.  Exponential and
Weibull are exactly the reference text's reparameterizations
(``-log(u)/rate`` and ``scale*(-log u)**(1/k)``, using that ``1-u`` and ``u``
have the same law).  :class:`Kumaraswamy` has no hand-written sampler at all:
it is defined only by its inverse CDF and log density (Kumaraswamy 1980;
Nalisnick & Smyth 2017 use it as a reparameterizable Beta stand-in).

**Log densities from the base noise** (for the score function).  For a location-scale family the
log density depends on ``t = (z - loc) / scale``; computed from a float sample ``z`` at a scale far
below ``loc``, ``z - loc`` keeps only the few bits of ``z`` below ``loc``'s, and the score
``d log q / d loc`` is quantized (in float32, ``Normal(1, 1e-7)`` gets a 7% bias).  The sampler
knows ``t0``, the standard draw with ``z = loc + scale * t0``; with ``z = stop(loc + scale * t0)``,
``(z - loc) / scale`` as a function of ``(loc, scale)`` is *exactly*
``(t0 * stop(scale) + (stop(loc) - loc)) / scale`` -- value ``t0``, computed without the
cancellation, and every derivative that of ``(z - loc) / scale`` at fixed ``z``
(:func:`held_standard`).  So ``sample_and_log_prob`` gives ``log q`` the value and the derivatives
of ``log_prob(z)``, at every order.  Normal, Laplace, Logistic, Gumbel and Cauchy do this in ``t``;
LogNormal in ``log z``; Weibull in ``log z - log scale``.  Exponential (``log rate - rate * z``) and
Uniform (``-log(high - low)``) subtract no nearby numbers and keep the default.

**Quantized samples** (:func:`check_precision`).  The *sample* itself cannot be saved that way:
``z = loc + scale * t0`` rounds to ``loc`` for every ``|t0| < 1/2 ulp(loc) / scale``, and with
``scale < eps * |loc|`` (``eps`` of the backend's dtype; ``ulp(loc) <= eps * |loc|``) that is
every draw of moderate size, so ``f(z)`` is ``f(loc)`` and a score-function estimate
``E[f(z) d log q]`` built on it is meaningless (``Normal(1, 1e-8)`` in float32: 100+ standard
errors off).  The parameter checks warn (:class:`~stochgrad.errors.PrecisionWarning`) for the
location-scale families (LogNormal in log space); a pathwise gradient ``f'(z) dz`` stays right.
"""

from __future__ import annotations

import functools

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .distributions import (
    HALF_LOG_2PI,
    Distribution,
    InverseCDF,
    Param,
    positive,
    real,
    register_distribution,
)
from .errors import PrecisionWarning
from .types import Array

if TYPE_CHECKING:
    from .backend import Backend

P = Mapping[str, Array]
_TINY, _EPS = float(np.finfo(float).tiny), float(np.finfo(float).eps) / 2
EULER = 0.5772156649015329  # the Euler-Mascheroni constant, in the entropies below
_LOG_TINY, _LOG_HUGE = float(np.log(np.finfo(float).tiny)), float(np.log(np.finfo(float).max)) - 1e-9


def _exp_in_range(B: Backend, log_z: Array) -> Array:
    """``exp(log_z)`` for a positive sample, kept inside [tiny, max]: with extreme parameters an
    overflow to inf or underflow to 0 would make the log density and the gradients NaN."""
    return B.fn["exp"](B.fn["clip"](log_z, _LOG_TINY, _LOG_HUGE))


def held_standard(B: Backend, t0: Array, loc: Array, scale: Array) -> Array:
    """``(z - loc) / scale`` for the held sample ``z = stop(loc + scale * t0)``, as a function of
    ``(loc, scale)``: ``(t0 * stop(scale) + (stop(loc) - loc)) / scale``, whose value is ``t0`` (up to
    rounding) and whose derivatives are those of ``(z - loc) / scale`` at fixed ``z``, at every order."""
    stop = B.stop_gradient
    return (t0 * stop(scale) + (stop(loc) - loc)) / scale


class _LocScale(ABC):
    """``z = loc + scale * t0`` with ``t0`` a standard draw made from base noise of kind :attr:`noise`."""

    params: tuple[Param, ...] = (Param("loc", real, "location"), Param("scale", positive, "scale"))
    noise = "uniform"

    @abstractmethod
    def standard(self, B: Backend, e: Array) -> Array:
        """The standard draw ``t0`` (loc 0, scale 1) made from base noise ``e``."""

    @abstractmethod
    def standard_log_prob(self, B: Backend, t: Array, scale: Array) -> Array:
        """``log q(z)`` in terms of ``t = (z - loc) / scale``."""

    def icdf(self, B: Backend, p: P, u: Array) -> Array:
        return p["loc"] + p["scale"] * self.standard(B, u)

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        return self.standard_log_prob(B, (x - p["loc"]) / p["scale"], p["scale"])

    def sample_and_log_prob(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> tuple[Array, Array]:
        t0 = self.standard(B, draw(self.noise, shape))
        z = B.stop_gradient(p["loc"] + p["scale"] * t0)
        return z, self.standard_log_prob(B, held_standard(B, t0, p["loc"], p["scale"]), p["scale"])


def _normal_log_prob(B: Backend, t: Array, scale: Array) -> Array:
    return -0.5 * t * t - B.fn["log"](scale) - HALF_LOG_2PI


class Normal(_LocScale, Distribution):
    name = "Normal"
    doc = "Normal(loc, scale): scale is the standard deviation"
    noise = "normal"

    def rsample(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> Array:
        return p["loc"] + p["scale"] * draw("normal", shape)

    def standard(self, B: Backend, e: Array) -> Array:
        return e

    def standard_log_prob(self, B: Backend, t: Array, scale: Array) -> Array:
        return _normal_log_prob(B, t, scale)

    def entropy(self, B: Backend, p: P) -> Array:
        return B.fn["log"](p["scale"]) + (0.5 + HALF_LOG_2PI)  # log(2 pi e sigma^2) / 2


class LogNormal(Distribution):
    name = "LogNormal"
    params = _LocScale.params
    doc = "LogNormal(loc, scale): exp of a Normal(loc, scale)"

    def rsample(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> Array:
        return _exp_in_range(B, p["loc"] + p["scale"] * draw("normal", shape))

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        log_x = B.fn["log"](x)
        return _normal_log_prob(B, (log_x - p["loc"]) / p["scale"], p["scale"]) - log_x

    def sample_and_log_prob(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> tuple[Array, Array]:
        eps = draw("normal", shape)  # log z = loc + scale * eps (inside the float range)
        z = B.stop_gradient(_exp_in_range(B, p["loc"] + p["scale"] * eps))
        t = held_standard(B, eps, p["loc"], p["scale"])
        return z, _normal_log_prob(B, t, p["scale"]) - B.fn["log"](z)

    def entropy(self, B: Backend, p: P) -> Array:
        return p["loc"] + B.fn["log"](p["scale"]) + (0.5 + HALF_LOG_2PI)  # the Normal's, plus E[log z] = loc


class Exponential(InverseCDF):
    name = "Exponential"
    params = (Param("rate", positive, "rate (1 / mean)"),)
    doc = "Exponential(rate): density rate*exp(-rate*z) on z >= 0"

    def icdf(self, B: Backend, p: P, u: Array) -> Array:
        return -B.fn["log"](u) / p["rate"]

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        return B.fn["log"](p["rate"]) - p["rate"] * x

    def entropy(self, B: Backend, p: P) -> Array:
        return 1.0 - B.fn["log"](p["rate"])


class Weibull(InverseCDF):
    name = "Weibull"
    params = (Param("scale", positive, "scale lambda"), Param("concentration", positive, "shape k"))
    doc = "Weibull(scale, concentration): the reference text's Weibull(lambda, k)"

    def icdf(self, B: Backend, p: P, u: Array) -> Array:
        log = B.fn["log"]
        return _exp_in_range(B, log(p["scale"]) + log(-log(u)) / p["concentration"])

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        t = B.fn["log"](x) - B.fn["log"](p["scale"])  # in log space: (x / lam)**k overflows for extreme parameters
        return self._log_density(B, p, t)

    def sample_and_log_prob(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> tuple[Array, Array]:
        log, stop, lam, k = B.fn["log"], B.stop_gradient, p["scale"], p["concentration"]
        w = log(-log(draw("uniform", shape)))  # k * log(z / lam), from the noise
        z = stop(_exp_in_range(B, log(lam) + w / k))  # icdf
        # log z - log lam at fixed z, exactly: w / stop(k) + (log stop(lam) - log lam), valued w / k
        return z, self._log_density(B, p, w / stop(k) + (log(stop(lam)) - log(lam)))

    def entropy(self, B: Backend, p: P) -> Array:
        k = p["concentration"]  # gamma (1 - 1/k) + log(lambda / k) + 1
        return EULER * (1.0 - 1.0 / k) + B.fn["log"](p["scale"] / k) + 1.0

    @staticmethod
    def _log_density(B: Backend, p: P, t: Array) -> Array:
        """``log q`` in terms of ``t = log z - log scale``."""
        log, k = B.fn["log"], p["concentration"]
        return log(k) - log(p["scale"]) + (k - 1.0) * t - B.fn["exp"](k * t)


class Uniform(InverseCDF):
    name = "Uniform"
    params = (Param("low", real, "lower end"), Param("high", real, "upper end"))
    doc = "Uniform(low, high) with low < high"
    fixed_support = False

    def extra_check(self, values: Mapping[str, np.ndarray | float]) -> str | None:
        low, high = np.broadcast_arrays(values["low"], values["high"])
        bad = ~(low < high)
        if np.any(bad):
            return f"parameter 'high' must be > 'low', got low={float(low[bad].flat[0])!r}, high={float(high[bad].flat[0])!r}"
        return None

    def icdf(self, B: Backend, p: P, u: Array) -> Array:
        return p["low"] + (p["high"] - p["low"]) * u

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        return 0.0 * x - B.fn["log"](p["high"] - p["low"])

    def entropy(self, B: Backend, p: P) -> Array:
        return B.fn["log"](p["high"] - p["low"])


class Laplace(_LocScale, InverseCDF):
    name = "Laplace"
    doc = "Laplace(loc, scale): density exp(-|z-loc|/scale) / (2 scale)"

    def standard(self, B: Backend, u: Array) -> Array:
        c = u - 0.5
        return -(B.fn["sign"](c) * B.fn["log1p"](-2.0 * B.fn["abs"](c)))

    def standard_log_prob(self, B: Backend, t: Array, scale: Array) -> Array:
        return -B.fn["log"](2.0 * scale) - B.fn["abs"](t)

    def entropy(self, B: Backend, p: P) -> Array:
        return 1.0 + B.fn["log"](2.0 * p["scale"])


class Gumbel(_LocScale, InverseCDF):
    name = "Gumbel"
    doc = "Gumbel(loc, scale): the max-stable law used by the Gumbel-max trick"

    def standard(self, B: Backend, u: Array) -> Array:
        return -B.fn["log"](-B.fn["log"](u))

    def standard_log_prob(self, B: Backend, t: Array, scale: Array) -> Array:
        return -B.fn["log"](scale) - t - B.fn["exp"](-t)

    def entropy(self, B: Backend, p: P) -> Array:
        return B.fn["log"](p["scale"]) + (EULER + 1.0)


class Logistic(_LocScale, InverseCDF):
    name = "Logistic"
    doc = "Logistic(loc, scale): CDF sigmoid((z-loc)/scale)"

    def standard(self, B: Backend, u: Array) -> Array:
        return B.fn["log"](u) - B.fn["log1p"](-u)

    def standard_log_prob(self, B: Backend, t: Array, scale: Array) -> Array:
        return -t - B.fn["log"](scale) - 2.0 * B.fn["softplus"](-t)

    def entropy(self, B: Backend, p: P) -> Array:
        return B.fn["log"](p["scale"]) + 2.0


class Cauchy(_LocScale, InverseCDF):
    name = "Cauchy"
    doc = "Cauchy(loc, scale): heavy-tailed, no mean"

    def standard(self, B: Backend, u: Array) -> Array:
        return B.fn["tan"](math.pi * (u - 0.5))

    def standard_log_prob(self, B: Backend, t: Array, scale: Array) -> Array:
        return -math.log(math.pi) - B.fn["log"](scale) - B.fn["log1p"](t * t)

    def entropy(self, B: Backend, p: P) -> Array:
        return B.fn["log"](p["scale"]) + math.log(4.0 * math.pi)


class Kumaraswamy(InverseCDF):
    name = "Kumaraswamy"
    params = (Param("a", positive, "first shape"), Param("b", positive, "second shape"))
    doc = "Kumaraswamy(a, b) on (0, 1): density a*b*z**(a-1)*(1-z**a)**(b-1); sampled only through its inverse CDF"

    def icdf(self, B: Backend, p: P, u: Array) -> Array:
        # (1 - (1-u)**(1/b))**(1/a), written with log1p/expm1 so it stays accurate near 0 and 1
        log, exp = B.fn["log"], B.fn["exp"]
        z = exp(log(-B.fn["expm1"](B.fn["log1p"](-u) / p["b"])) / p["a"])
        # for small b the last step rounds to exactly 1.0, where log_prob is infinite: stay inside (0, 1)
        return B.fn["clip"](z, _TINY, 1.0 - _EPS)

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        log, a, b = B.fn["log"], p["a"], p["b"]
        log_x = log(x)
        # log(1 - x**a) as log(-expm1(a log x)): finite even where x**a rounds to 1
        return log(a) + log(b) + (a - 1.0) * log_x + (b - 1.0) * log(-B.fn["expm1"](a * log_x))

    def entropy(self, B: Backend, p: P) -> Array:
        """``(1 - 1/b) + (1 - 1/a) H_b - log(a b)`` with the harmonic number ``H_b = psi(b + 1) + gamma``
        (Michalowicz, Nichols & Bucholtz 2013, Handbook of Differential Entropy)."""
        a, b = p["a"], p["b"]
        return (1.0 - 1.0 / b) + (1.0 - 1.0 / a) * (B.fn["digamma"](b + 1.0) + EULER) - B.fn["log"](a * b)


#: machine epsilon by float type; an unknown type gets float16's, the largest
_EPSILONS = {name: float(np.finfo(name).eps) for name in ("float64", "float32", "float16")} | {"bfloat16": 2.0**-7}


@functools.lru_cache(maxsize=16)
def _epsilon(dtype: Any) -> tuple[str, float]:
    """The dtype's name and machine epsilon (float16's for a dtype not in the table)."""
    name = str(dtype).rsplit(".", 1)[-1]
    return name, _EPSILONS.get(name, _EPSILONS["float16"])


def check_precision(d: Distribution, values: Mapping[str, Any], dtype: Any, where: Any) -> None:
    """Warn (:class:`~stochgrad.errors.PrecisionWarning`) when a location-scale node's ``scale`` is
    below ``eps * |loc|`` in ``dtype`` for some entry (see the module docstring); ``values`` are the
    checked parameter values (floats or numpy arrays), ``where()`` names the node."""
    if not isinstance(d, (_LocScale, LogNormal)):
        return
    loc, scale = values["loc"], values["scale"]
    name, eps = _epsilon(dtype)
    if (type(loc) is not float or type(scale) is not float) and np.ndim(loc) == 0 and np.ndim(scale) == 0:
        loc, scale = float(loc), float(scale)  # the common case: two numbers, no arrays
    if type(loc) is float and type(scale) is float:
        if not scale < eps * abs(loc):
            return
        count, size = 1, 1
    else:
        try:
            loc, scale = np.broadcast_arrays(np.asarray(loc, dtype=float), np.asarray(scale, dtype=float))
        except ValueError:  # shapes that do not broadcast: the lowering names them, not this check
            return
        bad = scale < eps * np.abs(loc)
        if not bad.any():
            return
        count, size = int(bad.sum()), bad.size
        loc, scale = float(loc[bad].flat[0]), float(scale[bad].flat[0])
    space = " (in log space)" if isinstance(d, LogNormal) else ""
    fix = (
        "compute in float64 (backend option dtype='float64')"
        if eps > _EPSILONS["float64"]
        else "reparameterize so that the scale is not below the location's precision (a variable for z - loc)"
    )
    entries = f" in {count} of {size} entries, e.g." if size > 1 else ":"
    warnings.warn(
        f"{where()}: the scale is below one unit in the last place of the location{space} in {name}"
        f"{entries} scale={scale!r}, loc={loc!r} (eps={eps:.3g}): every sample rounds to the location,"
        " so the sampled values, and a score-function gradient built on them, cannot be trusted (a"
        f" pathwise gradient stays right); {fix} or use the pathwise estimator",
        PrecisionWarning,
        stacklevel=2,
    )


for _cls in (Normal, LogNormal, Exponential, Weibull, Uniform, Laplace, Gumbel, Logistic, Cauchy, Kumaraswamy):
    register_distribution(_cls())
