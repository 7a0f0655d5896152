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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from . import ir
from .distscope import active
from .errors import PlanError, StochgradError, did_you_mean
from .supports import BUILTIN as BUILTIN_SUPPORTS
from .supports import Support
from .types import Array
from .shapes import broadcast

if TYPE_CHECKING:
    from .backend import Backend

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
    #: trailing axes of the parameter that belong to one event (1 for a MultivariateNormal's ``loc``,
    #: 2 for its ``scale_tril``); parameters are aligned on the axes before them (their batch axes)
    event_rank: int = 0


def event_ranks(dist: Distribution, names: Sequence[str]) -> tuple[int, ...] | None:
    """The :attr:`Param.event_rank` of each parameter named, or None when all are 0 (elementwise)."""
    ranks = {p.name: p.event_rank for p in dist.params}
    out = tuple(ranks.get(n, 0) for n in names)
    return out if any(out) else None


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
    #: a :class:`Relaxable` (hooks for the relaxation and straight-through estimators)
    relaxable: bool = False
    doc: str = ""

    def forms(self) -> tuple[tuple[str, ...], ...]:
        return self.parameterizations or (tuple(p.name for p in self.params),)

    def value_shape(self, shapes: Mapping[str, tuple[int, ...]], where: ir.Expr | None = None) -> tuple[int, ...]:
        """The logical shape of one sample given the logical shapes of the parameters (by name, the
        given parameterization's).  This default is numpy broadcasting of them all (the batch shape,
        then any event axes the parameters carry: Categorical's, Dirichlet's last axis).  A
        distribution whose parameters have different event ranks (a MultivariateNormal's ``loc``
        and ``scale_tril``) or whose value has a shape of its own overrides it; a mismatch is a
        :class:`StochgradError` naming ``where``."""
        values = list(shapes.values())
        if len(set(values)) == 1:
            return values[0]
        return broadcast(values, where if where is not None else ir.Name(self.name))

    def element_support(self, event: tuple[int, ...], static: Mapping[str, float | None]) -> np.ndarray | None:
        """The finite support of one batch element, shape ``(k, *event)``; None if infinite or unknown.

        ``static`` holds parameters that are numeric literals in the expression (else None)."""
        return None

    def support_size(self, event: tuple[int, ...], static: Mapping[str, float | None]) -> int | None:
        """The number of values one batch element takes (None if infinite or unknown), computed
        without building them: this default counts :meth:`element_support`, so a distribution
        with a large support overrides it with arithmetic."""
        elem = self.element_support(event, static)
        return None if elem is None else len(elem)

    def support(self, static: Mapping[str, float | None]) -> Support | None:
        """The declared support (see :mod:`stochgrad.supports`); None when undeclared.  This
        default holds the continuous built-ins; ``static`` as in :meth:`element_support`."""
        declared = BUILTIN_SUPPORTS.get(self.name)
        return None if declared is None else declared.given(static)

    def prob(self, B: Backend, p: Mapping[str, Array], x: Array) -> Array:
        """The probability (mass) of ``x``, differentiable in ``p`` at every valid parameter (shape
        of :meth:`log_prob`).  Enumeration weights use it; a finite distribution overrides this
        default ``exp(log_prob)``, whose clipped logs lose the gradient where a mass is 0."""
        return B.fn["exp"](self.log_prob(B, p, x))

    def rsample(self, B: Backend, p: Mapping[str, Array], draw: Draw, shape: tuple[int, ...]) -> Array:
        """Pathwise sample of logical ``shape`` (differentiable in ``p``)."""
        raise StochgradError(f"{self.name} has no pathwise sampler")

    def sample(self, B: Backend, p: Mapping[str, Array], draw: Draw, shape: tuple[int, ...]) -> Array:
        """A sample with no gradient path (used by the score-function estimator)."""
        return B.stop_gradient(self.rsample(B, p, draw, shape))

    @abstractmethod
    def log_prob(self, B: Backend, p: Mapping[str, Array], x: Array) -> Array:
        """Log density of ``x`` (same shape as ``x``; no reduction over axes)."""

    def entropy(self, B: Backend, p: Mapping[str, Array]) -> Array | None:
        """The entropy ``H = -E[log p(x)]`` in closed form (differentiable in ``p``, elementwise over
        the batch shape, event axes reduced), or None when there is none: then ``entropy(D)`` is
        estimated by Monte Carlo, ``E[-log p(h)], h ~ D`` (:mod:`stochgrad.densities`).  A law that
        overrides this has a closed form in the plan's eyes; the result may have fewer axes than the
        batch shape (a formula in ``scale`` alone), the caller broadcasts it."""
        return None

    def sample_and_log_prob(
        self, B: Backend, p: Mapping[str, Array], draw: Draw, shape: tuple[int, ...]
    ) -> tuple[Array, Array]:
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

    def extra_check(self, values: Mapping[str, np.ndarray | float]) -> str | None:
        """A constraint that couples parameters; return a message when violated."""
        return None

    def validate(
        self,
        values: Mapping[str, np.ndarray | float],
        where: str | Callable[[], str],
        sources: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        """Raise a :class:`StochgradError` naming the parameter, constraint and offending value.

        ``where`` names the place; ``sources`` maps parameter names to the DSL text that gave them.
        Either may be a function giving it, called only to write an error."""
        for spec in self.params:
            v: Any = values.get(spec.name)  # an array, or a Python float tested without numpy
            if v is None:
                continue
            test = spec.constraint.scalar if type(v) is float else None
            ok: bool | np.ndarray
            if test is not None:
                ok = test(v)
            else:
                ok = spec.constraint.holds(v)  # a bool (numpy's or Python's) or an array of them
            if not (ok.all() if isinstance(ok, np.ndarray) else ok):
                bad = v[~ok].flat[0] if np.ndim(v) else v
                src = ((sources() if callable(sources) else sources) or {}).get(spec.name)
                given = f" (given as `{src}`)" if src and src != spec.name else ""
                raise StochgradError(
                    f"{where() if callable(where) else where}: parameter {spec.name!r}{given}"
                    f" must be {spec.constraint.text}, got {float(bad)!r}"
                )
        message = self.extra_check(values)
        if message:
            raise StochgradError(f"{where() if callable(where) else where}: {message}")

    def signature(self) -> str:
        return " or ".join(f"{self.name}({', '.join(form)})" for form in self.forms())


class Relaxation(NamedTuple):
    """What a relaxable distribution hands the relaxation estimators: its (unnormalized) logits and
    their kind, ``"binary"`` (one logit per element: Bernoulli) or ``"categorical"`` (a last axis of
    categories: Categorical)."""

    logits: Array
    kind: Literal["binary", "categorical"]


class Relaxable(Distribution):
    """A discrete distribution that the relaxed and straight-through estimators apply to, through
    two hooks; their maths lives in :mod:`stochgrad.estimators.relaxed` and
    :mod:`stochgrad.estimators.straight_through`, written once for every relaxable distribution."""

    relaxable = True

    @abstractmethod
    def relaxation(self, B: Backend, p: Mapping[str, Array]) -> Relaxation:
        """The logits the Gumbel-softmax / binary Concrete sample perturbs, and their kind."""

    @abstractmethod
    def mean(self, B: Backend, p: Mapping[str, Array]) -> Array:
        """``E[y]`` (probabilities; one-hot means), differentiable: straight-through's backward value."""


class InverseCDF(Distribution):
    """A distribution defined by ``icdf`` and ``log_prob``: pathwise sampling is derived."""

    @abstractmethod
    def icdf(self, B: Backend, p: Mapping[str, Array], u: Array) -> Array:
        """The inverse CDF ``F^{-1}_phi(u)``, differentiable in the parameters."""

    def rsample(self, B: Backend, p: Mapping[str, Array], draw: Draw, shape: tuple[int, ...]) -> Array:
        return self.icdf(B, p, draw("uniform", shape))


DISTRIBUTIONS: dict[str, Distribution] = {}


def register_distribution(dist: Distribution) -> Distribution:
    """Add a distribution to the DSL (text and embedded forms) under ``dist.name``.  A
    :class:`stochgrad.userdist.UserDistribution` may not take a built-in's name (see there).

    Args:
        dist: the distribution instance; its ``name`` becomes the DSL name.

    Returns:
        ``dist``, so that it can be used inline.

    Raises:
        StochgradError: the name is not an identifier, or a user distribution takes a built-in's name."""
    ir.check_name(dist.name)
    if getattr(dist, "user_defined", False):
        from .userdist import before_register

        before_register(dist, DISTRIBUTIONS.get(dist.name))
    DISTRIBUTIONS[dist.name] = dist
    return dist


def lookup(name: str) -> Distribution:
    """The distribution named ``name``: one scoped to the running call (``distributions=``,
    :mod:`stochgrad.distscope`) first, then the registered ones."""
    scope = active()
    if scope:
        found = scope.get(name)
        if found is not None:
            return found
    try:
        return DISTRIBUTIONS[name]
    except KeyError:
        raise StochgradError(f"unknown distribution {name!r}{did_you_mean(name, {**DISTRIBUTIONS, **scope})}") from None


def make_dist(name: str, args: tuple[ir.Expr, ...], kwargs: tuple[tuple[str, ir.Expr], ...]) -> ir.Dist:
    """Match arguments to one parameterization and build the canonical node.

    Positional arguments fill the first parameterization; keywords pick the one they name
    (``Bernoulli(p)`` or ``Bernoulli(logits=l)``), also after positional arguments that begin it
    (``MultivariateNormal(m, covariance_matrix=S)``)."""
    dist = lookup(name)
    forms = dist.forms()
    known = [p.name for p in dist.params]
    keys = [k for k, _ in kwargs]
    for key in keys:
        if key not in known:
            raise StochgradError(
                f"{name} has no parameter {key!r}{did_you_mean(key, known)}; it takes {dist.signature()}"
            )
        if keys.count(key) > 1:
            raise StochgradError(f"{name}: parameter {key!r} given twice")
    form: tuple[str, ...] | None
    if args:  # the first form, or the first whose names after the positional ones hold the keywords
        form = next((f for f in forms if keys and set(keys) <= set(f[len(args) :])), forms[0])
    else:
        form = next((f for f in forms if set(keys) <= set(f)), None)
        if form is None:
            raise StochgradError(
                f"{name}: parameters {', '.join(map(repr, keys))} do not go together; it takes {dist.signature()}"
            )
    if len(args) > len(form):
        raise StochgradError(f"{dist.signature()} takes {len(form)} arguments, got {len(args)}")
    given: dict[str, ir.Expr] = dict(zip(form, args))
    for key, value in kwargs:
        if key in given:
            raise StochgradError(f"{name}: parameter {key!r} given twice")
        if key not in form:
            raise StochgradError(
                f"{name}: parameters {', '.join(map(repr, list(given) + [key]))} do not go together; it takes {dist.signature()}"
            )
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
    support is infinite, unknown or larger than :data:`MAX_STATES` (known before any array is
    built).  Batch elements are independent, so the joint support is the product of the
    per-element supports."""
    n = joint_states(d, node, shape)
    if n is None or n > MAX_STATES:
        return None
    split = len(shape) - d.event_rank
    elem = d.element_support(shape[split:], static_params(node))
    assert elem is not None, f"{d.name}: a finite support_size needs an element_support"
    m = int(np.prod(shape[:split], dtype=np.int64))
    index = np.indices([len(elem)] * m).reshape(m, -1).T if m else np.zeros((1, 0), dtype=int)
    return elem[index].reshape((len(index),) + tuple(shape))


def joint_states(d: Distribution, node: ir.Dist, shape: tuple[int, ...] | None) -> int | None:
    """Size of the joint support (capped at 2**63), or None if infinite or unknown, from
    :meth:`Distribution.support_size`: arithmetic, nothing is allocated.  A support with no
    value at all (a Categorical over an empty axis) is a :class:`PlanError`."""
    if shape is None or not d.discrete:
        return None
    split = len(shape) - d.event_rank
    if split < 0:
        return None
    k = d.support_size(tuple(shape[split:]), static_params(node))
    if k is None:
        return None
    if k < 1:
        raise PlanError(
            f"{node}: a {d.name} of shape {tuple(shape)} has no values to take"
            f" (an empty last axis: it needs at least one category)"
        )
    m = int(np.prod(shape[:split], dtype=np.int64))
    return k**m if m * math.log2(max(k, 2)) < 63 else 1 << 63


def joint_prob(B: Backend, q: Array) -> Array:
    """``prod`` of ``q`` over its logical axes (all but the leading sample axis): the joint
    probability of independent elements, as a product of probabilities (not ``exp`` of a sum of
    clipped logs, whose gradient vanishes at a zero mass).  Pairs of columns are multiplied
    until one is left: about ``log2`` of the number of elements multiplications."""
    shape = B.shape(q)
    m = math.prod(shape[1:])
    x = B.reshape(q, (shape[0], m))
    rest: Array | None = None  # the odd columns left over at each halving
    while m > 1:
        if m % 2:
            rest = x[:, m - 1] if rest is None else rest * x[:, m - 1]
            m -= 1
        pairs = B.reshape(x[:, :m], (shape[0], m // 2, 2))
        x, m = pairs[:, :, 0] * pairs[:, :, 1], m // 2
    x = B.reshape(x, (shape[0],)) if m == 1 else x[:, 0] * 0.0 + 1.0
    return x if rest is None else x * rest


def static_params(node: ir.Dist) -> dict[str, float | None]:
    """The node's parameters that are numeric literals (the others None)."""
    return {k: (v.value if isinstance(v, ir.Num) else None) for k, v in node.params}
