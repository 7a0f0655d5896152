"""The planner's view of the random variables in scope, and of how they depend on each other.

Planning must stay linear in the size of the expression, so nothing here copies a
scope or a set of dependencies per binding:

* a :class:`Scope` is the first ``limit`` bindings of one ``E[...]`` (a shared
  :class:`Frame`) on top of the enclosing scope; a lookup walks the frames, so
  it costs the nesting depth of expectations, not their number of bindings;
* dependencies are kept as a graph of *direct* parents (``w ~ D(z)``: ``z`` is a
  parent of ``w``), not as transitive closures (a chain ``z_i ~ Normal(z_{i-1}, 1)``
  of k bindings has k^2/2 ancestor pairs);  what the planner needs from the
  closure it computes in one forward pass (:func:`score_ancestors`) or by a
  search that stops at nodes already marked (:func:`mark_ancestors`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import ir
from .shapes import Shape, UnknownShape


@dataclass
class Frame:
    """The bindings of one expectation, in order, as planned so far (provisional, then final)."""

    nodes: list[Any] = field(default_factory=list)  # NodePlan per binding
    index: dict[str, int] = field(default_factory=dict)  # variable -> position
    unknown: list[int] = field(default_factory=lambda: [0])  # unknown[i]: bindings before i of unknown shape

    def add(self, node: Any) -> None:
        self.index[node.var] = len(self.nodes)
        self.nodes.append(node)
        self.unknown.append(self.unknown[-1] + (node.shape is None))


@dataclass(frozen=True)
class Scope:
    """The variables visible at one point: ``frame``'s first ``limit`` bindings, then ``outer``."""

    frame: Frame | None = None
    limit: int = 0
    outer: Scope | None = None

    def get(self, var: str) -> Any:
        s: Scope | None = self
        while s is not None:
            if s.frame is not None:
                i = s.frame.index.get(var)
                if i is not None and i < s.limit:
                    return s.frame.nodes[i]
            s = s.outer
        return None

    @property
    def any_unknown(self) -> bool:
        """Whether some visible variable has an unknown shape (then so do the nodes after it)."""
        s: Scope | None = self
        while s is not None:
            if s.frame is not None and s.frame.unknown[s.limit]:
                return True
            s = s.outer
        return False


class ShapeEnv(Mapping[str, Shape]):
    """Parameter shapes with the scope's variables on top, looked up only when used."""

    def __init__(self, shapes: Mapping[str, Shape] | None, scope: Scope) -> None:
        self.shapes, self.scope = shapes or {}, scope

    def __getitem__(self, name: str) -> Shape:
        node = self.scope.get(name)
        if node is None:
            return self.shapes[name]
        if node.shape is None:
            raise UnknownShape(name)
        return node.shape

    def __iter__(self) -> Iterator[str]:
        return iter(self.shapes)

    def __len__(self) -> int:
        return len(self.shapes)


def uses(e: ir.Expr, scope: Scope) -> set[int]:
    """uids of the variables in scope that ``e`` names (one walk)."""
    out: set[int] = set()
    for node in ir.walk(e):
        if isinstance(node, ir.Name):
            v = scope.get(node.id)
            if v is not None:
                out.add(v.uid)
    return out


def score_ancestors(parents: list[Iterable[int]], score: list[bool]) -> list[frozenset[int]]:
    """For nodes 0..k-1 in order (parents listed by position, earlier only): the positions of the
    score nodes among each node's ancestors and itself, in one forward pass."""
    out: list[frozenset[int]] = []
    empty: frozenset[int] = frozenset()
    for j, ps in enumerate(parents):
        acc = frozenset({j}) if score[j] else empty
        for p in ps:
            if out[p]:
                acc = acc | out[p]
        out.append(acc)
    return out


def mark_ancestors(
    graph: Mapping[int, Iterable[int]],
    start: int,
    label: str,
    marks: dict[int, str],
    overwrite: bool = False,
    within: Any = None,
) -> None:
    """Label every ancestor of ``start`` in ``graph`` (uid -> parent uids).  Without ``overwrite``
    the search stops at nodes already labelled (their ancestors are labelled too);  ``within``
    (a container of uids) limits it to those nodes."""
    stack = list(graph.get(start, ()))
    seen: set[int] = set()
    while stack:
        u = stack.pop()
        if u in seen or (within is not None and u not in within):
            continue
        seen.add(u)
        if u in marks and not overwrite:
            continue
        marks[u] = label
        stack.extend(graph.get(u, ()))
