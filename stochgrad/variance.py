"""Variance-aware planning: ``policy="min_variance"``.

Pathwise gradients are not always the least noisy: for ``E[cos(k z)]`` with large
``k`` the pathwise estimator carries a factor ``k`` that the score function with a
baseline does not (Mohamed et al. 2020, section 3).  Under this policy a short pilot
run measures, per random node, the static choice and every registered estimator that applies and
is unbiased for any cost (its ``piloted`` fact: the score function with a leave-one-out baseline,
enumeration; pathwise only as the static choice, which it is exactly where it is unbiased); each
gets the cost ``variance per sample x cost evaluations per sample`` (summed over gradient entries;
:meth:`~stochgrad.estimators.EstimatorSpec.evaluations`: one, or the joint states an enumeration
sums over), i.e. the work needed to reach a given standard error.  The price is a count, not a
timing, so a decision depends on the expression, the values and the seed only, never on the
machine's load (a timed price flipped the choice for a fixed seed about 2 runs in 8).  The
cheapest wins if it beats the static rules' choice by more than :data:`MARGIN`; otherwise the
pilot is inconclusive and the static choice stays.  The plan's reason reports the measurement.

The pilots draw their noise from a seed derived from the run's by a hash
(:func:`stochgrad.noise.derive_seed`), independent of the final run's noise, so a pilot's
outcome is a function of (expression, parameter values, overrides, backend, seed, budget, plate);
:func:`min_variance_plan` also keeps each outcome, so ``sg.plan(..., policy="min_variance",
params=..., seed=s)`` and ``sg.estimate(..., policy="min_variance", seed=s)`` in one process pilot once.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from .backend import Backend
from .distributions import joint_states, lookup
from .errors import StochgradError
from .estimators import EstimatorSpec, applicable, as_spec
from .noise import PILOT, derive_seed
from .planner import Plan, plan
from .run import Estimate, run_estimate
from .validation import check_batch_axes_fit

#: a pilot's winner must be this many times cheaper than the static choice to replace it
MARGIN = 2.0
PILOT_N = 2048


def _cost(run: Any, estimators: Mapping[str, Any], evaluations: int) -> float:
    """Variance per sample (summed over the gradient entries) times cost evaluations per sample."""
    r = run(estimators, PILOT_N)
    variance = sum(float(np.sum(np.square(r.stderr[k]))) * PILOT_N for k in r.stderr)
    return variance * evaluations


def pilot(
    base: Plan, run: Any, user: Mapping[str, Any], budget: int | None = None
) -> tuple[dict[str, EstimatorSpec], dict[str, str]]:
    """Overrides and reasons chosen by pilot runs; ``run(estimators, n)`` runs an estimate.  An
    enumerating candidate is piloted only where the node's states fit the enumeration ``budget``
    (its pilot cost, zero variance, would otherwise win over any budget)."""
    chosen = {k: as_spec(v, k) for k, v in user.items()}
    reasons: dict[str, str] = {}
    for node in base.nodes:
        if node.var in user or node.var.startswith("_kl"):
            continue
        # the static choice is pathwise only where pathwise is unbiased; the piloted estimators always are
        d = lookup(node.dist.name)
        states = joint_states(d, node.dist, node.shape)
        found = applicable(d, states=states)
        over = budget is not None and (states is None or states > budget)
        found = [c for c in found if not (c.enumerates and over)]
        candidates: list[EstimatorSpec] = [node.spec] + [c for c in found if c.piloted and c != node.spec]
        if len(candidates) < 2 or node.biased:
            continue
        costs: dict[EstimatorSpec, float] = {}
        refused = []
        for c in candidates:
            try:
                costs[c] = _cost(run, {**chosen, node.var: c}, c.evaluations(states, node))
            except StochgradError:  # a candidate that refuses this node here (its size, its context) is none
                if c == node.spec:
                    raise
                refused.append(c.name)
        static, best = node.spec, min(costs, key=costs.__getitem__)
        listing = ", ".join(f"{c.describe()} {costs[c]:.2g}" for c in costs)
        listing += f"; refused here: {', '.join(refused)}" if refused else ""
        if best != static and costs[best] * MARGIN < costs[static]:
            chosen[node.var] = best
            reasons[node.var] = f"min_variance pilot (n={PILOT_N}, variance x evaluations per sample): {listing}"
        else:
            chosen[node.var] = static
            reasons[node.var] = (
                f"{node.reason}; min_variance pilot kept it (n={PILOT_N}, variance x evaluations per sample: {listing})"
            )
    return chosen, reasons


def explain(p: Plan, reasons: Mapping[str, str]) -> Plan:
    """The plan with the pilot's measurements as reasons."""
    nodes = tuple(dataclasses.replace(n, reason=reasons[n.var]) if n.var in reasons else n for n in p.nodes)
    return dataclasses.replace(p, nodes=nodes)


_OUTCOMES: OrderedDict[tuple[Any, ...], Plan] = OrderedDict()  # pilot outcomes, most recent last
_KEEP = 64


def min_variance_plan(
    e: Any,
    values: Mapping[str, np.ndarray],
    estimators: Mapping[str, Any] | None,
    *,
    B: Backend,
    seed: int,
    enumerate_budget: int,
    batch_axes: int = 0,
) -> Plan:
    """The plan ``policy="min_variance"`` runs for these parameter values (numpy arrays, checked) and
    seed: pilots on the backend ``B`` with the derived seed, then the static plan with the winners.
    It runs when the plan is made (``sg.plan`` with values, which ``sg.estimate`` calls), never when
    a plan runs.  Each pilot plans its candidate overrides statically and runs that plan with
    :func:`stochgrad.run.run_estimate` (as ``Plan.estimate`` does); nothing here calls
    :func:`stochgrad.estimate`."""
    budget = enumerate_budget
    shapes = {k: v.shape for k, v in values.items()}
    caps = B.capabilities
    base = plan(e, estimators, shapes=shapes, enumerate_budget=budget, capabilities=caps)
    user = {k: as_spec(v, k) for k, v in (estimators or {}).items()}
    key = (
        e,
        tuple((k, v.shape, v.tobytes()) for k, v in sorted(values.items())),
        tuple(sorted(user.items())),
        B,
        seed,
        budget,
        batch_axes,
    )
    if key in _OUTCOMES:
        _OUTCOMES.move_to_end(key)
        return _OUTCOMES[key]
    pilot_seed = derive_seed(seed, PILOT)

    def run(overrides: Mapping[str, Any], m: int) -> Estimate:
        candidate = plan(e, overrides, shapes=shapes, enumerate_budget=budget, capabilities=caps)
        check_batch_axes_fit(batch_axes, candidate.nodes)
        return run_estimate(candidate, values, B, n=m, seed=pilot_seed, batch_axes=batch_axes)

    chosen, reasons = pilot(base, run, user, budget)
    out = explain(plan(e, chosen, shapes=shapes, enumerate_budget=budget, capabilities=caps), reasons)
    _OUTCOMES[key] = out
    if len(_OUTCOMES) > _KEEP:
        _OUTCOMES.popitem(last=False)
    return out
