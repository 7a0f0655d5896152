"""Declared supports: the set a distribution's samples lie in, and what it says about KL.

A :class:`Support` is a *space* (what one sample is: a real number, an integer, a one-hot
vector over ``K`` categories, a point of the ``K``-simplex) and a closed interval
``[low, high]`` of it (for vectors, of each coordinate).  An end given as ``None`` is finite
but set by a parameter that is not a literal (Uniform's ``low``, Binomial's ``total_count``).

``KL(p || q) = E_p[log p(x) - log q(x)]`` compares two laws on one space:

* on different spaces (a density against a mass function, one-hot vectors of different
  lengths, integers against one-hot vectors) it is undefined: :func:`kl_verdict` raises;
* on one space it is finite only if ``p`` is absolutely continuous with respect to ``q``,
  which needs ``supp p`` inside ``supp q`` (for densities up to a null set, so open and
  closed ends are the same); where ``supp p`` reaches beyond ``supp q`` -- ``Normal`` against
  ``Exponential``, ``Poisson`` against ``Bernoulli`` -- ``p`` puts mass where ``log q = -inf``,
  and ``KL = +inf`` exactly, whatever the parameters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from .errors import PlanError

#: what one sample is: continuous scalars, integer scalars, one-hot vectors, probability vectors
SPACES = {
    "real": "a density on the reals",
    "integer": "a mass function on the integers",
    "one-hot": "a mass function on one-hot vectors",
    "simplex": "a density on the simplex",
    "real-vector": "a density on real vectors",
}


@dataclass(frozen=True)
class Support:
    """``[low, high]`` of ``space``; ``categories`` is the vector length of a one-hot or simplex
    space (None when unknown); an end that is None is finite but set by a parameter, the one
    ``ends`` names (if any): :meth:`given` puts in a literal value."""

    space: str
    low: float | None = -math.inf
    high: float | None = math.inf
    categories: int | None = None
    ends: tuple[str | None, str | None] = (None, None)

    def given(self, static: Mapping[str, float | None]) -> Support:
        """The support with the ends that literal parameters give filled in."""
        low, high = (static.get(name) if name else None for name in self.ends)
        if low is None and high is None:
            return self
        return replace(self, low=self.low if low is None else low, high=self.high if high is None else high)

    def __str__(self) -> str:
        if self.space == "real-vector":
            return f"real vectors of {'d' if self.categories is None else self.categories} coordinates"
        if self.space in ("one-hot", "simplex"):
            k = "K" if self.categories is None else str(self.categories)
            return f"{'one-hot vectors' if self.space == 'one-hot' else 'the simplex'} of {k} categories"
        lo = "a parameter" if self.low is None else _end(self.low)
        hi = "a parameter" if self.high is None else _end(self.high)
        if self.space == "integer":
            return {(0.0, 1.0): "{0, 1}", (0.0, math.inf): "the non-negative integers"}.get(
                (self.low, self.high),  # type: ignore[arg-type]
                f"integers from {lo} to {hi}",
            )
        return {
            (-math.inf, math.inf): "the real line",
            (0.0, math.inf): "the positive reals",
            (0.0, 1.0): "the unit interval",
        }.get((self.low, self.high), f"reals from {lo} to {hi}")  # type: ignore[arg-type]

    def with_categories(self, k: int | None) -> Support:
        return replace(self, categories=k)


def _end(x: float) -> str:
    return ("-inf" if x < 0 else "inf") if math.isinf(x) else f"{x:g}"


REAL = Support("real")
POSITIVE = Support("real", 0.0)
UNIT_INTERVAL = Support("real", 0.0, 1.0)
BINARY = Support("integer", 0.0, 1.0)
COUNTS = Support("integer", 0.0)
ONE_HOT = Support("one-hot", 0.0, 1.0)
SIMPLEX = Support("simplex", 0.0, 1.0)
#: vectors of d real coordinates (``categories`` holds d): the MultivariateNormal's
REAL_VECTOR = Support("real-vector")
#: Uniform(low, high): an interval of the real line set by its parameters
INTERVAL = Support("real", None, None, ends=("low", "high"))

#: the continuous built-ins (continuous.py, gammas.py), by name; a distribution that declares no
#: support (a user's, not listed here) gets None, and KL checks nothing for it
BUILTIN = {
    "Normal": REAL,
    "Laplace": REAL,
    "Gumbel": REAL,
    "Logistic": REAL,
    "Cauchy": REAL,
    "LogNormal": POSITIVE,
    "Exponential": POSITIVE,
    "Weibull": POSITIVE,
    "Gamma": POSITIVE,
    "Kumaraswamy": UNIT_INTERVAL,
    "Beta": UNIT_INTERVAL,
    "Uniform": INTERVAL,
    "Dirichlet": SIMPLEX,
    "MultivariateNormal": REAL_VECTOR,
}
#: heavytails.py, gammafamily.py, vonmises.py (a VonMises sample lies within pi of its loc: a parameter)
BUILTIN.update(
    {
        "StudentT": REAL,
        "HalfNormal": POSITIVE,
        "HalfCauchy": POSITIVE,
        "InverseGamma": POSITIVE,
        "Chi2": POSITIVE,
        "VonMises": Support("real", None, None),
    }
)


def within(p: Support, q: Support) -> bool | None:
    """Whether ``p``'s support lies inside ``q``'s (same space assumed); None when a parameter decides."""
    out: bool | None = True
    for a, b, inner in ((p.low, q.low, lambda a, b: a >= b), (p.high, q.high, lambda a, b: a <= b)):
        if b is not None and math.isinf(b):
            continue  # q unbounded on this side
        if a is not None and math.isinf(a):
            return False  # p unbounded where q is bounded (by a number or by a parameter)
        if a is None or b is None:
            out = None
        elif not inner(a, b):
            return False
    return out


def kl_verdict(p: Support | None, q: Support | None, names: tuple[str, str]) -> str:
    """``"infinite"`` when ``KL(p || q) = +inf`` for every parameter value, else ``"finite"`` (or
    decided by the parameters); raises :class:`~stochgrad.errors.PlanError` (a message naming both) when the two
    laws are on different spaces.  ``names`` are the two distributions as written."""
    if p is None or q is None:
        return "finite"
    if p.space != q.space or (p.categories is not None and q.categories is not None and p.categories != q.categories):
        raise PlanError(
            f"{names[0]} is {SPACES[p.space]} ({p}) and {names[1]} is {SPACES[q.space]} ({q}):"
            " the KL divergence between laws on different spaces is undefined"
        )
    return "infinite" if within(p, q) is False else "finite"
