"""Exact enumeration: ``E[f(z)] = sum_k q_phi(k) f(k)`` over a finite support.

Zero variance, and exact gradients at every order: the lowering copies the samples once per
joint state and weighs each copy by the distribution's ``prob`` (a polynomial in the parameters,
not ``exp`` of a clipped log), see :mod:`stochgrad.lower`.  Applies where the joint support is
finite and known before sampling and has at most :data:`stochgrad.distributions.MAX_STATES`
states; the planner picks it within its enumeration budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ..distributions import MAX_STATES
from ..errors import PlanError
from .base import EstimatorSpec

if TYPE_CHECKING:
    from ..distributions import Distribution
    from ..planned import NodePlan


@dataclass(frozen=True)
class Enumerate(EstimatorSpec):
    """Exact expectation over a finite support (zero variance)."""

    name: ClassVar[str] = "enumerate"
    enumerates: ClassVar[bool] = True
    piloted: ClassVar[bool] = True

    def evaluations(self, states: int | None, node: NodePlan | None = None) -> int:
        return states or 1  # the cost at every joint state

    def requires(self, d: Distribution, *, states: int | None, capabilities: frozenset[str] | None = None) -> None:
        if states is None:
            raise PlanError(
                f"enumerate requested, but {d.name} has no finite support known before sampling"
                " (Poisson and Geometric never do; Binomial needs a literal total_count;"
                " a Categorical needs its parameter shapes)"
            )
        if states > MAX_STATES:
            raise PlanError(f"enumerate requested, but its {states} joint states exceed {MAX_STATES}")
