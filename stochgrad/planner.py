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
from .distributions import MAX_STATES, joint_states, lookup
from .errors import PlanError, StochgradError, did_you_mean
from .estimators import Enumerate, EstimatorSpec, Pathwise, Relaxed, Score, as_spec
from .kl import KL_FORMULAS
from .shapes import Shape, UnknownShape, infer

#: planning policies: the default never picks a biased estimator by itself
POLICIES = ("unbiased", "low_variance", "min_variance")
#: default largest joint support enumerated exactly (over all enumerated nodes together)
DEFAULT_BUDGET = 1024
ALL_CAPABILITIES = frozenset({"implicit_reparam"})


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
    Rule(lambda f: f.reparameterized and f.nondiff is None, Pathwise(),
         "reparameterizable, cost differentiable in {var}"),
    Rule(lambda f: f.states is not None and f.states <= f.budget, Enumerate(),
         "finite support: exact sum over {states} states, zero variance"),
    Rule(lambda f: f.policy == "low_variance" and f.relaxable and f.nondiff is None, Relaxed(),
         "low_variance policy: cost differentiable in {var}, so a relaxation trades bias for variance"),
    Rule(lambda f: f.reparameterized, Score(), "cost not differentiable in {var}: {nondiff}"),
    Rule(lambda f: bool(f.missing), Score(), "{missing}"),
    Rule(lambda f: f.discrete, Score(), "discrete, {support}"),
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
    shape: Shape | None = None  # logical shape of one sample, when parameter shapes are known

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


@dataclass(frozen=True, eq=False)
class LogRatio(ir.Expr):
    """``log p(x) - log q(x)``: the cost of a Monte Carlo ``KL(p || q)`` (internal, not DSL)."""

    x: ir.Name
    p: ir.Dist
    q: ir.Dist

    def children(self) -> tuple[ir.Expr, ...]:
        return (self.x, self.p, self.q)

    def __str__(self) -> str:
        return f"log {self.p}({self.x}) - log {self.q}({self.x})"


@dataclass(frozen=True)
class Plan:
    expr: ir.Expr
    root: ir.Expr
    nodes: tuple[NodePlan, ...]
    parameters: tuple[str, ...]
    notes: tuple[str, ...] = ()  # how each KL(p || q) is computed

    def node(self, var: str) -> NodePlan:
        for n in self.nodes:
            if n.var == var:
                return n
        raise KeyError(var)

    def __str__(self) -> str:
        if not self.nodes and not self.notes:
            return "no random nodes: the expression is deterministic"
        return "\n".join([str(n) for n in self.nodes] + list(self.notes))


class _Planner:
    def __init__(self, overrides: Mapping[str, EstimatorSpec], policy: str, shapes: Mapping[str, Shape] | None,
                 budget: int, capabilities: frozenset[str]) -> None:
        self.overrides, self.policy, self.budget, self.capabilities = overrides, policy, budget, capabilities
        self.shapes = shapes
        self.uids: dict[int, int] = {}
        self.nodes: list[NodePlan] = []
        self.notes: list[str] = []
        self.kl_bindings: dict[int, ir.Binding] = {}  # id(KL node) -> its Monte Carlo binding

    def shape(self, dist: ir.Dist, scope: Mapping[str, NodePlan]) -> Shape | None:
        env = dict(self.shapes or {})
        for var, node in scope.items():
            if node.shape is None:
                return None
            env[var] = node.shape
        try:
            return infer(dist, env)
        except UnknownShape:
            return None
        except StochgradError:
            if self.shapes is None:
                return None  # shapes were guessed (all scalar); the estimate will check them
            raise

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
            if isinstance(e, ir.KL) and (e.p.name, e.q.name) not in KL_FORMULAS:
                b = ir.Binding(f"_kl{len(self.kl_bindings)}", e.p)
                self.kl_bindings[id(e)] = b
                self.uids[id(b)] = len(self.uids)

    def plan(self, e: ir.Expr, scope: Mapping[str, NodePlan]) -> ir.Expr:
        if isinstance(e, ir.Expect):
            return self.plan_expect(e, scope)
        if not any(isinstance(n, (ir.Expect, ir.KL)) for n in ir.walk(e)):
            return e
        if isinstance(e, ir.KL):
            p, q = self.plan(e.p, scope), self.plan(e.q, scope)
            if id(e) not in self.kl_bindings:
                self.notes.append(f"{e}: closed form")
                return dataclasses.replace(e, p=p, q=q)  # type: ignore[arg-type]
            b = self.kl_bindings[id(e)]
            self.notes.append(f"{e}: Monte Carlo, E[log p(x) - log q(x)] with {b.var} ~ {e.p} (plan above)")
            return self.plan_expect(ir.Expect(LogRatio(ir.Name(b.var), p, q), (b,)), scope)  # type: ignore[arg-type]
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
            node = NodePlan(uid, b.var, b.dist, Score(), "", False, self.deps(b.dist, scope) | {uid},
                            self.shape(b.dist, scope))
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
        states = joint_states(d, b.dist, node.shape)
        lacking = d.needs - self.capabilities
        missing = f"the backend lacks {', '.join(sorted(lacking))} for a pathwise {d.name}" if lacking else ""
        if states is None:
            support = "infinite support" if d.discrete and node.shape is not None else "support size unknown"
        else:
            support = f"{states} joint states exceed the enumeration budget ({self.budget} left)"
        facts = Facts(b.var, b.dist.name, d.reparameterized and not lacking, nondiff, d.discrete,
                      d.relaxable, states, self.budget, self.policy, support, missing)
        requested = self.overrides.get(b.var)
        if requested is not None:
            try:
                requested.requires(d, states=states)
            except PlanError as exc:
                raise PlanError(f"{b}: {exc}") from None
            if requested.name == "pathwise" and lacking:
                raise PlanError(f"pathwise estimator requested for {b.var}, but {missing}")
            if requested.enumerates and states is not None and states > MAX_STATES:
                raise PlanError(f"enumerate requested for {b.var}, but its {states} joint states exceed {MAX_STATES}")
            spec, reason = requested, "requested"
        else:
            rule = next(r for r in RULES if r.when(facts))
            spec, reason = rule.spec, rule.reason.format(**dataclasses.asdict(facts))
        if spec.enumerates:
            self.budget = max(1, self.budget // (states or 1))
        biased = spec.biased_by_construction or (spec.name in ("pathwise", "relaxed", "straight_through",
                                                               "straight_through_gumbel") and nondiff is not None)
        if biased and requested is not None and nondiff:
            reason += f"; cost not differentiable in {b.var}: {nondiff}"
        return dataclasses.replace(node, dist=dist, spec=spec, reason=reason, biased=biased)


def plan(
    expr: Any,
    estimators: Mapping[str, Any] | None = None,
    *,
    policy: str = "unbiased",
    shapes: Mapping[str, Any] | None = None,
    budget: int = DEFAULT_BUDGET,
    capabilities: frozenset[str] | None = None,
    params: Mapping[str, Any] | None = None,
    seed: int | None = None,
    backend: Any = None,
    n: int | None = None,
    batch_axes: int = 0,
) -> Plan:
    """Plan an expression (text or IR).

    ``estimators`` overrides per variable name; ``policy`` is ``"unbiased"`` (default),
    ``"low_variance"`` (may relax discrete nodes whose cost is differentiable in them) or
    ``"min_variance"`` (pilot runs: needs ``params``); ``shapes`` maps parameter names to shapes
    (default: all scalar, or those of ``params``), which sizes finite supports; ``budget`` caps the
    joint states enumerated exactly; ``capabilities`` are the backend's.

    Given ``params`` (values), ``n``, ``seed``, ``backend`` and ``batch_axes`` as for
    :func:`stochgrad.estimate`, the result is the plan that estimate runs: under min_variance the
    pilots' choice (same seed, same pilots), with ``n=1`` no leave-one-out baseline.
    """
    from .api import as_expression

    if policy not in POLICIES:
        raise PlanError(f"unknown policy {policy!r}{did_you_mean(str(policy), POLICIES)}; choose from {', '.join(POLICIES)}")
    if policy == "min_variance" and params is None:
        raise PlanError("policy 'min_variance' chooses estimators by pilot runs, which need parameter values: pass"
                        " params={...} to plan (and the seed of the estimate to match), or --at NAME=VALUE")
    if params is not None or n is not None:
        from .api import plan_for_values

        return plan_for_values(as_expression(expr), estimators, policy=policy, shapes=shapes, budget=budget,
                               capabilities=capabilities, params=params, seed=seed, backend=backend, n=n,
                               batch_axes=batch_axes)
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise PlanError(f"the enumeration budget must be an integer >= 1, got {budget!r}")
    e = as_expression(expr)
    key = tuple(sorted(((k, as_spec(v, k)) for k, v in (estimators or {}).items()), key=lambda kv: kv[0]))
    shape_key = None if shapes is None else tuple(sorted((k, tuple(int(x) for x in s)) for k, s in shapes.items()))
    caps = ALL_CAPABILITIES if capabilities is None else frozenset(capabilities)
    return _plan_cached(e, key, policy, shape_key, budget, caps)


@functools.lru_cache(maxsize=256)
def _plan_cached(e: ir.Expr, overrides: tuple[tuple[str, EstimatorSpec], ...], policy: str,
                 shapes: tuple[tuple[str, Shape], ...] | None, budget: int, capabilities: frozenset[str]) -> Plan:
    planner = _Planner(dict(overrides), policy, None if shapes is None else dict(shapes), budget, capabilities)
    planner.number(e)
    root = planner.plan(e, {})
    bound = {n.var for n in planner.nodes}
    for var in dict(overrides):
        if var not in bound:
            where = ", ".join(sorted(bound)) or "none"
            raise PlanError(f"estimator override for {var!r}, which is not a random variable{did_you_mean(var, bound)}; random variables: {where}")
    nodes = tuple(sorted(planner.nodes, key=lambda n: n.uid))
    return Plan(e, root, nodes, parameters(e), tuple(planner.notes))
