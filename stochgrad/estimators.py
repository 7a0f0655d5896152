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
  as ``(1 - []L) * b``: value 0, gradient ``-b grad log q``.  A run that differentiates
  only once (``estimate``) uses the first-order form instead: ``f + stop(f) * (L - stop(L))``
  and ``-b * (L - stop(L))``, the same value and gradient without the exp (Schulman et al.
  2015's surrogate loss).  Baselines: the
  **leave-one-out** mean of the other samples' costs in the same noise block
  (Kool et al. 2019), or an
  exponential **moving average** of past costs (for training with small n).
* **enumerate**: the exact sum ``sum_k q_phi(k) f(k)`` over a finite support;
  zero variance (done by the lowering, which copies the samples per state).
* **relaxed** (Gumbel-softmax / Concrete; Jang et al. 2017, Maddison et al.
  2017), **straight_through** (Bengio et al. 2013) and
  **straight_through_gumbel**: differentiable stand-ins for a discrete sample,
  biased by construction.

Everything here is backend-neutral: it uses only arithmetic, ``exp``, ``sum``
and ``stop_gradient``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from .errors import PlanError, did_you_mean

if TYPE_CHECKING:
    from .backend import Backend

Array = Any


class Site(NamedTuple):
    """One random node's part of the surrogate, as its estimator draws it (pyro's ``score_parts``):
    the value the cost sees (with or without a gradient path), and ``log q(z)`` when the estimator
    scores the node (its magic box multiplies every cost term that depends on the node)."""

    value: Array
    logq: Array | None = None


@dataclass(frozen=True)
class EstimatorSpec:
    """Base of the per-node estimator choices a user can request.

    Its class-level *facts* are what the planner, the lowering and the tools read (never the name):
    ``scores`` (the node's ``log q`` enters a score term), ``through_sample`` (gradients flow through
    the sampled value: pathwise and the relaxations), ``pathwise`` (the distribution's own
    reparameterized sampler), ``enumerates`` (exact sum over the support), ``biased_by_construction``;
    and per instance :attr:`stateful` (a running state owned by the run or objective)."""

    name: ClassVar[str] = ""
    biased_by_construction: ClassVar[bool] = False
    enumerates: ClassVar[bool] = False
    scores: ClassVar[bool] = False
    through_sample: ClassVar[bool] = False
    pathwise: ClassVar[bool] = False

    @property
    def stateful(self) -> bool:
        """Whether the estimator keeps a running state between batches (owned by the run or the
        objective, :class:`stochgrad.baselines.BaselineState`), which a fused call cannot carry."""
        return False

    def describe(self) -> str:
        return self.name

    def control_variate(self, B: Backend, cost: Array, count: int, block: int | None,
                        state: Any = None) -> Array | None:
        """The baseline subtracted from the per-sample ``cost`` of this node's score terms
        (``None``: none); ``state`` is the node's running state when :attr:`stateful`."""
        return None

    def requires(self, d: Any, *, states: int | None) -> None:
        """Raise :class:`PlanError` if this estimator cannot apply to distribution ``d``."""

    def sample(self, d: Any, B: Backend, p: Any, draw: Any, shape: tuple[int, ...]) -> tuple[Array, Array | None]:
        """The node's value, and its log-probability if the estimator needs a score term."""
        raise PlanError(f"{self.name} does not sample")


@dataclass(frozen=True)
class Pathwise(EstimatorSpec):
    """Reparameterization: differentiate through ``z = g_phi(eps)``."""

    name: ClassVar[str] = "pathwise"
    through_sample: ClassVar[bool] = True
    pathwise: ClassVar[bool] = True

    def requires(self, d: Any, *, states: int | None) -> None:
        if not d.reparameterized:
            raise PlanError(f"pathwise estimator requested, but {d.name} has no pathwise sampler; use 'score'")

    def sample(self, d: Any, B: Backend, p: Any, draw: Any, shape: tuple[int, ...]) -> tuple[Array, None]:
        return d.rsample(B, p, draw, shape), None


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


_MOVED = ("a MovingAverage holds no state: read a compiled objective's f.baseline_state[var] (and reset it with"
          " f.baseline_state.reset()); each estimate call starts from a fresh state")


@dataclass(frozen=True)
class Score(EstimatorSpec):
    """Score function with a control variate: ``baseline`` is ``"loo"``, a :class:`MovingAverage`
    (or ``"ema"`` for ``MovingAverage(0.9)``), or ``None``."""

    name: ClassVar[str] = "score"
    scores: ClassVar[bool] = True
    baseline: Any = "loo"

    def __post_init__(self) -> None:
        if self.baseline == "ema":
            object.__setattr__(self, "baseline", MovingAverage())
        if not (self.baseline in ("loo", None) or isinstance(self.baseline, MovingAverage)):
            raise PlanError(
                f"unknown baseline {self.baseline!r}{did_you_mean(str(self.baseline), ['loo', 'ema'])};"
                " choose 'loo', 'ema', a MovingAverage or None"
            )

    def describe(self) -> str:
        if isinstance(self.baseline, MovingAverage):
            return f"score (moving-average baseline, decay {self.baseline.decay:g})"
        return "score (leave-one-out baseline)" if self.baseline == "loo" else "score (no baseline)"

    @property
    def stateful(self) -> bool:
        return isinstance(self.baseline, MovingAverage)

    def control_variate(self, B: Backend, cost: Array, count: int, block: int | None, state: Any = None) -> Array | None:
        return None if self.baseline is None else baseline_value(B, self.baseline, cost, count, block, state)

    def sample(self, d: Any, B: Backend, p: Any, draw: Any, shape: tuple[int, ...]) -> tuple[Array, Array]:
        return d.sample_and_log_prob(B, p, draw, shape)  # log q(z) from the base noise where it can be


@dataclass(frozen=True)
class Enumerate(EstimatorSpec):
    """Exact expectation over a finite support (zero variance)."""

    name: ClassVar[str] = "enumerate"
    enumerates: ClassVar[bool] = True

    def requires(self, d: Any, *, states: int | None) -> None:
        if states is None:
            raise PlanError(f"enumerate requested, but {d.name} has no finite support known before sampling"
                            " (Poisson and Geometric never do; Binomial needs a literal total_count;"
                            " a Categorical needs its parameter shapes)")


def _check_temperature(t: float) -> None:
    if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
        raise PlanError(f"temperature must be a finite number > 0, got {t!r}")


@dataclass(frozen=True)
class _Relaxation(EstimatorSpec):
    biased_by_construction: ClassVar[bool] = True
    through_sample: ClassVar[bool] = True

    def requires(self, d: Any, *, states: int | None) -> None:
        if not getattr(d, "relaxable", False):
            raise PlanError(f"{self.name} applies to Bernoulli and Categorical nodes, not {d.name}")


@dataclass(frozen=True)
class Relaxed(_Relaxation):
    """Gumbel-softmax / binary Concrete sample at ``temperature`` (biased)."""

    name: ClassVar[str] = "relaxed"
    temperature: float = 0.5

    def __post_init__(self) -> None:
        _check_temperature(self.temperature)

    def describe(self) -> str:
        return f"relaxed (Gumbel-softmax, temperature {self.temperature:g})"

    def sample(self, d: Any, B: Backend, p: Any, draw: Any, shape: tuple[int, ...]) -> tuple[Array, None]:
        return d.relaxed(B, p, draw, shape, self.temperature), None


@dataclass(frozen=True)
class StraightThrough(_Relaxation):
    """Hard sample forward, gradient of its mean backward: ``y = p + stop(y - p)`` (biased)."""

    name: ClassVar[str] = "straight_through"

    def sample(self, d: Any, B: Backend, p: Any, draw: Any, shape: tuple[int, ...]) -> tuple[Array, None]:
        return d.straight_through(B, p, draw, shape), None


@dataclass(frozen=True)
class StraightThroughGumbel(_Relaxation):
    """Hard one-hot forward, Gumbel-softmax gradient backward (biased)."""

    name: ClassVar[str] = "straight_through_gumbel"
    temperature: float = 1.0

    def __post_init__(self) -> None:
        _check_temperature(self.temperature)

    def describe(self) -> str:
        return f"straight_through_gumbel (temperature {self.temperature:g})"

    def sample(self, d: Any, B: Backend, p: Any, draw: Any, shape: tuple[int, ...]) -> tuple[Array, None]:
        return d.straight_through_gumbel(B, p, draw, shape, self.temperature), None


@dataclass(frozen=True)
class Detached(EstimatorSpec):
    """The reference text's naive attempt: sample without any gradient path and no score term.

    Its gradient misses every effect of the node's parameters through the sample (for
    ``E[z**2, z ~ Normal(mu, sigma)]`` it reports 0): biased, kept for comparisons."""

    name: ClassVar[str] = "detached"
    biased_by_construction: ClassVar[bool] = True

    def sample(self, d: Any, B: Backend, p: Any, draw: Any, shape: tuple[int, ...]) -> tuple[Array, None]:
        return B.stop_gradient(d.sample(B, p, draw, shape)), None


#: estimator name -> spec class (``estimators={"z": "score"}``, or ``"relaxed:temperature=0.1"``)
ESTIMATORS: dict[str, type[EstimatorSpec]] = {
    cls.name: cls for cls in (Pathwise, Score, Enumerate, Relaxed, StraightThrough, StraightThroughGumbel, Detached)
}


def _option(text: str) -> Any:
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def as_spec(value: str | EstimatorSpec, var: str) -> EstimatorSpec:
    """An estimator spec from an object or text ``NAME[:KEY=VALUE,...]``."""
    if isinstance(value, EstimatorSpec):
        return value
    if not isinstance(value, str):
        raise PlanError(f"estimator for {var!r} must be a name or an estimator object, got {value!r}")
    name, _, rest = value.partition(":")
    cls = ESTIMATORS.get(name.strip())
    if cls is None:
        raise PlanError(
            f"unknown estimator {name!r} for {var!r}{did_you_mean(name, ESTIMATORS)};"
            f" choose from {', '.join(ESTIMATORS)}"
        )
    options: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, val = item.partition("=")
        if not eq:
            raise PlanError(f"estimator option {item!r} for {var!r} must be KEY=VALUE (e.g. {name}:temperature=0.5)")
        options[key.strip()] = _option(val.strip())
    allowed = [f.name for f in dataclasses.fields(cls)]
    for key in options:
        if key not in allowed:
            takes = f"takes {', '.join(allowed)}" if allowed else "takes no options"
            raise PlanError(f"estimator {name!r} has no option {key!r}{did_you_mean(key, allowed)}; it {takes}")
    return cls(**options)


# -- surrogate pieces (backend-neutral) ---------------------------------------


def magic_box(B: Backend, logq: Array) -> Array:
    """DiCE's ``exp(L - stop(L))``: value exactly 1, gradient ``grad L``, at every order."""
    return B.fn["exp"](logq - B.stop_gradient(logq))


def score_term(B: Backend, logq: Array) -> Array:
    """``L - stop(L)``: value exactly 0, gradient ``grad L``.  ``v + stop(v) (L - stop(L))`` has
    the first derivative of DiCE's ``[](L) v`` (Schulman et al. 2015's surrogate), without the exp
    and with a cheaper reverse pass; for runs that differentiate once (``estimate``)."""
    return logq - B.stop_gradient(logq)


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
        own = c[r * count:(r + 1) * count] if copies > 1 else c
        parts.append(B.reshape((heads - B.reshape(own[:cut], (full, block) + rest)) / (copies * block - 1), (cut,) + rest))
        parts.append((last - own[cut:]) / max(copies * tail - 1, 1))  # a lone sample: (c - c) / 1 = 0
    return B.concat(parts)


def baseline_value(B: Backend, baseline: Any, cost: Array, count: int, block: int | None,
                   state: Any = None) -> Array | None:
    """The baseline for a score term given its per-sample ``cost`` (None: no baseline yet).

    A :class:`MovingAverage` gives ``state``'s value before this batch (the node's
    :class:`stochgrad.baselines.AverageState`, owned by the run or objective), then updates it.
    Leave-one-out uses the other samples of the same noise block of ``block`` samples (or of the
    whole array when ``block`` is None); see :func:`leave_one_out`."""
    if isinstance(baseline, MovingAverage):
        previous = state.value
        c = B.stop_gradient(cost)
        state.update(B.to_numpy(B.sum(c, (0,))) / B.shape(c)[0], baseline.decay)
        if previous is None:
            return None
        return B.asarray(np.asarray(previous)[None])
    if B.shape(cost)[0] < 2:
        return None  # too few samples for leave-one-out
    return leave_one_out(B, cost, count, block)
