"""Distribution protocol, parameter constraints and the distribution registry.

A distribution declares its parameters with constraints, a ``log_prob`` and,
when it has one, a *pathwise sampler* ``z = g_phi(eps)`` whose base noise
``eps`` does not depend on ``phi`` (Kingma & Welling 2014; the reference text's
"reparametrization trick").  :class:`InverseCDF` is the generic route: a
distribution given by a differentiable inverse CDF ``F^{-1}_phi`` gets the
pathwise sampler ``z = F^{-1}_phi(u)``, ``u ~ U(0, 1)``, for free, because
``P(F^{-1}(u) <= z) = P(u <= F(z)) = F(z)``.

All methods receive a backend ``B`` and parameters as native arrays with a
leading sample axis (see :mod:`stochgrad.backend`), so one definition serves
every framework.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import ir
from .errors import StochgradError, did_you_mean

Array = Any
Draw = Callable[[str, tuple[int, ...]], Array]  # draw(kind, logical shape) -> (count, *shape) noise


@dataclass(frozen=True)
class Constraint:
    """An elementwise condition on a parameter, checked on its numeric value."""

    text: str
    holds: Callable[[np.ndarray], np.ndarray]


real = Constraint("finite", np.isfinite)
positive = Constraint("> 0 and finite", lambda x: (x > 0) & np.isfinite(x))


@dataclass(frozen=True)
class Param:
    name: str
    constraint: Constraint = real
    doc: str = ""


class Distribution(ABC):
    """Base class.  Subclasses set :attr:`name`, :attr:`params` and implement the maths."""

    name: str = ""
    params: tuple[Param, ...] = ()
    #: has a pathwise sampler differentiable in its parameters
    reparameterized: bool = True
    #: the support does not move with the parameters (else the score function misses boundary terms)
    fixed_support: bool = True
    doc: str = ""

    def rsample(self, B: Any, p: Mapping[str, Array], draw: Draw, shape: tuple[int, ...]) -> Array:
        """Pathwise sample of logical ``shape`` (differentiable in ``p``)."""
        raise StochgradError(f"{self.name} has no pathwise sampler")

    def sample(self, B: Any, p: Mapping[str, Array], draw: Draw, shape: tuple[int, ...]) -> Array:
        """A sample with no gradient path (used by the score-function estimator)."""
        return B.stop_gradient(self.rsample(B, p, draw, shape))

    @abstractmethod
    def log_prob(self, B: Any, p: Mapping[str, Array], x: Array) -> Array:
        """Log density of ``x`` (same shape as ``x``; no reduction over axes)."""

    def extra_check(self, values: Mapping[str, np.ndarray]) -> str | None:
        """A constraint that couples parameters; return a message when violated."""
        return None

    def validate(self, values: Mapping[str, np.ndarray], where: str, sources: Mapping[str, str] | None = None) -> None:
        """Raise a :class:`StochgradError` naming the parameter, constraint and offending value.

        ``sources`` maps parameter names to the DSL text that gave them."""
        for spec in self.params:
            v = values[spec.name]
            ok = spec.constraint.holds(v)
            if not np.all(ok):
                bad = v[~ok].flat[0] if np.ndim(v) else v
                src = (sources or {}).get(spec.name)
                given = f" (given as `{src}`)" if src and src != spec.name else ""
                raise StochgradError(
                    f"{where}: parameter {spec.name!r}{given} must be {spec.constraint.text}, got {float(bad)!r}"
                )
        message = self.extra_check(values)
        if message:
            raise StochgradError(f"{where}: {message}")

    def signature(self) -> str:
        return f"{self.name}({', '.join(p.name for p in self.params)})"


class InverseCDF(Distribution):
    """A distribution defined by ``icdf`` and ``log_prob``: pathwise sampling is derived."""

    @abstractmethod
    def icdf(self, B: Any, p: Mapping[str, Array], u: Array) -> Array:
        """The inverse CDF ``F^{-1}_phi(u)``, differentiable in the parameters."""

    def rsample(self, B: Any, p: Mapping[str, Array], draw: Draw, shape: tuple[int, ...]) -> Array:
        return self.icdf(B, p, draw("uniform", shape))


DISTRIBUTIONS: dict[str, Distribution] = {}


def register_distribution(dist: Distribution) -> Distribution:
    """Add a distribution to the DSL (text and embedded forms) under ``dist.name``."""
    ir.check_name(dist.name)
    DISTRIBUTIONS[dist.name] = dist
    return dist


def lookup(name: str) -> Distribution:
    try:
        return DISTRIBUTIONS[name]
    except KeyError:
        raise StochgradError(f"unknown distribution {name!r}{did_you_mean(name, DISTRIBUTIONS)}") from None


def make_dist(name: str, args: tuple[ir.Expr, ...], kwargs: tuple[tuple[str, ir.Expr], ...]) -> ir.Dist:
    """Match positional and keyword arguments to the parameters; build the canonical node."""
    dist = lookup(name)
    names = [p.name for p in dist.params]
    if len(args) > len(names):
        raise StochgradError(f"{dist.signature()} takes {len(names)} arguments, got {len(args)}")
    given: dict[str, ir.Expr] = dict(zip(names, args))
    for key, value in kwargs:
        if key not in names:
            raise StochgradError(f"{name} has no parameter {key!r}{did_you_mean(key, names)}; it takes {dist.signature()}")
        if key in given:
            raise StochgradError(f"{name}: parameter {key!r} given twice")
        given[key] = value
    missing = [n for n in names if n not in given]
    if missing:
        raise StochgradError(f"{dist.signature()}: missing parameter {missing[0]!r}")
    return ir.Dist(name, tuple((n, given[n]) for n in names), positional=len(names))


HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
