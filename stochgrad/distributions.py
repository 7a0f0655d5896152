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
    #: the same test on one Python float, without numpy: the common case of a scalar parameter
    scalar: Callable[[float], bool] | None = None


real = Constraint("finite", np.isfinite, lambda x: -math.inf < x < math.inf)
positive = Constraint("> 0 and finite", lambda x: (x > 0) & np.isfinite(x), lambda x: 0.0 < x < math.inf)


@dataclass(frozen=True)
class Param:
    name: str
    constraint: Constraint = real
    doc: str = ""


class Distribution(ABC):
    """Base class.  Subclasses set :attr:`name`, :attr:`params` and implement the maths."""

    name: str = ""
    params: tuple[Param, ...] = ()
    #: alternative parameter sets, e.g. (("probs",), ("logits",)); default: all of ``params``
    parameterizations: tuple[tuple[str, ...], ...] = ()
    #: has a pathwise sampler differentiable in its parameters
    reparameterized: bool = True
    #: backend capabilities the pathwise sampler needs (see ``Backend.capabilities``)
    needs: frozenset[str] = frozenset()
    #: the support does not move with the parameters (else the score function misses boundary terms)
    fixed_support: bool = True
    #: integer-valued samples (a pathwise derivative through the value does not exist)
    discrete: bool = False
    #: ``log_prob`` is finite for every sample and valid parameters, so the score function need not
    #: clip it (a density can be infinite at the edge of its support: continuous ones keep the clip)
    finite_log_prob: bool = False
    #: number of trailing parameter axes that form one event (1 for Categorical, Dirichlet)
    event_rank: int = 0
    #: offers relaxed and straight-through samples
    relaxable: bool = False
    doc: str = ""

    def forms(self) -> tuple[tuple[str, ...], ...]:
        return self.parameterizations or (tuple(p.name for p in self.params),)

    def element_support(self, event: tuple[int, ...], static: Mapping[str, float | None]) -> np.ndarray | None:
        """The finite support of one batch element, shape ``(k, *event)``; None if infinite or unknown.

        ``static`` holds parameters that are numeric literals in the expression (else None)."""
        return None

    def relaxed(self, B: Any, p: Mapping[str, Array], draw: Draw, shape: tuple[int, ...], temperature: float) -> Array:
        raise StochgradError(f"{self.name} has no continuous relaxation")

    def straight_through(self, B: Any, p: Mapping[str, Array], draw: Draw, shape: tuple[int, ...]) -> Array:
        raise StochgradError(f"{self.name} has no straight-through estimator")

    def straight_through_gumbel(self, B: Any, p: Mapping[str, Array], draw: Draw, shape: tuple[int, ...],
                                temperature: float) -> Array:
        raise StochgradError(f"{self.name} has no straight-through Gumbel estimator")

    def rsample(self, B: Any, p: Mapping[str, Array], draw: Draw, shape: tuple[int, ...]) -> Array:
        """Pathwise sample of logical ``shape`` (differentiable in ``p``)."""
        raise StochgradError(f"{self.name} has no pathwise sampler")

    def sample(self, B: Any, p: Mapping[str, Array], draw: Draw, shape: tuple[int, ...]) -> Array:
        """A sample with no gradient path (used by the score-function estimator)."""
        return B.stop_gradient(self.rsample(B, p, draw, shape))

    @abstractmethod
    def log_prob(self, B: Any, p: Mapping[str, Array], x: Array) -> Array:
        """Log density of ``x`` (same shape as ``x``; no reduction over axes)."""

    def sample_and_log_prob(self, B: Any, p: Mapping[str, Array], draw: Draw,
                            shape: tuple[int, ...]) -> tuple[Array, Array]:
        """A :meth:`sample` ``z`` and ``log_prob(z)`` with ``z`` held fixed (for the score function).

        A sampler that knows its base noise may compute the log density from it, avoiding the
        cancellation in ``z - loc``; the value and the derivatives in ``p`` at every order must
        stay those of ``log_prob(z)``.  This default is exactly that: sample, then ``log_prob``."""
        z = self.sample(B, p, draw, shape)
        return z, self.log_prob(B, p, z)

    def constant_form(self, values: Mapping[str, float]) -> dict[str, float]:
        """Constant parameters (as given, already checked) in the form this distribution's
        formulas use most cheaply; the lowering converts them once rather than on every call."""
        return dict(values)

    def extra_check(self, values: Mapping[str, np.ndarray]) -> str | None:
        """A constraint that couples parameters; return a message when violated."""
        return None

    def validate(self, values: Mapping[str, np.ndarray], where: str | Callable[[], str],
                 sources: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None) -> None:
        """Raise a :class:`StochgradError` naming the parameter, constraint and offending value.

        ``where`` names the place; ``sources`` maps parameter names to the DSL text that gave them.
        Either may be a function giving it, called only to write an error."""
        for spec in self.params:
            v = values.get(spec.name)
            if v is None:
                continue
            test = spec.constraint.scalar if type(v) is float else None
            if test is not None:
                ok = test(v)
            else:
                ok = spec.constraint.holds(v)  # a bool (numpy's or Python's) or an array of them
            if not (ok.all() if isinstance(ok, np.ndarray) else ok):
                bad = v[~ok].flat[0] if np.ndim(v) else v
                src = ((sources() if callable(sources) else sources) or {}).get(spec.name)
                given = f" (given as `{src}`)" if src and src != spec.name else ""
                raise StochgradError(f"{where() if callable(where) else where}: parameter {spec.name!r}{given}"
                                     f" must be {spec.constraint.text}, got {float(bad)!r}")
        message = self.extra_check(values)
        if message:
            raise StochgradError(f"{where() if callable(where) else where}: {message}")

    def signature(self) -> str:
        return " or ".join(f"{self.name}({', '.join(form)})" for form in self.forms())


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
    """Match arguments to one parameterization and build the canonical node.

    Positional arguments fill the first parameterization; keywords pick the one they name
    (``Bernoulli(p)`` or ``Bernoulli(logits=l)``)."""
    dist = lookup(name)
    forms = dist.forms()
    known = [p.name for p in dist.params]
    keys = [k for k, _ in kwargs]
    for key in keys:
        if key not in known:
            raise StochgradError(f"{name} has no parameter {key!r}{did_you_mean(key, known)}; it takes {dist.signature()}")
        if keys.count(key) > 1:
            raise StochgradError(f"{name}: parameter {key!r} given twice")
    if args:
        form = forms[0]
    else:
        form = next((f for f in forms if set(keys) <= set(f)), None)
        if form is None:
            raise StochgradError(f"{name}: parameters {', '.join(map(repr, keys))} do not go together; it takes {dist.signature()}")
    if len(args) > len(form):
        raise StochgradError(f"{dist.signature()} takes {len(form)} arguments, got {len(args)}")
    given: dict[str, ir.Expr] = dict(zip(form, args))
    for key, value in kwargs:
        if key in given:
            raise StochgradError(f"{name}: parameter {key!r} given twice")
        if key not in form:
            raise StochgradError(f"{name}: parameters {', '.join(map(repr, list(given) + [key]))} do not go together; it takes {dist.signature()}")
        given[key] = value
    missing = [n for n in form if n not in given]
    if missing:
        raise StochgradError(f"{dist.signature()}: missing parameter {missing[0]!r}")
    positional = len(form) if form == forms[0] else 0
    return ir.Dist(name, tuple((n, given[n]) for n in form), positional=positional)


HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)

#: joint supports larger than this are never materialized
MAX_STATES = 1 << 20


def joint_support(d: Distribution, node: ir.Dist, shape: tuple[int, ...]) -> np.ndarray | None:
    """Every joint value of a node of logical ``shape``: array ``(K, *shape)``, or None if the
    support is infinite, unknown or larger than :data:`MAX_STATES`.  Batch elements are
    independent, so the joint support is the product of the per-element supports."""
    n = joint_states(d, node, shape)
    if n is None or n > MAX_STATES:
        return None
    split = len(shape) - d.event_rank
    elem = d.element_support(shape[split:], _static(node))
    m = int(np.prod(shape[:split], dtype=np.int64))
    index = np.indices((len(elem),) * m).reshape(m, -1).T if m else np.zeros((1, 0), dtype=int)
    return elem[index].reshape((len(index),) + tuple(shape))


def joint_states(d: Distribution, node: ir.Dist, shape: tuple[int, ...] | None) -> int | None:
    """Size of the joint support (capped at 2**63), or None if infinite or unknown."""
    if shape is None or not d.discrete:
        return None
    split = len(shape) - d.event_rank
    if split < 0:
        return None
    elem = d.element_support(shape[split:], _static(node))
    if elem is None:
        return None
    m = int(np.prod(shape[:split], dtype=np.int64))
    k = len(elem)
    return k**m if m * math.log2(max(k, 2)) < 63 else 1 << 63


def _static(node: ir.Dist) -> dict[str, float | None]:
    return {k: (v.value if isinstance(v, ir.Num) else None) for k, v in node.params}
