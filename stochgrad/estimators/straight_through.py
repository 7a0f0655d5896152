"""Straight-through estimators: a hard discrete sample forward, a surrogate gradient backward (biased).

* **straight-through** (Bengio et al. 2013): ``y = m + stop(y_hard - m)`` with ``m`` the mean of
  the distribution (``probs`` for Bernoulli, ``softmax(logits)`` for Categorical,
  :meth:`stochgrad.distributions.Relaxable.mean`): the value is the hard sample, the gradient is
  that of the mean;
* **straight-through Gumbel** (Jang et al. 2017): ``y = s + stop(harden(s) - s)`` with ``s`` the
  relaxed sample at ``temperature`` (:func:`stochgrad.estimators.relaxed.relax`): the hard value
  ``harden(s)`` is an exact sample of the distribution (Gumbel-max), the gradient the relaxation's.

Both evaluate the cost on the discrete support but follow a gradient that is not the expectation's:
biased by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

from ..distributions import Relaxable
from .base import Array
from .relaxed import StandIn, Tempered, harden, relax

if TYPE_CHECKING:
    from ..backend import Backend
    from ..distributions import Distribution, Draw


@dataclass(frozen=True)
class StraightThrough(StandIn):
    """Hard sample forward, gradient of its mean backward: ``y = m + stop(y - m)`` (biased)."""

    name: ClassVar[str] = "straight_through"

    def sample(self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]) -> tuple[Array, None]:
        mean = cast(Relaxable, d).mean(B, p)  # requires() checked that d is one
        return mean + B.stop_gradient(d.sample(B, p, draw, shape) - mean), None


@dataclass(frozen=True)
class StraightThroughGumbel(Tempered):
    """Hard one-hot forward, Gumbel-softmax gradient backward (biased)."""

    name: ClassVar[str] = "straight_through_gumbel"
    temperature: float = 1.0

    def sample(self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]) -> tuple[Array, None]:
        soft, kind = relax(d, B, p, draw, shape, self.temperature)
        return soft + B.stop_gradient(harden(B, soft, kind) - soft), None
