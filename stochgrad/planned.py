"""The planned IR: what the planner hands to the lowering (:mod:`stochgrad.program`).

A :class:`Plan` holds the rewritten expression (``root``), in which every expectation
``E[f, z_1 ~ D_1, ..., z_m ~ D_m]`` has become a :class:`PlannedExpect`: its random nodes in
evaluation order, each a :class:`NodePlan` (the chosen estimator, the reason, whether it is
biased, its direct dependencies and sample shape), and its cost split into additive terms
``f = sum_t s_t f_t`` (``s_t = +-1``), each with the score-estimated nodes that ``f_t``
depends on, directly or through other nodes (its *box*: their log-densities, in a DiCE magic
box, multiply ``f_t``).  A Monte Carlo ``KL(p || q)`` becomes the expectation of a
:class:`LogRatio`, ``log p(x) - log q(x)`` with ``x ~ p``.  These node types are re-exported
by :mod:`stochgrad.planner`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import ir
from .errors import ValidationError
from .estimators import EstimatorSpec
from .reprs import plan_repr
from .shapes import Shape


@dataclass(frozen=True)
class NodePlan:
    uid: int  # position in evaluation order; also names the node's noise stream
    var: str
    dist: ir.Dist
    spec: EstimatorSpec
    reason: str
    biased: bool
    parents: frozenset[int]  # uids of the variables this node's distribution names (its direct dependencies)
    shape: Shape | None = None  # logical shape of one sample, when parameter shapes are known
    plate: int = 0  # leading axes kept in log q: 1 where the planner inferred a plate (stochgrad.plates)
    plate_note: str = ""  # how the node's examples are paired with their costs, when it has some (plates)

    @property
    def estimator(self) -> str:
        return self.spec.name

    def __str__(self) -> str:
        flag = "biased" if self.biased else "unbiased"
        note = f"; {self.plate_note}" if self.plate_note else ""
        return f"{self.var} ~ {self.dist}: {self.spec.describe()} \u2014 {self.reason}{note} [{flag}]"


@dataclass(frozen=True, eq=False)
class PlannedExpect(ir.Expr):
    """An expectation ready to lower: its nodes, its additive cost terms, and for each term
    the indices (into ``nodes``) of the score-estimated nodes that the term depends on.  A term
    with a plate (``plates``) is given as its per-example costs, summed after the pairing."""

    source: ir.Expect
    nodes: tuple[NodePlan, ...]
    terms: tuple[tuple[float, ir.Expr], ...]
    boxes: tuple[tuple[int, ...], ...]
    #: per term, a PlateTerm where the term is planned per example (stochgrad.plates); () for none
    plates: tuple[Any, ...] = ()

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
    """The planner's product: the rewritten expression (``root``), its random nodes, and the
    parameter shapes it was planned for (``shapes``, sorted by name; ``None``: all scalar).  The
    runnable plan of ``sg.plan`` (:class:`stochgrad.api.Plan`) adds the backend that runs it.

    ``root`` is public on purpose, read-only like every field (the dataclass is frozen): it is the
    planned IR that :func:`stochgrad.program.lower` compiles, and the one place a user can see what
    the plan decided beyond the per-node lines of ``str(plan)``: each expectation is a
    :class:`PlannedExpect` whose ``terms`` are the signed cost terms and whose ``boxes`` say which
    score nodes multiply each term (``plan.root.boxes == ((0,), ())``: the first term is scored by
    node 0, the second is not).  ``print(plan.root)`` shows it as text.  A plan cannot be run from a
    modified ``root`` except through :func:`dataclasses.replace`, which builds a new plan (and a new
    program: programs are cached by the identity of the root)."""

    expr: ir.Expr
    root: ir.Expr
    nodes: tuple[NodePlan, ...]
    parameters: tuple[str, ...]
    notes: tuple[str, ...] = ()  # how each KL(p || q) is computed
    shapes: tuple[tuple[str, Shape], ...] | None = None

    def check_shapes(self, given: Mapping[str, tuple[int, ...]]) -> None:
        """A :class:`~stochgrad.errors.ValidationError` naming the first parameter whose shape in
        ``given`` is not the one this plan was made for (the finite supports, the enumeration and
        the plate all depend on it): make a plan for the new shapes instead."""
        planned = dict(self.shapes) if self.shapes is not None else {}
        for k in self.parameters:
            want, got = tuple(planned.get(k, ())), tuple(given[k])
            if got != want:
                made = "" if self.shapes is not None else " (a plan made without shapes is for scalars)"
                raise ValidationError(
                    f"parameter {k!r} has shape {got}, but this plan was made for shape {want}{made}; make a plan"
                    f" for these shapes: sg.plan(expr, {{{k!r}: {got}, ...}}) or pass the values to sg.plan"
                )

    def node(self, var: str) -> NodePlan:
        for n in self.nodes:
            if n.var == var:
                return n
        raise KeyError(var)

    def __repr__(self) -> str:  # one line (stochgrad.reprs), not the whole rewritten tree
        return plan_repr(self)

    def __str__(self) -> str:
        if not self.nodes and not self.notes:
            return "no random nodes: the expression is deterministic"
        return "\n".join([str(n) for n in self.nodes] + list(self.notes))
