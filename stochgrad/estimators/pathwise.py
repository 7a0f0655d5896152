"""Pathwise (reparameterization) estimator: differentiate through ``z = g_phi(eps)``.

With base noise ``eps`` independent of ``phi`` (Kingma & Welling 2014; Rezende et al. 2014),
``grad E[f(z)] = E[grad_phi f(g_phi(eps))]``, so the surrogate is the cost itself.  Unbiased when
every path from the node to the cost is differentiable (the planner checks this and marks the node
biased otherwise); needs the distribution's pathwise sampler (``rsample``) and whatever backend
capabilities it declares (``Distribution.needs``, e.g. implicit reparameterization for Gamma).
With ``antithetic=True`` the samples are antithetic pairs of reflected noise (:mod:`.antithetic`:
unbiased, lower variance for costs monotone in the noise, higher for even ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import PlanError
from .antithetic import Antithetic, flag
from .base import Array, EstimatorSpec

if TYPE_CHECKING:
    from ..backend import Backend
    from ..distributions import Distribution, Draw


@dataclass(frozen=True)
class Pathwise(Antithetic, EstimatorSpec):
    """Reparameterization: differentiate through ``z = g_phi(eps)``; ``antithetic=True`` draws
    antithetic pairs (:mod:`.antithetic`)."""

    name: ClassVar[str] = "pathwise"
    through_sample: ClassVar[bool] = True
    pathwise: ClassVar[bool] = True
    antithetic: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "antithetic", flag(self.antithetic, self.name))

    def describe(self) -> str:
        return f"{self.name} (antithetic pairs)" if self.antithetic else self.name

    def requires(self, d: Distribution, *, states: int | None, capabilities: frozenset[str] | None = None) -> None:
        if not d.reparameterized:
            raise PlanError(f"pathwise estimator requested, but {d.name} has no pathwise sampler; use 'score'")
        lacking = d.needs - capabilities if capabilities is not None else frozenset()
        if lacking:
            raise PlanError(
                f"pathwise estimator requested, but the backend lacks {', '.join(sorted(lacking))}"
                f" for a pathwise {d.name}"
            )

    def sample(self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]) -> tuple[Array, None]:
        return d.rsample(B, p, draw, shape), None
