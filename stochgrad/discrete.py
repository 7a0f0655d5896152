"""Discrete distributions: Bernoulli, Categorical (one-hot), Poisson, Binomial, Geometric.

None has a pathwise sampler: a sample is piecewise constant in the parameters.
Bernoulli and Categorical are :class:`~stochgrad.distributions.Relaxable`: they hand their
logits (``relaxation``) and mean (``mean``) to the biased relaxed and straight-through
estimators, whose maths lives in :mod:`stochgrad.estimators.relaxed` and
:mod:`stochgrad.estimators.straight_through`.

Uniform noise is clamped inside (0, 1) by every backend, so Gumbel noise
``-log(-log u)`` is always finite.  Probabilities enter logs through a clamp at
the smallest normal number *of the backend's float type* (:func:`tiny`: float64's
is 0 in float32), so p = 0 or 1 gives finite log-probabilities in every dtype.

Exact enumeration weighs state ``k`` by :meth:`prob`, the probability itself as a
polynomial in the parameters rather than ``exp`` of a clipped log (whose gradient
vanishes where the clip holds): ``y p + (1 - y)(1 - p)`` for Bernoulli,
``sum_k y_k p_k / sum_k p_k`` or ``softmax(logits)`` for Categorical, and for Binomial

    C(n, k) p^k (1 - p)^(n - k) = [p if k >= 1 else 1] [1 - p if k < n else 1]
                                  * exp(log C(n, k) + (k - [k >= 1]) log p + (n - k - [k < n]) log(1 - p))

with ``0^0 = 1``: the one factor of ``p`` (of ``1 - p``) that carries the derivative at
``p = 0`` (``p = 1``) is kept out of the log, so the gradient is exact at the boundary,
and the log-space rest cannot overflow (it is at most about ``n``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .distributions import Constraint, Distribution, Param, Relaxable, Relaxation, real, register_distribution
from .supports import BINARY, COUNTS, ONE_HOT, Support
from .types import Array

if TYPE_CHECKING:
    from .backend import Backend

P = Mapping[str, Array]
#: smallest positive normal number by float type; an unknown type gets float16's, the largest
_TINIES = {name: float(np.finfo(name).tiny) for name in ("float64", "float32", "float16")}
_TINIES["bfloat16"] = 2.0**-126
#: the largest total_count a float holds exactly (every count below it is an integer float too)
MAX_COUNT = 2.0**53

unit_interval = Constraint("in [0, 1]", lambda x: (x >= 0) & (x <= 1), lambda x: 0.0 <= x <= 1.0)
count = Constraint(
    "a non-negative integer",
    lambda x: (x >= 0) & (np.floor(x) == x) & np.isfinite(x),
    lambda x: 0.0 <= x < math.inf and x.is_integer(),
)


def _on_simplex(x: np.ndarray) -> np.ndarray:
    if np.ndim(x) == 0:
        return np.zeros((), dtype=bool)
    return (x >= 0) & np.isfinite(x) & (np.abs(np.sum(x, axis=-1, keepdims=True) - 1.0) <= 1e-6)


simplex = Constraint("non-negative with a last axis summing to 1", _on_simplex)
vector = Constraint("finite, with a last axis of categories", lambda x: np.isfinite(x) & (np.ndim(x) > 0))


def tiny(B: Backend) -> float:
    """The smallest positive normal number of ``B``'s float type (its ``dtype``; float64 without
    one): a clip at float64's (2.2e-308) would be a clip at 0 in float32, and ``log`` -inf."""
    name = str(getattr(B, "dtype", "float64")).rsplit(".", 1)[-1]
    return _TINIES.get(name, _TINIES["float16"])


def _log(B: Backend, x: Array) -> Array:
    """``log`` of a probability, clipped below at :func:`tiny`; no clip above (a clip at 1 would
    stop the gradient of ``log(1 - p)`` at p = 0 on a backend whose clip has no slope at its ends)."""
    return B.fn["log"](B.fn["clip"](x, tiny(B), math.inf))


def minus_gumbel(B: Backend, draw: Any, shape: tuple[int, ...]) -> Array:
    """``-g`` for standard Gumbel noise ``g = -log(-log u)``: callers subtract it (one pass fewer)."""
    return B.fn["log"](-B.fn["log"](draw("uniform", shape)))


class _Discrete(Distribution):
    """Integer-valued samples, no pathwise sampler; the log-probability is finite for every sample
    and valid parameters (logits, or probabilities through a log clipped at the smallest normal
    number of the backend's dtype), so the score function needs no clip of it."""

    reparameterized, discrete, finite_log_prob = False, True, True


class Bernoulli(_Discrete, Relaxable):
    name = "Bernoulli"
    params = (Param("probs", unit_interval, "P(y = 1)"), Param("logits", real, "log-odds of y = 1"))
    parameterizations = (("probs",), ("logits",))
    doc = "Bernoulli(probs) or Bernoulli(logits=l): 1 with probability probs, else 0"

    def logits(self, B: Backend, p: P) -> Array:
        if "logits" in p:
            return p["logits"]
        return _log(B, p["probs"]) - _log(B, 1.0 - p["probs"])

    def constant_form(self, values: Mapping[str, float]) -> dict[str, float]:
        if "logits" in values or not 0.0 < values["probs"] < 1.0:
            return dict(values)  # probs 0 and 1 stay exact (their logits would be clipped, finite)
        return {"logits": math.log(values["probs"]) - math.log1p(-values["probs"])}

    def probs(self, B: Backend, p: P) -> Array:
        return p["probs"] if "probs" in p else B.fn["sigmoid"](p["logits"])

    def sample(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> Array:
        return B.fn["lt"](draw("uniform", shape), B.stop_gradient(self.probs(B, p)))

    def relaxation(self, B: Backend, p: P) -> Relaxation:
        return Relaxation(self.logits(B, p), "binary")

    def mean(self, B: Backend, p: P) -> Array:
        return self.probs(B, p)

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        if "logits" in p:
            return x * p["logits"] - B.fn["softplus"](p["logits"])
        return x * _log(B, p["probs"]) + (1.0 - x) * _log(B, 1.0 - p["probs"])

    def prob(self, B: Backend, p: P, x: Array) -> Array:
        if "logits" in p:
            return x * B.fn["sigmoid"](p["logits"]) + (1.0 - x) * B.fn["sigmoid"](-p["logits"])
        return x * p["probs"] + (1.0 - x) * (1.0 - p["probs"])

    def entropy(self, B: Backend, p: P) -> Array:
        if "logits" in p:  # -p log p - (1 - p) log(1 - p) = softplus(l) - sigmoid(l) l
            return B.fn["softplus"](p["logits"]) - B.fn["sigmoid"](p["logits"]) * p["logits"]
        q = p["probs"]  # 0 log 0 = 0: the clipped log is finite, times 0
        return -(q * _log(B, q) + (1.0 - q) * _log(B, 1.0 - q))

    def element_support(self, event: tuple[int, ...], static: Mapping[str, float | None]) -> np.ndarray:
        return np.array([0.0, 1.0])

    def support_size(self, event: tuple[int, ...], static: Mapping[str, float | None]) -> int:
        return 2

    def support(self, static: Mapping[str, float | None]) -> Support:
        return BINARY


class Categorical(_Discrete, Relaxable):
    name = "Categorical"
    params = (
        Param("probs", simplex, "category probabilities (last axis)"),
        Param("logits", vector, "unnormalized log-probabilities (last axis)"),
    )
    parameterizations = (("probs",), ("logits",))
    event_rank = 1
    doc = (
        "Categorical(probs=...) or Categorical(logits=...): one-hot samples over the last axis;"
        " probs are normalized over that axis, as in torch.distributions"
    )

    @staticmethod
    def log_weights(B: Backend, p: P) -> Array:
        """Log-probabilities up to a constant per event (the logits, or log probs): all that the
        Gumbel-max sample and the Gumbel-softmax need, since both are unchanged by a shift."""
        return p["logits"] if "logits" in p else _log(B, p["probs"])

    def log_softmax(self, B: Backend, p: P) -> Array:
        logits = self.log_weights(B, p)
        return B.log_softmax(logits, len(B.shape(logits)) - 1)

    def sample(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> Array:
        return B.one_hot_argmax(self.log_weights(B, p) - minus_gumbel(B, draw, shape))

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        y = x * self.log_softmax(B, p)
        return B.sum(y, (len(B.shape(y)) - 1,))

    def prob(self, B: Backend, p: P, x: Array) -> Array:
        last = len(B.shape(x)) - 1
        if "logits" in p:
            return B.sum(x * B.softmax(p["logits"], len(B.shape(p["logits"])) - 1), (last,))
        probs = p["probs"]
        return B.sum(x * probs, (last,)) / B.sum(probs, (len(B.shape(probs)) - 1,))

    def entropy(self, B: Backend, p: P) -> Array:
        lp = self.log_softmax(B, p)  # -sum_k p_k log p_k (a p_k = 0 term: exp of a clipped log, times it: 0)
        return -B.sum(B.fn["exp"](lp) * lp, (len(B.shape(lp)) - 1,))

    def element_support(self, event: tuple[int, ...], static: Mapping[str, float | None]) -> np.ndarray:
        return np.eye(event[-1])

    def support_size(self, event: tuple[int, ...], static: Mapping[str, float | None]) -> int:
        return event[-1]

    def support(self, static: Mapping[str, float | None]) -> Support:
        return ONE_HOT  # of as many categories as the last axis has (the caller knows the shape)

    def extra_check(self, values: Mapping[str, np.ndarray | float]) -> str | None:
        for name, v in values.items():
            if np.ndim(v) and np.shape(v)[-1] == 0:
                return f"parameter {name!r} has an empty last axis (shape {np.shape(v)}): a Categorical needs at least one category"
        return None

    def relaxation(self, B: Backend, p: P) -> Relaxation:
        return Relaxation(self.log_weights(B, p), "categorical")

    def mean(self, B: Backend, p: P) -> Array:
        logits = self.log_weights(B, p)
        return B.softmax(logits, len(B.shape(logits)) - 1)


#: the largest Poisson rate both backends' samplers draw from (numpy refuses rates near 2**63, torch
#: returns NaN above about 1e19)
MAX_POISSON_RATE = 1e18
sampleable_rate = Constraint(
    f"> 0 and at most {MAX_POISSON_RATE:g} (the samplers' range)",
    lambda x: (x > 0) & (x <= MAX_POISSON_RATE),
    lambda x: 0.0 < x <= MAX_POISSON_RATE,
)


class Poisson(_Discrete):
    name = "Poisson"
    params = (Param("rate", sampleable_rate, "mean count"),)
    doc = "Poisson(rate): counts 0, 1, 2, ... (infinite support: never enumerated)"

    def sample(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> Array:
        return draw("poisson", shape, p["rate"])

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        return x * B.fn["log"](p["rate"]) - p["rate"] - B.fn["lgamma"](x + 1.0)

    def support(self, static: Mapping[str, float | None]) -> Support:
        return COUNTS


class Binomial(_Discrete):
    name = "Binomial"
    params = (Param("total_count", count, "number of trials (not differentiable)"), Param("probs", unit_interval))
    doc = "Binomial(total_count, probs): successes in total_count trials; enumerable when total_count is a literal"

    def sample(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> Array:
        return draw("binomial", shape, B.stop_gradient(p["total_count"]), B.stop_gradient(p["probs"]))

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        n, lg = B.stop_gradient(p["total_count"]), B.fn["lgamma"]
        return (
            lg(n + 1.0) - lg(x + 1.0) - lg(n - x + 1.0) + x * _log(B, p["probs"]) + (n - x) * _log(B, 1.0 - p["probs"])
        )

    def prob(self, B: Backend, p: P, x: Array) -> Array:
        n, q, clip = B.stop_gradient(p["total_count"]), p["probs"], B.fn["clip"]
        hit, miss = clip(x, 0.0, 1.0), clip(n - x, 0.0, 1.0)  # [k >= 1], [k < n] for integer k
        lg = B.fn["lgamma"]
        rest = B.fn["exp"](
            lg(n + 1.0) - lg(x + 1.0) - lg(n - x + 1.0) + (x - hit) * _log(B, q) + (n - x - miss) * _log(B, 1.0 - q)
        )
        return (hit * q + (1.0 - hit)) * (miss * (1.0 - q) + (1.0 - miss)) * rest

    @staticmethod
    def _count(static: Mapping[str, float | None]) -> int | None:
        """The literal total_count as an int, if it is one a float holds exactly."""
        n = static.get("total_count")
        return int(n) if n is not None and 0 <= n <= MAX_COUNT and float(n).is_integer() else None

    def element_support(self, event: tuple[int, ...], static: Mapping[str, float | None]) -> np.ndarray | None:
        n = self._count(static)
        return None if n is None else np.arange(n + 1, dtype=float)

    def support_size(self, event: tuple[int, ...], static: Mapping[str, float | None]) -> int | None:
        n = self._count(static)
        return None if n is None else n + 1

    def support(self, static: Mapping[str, float | None]) -> Support:
        n = self._count(static)
        return Support("integer", 0.0, None if n is None else float(n))

    def extra_check(self, values: Mapping[str, np.ndarray | float]) -> str | None:
        n = np.asarray(values["total_count"])
        if np.any(n > MAX_COUNT):
            return (
                f"parameter 'total_count' must be at most 2**53 = {MAX_COUNT:.0f} (the largest count a float holds"
                f" exactly), got {float(n[n > MAX_COUNT].flat[0]) if n.ndim else float(n)!r}"
            )
        return None


class Geometric(_Discrete):
    name = "Geometric"
    params = (Param("probs", unit_interval, "success probability"),)
    doc = "Geometric(probs): failures before the first success, 0, 1, 2, ... (never enumerated)"

    def sample(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> Array:
        q = B.stop_gradient(B.fn["clip"](p["probs"], tiny(B), 1.0))
        with np.errstate(divide="ignore"):  # q = 1: log1p(-1) = -inf, and every draw is 0
            return B.fn["floor"](B.fn["log"](draw("uniform", shape)) / B.fn["log1p"](-q))

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        return x * _log(B, 1.0 - p["probs"]) + _log(B, p["probs"])

    def entropy(self, B: Backend, p: P) -> Array:
        q = p["probs"]  # (-(1 - q) log(1 - q) - q log q) / q
        return -((1.0 - q) * _log(B, 1.0 - q) + q * _log(B, q)) / q

    def extra_check(self, values: Mapping[str, np.ndarray | float]) -> str | None:
        return "parameter 'probs' must be > 0" if np.any(np.asarray(values["probs"]) <= 0) else None

    def support(self, static: Mapping[str, float | None]) -> Support:
        return COUNTS


for _cls in (Bernoulli, Categorical, Poisson, Binomial, Geometric):
    register_distribution(_cls())
