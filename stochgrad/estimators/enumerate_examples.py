"""Exact enumeration per example: ``E[sum_i f_i(z_i)] = sum_i sum_s q_i(s) f_i(s)`` over a plate.

A node ``z`` whose leading axis holds ``N`` independent examples (``q(z) = prod_i q_i(z_i)``, the
rows of a batched Bernoulli or Categorical), in a cost that is a sum over that axis of terms each
depending on its own example only (an inferred plate, :mod:`stochgrad.plates`), has by linearity of
expectation and independence of the examples

    E_q[sum_i f_i(z_i)] = sum_i E_{q_i}[f_i(z_i)] = sum_i sum_{s in S} q_i(s) f_i(s),

where ``S`` is the support of one example (``2^D`` states for ``D`` Bernoulli elements, ``K^D`` for
``D`` categoricals of ``K`` classes).  The ``N`` examples are enumerated *side by side*: copy ``s``
sets every example to state ``s`` at once, so the cost is evaluated ``|S|`` times per sample (not
``|S|^N``, the joint enumeration; not ``N |S|``, IndeCateR's one element at a time), vectorized over
the copies on the sample axis, and each example's term in copy ``s`` is weighted by its own
``q_i(s)``.  This is Pyro's plate-level enumeration (``TraceEnum_ELBO`` over a ``plate``, Obermeyer et
al. 2019) for a single enumerated site: zero variance, and exact derivatives at every order, since the
weights are the law's ``prob`` (polynomials in the parameters, as :mod:`.enumerate`'s).

Where it applies: the node is the only random node of its expectation and outside an enumeration;
the planner inferred its plate; every cost term that depends on it is planned per example; one
example's support is finite, known before sampling, and at most ``budget`` states.  The planner picks
it by default where the joint support exceeds the enumeration budget but one example's does not
(:func:`stochgrad.planner.plan`), and says so in the plan.  A term summed over the examples would mix
the copies of different examples' states, so a cost the plate analysis cannot split is refused by
name (request ``score``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .. import ir
from ..distributions import joint_prob, joint_states, joint_support, lookup
from ..errors import PlanError
from .base import Array, EstimatorSpec, ExpectStep, whole_option
from .copies import alone, check_plate, tiled
from .score import Score

if TYPE_CHECKING:
    from ..backend import Backend
    from ..distributions import Distribution, Draw
    from ..planned import NodePlan, PlannedExpect
    from ..program.frame import Frame

#: default largest support of one example enumerated
BUDGET = 1024


def example_states(node: NodePlan) -> int | None:
    """The number of states of one example of ``node`` (its logical shape without the leading plate
    axis), or None where unknown or infinite."""
    if node.shape is None or len(node.shape) < 1:
        return None
    d = lookup(node.dist.name)
    if len(node.shape) - 1 < d.event_rank:
        return None
    return joint_states(d, node.dist, tuple(node.shape[1:]))


def depends(term: ir.Expr, var: str) -> bool:
    """Whether ``term`` names ``var`` (conservatively: a rebinding of the name inside counts too)."""
    return any(isinstance(x, ir.Name) and x.id == var for x in ir.walk(term))


@dataclass(frozen=True)
class EnumerateExamples(EstimatorSpec):
    """Each example's states summed exactly, all examples side by side (zero variance)."""

    name: ClassVar[str] = "enumerate_examples"
    needs_plates: ClassVar[bool] = True  # planned with the plate analysis of a scored node
    #: the most states of one example enumerated (cost evaluations per sample)
    budget: int = BUDGET

    def __post_init__(self) -> None:
        whole_option(self, "budget", "a whole number >= 1 of states")

    def describe(self) -> str:
        return "enumerate_examples (each example's states summed exactly, the examples side by side)"

    def requires(self, d: Distribution, *, states: int | None, capabilities: frozenset[str] | None = None) -> None:
        if not d.discrete or getattr(d, "user_defined", False):
            raise PlanError(
                f"enumerate_examples needs a discrete node with a known finite support; this node is {d.name}"
            )

    def evaluations(self, states: int | None, node: NodePlan | None = None) -> int:
        found = example_states(node) if node is not None else None
        return found or 1

    def own_surrogate(self, e: PlannedExpect, nodes: Sequence[Any], terms: Sequence[Any]) -> ExpectStep:
        node = next(n for n in e.nodes if n.spec == self)
        check(e, node, self.budget)
        return lambda fr, env: expect(fr, e, env, nodes[0], list(terms))

    def sample(self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]) -> tuple[Array, None]:
        return d.sample(B, p, draw, shape), None

    def sample_copies(
        self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]
    ) -> tuple[Array, Array]:
        """The ``S`` copies (``S`` blocks of ``n`` rows: copy ``s`` sets every example to state ``s``)
        and each copy's per-example probability ``q_i(s)``, shape ``(S n, N)``, differentiable."""
        node = getattr(draw, "node", None)
        support = joint_support(d, node.dist, tuple(shape[1:])) if node is not None else None
        if support is None:
            var = getattr(node, "var", "the node")
            raise PlanError(f"enumerate_examples: cannot enumerate one example of {var} (shape {tuple(shape)})")
        s = support.shape[0]
        n = B.shape(d.sample(B, p, draw, shape))[0]  # the samples' count (the draw itself is not used)
        values = np.broadcast_to(support[:, None, None], (s, n) + tuple(shape))
        copies = B.asarray(np.ascontiguousarray(values).reshape((s * n,) + tuple(shape)))
        rows = {k: B.concat([v] * s) if B.shape(v)[0] != 1 else v for k, v in p.items()}
        q = d.prob(B, rows, copies)  # every element's probability: (S n, N, ...)
        q_shape = B.shape(q)
        per = joint_prob(B, B.reshape(q, (q_shape[0] * q_shape[1], math.prod(q_shape[2:]))))
        return copies, B.reshape(per, (q_shape[0], q_shape[1]))


def per_example(e: PlannedExpect, budget: int) -> tuple[list[NodePlan], int]:
    """The planner's default: expectation ``e``'s one node, a plated discrete node scored (or, with
    ``policy="low_variance"``, relaxed) by default because its joint support exceeds the enumeration
    ``budget`` left, enumerated per example instead
    where that is exact and one example's support fits; and the budget left after it."""
    node = e.nodes[0]
    if type(node.spec) is not Score or node.spec != Score() or not lookup(node.dist.name).discrete:
        return list(e.nodes), budget  # (a low_variance relaxation stands in as Score here: planner)
    states = example_states(node)
    if states is None or states > budget:
        return list(e.nodes), budget
    try:
        check(e, node, budget)
    except PlanError:
        return list(e.nodes), budget
    examples = node.shape[0] if node.shape else 0
    reason = (
        f"finite support per example: exact sum over {states:,} states of each of {examples:,} examples,"
        f" side by side ({states:,} cost evaluations per sample), zero variance"
    )
    spec = EnumerateExamples(budget=budget)
    return [dataclasses.replace(node, spec=spec, reason=reason, biased=False)], max(1, budget // states)


def check(e: PlannedExpect, node: NodePlan, budget: int) -> None:
    """Refuse, by name, an expectation where per-example enumeration is not exact (module docstring)."""
    where = f"enumerate_examples on {node.var}"
    if len(e.nodes) != 1:
        raise PlanError(
            f"{where}: {node.var} must be the only random node of its expectation (it has"
            f" {', '.join(n.var for n in e.nodes)}); use enumerate or score"
        )
    if getattr(node.dist, "count", None) is not None:
        raise PlanError(f"{where}: an iid(K, ...) node's first axis holds its K copies, not examples; use score")
    if not node.plate:
        raise PlanError(
            f"{where}: the cost is not a sum over {node.var}'s first axis of per-example terms"
            " (no plate inferred; see the plan's plate note); use enumerate or score"
        )
    plates = e.plates or (None,) * len(e.terms)
    for (_, term), plate in zip(e.terms, plates):
        if plate is None and depends(term, node.var):
            raise PlanError(f"{where}: the term `{term}` depends on {node.var} but not per example; use score")
    states = example_states(node)
    if states is None or states > budget:
        raise PlanError(
            f"{where}: one example has {'an unknown or infinite number of' if states is None else states} states"
            f"{'' if states is None else f', above the budget of {budget}'}; use score"
        )


def expect(fr: Frame, e: PlannedExpect, env: dict[str, Array], node_step: Any, terms: list[Any]) -> Array:
    """The exact per-sample value of expectation ``e`` by per-example enumeration (module docstring)."""
    B, var = fr.B, e.nodes[0].var
    alone(fr, e, "enumerate_examples", batched=True)
    copies, q = node_step(fr, env)
    rows = B.shape(q)[0]
    s = joint_states(lookup(e.nodes[0].dist.name), e.nodes[0].dist, tuple(B.shape(copies)[2:])) or 1
    n = rows // s
    scope = tiled(fr, env, s)
    scope[var] = copies
    plates = e.plates or (None,) * len(e.terms)
    total: Array | float = 0.0
    for (sign, term), step, plate in zip(e.terms, terms, plates):
        if depends(term, var):
            if fr.batch_axes:  # a declared plate: the term as written must keep one cost per example
                check_plate(fr, q, [q], [var], term if plate is None else plate.source, None if plate is None else 0)
            outer, fr.mult = fr.mult, s
            try:
                v = fr.array(step(fr, scope))
            finally:
                fr.mult = outer
            shape = B.shape(v)
            v = B.reshape(v, (s, n) + tuple(shape[1:]))
            w = B.reshape(q, (s, n) + tuple(shape[1:2]) + (1,) * (len(shape) - 2))
            value = B.sum(w * v, (0, 2))  # over the states and the examples
        else:
            value = fr.array(step(fr, env))
            if plate is not None and len(B.shape(value)) > 1:
                value = B.sum(value, (1,))
        total = total + (value if sign == 1.0 else -value)
    return fr.array(total)
