"""The detached "estimator": the reference text's naive attempt, kept for comparisons.

The node is sampled with no gradient path and no score term, so its gradient misses every effect
of the node's parameters through the sample: for ``E[z**2, z ~ Normal(mu, sigma)]`` it reports 0.
Biased by construction; applies to every distribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .base import Array, EstimatorSpec

if TYPE_CHECKING:
    from ..backend import Backend
    from ..distributions import Distribution, Draw


@dataclass(frozen=True)
class Detached(EstimatorSpec):
    """Sample without any gradient path and no score term (biased; for comparisons)."""

    name: ClassVar[str] = "detached"
    biased_by_construction: ClassVar[bool] = True

    def sample(self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]) -> tuple[Array, None]:
        return B.stop_gradient(d.sample(B, p, draw, shape)), None
