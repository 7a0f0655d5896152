"""The planner: pick a gradient estimator for every random node, and say why.

The choice is a small table of rules (:data:`RULES`), tried in order on the
facts of each node; the first that matches decides.  Facts are the node's
distribution (does it have a pathwise sampler?) and whether every path from
the node to the cost is differentiable (:mod:`stochgrad.analysis`).  A path
through a later node ``w ~ D(f(z))`` is differentiable when ``w`` is pathwise
(through ``g(eps)``) or score-estimated (through ``log q_w``), so bindings are
planned from last to first.  Users override per node by variable name.

Planning is pure and cached: the plan is computed once per (expression, overrides, policy,
shapes, budget, capabilities) and lowered as often as needed.  This module knows nothing of
backends or runs: :mod:`stochgrad.api` makes the runnable plan of the public ``sg.plan`` from it.
The rules themselves are data, in :mod:`stochgrad.planrules`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

from .reprs import clipped
from . import ir
from .analysis import additive_terms, nondiff_uses, parameters
from .arraynodes import Index, MatMul
from .densities import Entropy, LogProb
from .distributions import joint_states, lookup
from .distscope import scope_key
from .errors import PlanError, StochgradError, did_you_mean
from .estimators import EstimatorSpec, Relaxed, Score, as_spec
from .estimators.enumerate_examples import per_example
from .kl import KL_FORMULAS, monte_carlo_reason
from .kl import verdict as kl_verdict
from .parser import as_expression
from .planned import LogRatio, NodePlan, Plan, PlannedExpect
from .planrules import ALL_CAPABILITIES, DEFAULT_BUDGET, POLICIES, RULES, Facts
from .planrules import Rule as Rule  # re-exported: the rule table is read and extended through the planner
from .plates import infer_plates
from .scope import Frame, Scope, ShapeEnv, mark_ancestors, score_ancestors, uses
from .shapes import Shape, UnknownShape, infer

#: deepest nesting of calls, distributions and expectations planned (arithmetic does not count)
MAX_NESTING = 150


class _Planner:
    def __init__(
        self,
        overrides: Mapping[str, EstimatorSpec],
        policy: str,
        shapes: Mapping[str, Shape] | None,
        budget: int,
        capabilities: frozenset[str],
    ) -> None:
        self.overrides, self.policy, self.budget, self.capabilities = overrides, policy, budget, capabilities
        self.shapes = shapes
        self.uids: dict[int, int] = {}
        self.nodes: list[NodePlan] = []
        self.notes: list[str] = []
        self.kl_bindings: dict[int, ir.Binding] = {}  # id(KL node) -> its Monte Carlo binding
        self.parents: dict[int, frozenset[int]] = {}  # uid -> uids its distribution names
        self.broken: dict[int, str] = {}  # uid -> the first planned pathwise node with a broken path it reaches

    def shape(self, dist: ir.Dist, scope: Scope) -> Shape | None:
        if scope.any_unknown:
            return None
        try:
            return infer(dist, ShapeEnv(self.shapes, scope))
        except UnknownShape:
            return None
        except StochgradError:
            if self.shapes is None:
                return None  # shapes were guessed (all scalar); the estimate will check them
            raise

    def number(self, e: ir.Expr) -> None:
        """Give every binding a uid in evaluation order (args, then sample; then the body), in one
        pass; refuse calls, distributions and expectations nested deeper than MAX_NESTING."""
        stack: list[tuple[Any, int]] = [(e, 0)]
        while stack:
            item, depth = stack.pop()
            if isinstance(item, ir.Binding):
                self.uids[id(item)] = len(self.uids)
                continue
            if isinstance(item, tuple):  # a KL (or Monte Carlo entropy) node, after its children
                kl = item[0]
                b = (
                    ir.Binding(f"_entropy{len(self.kl_bindings)}", kl.dist)
                    if isinstance(kl, Entropy)
                    else ir.Binding(f"_kl{len(self.kl_bindings)}", kl.p)
                )
                self.kl_bindings[id(kl)] = b
                self.uids[id(b)] = len(self.uids)
                continue
            if not isinstance(item, (ir.BinOp, ir.Neg, ir.Num, ir.Name)):
                depth += 1
                if depth > MAX_NESTING:
                    raise PlanError(
                        f"expression nested too deeply: calls, distributions and expectations nested"
                        f" more than {MAX_NESTING} levels, at `{clipped(item)}`"
                    )
            if isinstance(item, ir.Expect):
                todo: list[Any] = []
                for b in item.bindings:
                    todo += [b.dist, b]
                todo.append(item.body)
                stack.extend((x, depth) for x in reversed(todo))
                continue
            if (
                isinstance(item, ir.KL)
                and kl_verdict(item) == "finite"
                and (item.p.name, item.q.name) not in KL_FORMULAS
            ):
                stack.append(((item,), depth))
            if isinstance(item, Entropy) and not item.closed:
                stack.append(((item,), depth))
            stack.extend((c, depth) for c in reversed(item.children()))

    def plan(self, e: ir.Expr, scope: Scope) -> ir.Expr:
        """``e`` with its expectations and KL terms planned, left to right; a subtree without any
        is kept as it is.  Arithmetic, calls and distributions are rebuilt with an explicit stack."""
        values: list[ir.Expr] = []
        stack: list[tuple[ir.Expr, bool]] = [(e, False)]
        while stack:
            node, ready = stack.pop()
            if isinstance(node, ir.Expect):
                values.append(self.plan_expect(node, scope))
            elif isinstance(node, ir.KL):
                values.append(self.plan_kl(node, scope))
            elif isinstance(node, Entropy):
                values.append(self.plan_entropy(node, scope))
            elif not isinstance(node, (ir.Neg, ir.BinOp, ir.Call, ir.Dist, LogProb, MatMul, Index)):
                values.append(node)  # a name, a number, or a node planned already (a KL's log-ratio)
            elif not ready:
                stack.append((node, True))
                stack.extend((c, False) for c in reversed(node.children()))
            else:
                n = len(node.children())
                kids = values[len(values) - n :]
                del values[len(values) - n :]
                values.append(_rebuild(node, kids))
        return values[0]

    def plan_kl(self, e: ir.KL, scope: Scope) -> ir.Expr:
        p, q = self.plan(e.p, scope), self.plan(e.q, scope)
        # supports, with the shapes known here: an error across spaces, or +inf (see kl.verdict)
        infinite = kl_verdict(e, self.shape(e.p, scope), self.shape(e.q, scope)) == "infinite"
        if id(e) not in self.kl_bindings:  # closed form, or infinite
            self.notes.append(
                f"{e}: " + ("+inf: the support of p is not inside that of q" if infinite else "closed form")
            )
            return dataclasses.replace(e, p=p, q=q)  # type: ignore[arg-type]
        b = self.kl_bindings[id(e)]
        self.notes.append(
            f"{e}: Monte Carlo, E[log p(x) - log q(x)] with {b.var} ~ {e.p} (plan above;"
            f" {monte_carlo_reason(e.p.name, e.q.name)})"
        )
        return self.plan_expect(ir.Expect(LogRatio(ir.Name(b.var), p, q), (b,)), scope)  # type: ignore[arg-type]

    def plan_entropy(self, e: Entropy, scope: Scope) -> ir.Expr:
        """``entropy(D)``: the closed form, or ``E[-log_prob(D, h), h ~ D]`` planned like any expectation."""
        if id(e) not in self.kl_bindings:
            self.notes.append(f"{e}: closed form")
            return dataclasses.replace(e, dist=self.plan(e.dist, scope))  # type: ignore[arg-type]  # a planned Dist is a Dist
        b = self.kl_bindings[id(e)]
        self.notes.append(f"{e}: Monte Carlo, E[-log p(x)] with {b.var} ~ {e.dist} (plan above)")
        return self.plan_expect(ir.Expect(ir.Neg(LogProb(e.dist, ir.Name(b.var))), (b,)), scope)

    def append(self, nodes: list[NodePlan]) -> None:
        """Record planned nodes; a pathwise node whose own path is broken breaks its ancestors' paths."""
        for w in nodes:
            self.nodes.append(w)
            if w.spec.pathwise and w.biased:
                mark_ancestors(self.parents, w.uid, w.var, self.broken)

    def plan_expect(self, e: ir.Expect, outer: Scope) -> PlannedExpect:
        # Provisional nodes (estimators decided below) so dependencies and shapes resolve in order.
        frame = Frame()
        for i, b in enumerate(e.bindings):
            uid = self.uids[id(b)]
            at = Scope(frame, i, outer)
            node = NodePlan(uid, b.var, b.dist, Score(), "", False, frozenset(uses(b.dist, at)), self.shape(b.dist, at))
            self.parents[uid] = node.parents
            frame.add(node)
        scope = Scope(frame, len(e.bindings), outer)
        body = self.plan(e.body, scope)
        # the first non-differentiable use of each variable: in the body, else in the earliest later binding
        in_body = nondiff_uses(e.body)
        in_dists = [nondiff_uses(b.dist) for b in e.bindings]
        later: dict[str, str] = {}
        local = {n.uid for n in frame.nodes}
        through: dict[int, str] = {}  # uid -> the earliest later pathwise local node with a broken path
        final: list[NodePlan] = [None] * len(e.bindings)  # type: ignore[list-item]
        for i in reversed(range(len(e.bindings))):
            b, node = e.bindings[i], frame.nodes[i]
            if i + 1 < len(e.bindings):
                later.update(in_dists[i + 1])
            dist = self.plan(b.dist, Scope(frame, i, outer))
            nondiff = in_body.get(b.var) or later.get(b.var)
            if nondiff is None:  # a later pathwise node whose own path is broken carries z's path with it
                w = self.broken.get(node.uid) or through.get(node.uid)
                if w is not None:
                    nondiff = f"through {w}, whose cost is not differentiable"
            final[i] = self.decide(b, dist, node, nondiff)  # type: ignore[arg-type]  # a planned Dist is a Dist
            frame.nodes[i] = final[i]
            if final[i].spec.pathwise and final[i].biased:
                mark_ancestors(self.parents, node.uid, b.var, through, overwrite=True, within=local)
        for k, n in enumerate(final):  # estimators that rewrite the cost (e.g. sticking the landing)
            rewrite = n.spec.rewrite_cost(
                body, n.var, n.dist, _rebuild, None if self.shapes is None else ShapeEnv(self.shapes, scope)
            )
            if rewrite is None:
                continue
            body = rewrite.body
            if rewrite.note:
                self.notes.append(rewrite.note)
            if rewrite.biased:
                final[k] = frame.nodes[k] = dataclasses.replace(n, biased=True, reason=f"{n.reason}; {rewrite.biased}")

        # planned as scored for the plate analysis: a requested enumerate_examples (restored after it), and
        # a low_variance relaxation alone in its expectation, which an exact per-example enumeration replaces
        # where it fits (exact beats biased, as rule 2 before rule 3); otherwise the relaxation is planned as is
        def stand_in(n: NodePlan) -> bool:
            return n.spec.needs_plates or (len(final) == 1 and type(n.spec) is Relaxed)

        trial = [dataclasses.replace(n, spec=Score()) if stand_in(n) else n for n in final]
        nodes, terms, boxes, plates = self.assemble(e, trial, body, scope)
        relaxed = [j for j, n in enumerate(final) if stand_in(n) and not n.spec.needs_plates]
        if relaxed and type(nodes[relaxed[0]].spec) is Score:  # not replaced: plan the relaxation itself
            nodes, terms, boxes, plates = self.assemble(e, final, body, scope)
        final = [dataclasses.replace(m, spec=n.spec) if n.spec.needs_plates else m for n, m in zip(final, nodes)]
        self.append(final)
        return PlannedExpect(e, tuple(final), terms, boxes, plates)

    def assemble(
        self, e: ir.Expect, final: list[NodePlan], body: ir.Expr, scope: Scope
    ) -> tuple[list[NodePlan], tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]:
        """The expectation's cost terms, the score nodes each term pairs with, and the plates inferred
        (then, by default, a plated node enumerated per example where that is exact)."""
        score = [n.spec.scores for n in final]
        positions = {n.uid: j for j, n in enumerate(final)}
        ancestors = score_ancestors([[positions[u] for u in n.parents if u in positions] for n in final], score)
        terms = tuple(additive_terms(body))
        boxes = tuple(
            tuple(sorted(frozenset().union(*(ancestors[positions[u]] for u in uses(t, scope) if u in positions))))
            for _, t in terms
        )
        plates: tuple[Any, ...] = ()
        if self.shapes is not None and any(score):  # per-example score terms where the cost allows (stochgrad.plates)
            found = infer_plates(tuple(final), terms, boxes, ShapeEnv(self.shapes, scope))
            final, terms, plates = list(found.nodes), found.terms, found.plates
            if len(final) == 1 and final[0].var not in self.overrides and self.policy != "min_variance":
                final, self.budget = per_example(PlannedExpect(e, tuple(final), terms, boxes, plates), self.budget)
        return final, terms, boxes, plates

    def decide(self, b: ir.Binding, dist: ir.Dist, node: NodePlan, nondiff: str | None) -> NodePlan:
        out = self._decide(b, dist, node, nondiff)
        if out.spec.scores and not lookup(b.dist.name).fixed_support:
            note = f"; the score function is biased here: {b.dist.name}'s support depends on its parameters"
            out = dataclasses.replace(out, reason=out.reason + note, biased=True)
        note = out.spec.plan_note(out, joint_states(lookup(b.dist.name), b.dist, out.shape))
        if note:  # e.g. how many cost evaluations per sample it takes
            out = dataclasses.replace(out, reason=f"{out.reason}; {note}")
        orders = getattr(lookup(b.dist.name), "pathwise_orders", None)  # None: every order
        if out.spec.pathwise and orders is not None:
            note = f"; derivatives up to order {orders} (implicit reparameterization; 'score' has every order)"
            out = dataclasses.replace(out, reason=out.reason + note)
        return out

    def _decide(self, b: ir.Binding, dist: ir.Dist, node: NodePlan, nondiff: str | None) -> NodePlan:
        d = lookup(b.dist.name)
        states = joint_states(d, b.dist, node.shape)
        lacking = d.needs - self.capabilities
        missing = f"the backend lacks {', '.join(sorted(lacking))} for a pathwise {d.name}" if lacking else ""
        if states is None:
            infinite = d.discrete and node.shape is not None and not getattr(d, "user_defined", False)
            support = "infinite support" if infinite else "support size unknown"
        else:
            count = f"{states:,}" if states < 1 << 63 else "more than 2**63"  # joint_states caps the count there
            support = f"{count} joint states exceed the enumeration budget ({self.budget:,} left)"
        facts = Facts(
            b.var,
            b.dist.name,
            d.reparameterized and not lacking,
            nondiff,
            d.discrete,
            d.relaxable,
            states,
            self.budget,
            self.policy,
            support,
            missing,
        )
        requested = self.overrides.get(b.var)
        if requested is not None:
            try:
                requested.requires(d, states=states, capabilities=self.capabilities)
            except PlanError as exc:
                raise PlanError(f"{b}: {exc}") from None
            if requested.relaxes_cost and nondiff is not None:  # a relaxation control variate
                raise PlanError(
                    f"{b}: {requested.name} evaluates and differentiates the cost at relaxed values of"
                    f" {b.var}, but the cost is not differentiable in {b.var}: {nondiff}"
                )
            spec, reason = requested, "requested"
        else:
            rule = next(r for r in RULES if r.when(facts))
            spec, reason = rule.spec, rule.reason.format(**dataclasses.asdict(facts))
        if spec.enumerates:
            self.budget = max(1, self.budget // (states or 1))
        biased = spec.biased_by_construction or (spec.through_sample and nondiff is not None)
        if biased and requested is not None and nondiff:
            reason += f"; cost not differentiable in {b.var}: {nondiff}"
        return dataclasses.replace(node, dist=dist, spec=spec, reason=reason, biased=biased)


def _rebuild(node: ir.Expr, kids: list[ir.Expr]) -> ir.Expr:
    """``node`` with new children (the same node when none changed)."""
    if all(a is b for a, b in zip(kids, node.children())):
        return node
    if isinstance(node, (MatMul, Index)):
        return node.rebuild(kids)
    if isinstance(node, ir.Neg):
        return ir.Neg(kids[0], span=node.span)
    if isinstance(node, ir.BinOp):
        return dataclasses.replace(node, left=kids[0], right=kids[1])
    if isinstance(node, ir.Call):
        return dataclasses.replace(node, args=tuple(kids[: len(node.args)]))
    if isinstance(node, LogProb):
        return node.rebuild(kids)
    return dataclasses.replace(node, params=tuple((k, v) for (k, _), v in zip(node.params, kids)))  # type: ignore[attr-defined, type-var]


def plan(
    expr: ir.Expr | str,
    estimators: Mapping[str, Any] | None = None,
    *,
    policy: str = "unbiased",
    shapes: Mapping[str, Any] | None = None,
    enumerate_budget: int = DEFAULT_BUDGET,
    capabilities: frozenset[str] | None = None,
) -> Plan:
    """The static plan of an expression (text or IR): the rules alone, no pilot runs, no backend
    object (only its ``capabilities``; ``None``: every one the planner asks about).  This is the
    internal planner; the public :func:`stochgrad.plan` (:mod:`stochgrad.api`) adds parameter
    values, the backend that runs the plan and ``policy="min_variance"``.

    ``estimators`` overrides per variable name; ``policy`` is ``"unbiased"`` (default) or
    ``"low_variance"`` (may relax discrete nodes whose cost is differentiable in them);
    ``shapes`` maps parameter names to shapes (default: all scalar), which sizes finite supports;
    ``enumerate_budget`` caps the joint states enumerated exactly.
    """
    if policy not in POLICIES:
        raise PlanError(
            f"unknown policy {policy!r}{did_you_mean(str(policy), POLICIES)}; choose from {', '.join(POLICIES)}"
        )
    if policy == "min_variance":
        raise PlanError(
            "policy 'min_variance' chooses estimators by pilot runs, which need parameter values: pass"
            " params={...} to plan (and the seed of the estimate to match), or --at NAME=VALUE"
        )
    budget = enumerate_budget
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise PlanError(f"the enumeration budget must be an integer >= 1, got {budget!r}")
    e = as_expression(expr)
    key = tuple(sorted(((k, as_spec(v, k)) for k, v in (estimators or {}).items()), key=lambda kv: kv[0]))
    shape_key = None if shapes is None else tuple(sorted((k, tuple(int(x) for x in s)) for k, s in shapes.items()))
    caps = ALL_CAPABILITIES if capabilities is None else frozenset(capabilities)
    return _plan_cached(e, key, policy, shape_key, budget, caps, scope_key())  # scope: stochgrad.distscope


@functools.lru_cache(maxsize=256)
def _plan_cached(
    e: ir.Expr,
    overrides: tuple[tuple[str, EstimatorSpec], ...],
    policy: str,
    shapes: tuple[tuple[str, Shape], ...] | None,
    budget: int,
    capabilities: frozenset[str],
    scope: tuple[tuple[str, int], ...] = (),  # the scoped distributions' identities: a cache key only
) -> Plan:
    planner = _Planner(dict(overrides), policy, None if shapes is None else dict(shapes), budget, capabilities)
    planner.number(e)
    root = planner.plan(e, Scope())
    bound = {n.var for n in planner.nodes}
    for var in dict(overrides):
        if var not in bound:
            where = ", ".join(sorted(bound)) or "none"
            raise PlanError(
                f"estimator override for {var!r}, which is not a random variable{did_you_mean(var, bound)}; random variables: {where}"
            )
    nodes = tuple(sorted(planner.nodes, key=lambda n: n.uid))
    return Plan(e, root, nodes, parameters(e), tuple(planner.notes), shapes)
