"""Baseline state, owned by the run: moving averages, and what a plan does at n = 1.

A :class:`stochgrad.MovingAverage` spec is configuration only (its decay).  Its running value
``b_t = decay * b_{t-1} + (1 - decay) * m_t`` (``m_t`` the mean over batch ``t`` of the cost terms
that depend on the node, ``b_1 = m_1``)
lives in a :class:`BaselineState`, one :class:`AverageState` per random node (by uid), that the
lowering receives from whoever owns the run, in the manner of optax's optimizer states:

* ``estimate`` makes a fresh one per call and carries it across the call's chunks, so two
  calls with one seed give identical results whatever specs they share;
* a compiled objective owns one for all its calls (``f.baseline_state``, readable and
  resettable), so two objectives compiled from one spec never share a baseline.

Batch ``t`` uses ``b_{t-1}`` (none for the first batch): a baseline that does not depend on the
batch's own samples leaves the score-function estimator unbiased.

Leave-one-out needs another sample: with ``n = 1`` (and no enumeration copies) the lowering
forms none.  :func:`single_sample` makes the plan say so and run exactly that, replacing every
node's spec by its ``at_one_sample()``: a leave-one-out score node's by
:class:`stochgrad.estimators.LoneScore` (no baseline, described as such).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np

from .errors import StochgradError
from .estimators import LoneScore  # noqa: F401  (re-exported: the spec single_sample puts in)
from .planner import NodePlan, Plan


class AverageState:
    """One node's moving average: ``value`` (numpy; None before the first batch) and ``updates``."""

    __slots__ = ("var", "value", "updates")

    def __init__(self, var: str) -> None:
        self.var = var
        self.value: np.ndarray | None = None
        self.updates = 0

    def update(self, batch_mean: np.ndarray, decay: float) -> None:
        """Fold in one batch's mean cost (a value of a different shape is an error, not a broadcast)."""
        if self.value is not None and np.shape(self.value) != np.shape(batch_mean):
            raise StochgradError(
                f"the moving-average baseline of {self.var} holds a value of shape {np.shape(self.value)}, but this"
                f" batch's costs have shape {np.shape(batch_mean)}; reset the state (f.baseline_state.reset())"
                " or use one objective per shape"
            )
        self.value = batch_mean if self.value is None else decay * self.value + (1 - decay) * batch_mean
        self.updates += 1

    def __repr__(self) -> str:
        return f"AverageState(var={self.var!r}, value={self.value}, updates={self.updates})"


class BaselineState:
    """The moving-average states of one run or one objective, by node uid; read by variable name."""

    def __init__(self) -> None:
        self._nodes: dict[int, AverageState] = {}

    def node(self, node: NodePlan) -> AverageState:
        """The state of ``node`` (made empty on first use)."""
        if node.uid not in self._nodes:
            self._nodes[node.uid] = AverageState(node.var)
        return self._nodes[node.uid]

    def __getitem__(self, var: str) -> AverageState:
        found = [s for s in self._nodes.values() if s.var == var]
        if len(found) != 1:
            have = ", ".join(sorted({s.var for s in self._nodes.values()})) or "none yet"
            raise KeyError(
                f"{var!r}: {'no' if not found else 'more than one'} moving-average baseline of that"
                f" name (states: {have})"
            )
        return found[0]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(s.var for s in self._nodes.values()))

    def __len__(self) -> int:
        return len(self._nodes)

    def reset(self) -> None:
        """Forget every average: the next batch again has no baseline."""
        self._nodes.clear()

    def __repr__(self) -> str:
        return f"BaselineState({list(self._nodes.values())!r})"


def single_sample(p: Plan) -> Plan:
    """``p`` as a run with one sample executes it: each node's :meth:`EstimatorSpec.at_one_sample`
    (leave-one-out score nodes take no baseline, :class:`LoneScore`)."""
    if all(node.spec.at_one_sample() is node.spec for node in p.nodes):
        return p

    def node(n: NodePlan) -> NodePlan:
        n = dataclasses.replace(n, dist=rebuild(n.dist))
        alone = n.spec.at_one_sample()
        return n if alone is n.spec else dataclasses.replace(n, spec=alone)

    def rebuild(x: Any) -> Any:
        if isinstance(x, NodePlan):
            return node(x)
        if isinstance(x, tuple):
            return tuple(rebuild(v) for v in x)
        if dataclasses.is_dataclass(x) and not isinstance(x, type) and hasattr(x, "children"):
            changes = {f.name: rebuild(getattr(x, f.name)) for f in dataclasses.fields(x) if f.init}
            return dataclasses.replace(x, **changes)
        return x

    return dataclasses.replace(p, root=rebuild(p.root), nodes=tuple(node(n) for n in p.nodes))
