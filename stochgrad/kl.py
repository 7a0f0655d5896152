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
* MultivariateNormal: ``1/2 (|L2^{-1} L1|_F^2 + |L2^{-1} (m2 - m1)|^2 - d) + log det L2 - log det L1``
  (:func:`stochgrad.mvn.kl_mvn`; the event axis reduced)

Supports (see :mod:`stochgrad.supports`) decide first, from the distributions alone, at plan
time: laws on different spaces (``KL(Normal || Bernoulli)``, Categoricals of different lengths)
are an error naming both; a pair whose ``supp p`` reaches outside ``supp q`` for every parameter
(``KL(Normal || Exponential)``, ``KL(Poisson || Bernoulli)``) is exactly ``+inf``.  Within a
mass function, given probabilities decide the rest: ``0 log 0 = 0`` (a ``p_k = 0`` term adds 0),
and ``q_k = 0 < p_k`` makes the divergence exactly ``+inf`` (not ``p_k log(1 / tiny)``, the
value of a clipped log), added as ``-log(1 - [q_k = 0 < p_k])`` of gradient-free indicators, so
the finite part keeps its gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from . import ir
from .distributions import lookup, static_params
from .errors import PlanError
from .mvn import kl_mvn
from .supports import kl_verdict
from .types import Array

if TYPE_CHECKING:
    from .backend import Backend

P = Mapping[str, Array]


def _log(B: Backend, x: Array | float) -> Array | float:
    return math.log(x) if isinstance(x, float) else B.fn["log"](x)


def _normal(B: Backend, p: P, q: P) -> Array:
    """``log(s2 / s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2``; a parameter may be a float (a
    constant, e.g. the prior ``Normal(0, 1)``), and operations on constants alone are done once, in
    Python, with the same IEEE results as on arrays."""
    (m1, s1), (m2, s2) = (p["loc"], p["scale"]), (q["loc"], q["scale"])
    a, b = _log(B, s2), _log(B, s1)
    head = -b if isinstance(a, float) and a == 0.0 and not isinstance(b, float) else a - b
    d = m1 if isinstance(m2, float) and m2 == 0.0 and not isinstance(m1, float) else m1 - m2
    return head + (s1 * s1 + d * d) / (2.0 * s2 * s2) - 0.5


#: closed forms that take constant parameters as Python floats (the others get arrays)
FLOAT_PARAMETERS = frozenset({("Normal", "Normal"), ("LogNormal", "LogNormal")})


def _exponential(B: Backend, p: P, q: P) -> Array:
    r1, r2 = p["rate"], q["rate"]
    return B.fn["log"](r1) - B.fn["log"](r2) + r2 / r1 - 1.0


def _gamma(B: Backend, p: P, q: P) -> Array:
    log, lg = B.fn["log"], B.fn["lgamma"]
    (a1, b1), (a2, b2) = (p["concentration"], p["rate"]), (q["concentration"], q["rate"])
    return (a1 - a2) * B.fn["digamma"](a1) - lg(a1) + lg(a2) + a2 * (log(b1) - log(b2)) + a1 * (b2 - b1) / b1


def _poisson(B: Backend, p: P, q: P) -> Array:
    r1, r2 = p["rate"], q["rate"]
    return r1 * (B.fn["log"](r1) - B.fn["log"](r2)) - r1 + r2


def _infinite_where(B: Backend, zero_mass: Array) -> Array:
    """``+inf`` where the gradient-free 0/1 indicator ``zero_mass`` is 1, else 0."""
    with np.errstate(divide="ignore"):  # log(0) = -inf is the point (numpy would warn)
        return -B.fn["log"](1.0 - B.stop_gradient(zero_mass))


def _bernoulli(B: Backend, p: P, q: P) -> Array:
    d = lookup("Bernoulli")
    a, b = d.logits(B, p), d.logits(B, q)  # type: ignore[attr-defined]
    softplus = B.fn["softplus"]
    out = B.fn["sigmoid"](a) * (a - b) + softplus(b) - softplus(a)
    if "probs" in q:  # q = 0 (or 1) where p gives y = 1 (or 0) mass: infinite
        q1, fn = B.stop_gradient(q["probs"]), B.fn
        if "probs" in p:
            p1 = B.stop_gradient(p["probs"])
            zero = fn["gt"](p1, 0.0) * fn["le"](q1, 0.0) + fn["lt"](p1, 1.0) * fn["ge"](q1, 1.0)
        else:  # logits: p gives both values mass
            zero = fn["le"](q1, 0.0) + fn["ge"](q1, 1.0)
        out = out + _infinite_where(B, fn["clip"](zero, 0.0, 1.0))
    return out


def _categorical(B: Backend, p: P, q: P) -> Array:
    d = lookup("Categorical")
    lp, lq = d.log_softmax(B, p), d.log_softmax(B, q)  # type: ignore[attr-defined]
    terms = B.fn["exp"](lp) * (lp - lq)  # a p_k = 0 term is 0 (exp of a log clipped at tiny) times finite
    last = (len(B.shape(terms)) - 1,)
    if "probs" in q:
        q_zero = B.fn["le"](B.stop_gradient(q["probs"]), 0.0)
        zero = q_zero * B.fn["gt"](B.stop_gradient(p["probs"]), 0.0) if "probs" in p else q_zero
        terms = terms + _infinite_where(B, zero)
    return B.sum(terms, last)


KL_FORMULAS: dict[tuple[str, str], Callable[[Any, P, P], Array]] = {
    ("Normal", "Normal"): _normal,
    ("LogNormal", "LogNormal"): _normal,
    ("Exponential", "Exponential"): _exponential,
    ("Gamma", "Gamma"): _gamma,
    ("Poisson", "Poisson"): _poisson,
    ("Bernoulli", "Bernoulli"): _bernoulli,
    ("Categorical", "Categorical"): _categorical,
    ("MultivariateNormal", "MultivariateNormal"): kl_mvn,
}


#: why a pair has no closed form, where that is a known fact rather than a gap (the plan says it)
NO_CLOSED_FORM = {
    ("StudentT", "StudentT"): "no closed form in elementary functions is known for two Student t laws in general",
}


def monte_carlo_reason(p: str, q: str) -> str:
    """The plan's reason for estimating ``KL(p || q)`` by Monte Carlo."""
    return NO_CLOSED_FORM.get((p, q), f"no closed form is registered for ({p}, {q})")


def verdict(e: ir.KL, p_shape: tuple[int, ...] | None = None, q_shape: tuple[int, ...] | None = None) -> str:
    """``"infinite"`` when ``KL(p || q)`` is ``+inf`` whatever the parameters, else ``"finite"``;
    a :class:`PlanError` naming both distributions when they are laws on different spaces.  The
    logical shapes, where known, give the number of categories of a one-hot or simplex law."""
    supports = []
    for dist, shape in ((e.p, p_shape), (e.q, q_shape)):
        d = lookup(dist.name)
        s = d.support(static_params(dist))
        if s is not None and d.event_rank and shape:
            s = s.with_categories(shape[-1])
        supports.append(s)
    try:
        return kl_verdict(supports[0], supports[1], (str(e.p), str(e.q)))
    except PlanError as exc:
        raise PlanError(f"{e}: {exc}", span=getattr(e, "span", None)) from None


def kl_value(B: Backend, e: ir.KL, p: P, q: P, verdicts: dict[Any, str] | None = None) -> Array:
    """``KL(p || q)`` of aligned native parameters: the closed form, or ``+inf`` (of the batch
    shape) for a pair :func:`verdict` finds infinite.  The parameters' own last axes are checked
    here too (the plan may not have known the shapes); ``verdicts`` keeps the verdict by the two
    logical shapes (a program's step passes its own, so a call decides nothing it decided before)."""

    def shape(x: Array | float) -> tuple[int, ...]:
        return () if isinstance(x, float) else B.shape(x)[1:]

    pv, qv = next(iter(p.values())), next(iter(q.values()))
    shapes = (shape(pv), shape(qv))
    known = None if verdicts is None else verdicts.get(shapes)
    if known is None:
        known = verdict(e, *shapes)
        if verdicts is not None:
            verdicts[shapes] = known
    if known == "finite":
        return KL_FORMULAS[(e.p.name, e.q.name)](B, p, q)
    zero: Array = 0.0
    for v in (*p.values(), *q.values()):  # the batch shape: every parameter broadcast together
        zero = zero + 0.0 * B.stop_gradient(v)
    rank = lookup(e.p.name).event_rank
    if rank:
        zero = B.sum(zero, tuple(range(len(B.shape(zero)) - rank, len(B.shape(zero)))))
    return zero + math.inf
