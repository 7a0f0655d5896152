"""Zero mass in a Monte Carlo KL divergence: ``log p(x) - log q(x)`` is ``+inf`` where ``q(x) = 0``.

``KL(p || q) = E_p[log p(x) - log q(x)]`` is ``+inf`` as soon as ``p`` puts mass where ``q``
has none.  The planner settles, from the declared supports, the pairs for which that holds
whatever the parameters (:func:`stochgrad.supports.kl_verdict`); for the others, estimated by
Monte Carlo (the lowering's ``LogRatio``), the parameter values decide, sample by sample:

* **outside q's interval**: an end set by a parameter (``Uniform(0, h)``, ``Binomial(n, p)``'s
  ``n``) or a fixed end that ``p``'s parameters cross (``Uniform(a, b)`` against ``Exponential``
  with ``a < 0``).  There a density formula gives a finite wrong number (Uniform's
  ``-log(high - low)``) or NaN (``log x`` of a negative ``x``), so ``q`` is evaluated at a point
  inside its support instead (``x + [out] (c - x)``, which carries no derivative where out);
* **a point of zero mass inside it**: a probability of exactly 0 or 1 (``Bernoulli(0)`` at 1,
  ``Binomial(n, 0)`` above 0, ``Binomial(n, 1)`` below ``n``, ``Geometric(1)`` above 0, a
  ``Categorical`` category of probability 0), where the log is clipped at the dtype's smallest
  normal number and would give ``|log tiny|``-sized finite values (700 in float64).

Where ``q``'s mass is 0 and ``p``'s is not, the log-ratio is ``+inf`` exactly, added as
``-log(1 - [zero])`` of a gradient-free indicator (as :mod:`stochgrad.kl`'s closed forms do), so
the finite part keeps its derivative and no NaN enters the gradient.  Where ``p``'s own mass is 0
(a state of an enumerated ``p`` that has probability 0) the term is weighted by 0 and stays
finite: ``0 log 0 = 0``.  Densities on the whole real line (Normal, Laplace, ...) and Poisson
(positive mass at every count) never have zero mass at a sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import ir
from .distributions import lookup, static_params
from .kl import _infinite_where
from .types import Array

if TYPE_CHECKING:
    from .backend import Backend

P = Mapping[str, Array]

#: an interval end set by a parameter that the support does not name (``ends``), by distribution
_UNNAMED_ENDS = {"Binomial": (None, "total_count")}


def _interval(d: ir.Dist, p: P) -> tuple[Any, Any] | None:
    """``(low, high)`` of ``d``'s support on a scalar space (floats or native arrays; an infinite
    end as ``None``), or None when it has none to check (the real line, vectors, undeclared)."""
    law = lookup(d.name)
    s = law.support(static_params(d))
    if s is None or s.space not in ("real", "integer"):
        return None
    names = [a or b for a, b in zip(s.ends, _UNNAMED_ENDS.get(d.name, (None, None)))]
    ends = []
    for value, name in zip((s.low, s.high), names):
        if value is None:
            value = p.get(name) if name else None
            if value is None:
                return None  # set by a parameter this module cannot name: nothing to check
        ends.append(None if isinstance(value, float) and math.isinf(value) else value)
    return None if ends[0] is None and ends[1] is None else (ends[0], ends[1])


def _outside(B: Backend, interval: tuple[Any, Any], x: Array) -> Array:
    """1.0 where ``x`` is outside the closed interval, else 0.0."""
    low, high = interval
    out: Array = 0.0
    if low is not None:
        out = out + B.fn["lt"](x, B.stop_gradient(low) if not isinstance(low, float) else low)
    if high is not None:
        out = out + B.fn["gt"](x, B.stop_gradient(high) if not isinstance(high, float) else high)
    return out


def _inside_point(B: Backend, interval: tuple[Any, Any]) -> Array:
    """A point of the interval: its middle, or one unit in from its one finite end."""
    low, high = (v if v is None or isinstance(v, float) else B.stop_gradient(v) for v in interval)
    if low is not None and high is not None:
        return (low + high) * 0.5
    if low is not None:
        return low + 1.0
    assert high is not None, "an interval with no finite end has no inside point"
    return high - 1.0


def _zero_points(B: Backend, name: str, p: P, x: Array) -> Array | None:
    """1.0 where ``x`` (inside the support's interval) has probability exactly 0 under the built-in
    mass function ``name`` given by probabilities, else 0.0; None where none can be 0."""
    if "probs" not in p:
        return None  # logits give every value positive mass
    fn, q = B.fn, B.stop_gradient(p["probs"])
    if name == "Bernoulli":
        return x * fn["le"](q, 0.0) + (1.0 - x) * fn["ge"](q, 1.0)
    if name == "Binomial":
        n = B.stop_gradient(p["total_count"])
        return fn["gt"](x, 0.0) * fn["le"](q, 0.0) + fn["lt"](x, n) * fn["ge"](q, 1.0)
    if name == "Geometric":
        return fn["gt"](x, 0.0) * fn["ge"](q, 1.0)
    if name == "Categorical":
        y = x * fn["le"](q, 0.0)
        return B.sum(y, (len(B.shape(y)) - 1,))
    return None


def _zero(B: Backend, d: ir.Dist, p: P, x: Array, outside: Array | None) -> Array | None:
    """1.0 where ``d`` gives ``x`` no mass or density, else 0.0 (gradient-free), from the indicator
    ``outside`` of its interval (None: none to check); None if never."""
    clip = B.fn["clip"]
    parts = [clip(z, 0.0, 1.0) for z in (outside, _zero_points(B, d.name, p, x)) if z is not None]
    if not parts:
        return None
    return B.stop_gradient(parts[0] if len(parts) == 1 else clip(parts[0] + parts[1], 0.0, 1.0))


def log_ratio(B: Backend, p_dist: ir.Dist, p: P, q_dist: ir.Dist, q: P, x: Array) -> Array:
    """``log p(x) - log q(x)`` per sample, ``+inf`` exactly where ``q(x) = 0 < p(x)`` (see the module
    docstring); ``p`` and ``q`` are aligned native parameters, ``x`` samples (or states) of ``p``."""
    interval = _interval(q_dist, q)
    outside = None if interval is None else B.stop_gradient(_outside(B, interval, x))
    x_q = x if outside is None else x + outside * (_inside_point(B, interval) - x)  # type: ignore[arg-type]
    out = lookup(p_dist.name).log_prob(B, p, x) - lookup(q_dist.name).log_prob(B, q, x_q)
    zero_q = _zero(B, q_dist, q, x, outside)
    if zero_q is None:
        return out
    own = _interval(p_dist, p)
    zero_p = _zero(B, p_dist, p, x, None if own is None else _outside(B, own, x))
    if zero_p is not None:  # 0 log 0 = 0: a state p gives no mass is weighted by 0 and stays finite
        zero_q = zero_q * (1.0 - zero_p)
    return out + _infinite_where(B, zero_q)
