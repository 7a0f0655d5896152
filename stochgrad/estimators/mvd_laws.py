"""Measure-valued decompositions of the laws :mod:`.mvd` differentiates (Pflug 1989; Mohamed, Rosca,
Figurnov & Mnih 2020, "Monte Carlo gradient estimation in machine learning", JMLR, section 6 and
its table of weak-derivative triples (c, p+, p-); each triple below is also derived here by hand).

For a parameter ``theta`` of a density ``p``, ``d/dtheta p(x) = c_theta (p+(x) - p-(x))`` with ``p+``,
``p-`` densities, so ``d/dtheta E_p[f] = c_theta (E_p+[f] - E_p-[f])``.  Per law, with ``z ~ p`` the
node's own (gradient-free) sample, ``U, U'`` uniform on (0, 1), ``E' = -log U'`` a standard
exponential, and every draw elementwise:

* ``Normal(loc mu, scale sigma)``
  - ``mu``: ``c = 1 / (sigma sqrt(2 pi))``, ``x+- = mu +- sigma W`` with ``W = sqrt(-2 log U)``
    Rayleigh, density ``w exp(-w^2/2)`` on ``w > 0`` (the paper's Weibull(2, 1/2) in its form
    ``a b w^(a-1) exp(-b w^a)``, that is scale ``sqrt 2`` in numpy's); **coupled**: one ``W`` for both.
  - ``sigma``: ``c = 1 / sigma``, ``x+ = mu + sigma M`` with ``M`` double-sided Maxwell, density
    ``t^2 phi(t)`` (``|M| = sqrt(chi^2_3)`` from three normals, a fair sign), ``x- = mu + sigma M U'``;
    **coupled**: ``M U'`` is exactly N(0, 1) (mc_gradients' coupling), so ``p- = N(mu, sigma)``.
* ``Exponential(rate l)``: ``d/dl [l e^(-l x)] = (1/l) (Exp(l) - Gamma(2, l))``: ``c = 1 / l``,
  ``x+ = z``, ``x- = z + E' / l`` (**coupled** to the node's own sample: one extra point).
* ``Gamma(concentration a, rate b)`` -- rate: ``d/db p = (a / b) (Gamma(a, b) - Gamma(a + 1, b))``,
  ``c = a / b``, ``x+ = z``, ``x- = z + E' / b`` (coupled as above).  The concentration has no clean
  decomposition (its weak derivative splits at ``exp(psi(a)) / b`` into truncated laws with no closed
  constant): **refused by name** unless it is a constant of the expression.
* ``Poisson(rate l)``: ``d/dl p(k) = p(k - 1) - p(k)``: ``c = 1``, ``x+ = z + 1``, ``x- = z`` (coupled).
* ``Bernoulli(probs q)`` (or ``logits``: the chain rule through ``q = sigmoid(logits)``):
  ``d/dq p = delta_1 - delta_0``, ``c = 1``, ``x+ = 1``, ``x- = 0``; one of the two is ``z`` itself,
  so it is written ``c = 2 z - 1``, ``x+ = z``, ``x- = 1 - z`` (one extra point).
* ``Binomial(total_count n, probs q)``: ``d/dq E[f] = n (E[f(X + 1)] - E[f(X)])``, ``X ~ Bin(n - 1, q)``
  (the constant ``n`` is not differentiated).  **Coupled**: ``z = X + b`` with ``b ~ Bernoulli(q)``
  is the node's sample, so one of ``X + 1``, ``X`` is ``z``: ``c = n (2 b - 1)``, ``x+ = z``,
  ``x- = z + 1 - 2 b`` (one extra point; ``n = 0``: ``z = 0``, ``c = 0``).
* ``Geometric(probs q)`` (failures before the first success): ``d/dq p(k) = (1/q) (p(k) - k q^2 (1 - q)^(k-1))``,
  the second the law of ``1 + G + G'`` (two independent geometrics): ``c = 1 / q``, ``x+ = z``,
  ``x- = z + 1 + G'`` (coupled to ``z``: one extra point).

Each :class:`Part` gives, for one parameter, ``theta`` (with its gradient path), ``c`` (no gradient)
and the points ``x+`` and ``x-`` at the node's shape -- ``None`` where the point is ``z`` itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..types import Array

if TYPE_CHECKING:
    from ..backend import Backend
    from ..distributions import Distribution, Draw

P = Mapping[str, Array]


class Part(NamedTuple):
    """One parameter's decomposition at the drawn samples (module docstring)."""

    name: str
    theta: Array
    c: Array
    plus: Array | None  # None: the node's own sample z
    minus: Array | None


class Law(NamedTuple):
    """A law's decomposition: the parameters it differentiates (canonical names, each with its
    number of extra points per coordinate), the given parameter names that map to each, those it
    refuses (with why), and ``draw(B, d, p, draw, shape, live) -> (z, parts)``."""

    params: dict[str, int]
    given: dict[str, str]
    refused: dict[str, str]
    draw: Callable[..., tuple[Array, list[Part]]]


def _exponential(B: Backend, draw: Draw, shape: tuple[int, ...]) -> Array:
    return -B.fn["log"](draw("uniform", shape))


def _normal(
    B: Backend, d: Distribution, p: P, draw: Any, shape: tuple[int, ...], live: frozenset[str]
) -> tuple[Array, list[Part]]:
    stop = B.stop_gradient
    mu, sigma = p["loc"], p["scale"]
    z = stop(mu + sigma * draw("normal", shape))
    parts = []
    if "loc" in live:
        w = B.fn["sqrt"](-2.0 * B.fn["log"](draw("uniform", shape)))  # Rayleigh
        s, m = stop(sigma), stop(mu)
        parts.append(Part("loc", mu, 1.0 / (s * math.sqrt(2.0 * math.pi)), m + s * w, m - s * w))
    if "scale" in live:
        g = draw("normal", shape + (3,))
        radius = B.fn["sqrt"](B.sum(g * g, (len(shape) + 1,)))  # chi with 3 degrees of freedom
        sign = 2.0 * B.fn["lt"](draw("uniform", shape), 0.5) - 1.0
        maxwell = sign * radius
        s, m = stop(sigma), stop(mu)
        parts.append(Part("scale", sigma, 1.0 / s, m + s * maxwell, m + s * maxwell * draw("uniform", shape)))
    return z, parts


def _exp_law(
    B: Backend, d: Distribution, p: P, draw: Any, shape: tuple[int, ...], live: frozenset[str]
) -> tuple[Array, list[Part]]:
    rate = B.stop_gradient(p["rate"])
    z = _exponential(B, draw, shape) / rate
    parts = [Part("rate", p["rate"], 1.0 / rate, None, z + _exponential(B, draw, shape) / rate)] if live else []
    return z, parts


def _gamma(
    B: Backend, d: Distribution, p: P, draw: Any, shape: tuple[int, ...], live: frozenset[str]
) -> tuple[Array, list[Part]]:
    a, rate = B.stop_gradient(p["concentration"]), B.stop_gradient(p["rate"])
    z = draw("gamma", shape, a) / rate
    parts = [Part("rate", p["rate"], a / rate, None, z + _exponential(B, draw, shape) / rate)] if "rate" in live else []
    return z, parts


def _poisson(
    B: Backend, d: Distribution, p: P, draw: Any, shape: tuple[int, ...], live: frozenset[str]
) -> tuple[Array, list[Part]]:
    z = B.stop_gradient(draw("poisson", shape, B.stop_gradient(p["rate"])))
    return z, ([Part("rate", p["rate"], 1.0, z + 1.0, None)] if live else [])


def _bernoulli(
    B: Backend, d: Distribution, p: P, draw: Any, shape: tuple[int, ...], live: frozenset[str]
) -> tuple[Array, list[Part]]:
    q = d.probs(B, p)  # type: ignore[attr-defined]  # with logits: the chain rule through sigmoid
    z = B.fn["lt"](draw("uniform", shape), B.stop_gradient(q)) * 1.0
    return z, ([Part("probs", q, 2.0 * z - 1.0, None, 1.0 - z)] if live else [])


def _binomial(
    B: Backend, d: Distribution, p: P, draw: Any, shape: tuple[int, ...], live: frozenset[str]
) -> tuple[Array, list[Part]]:
    stop = B.stop_gradient
    n, q = stop(p["total_count"]), p["probs"]
    some = B.fn["clip"](n, 0.0, 1.0)  # [n >= 1]: with no trials z = 0 and the gradient is 0
    rest = draw("binomial", shape, B.fn["clip"](n - 1.0, 0.0, math.inf), stop(q))  # X ~ Bin(n - 1, q)
    b = B.fn["lt"](draw("uniform", shape), stop(q)) * some
    z = stop(rest + b)
    return z, ([Part("probs", q, n * (2.0 * b - 1.0) * some, None, z + some * (1.0 - 2.0 * b))] if live else [])


def _geometric(
    B: Backend, d: Distribution, p: P, draw: Any, shape: tuple[int, ...], live: frozenset[str]
) -> tuple[Array, list[Part]]:
    z = B.stop_gradient(d.sample(B, p, draw, shape))
    if not live:
        return z, []
    q = B.stop_gradient(B.fn["clip"](p["probs"], float(np.finfo(float).tiny), 1.0))
    return z, [Part("probs", p["probs"], 1.0 / q, None, z + 1.0 + B.stop_gradient(d.sample(B, p, draw, shape)))]


_GAMMA_SHAPE = "its weak derivative splits at exp(digamma(a)) / rate into truncated laws without a closed constant"
LAWS: dict[str, Law] = {
    "Normal": Law({"loc": 2, "scale": 2}, {"loc": "loc", "scale": "scale"}, {}, _normal),
    "Exponential": Law({"rate": 1}, {"rate": "rate"}, {}, _exp_law),
    "Gamma": Law({"rate": 1}, {"rate": "rate"}, {"concentration": _GAMMA_SHAPE}, _gamma),
    "Poisson": Law({"rate": 1}, {"rate": "rate"}, {}, _poisson),
    "Bernoulli": Law({"probs": 1}, {"probs": "probs", "logits": "probs"}, {}, _bernoulli),
    "Binomial": Law({"probs": 1}, {"probs": "probs"}, {}, _binomial),
    "Geometric": Law({"probs": 1}, {"probs": "probs"}, {}, _geometric),
}


def listing() -> str:
    """The laws and parameters that have a decomposition, for error messages."""
    return ", ".join(f"{name} ({', '.join(law.given)})" for name, law in LAWS.items())


def points(law: Law, live: frozenset[str]) -> int:
    """Extra cost evaluations per coordinate for the ``live`` canonical parameters."""
    return sum(k for name, k in law.params.items() if name in live)


def live_params(
    law: Law, given: Mapping[str, Any], constant: Callable[[Any], bool]
) -> tuple[frozenset[str], list[str]]:
    """The canonical parameters to differentiate (given ones that are not constants), and the given
    names of the refused parameters that are not constants."""
    live, refused = set(), []
    for key, expr in given.items():
        if constant(expr):
            continue
        if key in law.refused:
            refused.append(key)
        elif key in law.given:
            live.add(law.given[key])
    return frozenset(live), refused
