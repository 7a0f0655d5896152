"""Continuous relaxations of discrete nodes: Gumbel-softmax / binary Concrete (biased).

A relaxable distribution (:class:`stochgrad.distributions.Relaxable`: Bernoulli, Categorical)
exposes its logits and their kind; the maths of the relaxed sample is written once, here:

* ``"categorical"`` (a last axis of categories): ``softmax((logits + g) / tau)`` with standard
  Gumbel noise ``g = -log(-log u)`` (Jang et al. 2017; Maddison et al. 2017);
* ``"binary"`` (one logit per element): the binary Concrete ``sigmoid((logits + log u - log(1 - u)) / tau)``,
  the two-category case with the difference of two Gumbels, a logistic variable.

The sample is differentiable in the logits, so the cost's pathwise gradient flows through it: biased
for every ``tau > 0`` (the cost is evaluated off the discrete support), with variance growing as
``tau -> 0``.  :func:`harden` maps a relaxed sample back to the discrete one it rounds to (the
straight-through Gumbel estimator, :mod:`stochgrad.estimators.straight_through`).  Each uses the same
uniform draws as before the hooks existed, one ``draw("uniform", shape)`` per node.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

from .. import ir
from ..densities import LogProb
from ..discrete import minus_gumbel
from ..distributions import Relaxable, lookup
from ..errors import PlanError, StochgradError
from .base import Array, EstimatorSpec, Rebuild

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ..backend import Backend
    from ..distributions import Distribution, Draw


def relax(
    d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...], temperature: float
) -> tuple[Array, str]:
    """The relaxed sample at ``temperature`` and the kind of relaxation (``"binary"``, ``"categorical"``)."""
    logits, kind = cast(Relaxable, d).relaxation(B, p)  # requires() checked that d is one
    if kind == "binary":
        u = draw("uniform", shape)
        return B.fn["sigmoid"]((logits + B.fn["log"](u) - B.fn["log1p"](-u)) / temperature), kind
    if kind == "categorical":  # softmax ignores a shift, so unnormalized log-weights do
        return B.softmax((logits - minus_gumbel(B, draw, shape)) / temperature, len(shape)), kind
    raise StochgradError(f"{d.name}.relaxation returned kind {kind!r}; it must be 'binary' or 'categorical'")


def harden(B: Backend, soft: Array, kind: str) -> Array:
    """The discrete value a relaxed sample rounds to: ``soft > 1/2``, or the one-hot of its argmax."""
    return B.fn["gt"](soft, 0.5) if kind == "binary" else B.one_hot_argmax(soft)


@dataclass(frozen=True)
class StandIn(EstimatorSpec):
    """Base of the estimators that stand in a differentiable value for a discrete sample (biased)."""

    biased_by_construction: ClassVar[bool] = True
    through_sample: ClassVar[bool] = True

    def requires(self, d: Distribution, *, states: int | None, capabilities: frozenset[str] | None = None) -> None:
        if not isinstance(d, Relaxable):
            raise PlanError(f"{self.name} applies to Bernoulli and Categorical nodes, not {d.name}")


@dataclass(frozen=True)
class Tempered(StandIn):
    """A relaxation at a ``temperature`` (finite, > 0); ``detail`` opens its description."""

    detail: ClassVar[str] = ""
    temperature: float = 0.5

    def __post_init__(self) -> None:
        t = self.temperature
        if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
            raise PlanError(f"temperature must be a finite number > 0, got {t!r}")

    def describe(self) -> str:
        return f"{self.name} ({self.detail}temperature {self.temperature:g})"


@dataclass(frozen=True)
class Relaxed(Tempered):
    """Gumbel-softmax / binary Concrete sample at ``temperature`` (biased)."""

    name: ClassVar[str] = "relaxed"
    detail: ClassVar[str] = "Gumbel-softmax, "

    def sample(self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]) -> tuple[Array, None]:
        return relax(d, B, p, draw, shape, self.temperature)[0], None

    def variants(self, *, temperatures: Sequence[float]) -> tuple[EstimatorSpec, ...]:
        return tuple(Relaxed(temperature=t) for t in temperatures)

    def rewrite_cost(
        self, body: ir.Expr, var: str, dist: ir.Dist, rebuild: Rebuild, shapes: Mapping[str, Any] | None = None
    ) -> None:
        """Refuse a cost that takes a discrete law's mass at the node (``log_prob(Bernoulli(p), z)``):
        a relaxed value lies off that law's support, so the mass would be -inf or NaN, not a biased
        number.  The cost is left as it is."""
        for node in ir.walk(body):
            if isinstance(node, LogProb) and lookup(node.dist.name).discrete:
                if any(isinstance(x, ir.Name) and x.id == var for x in ir.walk(node.x)):
                    raise PlanError(
                        f"{var} ~ {dist}: relaxed feeds the cost relaxed values of {var}, off the support of"
                        f" `{node}` (a mass function: -inf or NaN there); use a score-function estimator"
                        " or straight_through (whose forward value is discrete)"
                    )
        return None
