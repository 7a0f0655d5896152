"""Closed-form KL divergences ``KL(p || q) = E_p[log p(x) - log q(x)]``.

Each formula takes the backend and the two distributions' parameters (aligned
native arrays) and returns the divergence elementwise over the batch shape
(Categorical sums its event axis).  Pairs missing here are estimated by Monte
Carlo: the planner rewrites ``KL(p || q)`` as ``E[log p(x) - log q(x), x ~ p]``
and picks an estimator for ``x`` like for any other node.

Formulas (standard; e.g. Gil, Alajaji & Linder 2013 for exponential families):

* Normal/LogNormal: ``log(s2/s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2``
* Exponential: ``log(r1/r2) + r2/r1 - 1``
* Gamma (shape a, rate b): ``(a1 - a2) psi(a1) - lgamma(a1) + lgamma(a2) + a2 (log b1 - log b2) + a1 (b2 - b1) / b1``
* Poisson: ``r1 log(r1/r2) - r1 + r2``
* Bernoulli, in logits ``a`` (of p) and ``b`` (of q): ``sigmoid(a) (a - b) + softplus(b) - softplus(a)``
  (from ``p (log p - log q) + (1 - p)(log(1 - p) - log(1 - q))`` with ``log sigmoid(a) = a - softplus(a)``)
* Categorical: ``sum_k p_k (log p_k - log q_k)``
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .distributions import lookup

Array = Any
P = Mapping[str, Array]


def _normal(B: Any, p: P, q: P) -> Array:
    log, (m1, s1), (m2, s2) = B.fn["log"], (p["loc"], p["scale"]), (q["loc"], q["scale"])
    return log(s2) - log(s1) + (s1 * s1 + (m1 - m2) ** 2) / (2.0 * s2 * s2) - 0.5


def _exponential(B: Any, p: P, q: P) -> Array:
    r1, r2 = p["rate"], q["rate"]
    return B.fn["log"](r1) - B.fn["log"](r2) + r2 / r1 - 1.0


def _gamma(B: Any, p: P, q: P) -> Array:
    log, lg = B.fn["log"], B.fn["lgamma"]
    (a1, b1), (a2, b2) = (p["concentration"], p["rate"]), (q["concentration"], q["rate"])
    return (a1 - a2) * B.fn["digamma"](a1) - lg(a1) + lg(a2) + a2 * (log(b1) - log(b2)) + a1 * (b2 - b1) / b1


def _poisson(B: Any, p: P, q: P) -> Array:
    r1, r2 = p["rate"], q["rate"]
    return r1 * (B.fn["log"](r1) - B.fn["log"](r2)) - r1 + r2


def _bernoulli(B: Any, p: P, q: P) -> Array:
    d = lookup("Bernoulli")
    a, b = d.logits(B, p), d.logits(B, q)  # type: ignore[attr-defined]
    softplus = B.fn["softplus"]
    return B.fn["sigmoid"](a) * (a - b) + softplus(b) - softplus(a)


def _categorical(B: Any, p: P, q: P) -> Array:
    d = lookup("Categorical")
    lp, lq = d.log_softmax(B, p), d.log_softmax(B, q)  # type: ignore[attr-defined]
    terms = B.fn["exp"](lp) * (lp - lq)
    return B.sum(terms, (len(B.shape(terms)) - 1,))


KL_FORMULAS: dict[tuple[str, str], Callable[[Any, P, P], Array]] = {
    ("Normal", "Normal"): _normal,
    ("LogNormal", "LogNormal"): _normal,
    ("Exponential", "Exponential"): _exponential,
    ("Gamma", "Gamma"): _gamma,
    ("Poisson", "Poisson"): _poisson,
    ("Bernoulli", "Bernoulli"): _bernoulli,
    ("Categorical", "Categorical"): _categorical,
}
