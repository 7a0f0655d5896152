"""The planner: pick a gradient estimator for every random node, and say why.

The choice is a small table of rules (:data:`RULES`), tried in order on the
facts of each node; the first that matches decides.  Facts are the node's
distribution (does it have a pathwise sampler?) and whether every path from
the node to the cost is differentiable (:mod:`stochgrad.analysis`).  A path
through a later node ``w ~ D(f(z))`` is differentiable when ``w`` is pathwise
(through ``g(eps)``) or score-estimated (through ``log q_w``), so bindings are
planned from last to first.  Users override per node by variable name.

Planning is pure and cached: the plan is computed once per (expression,
overrides) and lowered as often as needed.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import ir
from .analysis import additive_terms, nondiff_use, parameters
from .distributions import lookup
from .errors import PlanError, did_you_mean
from .estimators import EstimatorSpec, Pathwise, Score, as_spec


@dataclass(frozen=True)
class Facts:
    var: str
    dist: str
    reparameterized: bool
    nondiff: str | None  # why the cost is not differentiable in var, if it is not


@dataclass(frozen=True)
class Rule:
    when: Callable[[Facts], bool]
    spec: EstimatorSpec
    reason: str  # formatted with the facts' fields


#: the default policy: unbiased, pathwise wherever it is valid
RULES: tuple[Rule, ...] = (
    Rule(lambda f: f.reparameterized and f.nondiff is None, Pathwise(),
         "reparameterizable, cost differentiable in {var}"),
    Rule(lambda f: f.reparameterized, Score(), "cost not differentiable in {var}: {nondiff}"),
    Rule(lambda f: True, Score(), "{dist} has no pathwise sampler"),
)


@dataclass(frozen=True)
class NodePlan:
    uid: int  # position in evaluation order; also names the node's noise stream
    var: str
    dist: ir.Dist
    spec: EstimatorSpec
    reason: str
    biased: bool
    deps: frozenset[int]  # uids whose samples this node's sample depends on (itself included)

    @property
    def estimator(self) -> str:
        return self.spec.name

    def __str__(self) -> str:
        flag = "biased" if self.biased else "unbiased"
        return f"{self.var} ~ {self.dist}: {self.spec.describe()} \u2014 {self.reason} [{flag}]"


@dataclass(frozen=True, eq=False)
class PlannedExpect(ir.Expr):
    """An expectation ready to lower: its nodes, its additive cost terms, and for each term
    the indices (into ``nodes``) of the score-estimated nodes that the term depends on."""

    source: ir.Expect
    nodes: tuple[NodePlan, ...]
    terms: tuple[tuple[float, ir.Expr], ...]
    boxes: tuple[tuple[int, ...], ...]

    def children(self) -> tuple[ir.Expr, ...]:
        return tuple(t for _, t in self.terms) + tuple(n.dist for n in self.nodes)

    def __str__(self) -> str:
        return str(self.source)


@dataclass(frozen=True)
class Plan:
    expr: ir.Expr
    root: ir.Expr
    nodes: tuple[NodePlan, ...]
    parameters: tuple[str, ...]

    def node(self, var: str) -> NodePlan:
        for n in self.nodes:
            if n.var == var:
                return n
        raise KeyError(var)

    def __str__(self) -> str:
        if not self.nodes:
            return "no random nodes: the expression is deterministic"
        return "\n".join(str(n) for n in self.nodes)


class _Planner:
    def __init__(self, overrides: Mapping[str, EstimatorSpec]) -> None:
        self.overrides = overrides
        self.uids: dict[int, int] = {}
        self.nodes: list[NodePlan] = []

    def number(self, e: ir.Expr) -> None:
        """Give every binding a uid in evaluation order (args, then sample; then the body)."""
        if isinstance(e, ir.Expect):
            for b in e.bindings:
                self.number(b.dist)
                self.uids[id(b)] = len(self.uids)
            self.number(e.body)
        else:
            for c in e.children():
                self.number(c)

    def plan(self, e: ir.Expr, scope: Mapping[str, NodePlan]) -> ir.Expr:
        if isinstance(e, ir.Expect):
            return self.plan_expect(e, scope)
        if not any(isinstance(n, ir.Expect) for n in ir.walk(e)):
            return e
        if isinstance(e, ir.Neg):
            return ir.Neg(self.plan(e.operand, scope), span=e.span)
        if isinstance(e, ir.BinOp):
            return dataclasses.replace(e, left=self.plan(e.left, scope), right=self.plan(e.right, scope))
        if isinstance(e, ir.Call):
            return dataclasses.replace(e, args=tuple(self.plan(a, scope) for a in e.args))
        if isinstance(e, ir.Dist):
            return dataclasses.replace(e, params=tuple((k, self.plan(v, scope)) for k, v in e.params))
        raise TypeError(f"cannot plan {type(e).__name__}")

    def deps(self, e: ir.Expr, scope: Mapping[str, NodePlan]) -> frozenset[int]:
        out: frozenset[int] = frozenset()
        for node in ir.walk(e):
            if isinstance(node, ir.Name) and node.id in scope:
                out |= scope[node.id].deps
        return out

    def plan_expect(self, e: ir.Expect, outer: Mapping[str, NodePlan]) -> PlannedExpect:
        # Provisional scope (estimators filled in below) so dependencies resolve in order.
        scope = dict(outer)
        provisional: list[NodePlan] = []
        for b in e.bindings:
            uid = self.uids[id(b)]
            node = NodePlan(uid, b.var, b.dist, Score(), "", False, self.deps(b.dist, scope) | {uid})
            scope[b.var] = node
            provisional.append(node)
        first_new = len(self.nodes)
        body = self.plan(e.body, scope)
        final: list[NodePlan] = [None] * len(e.bindings)  # type: ignore[list-item]
        for i in reversed(range(len(e.bindings))):
            b, node = e.bindings[i], provisional[i]
            inner_scope = {k: v for k, v in scope.items() if k not in {x.var for x in e.bindings[i:]}}
            dist = self.plan(b.dist, inner_scope)
            later = [e.body] + [x.dist for x in e.bindings[i + 1:]]
            nondiff = next((r for r in (nondiff_use(x, b.var) for x in later) if r), None)
            if nondiff is None:  # a later pathwise node whose own path is broken carries z's path with it
                for w in self.nodes[first_new:] + [f for f in final if f is not None]:
                    if node.uid in w.deps and w.uid != node.uid and w.spec.name == "pathwise" and w.biased:
                        nondiff = f"through {w.var}, whose cost is not differentiable"
                        break
            final[i] = self.decide(b, dist, node, nondiff)
            scope[b.var] = final[i]
        self.nodes.extend(final)
        score = [j for j, n in enumerate(final) if n.spec.name == "score"]
        terms = tuple(additive_terms(body))
        boxes = tuple(tuple(j for j in score if final[j].uid in self.deps(t, scope)) for _, t in terms)
        return PlannedExpect(e, tuple(final), terms, boxes)

    def decide(self, b: ir.Binding, dist: ir.Dist, node: NodePlan, nondiff: str | None) -> NodePlan:
        out = self._decide(b, dist, node, nondiff)
        if out.spec.name == "score" and not lookup(b.dist.name).fixed_support:
            note = f"; the score function is biased here: {b.dist.name}'s support depends on its parameters"
            out = dataclasses.replace(out, reason=out.reason + note, biased=True)
        return out

    def _decide(self, b: ir.Binding, dist: ir.Dist, node: NodePlan, nondiff: str | None) -> NodePlan:
        d = lookup(b.dist.name)
        facts = Facts(b.var, b.dist.name, d.reparameterized, nondiff)
        requested = self.overrides.get(b.var)
        if requested is not None:
            requested.requires(reparameterized=d.reparameterized, dist=str(b.dist))
            biased = requested.biased_by_construction or (requested.name == "pathwise" and nondiff is not None)
            reason = "requested" + (f"; cost not differentiable in {b.var}: {nondiff}" if biased and nondiff else "")
            return dataclasses.replace(node, dist=dist, spec=requested, reason=reason, biased=biased)
        rule = next(r for r in RULES if r.when(facts))
        reason = rule.reason.format(**dataclasses.asdict(facts))
        return dataclasses.replace(node, dist=dist, spec=rule.spec, reason=reason, biased=False)


def plan(expr: Any, estimators: Mapping[str, Any] | None = None) -> Plan:
    """Plan an expression (text or IR); ``estimators`` overrides per variable name."""
    from .api import as_expression

    e = as_expression(expr)
    key = tuple(sorted(((k, as_spec(v, k)) for k, v in (estimators or {}).items()), key=lambda kv: kv[0]))
    return _plan_cached(e, key)


@functools.lru_cache(maxsize=256)
def _plan_cached(e: ir.Expr, overrides: tuple[tuple[str, EstimatorSpec], ...]) -> Plan:
    planner = _Planner(dict(overrides))
    planner.number(e)
    root = planner.plan(e, {})
    bound = {n.var for n in planner.nodes}
    for var in dict(overrides):
        if var not in bound:
            where = ", ".join(sorted(bound)) or "none"
            raise PlanError(f"estimator override for {var!r}, which is not a random variable{did_you_mean(var, bound)}; random variables: {where}")
    nodes = tuple(sorted(planner.nodes, key=lambda n: n.uid))
    return Plan(e, root, nodes, parameters(e))
