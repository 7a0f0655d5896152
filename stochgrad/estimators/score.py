"""Score-function estimator (REINFORCE / log-derivative trick, Williams 1992) and its baselines.

The node is sampled without a gradient path, and every cost term ``f`` that depends on it is
multiplied by the magic box of ``L = log q_phi(z)`` (see :mod:`stochgrad.estimators.base`):
``grad E[f(z)] = E[f(z) grad L + grad f(z)]``, unbiased for any cost -- also a discontinuous one --
wherever the support does not move with the parameters (the planner marks the node biased where it
does).  A baseline ``b`` that does not depend on the sample's own noise keeps it unbiased,
``E[b grad L] = b grad E[1] = 0``, and lowers the variance:

* **leave-one-out** (Kool et al. 2019): ``b_i`` is the mean cost of the *other* samples of the same
  noise block (:func:`leave_one_out`), so a chunked run uses the baselines of the unchunked one;
  with a single sample there is none (:class:`LoneScore`);
* **moving average** (:class:`MovingAverage`): ``b_t = decay b_{t-1} + (1 - decay) m_t`` of past
  batches' mean costs, for training with small ``n``; the state belongs to the run or the
  objective (:mod:`stochgrad.baselines`), and batch ``t`` uses ``b_{t-1}``;
* **learned** (:class:`~stochgrad.estimators.learned.Baseline`, Mnih & Gregor 2014): a function of
  the node's context, trained with the objective (see :mod:`.learned`).

With ``antithetic=True`` the samples are antithetic pairs of reflected noise (:mod:`.antithetic`),
and leave-one-out leaves out the sample's partner too (:func:`~.antithetic.leave_pair_out`: the
partner's cost depends on the sample's own noise); the other baselines never see the batch's own
samples and stay as they are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import PlanError, did_you_mean
from .antithetic import Antithetic, flag, leave_pair_out
from .base import Array, EstimatorSpec
from .learned import Baseline, learned_control

if TYPE_CHECKING:
    from ..backend import Backend
    from ..distributions import Distribution, Draw


@dataclass(frozen=True)
class MovingAverage:
    """Exponential moving-average baseline ``b <- decay * b + (1 - decay) * mean(cost)``: the
    configuration only (a frozen value, equal for equal decays).

    The running state belongs to whoever runs the plan (see :mod:`stochgrad.baselines`): one
    ``estimate`` call (fresh each call, carried across its chunks) or one compiled objective
    (carried across its calls: ``f.baseline_state``).  The baseline used for a batch is the state
    *before* that batch, so it never depends on the batch's own samples and the estimator stays
    unbiased; the first batch has none.
    """

    decay: float = 0.9

    def __post_init__(self) -> None:
        if isinstance(self.decay, bool) or not isinstance(self.decay, (int, float)) or not 0.0 <= self.decay < 1.0:
            raise PlanError(f"moving-average decay must be in [0, 1), got {self.decay!r}")
        object.__setattr__(self, "decay", float(self.decay))

    @property
    def value(self) -> Any:
        raise PlanError(_MOVED)

    @property
    def updates(self) -> Any:
        raise PlanError(_MOVED)

    def reset(self) -> None:
        raise PlanError(_MOVED)


_MOVED = (
    "a MovingAverage holds no state: read a compiled objective's f.baseline_state[var] (and reset it with"
    " f.baseline_state.reset()); each estimate call starts from a fresh state"
)


@dataclass(frozen=True)
class Score(Antithetic, EstimatorSpec):
    """Score function with a control variate: ``baseline`` is ``"loo"``, a :class:`MovingAverage`
    (or ``"ema"`` for ``MovingAverage(0.9)``), a learned :class:`Baseline`, or ``None``;
    ``antithetic=True`` draws antithetic pairs (:mod:`.antithetic`)."""

    name: ClassVar[str] = "score"
    scores: ClassVar[bool] = True
    piloted: ClassVar[bool] = True
    baseline: Any = "loo"
    antithetic: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "antithetic", flag(self.antithetic, self.name))
        if self.baseline == "ema":
            object.__setattr__(self, "baseline", MovingAverage())
        if isinstance(self.baseline, Baseline):
            return
        if not (self.baseline in ("loo", None) or isinstance(self.baseline, MovingAverage)):
            raise PlanError(
                f"unknown baseline {self.baseline!r}{did_you_mean(str(self.baseline), ['loo', 'ema'])};"
                " choose 'loo', 'ema', a MovingAverage, a Baseline or None"
            )

    def describe(self) -> str:
        pairs = ", antithetic pairs" if self.antithetic else ""
        if isinstance(self.baseline, Baseline):
            return f"score ({self.baseline.describe()}{pairs})"
        if isinstance(self.baseline, MovingAverage):
            return f"score (moving-average baseline, decay {self.baseline.decay:g}{pairs})"
        if self.baseline == "loo":
            return f"score (leave-one-{'pair-' if self.antithetic else ''}out baseline{pairs})"
        return f"score (no baseline{pairs})"

    @property
    def stateful(self) -> bool:
        return isinstance(self.baseline, MovingAverage)

    def learned_baseline(
        self, B: Backend, cost: Array, scope: dict[str, Array], var: str, later: Sequence[str] | None
    ) -> tuple[Array, Array] | None:
        if not isinstance(self.baseline, Baseline):
            return None
        return learned_control(self.baseline, B, cost, scope, var, later)

    def control_variate(
        self, B: Backend, cost: Array, count: int, block: int | None, state: Any = None
    ) -> Array | None:
        if isinstance(self.baseline, Baseline):
            return None  # see learned_baseline
        if self.antithetic and self.baseline == "loo":  # the partner depends on the sample's own noise
            return leave_pair_out(B, cost, count)
        return None if self.baseline is None else baseline_value(B, self.baseline, cost, count, block, state)

    def sample(self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]) -> tuple[Array, Array]:
        return d.sample_and_log_prob(B, p, draw, shape)  # log q(z) from the base noise where it can be

    def variants(self, *, temperatures: Sequence[float]) -> tuple[EstimatorSpec, ...]:
        return (self, dataclasses.replace(self, baseline=None))

    def at_one_sample(self) -> EstimatorSpec:
        return LoneScore() if self.baseline == "loo" else self


@dataclass(frozen=True)
class LoneScore(Score):
    """The score function where leave-one-out was planned but the run has one sample: no baseline."""

    name: ClassVar[str] = "score"
    baseline: Any = None

    def describe(self) -> str:
        return "score (no baseline: leave-one-out needs n >= 2)"


def leave_one_out(B: Backend, cost: Array, count: int = 0, block: int | None = None) -> Array:
    """Per-sample mean of the *other* samples' cost in its group (gradient-free; Kool et al. 2019).

    The group is the whole sample axis, or with ``block`` the samples of the same noise block: the
    axis holds ``copies x count`` samples (enumeration copies, see :mod:`stochgrad.lower`), and
    sample ``i`` of every copy belongs to block ``i // block``.  Grouping by noise block makes a
    run split into chunks (which start on block boundaries) use exactly the baselines of the
    unchunked run, in one pass.  A group of one sample gets 0 (no baseline)."""
    c = B.stop_gradient(cost)
    n = B.shape(c)[0]
    if block is None or count <= block:
        total = B.sum(c, (0,))
        return (B.reshape(total, (1,) + B.shape(total)) - c) / (n - 1)
    rest = tuple(B.shape(c)[1:])
    copies = n // count
    full, tail = divmod(count, block)
    cut = full * block
    if not tail:  # whole blocks: totals broadcast against the samples directly
        grouped = B.reshape(c, (copies, full, block) + rest)
        totals = B.reshape(B.sum(grouped, (0, 2)), (1, full, 1) + rest)
        return B.reshape((totals - grouped) / (copies * block - 1), (n,) + rest)
    # whole blocks, then the last, partial one, each with its own group size; one copy at a time
    column = c if copies == 1 else B.sum(B.reshape(c, (copies, count) + rest), (0,))
    heads = B.reshape(B.sum(B.reshape(column[:cut], (full, block) + rest), (1,)), (full, 1) + rest)
    last = B.reshape(B.sum(column[cut:], (0,)), (1,) + rest)
    parts = []
    for r in range(copies):
        own = c[r * count : (r + 1) * count] if copies > 1 else c
        parts.append(
            B.reshape((heads - B.reshape(own[:cut], (full, block) + rest)) / (copies * block - 1), (cut,) + rest)
        )
        parts.append((last - own[cut:]) / max(copies * tail - 1, 1))  # a lone sample: (c - c) / 1 = 0
    return B.concat(parts)


def baseline_value(
    B: Backend, baseline: Any, cost: Array, count: int, block: int | None, state: Any = None
) -> Array | None:
    """The baseline for a score term given its per-sample ``cost`` (None: no baseline yet).

    A :class:`MovingAverage` gives ``state``'s value before this batch (the node's
    :class:`stochgrad.baselines.AverageState`, owned by the run or objective), then updates it.
    Leave-one-out uses the other samples of the same noise block of ``block`` samples (or of the
    whole array when ``block`` is None); see :func:`leave_one_out`."""
    if isinstance(baseline, MovingAverage):
        c = B.stop_gradient(cost)
        if getattr(state, "explicit", False):  # state in and out, in arrays (stochgrad.explicit_state)
            return state.advance(B, B.sum(c, (0,)) / B.shape(c)[0], baseline.decay)
        previous = state.value
        state.update(B.to_numpy(B.sum(c, (0,))) / B.shape(c)[0], baseline.decay)
        if previous is None:
            return None
        return B.asarray(np.asarray(previous)[None])
    if B.shape(cost)[0] < 2:
        return None  # too few samples for leave-one-out
    return leave_one_out(B, cost, count, block)
