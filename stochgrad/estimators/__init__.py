"""Gradient estimators as plug-ins, and the one registry every tool reads.

Each estimator is one module declaring a frozen :class:`EstimatorSpec` subclass with its facts
(:mod:`.base`):

* the classics: :mod:`.pathwise` (reparameterization, with the :mod:`.antithetic` option),
  :mod:`.score` (REINFORCE with leave-one-out or moving-average baselines, antithetic option),
  :mod:`.learned` (input-dependent score baselines), :mod:`.enumerate` (exact sum over a finite
  support), :mod:`.relaxed` (Gumbel-softmax / binary Concrete), :mod:`.straight_through`
  (straight-through and straight-through Gumbel), :mod:`.detached` (the naive no-gradient sample);
* discrete nodes: :mod:`.disarm` (ARM and DisARM, Bernoulli and Categorical), :mod:`.rebar`
  (REBAR, fixed or learned temperature and scale), :mod:`.relax` (RELAX, a user network as
  control variate), :mod:`.indecater` (the CatLog trick for factorised categoricals),
  :mod:`.sum_and_sample` and :mod:`.unordered_set` (Rao-Blackwellized categorical estimators);
* control variates and measure-valued derivatives: :mod:`.delta` and :mod:`.pathwise_delta`
  (delta-method control variates), :mod:`.mvd` (measure-valued derivatives);
* multi-sample bounds: :mod:`.stl` (sticking the landing), :mod:`.vimco` and :mod:`.dreg` (VIMCO
  and DReG for K-sample bounds, recognised by :mod:`.multisample`).

:data:`ESTIMATORS` maps each name to its class; :func:`register_estimator` adds one (a new
estimator is one module plus one such line).  The planner's overrides (:func:`as_spec`, then
``requires``), ``compare``'s candidates, the ``min_variance`` pilots and the CLI's help all read
it, through :func:`applicable` and the specs' facts, never through estimator names.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ..errors import PlanError, StochgradError, did_you_mean
from .base import EstimatorSpec, Rewrite, Site, magic_box, score_term
from .delta import Delta
from .detached import Detached
from .disarm import ARM, DisARM
from .dreg import DReG
from .enumerate import Enumerate
from .enumerate_examples import EnumerateExamples
from .indecater import IndeCateR
from .pathwise import Pathwise
from .pathwise_delta import PathwiseDelta
from .rebar import Rebar
from .relax import Relax
from .relaxed import Relaxed, StandIn, Tempered, harden
from .learned import Baseline
from .mvd import MeasureValued
from .score import LoneScore, MovingAverage, Score, baseline_value, leave_one_out
from .stl import StickingTheLanding
from .sum_and_sample import SumAndSample
from .unordered_set import UnorderedSet
from .straight_through import StraightThrough, StraightThroughGumbel
from .vimco import Vimco

if TYPE_CHECKING:
    from ..distributions import Distribution

__all__ = [
    "ARM",
    "ESTIMATORS",
    "Baseline",
    "Delta",
    "Detached",
    "DisARM",
    "Enumerate",
    "EnumerateExamples",
    "EstimatorSpec",
    "IndeCateR",
    "LoneScore",
    "MeasureValued",
    "MovingAverage",
    "Pathwise",
    "PathwiseDelta",
    "Rebar",
    "Relax",
    "Rewrite",
    "StandIn",
    "Relaxed",
    "Score",
    "Site",
    "StickingTheLanding",
    "StraightThrough",
    "StraightThroughGumbel",
    "SumAndSample",
    "Tempered",
    "UnorderedSet",
    "applicable",
    "as_spec",
    "baseline_value",
    "harden",
    "leave_one_out",
    "magic_box",
    "register_estimator",
    "score_term",
    "unregister_estimator",
    "DReG",
    "Vimco",
]

#: estimator name -> spec class (``estimators={"z": "score"}``, or ``"relaxed:temperature=0.1"``), in
#: the order tools list them
ESTIMATORS: dict[str, type[EstimatorSpec]] = {}


def register_estimator(cls: type[EstimatorSpec]) -> type[EstimatorSpec]:
    """Make ``cls`` requestable by its ``name`` and known to ``applicable``, ``compare``, the pilots
    and the CLI.  It must subclass :class:`EstimatorSpec` (a frozen dataclass: plans are cached by
    spec, so its subclasses are frozen too), and its default configuration ``cls()`` must be valid;
    usable as a class decorator.

    Args:
        cls: the :class:`EstimatorSpec` subclass.

    Returns:
        ``cls`` (so it works as a decorator).

    Raises:
        StochgradError: not a subclass, no identifier ``name``, a name taken by another class, or
            contradictory facts (both ``enumerates`` and ``scores``)."""
    if not (isinstance(cls, type) and issubclass(cls, EstimatorSpec)):
        raise StochgradError(f"register_estimator takes an EstimatorSpec subclass, got {cls!r}")
    name = cls.name
    if not name or not name.isidentifier():
        raise StochgradError(f"estimator class {cls.__name__} needs a name (an identifier), got {name!r}")
    if name in ESTIMATORS and ESTIMATORS[name] is not cls:
        raise StochgradError(f"an estimator named {name!r} is registered already ({ESTIMATORS[name].__name__})")
    if cls.enumerates and cls.scores:
        raise StochgradError(f"estimator {name!r} cannot both enumerate and score the node")
    cls()  # the default configuration must construct
    ESTIMATORS[name] = cls
    return cls


def unregister_estimator(name: str) -> None:
    """Remove a registered estimator (for tests and plug-ins that clean up)."""
    if name not in ESTIMATORS:
        raise StochgradError(f"no estimator named {name!r} is registered{did_you_mean(name, ESTIMATORS)}")
    del ESTIMATORS[name]


for _cls in (
    Pathwise,
    Score,
    Enumerate,
    ARM,
    DisARM,
    Rebar,
    Relax,
    Relaxed,
    StraightThrough,
    StraightThroughGumbel,
    StickingTheLanding,
    Detached,
):
    register_estimator(_cls)
register_estimator(IndeCateR)
register_estimator(MeasureValued)
register_estimator(Vimco)
register_estimator(DReG)
register_estimator(Delta)  # the score function with the delta-method control variate (delta.py)
register_estimator(PathwiseDelta)  # pathwise with the second-order delta-method control variate
register_estimator(SumAndSample)
register_estimator(UnorderedSet)
register_estimator(EnumerateExamples)  # a plate's examples enumerated side by side (enumerate_examples.py)


def applicable(
    d: Distribution, *, states: int | None, capabilities: frozenset[str] | None = None
) -> list[EstimatorSpec]:
    """The default configuration of every registered estimator whose ``requires`` accepts
    distribution ``d`` with ``states`` joint states (None: infinite or unknown) on a backend with
    ``capabilities`` (None: unchecked), in registry order.

    Args:
        d: the distribution of the node.
        states: its joint support size, or ``None`` when infinite or unknown.
        capabilities: the backend's capabilities (``None``: not checked).

    Returns:
        The estimators' default configurations, in registry order."""
    out = []
    for cls in ESTIMATORS.values():
        spec = cls()
        try:
            spec.requires(d, states=states, capabilities=capabilities)
        except PlanError:
            continue
        out.append(spec)
    return out


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
    allowed = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in options:
        if key not in allowed:
            takes = f"takes {', '.join(allowed)}" if allowed else "takes no options"
            raise PlanError(f"estimator {name!r} has no option {key!r}{did_you_mean(key, allowed)}; it {takes}")
    return cls(**options)
