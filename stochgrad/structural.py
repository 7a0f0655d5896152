"""Structural equality and hashing of expression trees, without recursion.

A tree is equal to another when both have the same node types, the same static *key* per node
(an operator, a name, a number: what a node is besides its children) and equal children in order.
Both walks use explicit stacks, so a left-deep chain of 10,000 nodes costs no recursion.  A node's
hash is computed once, bottom up, and kept in its ``__dict__`` under :data:`HASH` (never pickled:
:meth:`stochgrad.ir.Expr.__getstate__` drops it), so hashing a tree is O(size) once and O(1) after;
equality compares cached hashes first.  Nodes of types outside ``structural`` (a plan's internal
nodes) compare by identity.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, Protocol


class Node(Protocol):
    """What the walks need of a node: its children, and a ``__dict__`` to keep the hash in."""

    __dict__: dict[str, Any]

    def children(self) -> tuple[Any, ...]: ...


#: where a node keeps its hash once computed
HASH = "_hash"

Key = Callable[[Any], tuple[Any, ...]]


def tree_hash(root: Node, key: Key, structural: Collection[type]) -> int:
    """The hash of ``root``'s tree: of each node's type, ``key(node)`` and its children's hashes."""
    h = root.__dict__.get(HASH)
    if h is not None:
        return h
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:  # post-order over the nodes not hashed yet
        node, ready = stack.pop()
        d = node.__dict__
        if HASH in d:
            continue
        kids = node.children()
        if ready:
            d[HASH] = hash((type(node), key(node), tuple(hash(k) for k in kids)))
        else:
            stack.append((node, True))
            stack.extend((k, False) for k in kids if type(k) in structural and HASH not in k.__dict__)
    return root.__dict__[HASH]


def tree_eq(left: Node, right: Node, key: Key, structural: Collection[type]) -> bool:
    """Whether two trees are structurally equal (see the module docstring)."""
    stack: list[tuple[Node, Node]] = [(left, right)]
    while stack:
        a, b = stack.pop()
        if a is b:
            continue
        if type(a) is not type(b):
            return False
        if type(a) not in structural:  # internal nodes of a plan compare by identity
            return False
        ha, hb = a.__dict__.get(HASH), b.__dict__.get(HASH)
        if ha is not None and hb is not None and ha != hb:
            return False
        ka, kb = a.children(), b.children()
        if len(ka) != len(kb) or key(a) != key(b):
            return False
        stack.extend(zip(ka, kb))
    return True
