"""The planner's rules as data: the facts of a node, and the ordered table that maps them to an estimator.

Each :class:`Rule` is a predicate on a node's :class:`Facts`, the estimator it picks and the reason
the plan prints (formatted with the facts' fields).  :data:`RULES` is tried in order and the first
match decides (:mod:`stochgrad.planner`); only ``policy="low_variance"`` can pick a biased estimator.
The order encodes the usual preference of the literature (Mohamed et al. 2020, section 10):
pathwise where the cost is differentiable, exact enumeration where the support is small, the
score function (with its leave-one-out baseline) otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .estimators import Enumerate, EstimatorSpec, Pathwise, Relaxed, Score

#: planning policies: the default never picks a biased estimator by itself
POLICIES = ("unbiased", "low_variance", "min_variance")
#: default largest joint support enumerated exactly (over all enumerated nodes together)
DEFAULT_BUDGET = 1024
ALL_CAPABILITIES = frozenset({"implicit_reparam", "grad_inside", "hvp_inside"})


@dataclass(frozen=True)
class Facts:
    var: str
    dist: str
    reparameterized: bool  # has a pathwise sampler the backend can run
    nondiff: str | None  # why the cost is not differentiable in var, if it is not
    discrete: bool
    relaxable: bool
    states: int | None  # size of the finite joint support, if known
    budget: int  # joint states still available for enumeration
    policy: str
    support: str  # what the support is, for reasons
    missing: str  # a backend capability the pathwise sampler lacks, as a reason


@dataclass(frozen=True)
class Rule:
    when: Callable[[Facts], bool]
    spec: EstimatorSpec
    reason: str  # formatted with the facts' fields


#: first match wins; only the low_variance policy picks a biased estimator
RULES: tuple[Rule, ...] = (
    Rule(
        lambda f: f.reparameterized and f.nondiff is None, Pathwise(), "reparameterizable, cost differentiable in {var}"
    ),
    Rule(
        lambda f: f.states is not None and f.states <= f.budget,
        Enumerate(),
        "finite support: exact sum over {states} states, zero variance",
    ),
    Rule(
        lambda f: f.policy == "low_variance" and f.relaxable and f.nondiff is None,
        Relaxed(),
        "low_variance policy: cost differentiable in {var}, so a relaxation trades bias for variance",
    ),
    Rule(lambda f: f.reparameterized, Score(), "cost not differentiable in {var}: {nondiff}"),
    Rule(lambda f: bool(f.missing), Score(), "{missing}"),
    Rule(lambda f: f.discrete, Score(), "discrete, {support}"),
    Rule(lambda f: True, Score(), "{dist} has no pathwise sampler"),
)
