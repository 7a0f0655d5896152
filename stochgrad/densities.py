"""Models in the DSL: ``log_prob(D, x)``, ``entropy(D)`` and K independent copies ``iid(K, D)``.

* ``log_prob(D(args), x)`` is ``log p_D(x)``, the log density (mass) of ``x`` under ``D``, shaped
  like the broadcast batch shape of ``D`` and ``x`` (an event axis, Categorical's or Dirichlet's, is
  reduced).  It is ordinary differentiable dependence on ``D``'s parameters and, for a continuous
  law, on ``x``; a discrete law's mass is piecewise constant in ``x``, so a use of a random variable
  as the ``x`` of a discrete law breaks its pathwise derivative (:mod:`stochgrad.analysis`).  So an
  ELBO is one expression, ``E[log p(x, z) - log q(z), z ~ q]``, its last term depending on ``q``'s
  parameters directly as in Pyro's ``Trace_ELBO`` (Ranganath et al. 2014, "Black box variational
  inference"; Roeder et al. 2017 on the extra, zero-mean, score term of ``log q``).  Outside the
  support (``x < 0`` under an Exponential, a non-integer count, a zero-mass point) it is ``-inf``
  exactly: the density is evaluated at a point inside the support and
  ``log(1 - [outside])`` of a gradient-free indicator is added (see :mod:`stochgrad.zeromass`).
* ``entropy(D(args))`` is ``H[D] = -E_D[log p_D(x)]`` elementwise over the batch shape: in closed
  form where the law implements :meth:`~stochgrad.distributions.Distribution.entropy`, else by
  Monte Carlo: the planner rewrites it as ``E[-log_prob(D, h), h ~ D]`` and picks an estimator for
  ``h`` like for any node (as ``KL(p || q)`` falls back to ``E_p[log p - log q]``); the plan says which.
* ``z ~ iid(K, D(args))`` draws ``K`` independent copies of ``D`` stacked on a new first logical
  axis: ``z`` has shape ``(K, *shape of D)`` and ``log q(z) = sum_k log q(z_k)``, so score terms,
  pathwise draws (per copy) and enumeration (of the joint ``K``-fold support) need nothing more.
  The importance weighted bound (Burda, Grosse & Salakhutdinov 2016, "Importance weighted
  autoencoders") is ``E[log(mean(exp(log_prob(P, z) - log_prob(Q, z)), axis=0)), z ~ iid(K, Q)]``;
  nested Monte Carlo is ``mean(g(x), axis=0)`` with ``x ~ iid(m, D)``.  ``K`` is a positive integer
  literal.  ``log_prob(iid(K, D), x)`` and ``entropy(iid(K, D))`` read ``iid(K, D)`` as a law of
  batch shape ``(K, *batch shape of D)`` (as ``D.expand((K,))`` in Pyro / torch): the copies axis is
  kept, each copy's own density (entropy), so ``x`` of shape ``(K, ...)`` gives ``(K, ...)``, an ``x``
  without the copies axis is broadcast over it, and ``sum(log_prob(iid(K, D), z), axis=0)`` is the
  joint ``log q(z)`` of the ``K`` copies.

:class:`Iid` is a :class:`~stochgrad.ir.Dist` (the base law's name and parameters) with a ``count``,
so everything that reads a binding's law (its estimator rules, checks, supports) reads ``D``'s.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import ir, zeromass
from .distributions import Distribution, lookup, static_params
from .errors import StochgradError
from .kl import _infinite_where
from .types import Array

if TYPE_CHECKING:
    from .backend import Backend

#: the calls whose first argument is a distribution (parsed as one: ``log_prob(Normal(0, 1), x)``)
DENSITY_CALLS = frozenset({"log_prob", "entropy"})
#: the largest number of copies of an ``iid``
MAX_COPIES = 1 << 31


def _span() -> Any:
    return dataclasses.field(default=None, compare=False, hash=False, repr=False)


def _event_rank(d: ir.Dist) -> int:
    return lookup(d.name).event_rank


@ir._structural
@dataclass(frozen=True, eq=False)
class LogProb(ir.Expr):
    """``log_prob(dist, x)``: the log density (mass) of ``x`` under ``dist``."""

    dist: ir.Dist
    x: ir.Expr
    span: ir.Span = _span()
    stopped: bool = False  # the law's parameters carry no gradient (the "stl" estimator)
    data: str | None = None  # x is (an index of) this integer-typed parameter: labels, counts (labels.py)

    @property
    def extra_key(self) -> tuple[Any, ...]:
        return (self.stopped, self.data)

    def children(self) -> tuple[ir.Expr, ...]:
        return (self.dist, self.x)

    def pieces(self) -> list[Any]:
        return ["log_prob(", self.dist, ", ", self.x, ")"]

    def __str__(self) -> str:
        return ir.to_text(self)

    def rebuild(self, kids: list[ir.Expr]) -> LogProb:
        return dataclasses.replace(self, dist=kids[0], x=kids[1])  # type: ignore[arg-type]

    @property
    def breaks_as(self) -> str:
        return "mass function"

    def breaking_children(self) -> tuple[tuple[ir.Expr, bool], ...]:
        """Each child, and whether the output's derivative in it is 0 almost everywhere: the value
        of a discrete law (its mass is piecewise constant in x), never the parameters."""
        return ((self.dist, False), (self.x, lookup(self.dist.name).discrete))

    def shape_rule(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        from .labels import label_shape, one_hot_hint

        labelled = label_shape(self, shapes)
        if labelled is not None:
            return labelled
        try:
            shape = tuple(np.broadcast_shapes(*shapes))
        except ValueError:
            listed = " and ".join(str(s) for s in shapes)
            raise StochgradError(
                f"shapes {listed} do not broadcast in `{self}`{one_hot_hint(self, shapes)}", self.span
            ) from None
        return shape[: len(shape) - _event_rank(self.dist)]


@ir._structural
@dataclass(frozen=True, eq=False)
class Entropy(ir.Expr):
    """``entropy(dist)``: the entropy of ``dist`` (closed form, or Monte Carlo: see the module doc)."""

    dist: ir.Dist
    span: ir.Span = _span()

    def children(self) -> tuple[ir.Expr, ...]:
        return (self.dist,)

    def pieces(self) -> list[Any]:
        return ["entropy(", self.dist, ")"]

    def __str__(self) -> str:
        return ir.to_text(self)

    def rebuild(self, kids: list[ir.Expr]) -> Entropy:
        return dataclasses.replace(self, dist=kids[0])  # type: ignore[arg-type]

    @property
    def closed(self) -> bool:
        """Whether the law has a closed-form entropy (it implements ``Distribution.entropy``)."""
        return has_entropy(lookup(self.dist.name))

    def shape_rule(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        shape = shapes[0]
        return shape[: len(shape) - _event_rank(self.dist)]


@ir._structural
@dataclass(frozen=True, eq=False)
class Iid(ir.Dist):
    """``iid(count, D(params))``: ``count`` independent copies of ``D`` on a new first logical axis.
    ``name``, ``params`` and ``positional`` are ``D``'s."""

    count: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or not 1 <= self.count <= MAX_COPIES:
            raise StochgradError(f"iid: the number of copies must be a positive integer literal, got {self.count!r}")

    @property
    def extra_key(self) -> tuple[Any, ...]:
        return (self.name, tuple(k for k, _ in self.params), self.positional, self.count)

    @property
    def base(self) -> ir.Dist:
        """``D`` itself."""
        return ir.Dist(self.name, self.params, self.positional)

    def pieces(self) -> list[Any]:
        return [f"iid({self.count}, ", self.base, ")"]

    def __str__(self) -> str:
        return ir.to_text(self)

    def shape_rule(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return (self.count,) + lookup(self.name).value_shape(dict(zip((k for k, _ in self.params), shapes)), self)


def has_entropy(law: Distribution) -> bool:
    """Whether ``law`` implements the closed-form :meth:`Distribution.entropy` hook."""
    return type(law).entropy is not Distribution.entropy


def _distribution(fn: str, arg: Any, what: str = "first argument") -> ir.Dist:
    if isinstance(arg, Iid) and fn == "iid":
        raise StochgradError(
            f"{fn}: its {what} is an iid(...) of several copies; iid(K, D) takes one law D, not copies of one",
            getattr(arg, "span", None),
        )
    if not isinstance(arg, ir.Dist):
        example = (
            "log_prob(Normal(mu, s), x)"
            if fn == "log_prob"
            else "entropy(Normal(mu, s))"
            if fn == "entropy"
            else "iid(5, Normal(mu, s))"
        )
        raise StochgradError(
            f"{fn} needs a distribution as its {what}, got `{arg}`; e.g. {example}", getattr(arg, "span", None)
        )
    return arg


def make_density_call(name: str, args: tuple[Any, ...], kwargs: tuple[tuple[str, ir.Expr], ...]) -> ir.Expr:
    """``log_prob(D, x)`` or ``entropy(D)`` from parsed arguments, checked."""
    if kwargs:
        raise StochgradError(f"{name} takes no keyword arguments, got {kwargs[0][0]!r}")
    want = 2 if name == "log_prob" else 1
    if len(args) != want:
        shown = "log_prob(D, x)" if name == "log_prob" else "entropy(D)"
        raise StochgradError(f"{shown} takes {want} argument{'s' if want > 1 else ''}, got {len(args)}")
    dist = _distribution(name, args[0])
    if name == "entropy":
        return Entropy(dist)
    if isinstance(args[1], ir.Dist):
        raise StochgradError(f"log_prob(D, x): x is a value, not a distribution, got `{args[1]}`", args[1].span)
    return LogProb(dist, args[1])


def make_iid(name: str, args: tuple[Any, ...], kwargs: tuple[tuple[str, ir.Expr], ...]) -> Iid:
    """``iid(K, D)`` from parsed arguments: ``K`` a positive integer literal, ``D`` a distribution."""
    if kwargs:
        raise StochgradError(f"iid(K, D) takes no keyword arguments, got {kwargs[0][0]!r}")
    if len(args) != 2:
        raise StochgradError(f"iid(K, D) takes 2 arguments (the number of copies and a distribution), got {len(args)}")
    k, dist = args
    if not (isinstance(k, ir.Num) and k.value.is_integer() and 1 <= k.value <= MAX_COPIES):
        raise StochgradError(
            f"iid(K, D): the number of copies K must be a positive integer literal, got `{k}`", getattr(k, "span", None)
        )
    dist = _distribution("iid", dist, "second argument")
    return Iid(dist.name, dist.params, dist.positional, count=int(k.value))


# -- embedded constructors (sg.log_prob, sg.entropy, sg.iid) ----------------------------------------


def log_prob(dist: ir.Dist, x: Any) -> LogProb:
    """``sg.log_prob(sg.Normal(mu, s), x)``: the log density of ``x`` under ``dist``."""
    return make_density_call("log_prob", (dist, ir.as_expr(x)), ())  # type: ignore[return-value]


def entropy(dist: ir.Dist) -> Entropy:
    """``sg.entropy(sg.Normal(mu, s))``: the entropy of ``dist``."""
    return make_density_call("entropy", (dist,), ())  # type: ignore[return-value]


def iid(count: int, dist: ir.Dist) -> Iid:
    """``sg.iid(5, sg.Normal(mu, s))``: 5 independent copies (a binding's law: ``sg.E(..., z=sg.iid(5, q))``)."""
    if isinstance(count, bool) or not isinstance(count, int):
        raise StochgradError(f"iid(K, D): the number of copies K must be a positive integer, got {count!r}")
    return make_iid("iid", (ir.Num(float(count)), dist), ())


# -- evaluation ------------------------------------------------------------------------------------


def _outside_support(B: Backend, dist: ir.Dist, p: dict[str, Array], x: Array) -> tuple[Array | None, Array | None]:
    """``(outside, inside)``: a gradient-free 0/1 indicator of the values (events) outside ``dist``'s
    support (None: none can be), and a point inside it to evaluate the formula at there (None: the
    formula is finite everywhere)."""
    law, fn = lookup(dist.name), B.fn
    xs = B.stop_gradient(x)
    support = law.support(static_params(dist))
    space = None if support is None else support.space
    off: list[Array] = []  # elementwise indicators of a value off the support
    inside: Array | None = None
    interval = zeromass._interval(dist, p)  # a scalar law's [low, high] (the parameters' or fixed)
    if interval is not None:
        off.append(zeromass._outside(B, interval, xs))
        inside = zeromass._inside_point(B, interval)
    if space in ("one-hot", "simplex"):  # coordinates in [0, 1]
        off.append(fn["lt"](xs, 0.0) + fn["gt"](xs, 1.0))
    if law.discrete:  # integers only
        off.append(fn["gt"](fn["abs"](xs - fn["round"](xs)), 0.0))
    if not off:
        return None, None
    out = off[0]
    for q in off[1:]:
        out = out + q
    if space in ("one-hot", "simplex"):  # one indicator per event, whose coordinates sum to 1
        last = (len(B.shape(xs)) - 1,)
        total = B.sum(xs, last)
        out = B.sum(out, last) + fn["gt"](fn["abs"](total - 1.0), 1e-6 if space == "simplex" else 0.0)
        if space == "simplex":  # the centre of the simplex: the density's logs are finite there
            inside = 0.0 * xs + 1.0 / B.shape(xs)[-1]
    return B.stop_gradient(fn["clip"](out, 0.0, 1.0)), inside


def log_prob_value(B: Backend, dist: ir.Dist, p: dict[str, Array], x: Array) -> Array:
    """``log p(x)`` for aligned native parameters ``p`` and values ``x``: ``-inf`` exactly where
    ``x`` is outside the support or a point of zero mass (see the module docstring)."""
    law = lookup(dist.name)
    outside, inside = _outside_support(B, dist, p, x)
    x_in = x
    if outside is not None and inside is not None:  # evaluate at a point inside: no NaN, no derivative there
        mask = B.reshape(outside, B.shape(outside) + (1,)) if law.event_rank else outside
        x_in = x + mask * (inside - x)
    out = law.log_prob(B, p, x_in)
    zero = zeromass._zero_points(B, dist.name, p, x_in)  # a probability of exactly 0 (Bernoulli(0) at 1)
    if zero is not None:
        outside = zero if outside is None else zero + outside
    if outside is None:
        return out
    return out - _infinite_where(B, B.stop_gradient(B.fn["clip"](outside, 0.0, 1.0)))


def with_copies(B: Backend, dist: ir.Dist, p: dict[str, Array], out: Array, batch: int) -> Array:
    """``out`` (the base law's log density or entropy, native with a sample axis) broadcast over the
    ``K`` copies of ``dist`` when it is an :class:`Iid`: ``batch`` is the base law's batch rank (the
    copies axis sits just before those axes of ``out``); ``out`` unchanged for any other law."""
    if not isinstance(dist, Iid):
        return out
    shape = B.shape(out)
    at = len(shape) - batch - 1  # the native position of the copies axis (after the sample axis)
    if at < 1:  # out lacks the axis: lift it (the sample axis stays first)
        out = B.reshape(out, shape[:1] + (1,) * (1 - at) + shape[1:])
        shape, at = B.shape(out), 1
    if shape[at] == dist.count:
        return out
    if shape[at] != 1:
        raise StochgradError(f"`{dist}` has {dist.count} copies but the value has {shape[at]} on that axis")
    zeros = B.asarray(np.zeros((1,) * at + (dist.count,) + (1,) * batch))
    return out + zeros


def param_event_ranks(dist: ir.Dist) -> dict[str, int]:
    """Each parameter's number of event axes: its :attr:`~stochgrad.distributions.Param.event_rank`
    where the law declares any, else the law's event rank for all (Categorical's ``logits``)."""
    law = lookup(dist.name)
    ranks = {q.name: q.event_rank for q in law.params}
    return ranks if any(ranks.values()) else {k: law.event_rank for k in ranks}


def batch_rank(B: Backend, dist: ir.Dist, p: dict[str, Array]) -> int:
    """The logical batch rank of aligned native parameters ``p`` (floats are scalars)."""
    ranks = param_event_ranks(dist)
    return max((len(B.shape(v)) - 1 - ranks.get(k, 0) for k, v in p.items() if not isinstance(v, float)), default=0)


def entropy_value(B: Backend, dist: ir.Dist, p: dict[str, Array]) -> Array:
    """The closed-form entropy of ``dist`` (the planner checked that its law has one)."""
    law = lookup(dist.name)
    out = law.entropy(B, p)
    if out is None:
        raise StochgradError(f"entropy({dist}): {dist.name} gives no closed form for these parameters")
    zero: Array = 0.0
    ranks = param_event_ranks(dist)
    for k, v in p.items():  # the batch shape: every parameter's batch axes broadcast together
        rank, own = len(B.shape(v)), ranks.get(k, 0)
        z = 0.0 * B.stop_gradient(v)
        zero = zero + (B.sum(z, tuple(range(rank - own, rank))) if own else z)
    out = out + zero
    return with_copies(B, dist, p, out, batch_rank(B, dist, p)) if isinstance(dist, Iid) else out
