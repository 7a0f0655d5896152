"""Gradient estimators, written as surrogate builders.

For ``L(phi) = E_{z ~ q_phi}[f(z)]`` each estimator contributes to a surrogate
``S`` whose *value* is the Monte Carlo estimate of ``L`` and whose *gradient*
is the estimator (Schulman et al. 2015; Foerster et al. 2018, DiCE):

* **pathwise** (reparameterization, Kingma & Welling 2014): sample
  ``z = g_phi(eps)`` with noise independent of ``phi``; ``S = f(g_phi(eps))``.
* **score** (REINFORCE / log-derivative trick, Williams 1992): sample ``z``
  without a gradient path and multiply each cost term that depends on ``z`` by
  the *magic box* ``[]L = exp(L - stop(L))`` with ``L = log q_phi(z)``.
  ``[]L`` is 1 in value and has gradient ``grad L``, so
  ``grad([]L * f) = f grad log q + grad f`` -- the score-function estimator --
  and repeated differentiation stays unbiased (DiCE).  A baseline ``b`` enters
  as ``(1 - []L) * b``: value 0, gradient ``-b grad log q``.
* The **leave-one-out** baseline (Kool et al. 2019) for sample ``i`` is the mean
  cost of the other ``n - 1`` samples: it does not depend on ``z_i``, so the
  estimator stays unbiased, and it removes most of the variance that a
  constant offset in ``f`` causes.

Everything here is backend-neutral: it uses only arithmetic, ``exp``, ``sum``
and ``stop_gradient``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import PlanError, did_you_mean

Array = Any


@dataclass(frozen=True)
class EstimatorSpec:
    """Base of the per-node estimator choices a user can request."""

    name: ClassVar[str] = ""
    biased_by_construction: ClassVar[bool] = False

    def describe(self) -> str:
        return self.name

    def requires(self, *, reparameterized: bool, dist: str) -> None:
        """Raise :class:`PlanError` if this estimator cannot apply to the node."""


@dataclass(frozen=True)
class Pathwise(EstimatorSpec):
    """Reparameterization: differentiate through ``z = g_phi(eps)``."""

    name: ClassVar[str] = "pathwise"

    def requires(self, *, reparameterized: bool, dist: str) -> None:
        if not reparameterized:
            raise PlanError(f"pathwise estimator requested, but {dist} has no pathwise sampler; use 'score'")


@dataclass(frozen=True)
class Score(EstimatorSpec):
    """Score function with a control variate: ``baseline`` is ``"loo"`` or ``None``."""

    name: ClassVar[str] = "score"
    baseline: str | None = "loo"

    def __post_init__(self) -> None:
        if self.baseline not in BASELINES:
            raise PlanError(
                f"unknown baseline {self.baseline!r}{did_you_mean(str(self.baseline), [b for b in BASELINES if b])};"
                f" choose from {', '.join(repr(b) for b in BASELINES)}"
            )

    def describe(self) -> str:
        return f"score ({BASELINES[self.baseline]})"


BASELINES = {"loo": "leave-one-out baseline", None: "no baseline"}

#: estimator name -> default spec (``estimators={"z": "score"}``)
ESTIMATORS: dict[str, EstimatorSpec] = {"pathwise": Pathwise(), "score": Score()}


def as_spec(value: str | EstimatorSpec, var: str) -> EstimatorSpec:
    if isinstance(value, EstimatorSpec):
        return value
    if isinstance(value, str) and value in ESTIMATORS:
        return ESTIMATORS[value]
    raise PlanError(
        f"unknown estimator {value!r} for {var!r}{did_you_mean(str(value), ESTIMATORS)};"
        f" choose from {', '.join(ESTIMATORS)}"
    )


# -- surrogate pieces (backend-neutral) ---------------------------------------


def magic_box(B: Any, logq: Array) -> Array:
    """DiCE's ``exp(L - stop(L))``: value exactly 1, gradient ``grad L``."""
    return B.fn["exp"](logq - B.stop_gradient(logq))


def leave_one_out(B: Any, cost: Array) -> Array:
    """Per-sample mean of the *other* samples' cost along the sample axis (gradient-free)."""
    c = B.stop_gradient(cost)
    n = B.shape(c)[0]
    total = B.sum(c, (0,))
    return (B.reshape(total, (1,) + B.shape(total)) - c) / (n - 1)
