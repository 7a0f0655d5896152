"""Variance-aware planning: ``policy="min_variance"``.

Pathwise gradients are not always the least noisy: for ``E[cos(k z)]`` with large
``k`` the pathwise estimator carries a factor ``k`` that the score function with a
baseline does not (Mohamed et al. 2020, section 3).  Under this policy a short pilot
run measures, per random node, every *unbiased* estimator that applies (pathwise,
score function with a leave-one-out baseline, enumeration); each gets the cost
``variance per sample x time per sample`` (summed over gradient entries), i.e. the
time needed to reach a given standard error.  The cheapest wins if it beats the static
rules' choice by more than :data:`MARGIN`; otherwise the pilot is inconclusive and
the static choice stays.  The plan's reason reports the measurement.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from .distributions import joint_states, lookup
from .estimators import Enumerate, EstimatorSpec, Score, as_spec
from .planner import Plan

#: a pilot's winner must be this many times cheaper than the static choice to replace it
MARGIN = 2.0
PILOT_N = 2048


def _cost(run: Any, estimators: Mapping[str, Any]) -> float:
    run(estimators, 64)  # warm up
    t0 = time.perf_counter()
    r = run(estimators, PILOT_N)
    seconds = (time.perf_counter() - t0) / PILOT_N
    variance = sum(float(np.sum(np.square(r.stderr[k]))) * PILOT_N for k in r.stderr)
    return variance * seconds


def pilot(base: Plan, run: Any, user: Mapping[str, Any]) -> tuple[dict[str, EstimatorSpec], dict[str, str]]:
    """Overrides and reasons chosen by pilot runs; ``run(estimators, n)`` runs an estimate."""
    chosen = {k: as_spec(v, k) for k, v in user.items()}
    reasons: dict[str, str] = {}
    for node in base.nodes:
        if node.var in user or node.var.startswith("_kl"):
            continue
        # the static choice is pathwise only where pathwise is unbiased; the score function always is
        candidates: list[EstimatorSpec] = [node.spec] + ([Score()] if node.spec != Score() else [])
        if not node.spec.enumerates and joint_states(lookup(node.dist.name), node.dist, node.shape) is not None:
            candidates.append(Enumerate())
        if len(candidates) < 2 or node.biased:
            continue
        costs = {c: _cost(run, {**chosen, node.var: c}) for c in candidates}
        static, best = node.spec, min(costs, key=costs.__getitem__)
        listing = ", ".join(f"{c.describe()} {costs[c]:.2g}" for c in candidates)
        if best != static and costs[best] * MARGIN < costs[static]:
            chosen[node.var] = best
            reasons[node.var] = f"min_variance pilot (n={PILOT_N}, variance x seconds per sample): {listing}"
        else:
            chosen[node.var] = static
            reasons[node.var] = (f"{node.reason}; min_variance pilot kept it (n={PILOT_N}, variance x seconds"
                                 f" per sample: {listing})")
    return chosen, reasons


def explain(p: Plan, reasons: Mapping[str, str]) -> Plan:
    """The plan with the pilot's measurements as reasons."""
    nodes = tuple(dataclasses.replace(n, reason=reasons[n.var]) if n.var in reasons else n for n in p.nodes)
    return dataclasses.replace(p, nodes=nodes)
