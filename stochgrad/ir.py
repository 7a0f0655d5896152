"""The immutable expression IR of stochgrad.

An expression is a tree of frozen dataclasses with structural equality and
hashing.  ``str(expr)`` prints canonical DSL text with the fewest parentheses
that keep the tree, so ``parse(str(e)) == e`` for every expression.

Nodes: :class:`Num`, :class:`Name` (a parameter, or a variable bound by an
enclosing expectation), :class:`Neg`, :class:`BinOp` (arithmetic and
comparisons), :class:`Call` (a function from the table in
:mod:`stochgrad.functions`), :class:`Dist` (a distribution with its parameters
in canonical order) and :class:`Expect` (``E[body, v ~ Dist, ...]``); ``a @ b`` and
``x[...]`` are :mod:`stochgrad.arraynodes`' (which gives :class:`Expr` its ``@`` and ``[]``).  Source
spans ride along for error messages but take no part in equality.

Operator overloading on :class:`Expr` is the embedded Python form of the DSL
(``mu + sigma * z``); ``==`` stays structural equality, so equality tests
between random quantities are not part of the language.

Depth is no limit: ``a + b + ... `` with 10,000 terms is a left-deep chain of
10,000 :class:`BinOp` nodes, and equality, hashing, printing and :func:`walk`
use explicit stacks, never recursion.  A node's hash is computed once, bottom
up, and kept on the node (not pickled), so hashing a tree is O(size) once and
O(1) after; equality compares cached hashes first, then walks both trees.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from . import reprs, structural
from .errors import StochgradError

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
RESERVED = frozenset({"E", "KL", "pi"})

Span = tuple[int, int] | None

#: precedence of each printed form: higher binds tighter
PREC = {"<": 1, "<=": 1, ">": 1, ">=": 1, "+": 2, "-": 2, "*": 3, "/": 3, "neg": 4, "**": 5}
COMPARISONS = frozenset({"<", "<=", ">", ">="})
ARITHMETIC = frozenset({"+", "-", "*", "/", "**"})
ATOM = 6


_STRUCTURAL: set[type] = set()  # the node classes with structural equality (see _structural)


def _structural(cls: type) -> type:
    """Give a node class structural equality and a cached hash, both without recursion."""
    _STRUCTURAL.add(cls)

    def __eq__(self: Expr, other: object) -> bool:  # _eq and _hash are defined below the node classes
        return _eq(self, other)

    def __hash__(self: Expr) -> int:
        return _hash(self)

    cls.__eq__ = __eq__  # type: ignore[assignment]
    cls.__hash__ = __hash__  # type: ignore[assignment]
    cls.__repr__ = _repr  # type: ignore[assignment]  # one line, Expr('<DSL text>'): stochgrad.reprs
    return cls


def _repr(self: Expr) -> str:
    return reprs.expr_repr(self)


def _span() -> Span:
    return field(default=None, compare=False, hash=False, repr=False)


class Expr:
    """Base class of every expression node; operators build new nodes."""

    __slots__ = ()
    prec: int = ATOM

    def __getstate__(self) -> dict[str, Any]:  # the cached hash is per process: never pickle it
        return {k: v for k, v in self.__dict__.items() if k != structural.HASH}

    def __add__(self, other: object) -> BinOp:
        return BinOp("+", self, as_expr(other))

    def __radd__(self, other: object) -> BinOp:
        return BinOp("+", as_expr(other), self)

    def __sub__(self, other: object) -> BinOp:
        return BinOp("-", self, as_expr(other))

    def __rsub__(self, other: object) -> BinOp:
        return BinOp("-", as_expr(other), self)

    def __mul__(self, other: object) -> BinOp:
        return BinOp("*", self, as_expr(other))

    def __rmul__(self, other: object) -> BinOp:
        return BinOp("*", as_expr(other), self)

    def __truediv__(self, other: object) -> BinOp:
        return BinOp("/", self, as_expr(other))

    def __rtruediv__(self, other: object) -> BinOp:
        return BinOp("/", as_expr(other), self)

    def __pow__(self, other: object) -> BinOp:
        return BinOp("**", self, as_expr(other))

    def __rpow__(self, other: object) -> BinOp:
        return BinOp("**", as_expr(other), self)

    def __neg__(self) -> Expr:
        return negate(self)

    def __pos__(self) -> Expr:
        return self

    def __lt__(self, other: object) -> BinOp:
        return BinOp("<", self, as_expr(other))

    def __le__(self, other: object) -> BinOp:
        return BinOp("<=", self, as_expr(other))

    def __gt__(self, other: object) -> BinOp:
        return BinOp(">", self, as_expr(other))

    def __ge__(self, other: object) -> BinOp:
        return BinOp(">=", self, as_expr(other))

    def __bool__(self) -> bool:
        raise TypeError("a stochgrad expression has no truth value (use comparisons inside the DSL)")

    def children(self) -> tuple[Expr, ...]:
        return ()


@_structural
@dataclass(frozen=True, eq=False)
class Num(Expr):
    value: float
    span: Span = _span()

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise TypeError(f"Num needs a real number, got {self.value!r}")
        if not math.isfinite(self.value):
            raise ValueError(f"constants must be finite, got {self.value!r}")
        object.__setattr__(self, "value", float(self.value))

    @property
    def prec(self) -> int:  # type: ignore[override]
        return PREC["neg"] if str(self).startswith("-") else ATOM

    def __str__(self) -> str:
        v = self.value
        if v.is_integer() and abs(v) < 1e16:
            return str(int(v)) if v != 0 or math.copysign(1, v) > 0 else "-0"
        return repr(v)


@_structural
@dataclass(frozen=True, eq=False)
class Name(Expr):
    id: str
    span: Span = _span()

    def __post_init__(self) -> None:
        check_name(self.id)

    def __str__(self) -> str:
        return self.id


@_structural
@dataclass(frozen=True, eq=False)
class Neg(Expr):
    operand: Expr
    span: Span = _span()
    prec = PREC["neg"]

    def __post_init__(self) -> None:
        if isinstance(self.operand, Num):
            raise ValueError("write a negative constant as Num(-v) (see ir.negate)")

    def children(self) -> tuple[Expr, ...]:
        return (self.operand,)

    def __str__(self) -> str:
        return to_text(self)


@_structural
@dataclass(frozen=True, eq=False)
class BinOp(Expr):
    op: str
    left: Expr
    right: Expr
    span: Span = _span()

    def __post_init__(self) -> None:
        if self.op not in PREC or self.op == "neg":
            raise ValueError(f"unknown operator {self.op!r}")

    @property
    def prec(self) -> int:  # type: ignore[override]
        return PREC[self.op]

    def children(self) -> tuple[Expr, ...]:
        return (self.left, self.right)

    def __str__(self) -> str:
        return to_text(self)


@_structural
@dataclass(frozen=True, eq=False)
class Call(Expr):
    """A function from :data:`stochgrad.functions.FUNCTIONS` (``kwargs`` are options like ``axis``),
    or a user function: then ``impl`` is its :class:`stochgrad.functions.UserFunction`, which takes
    part in equality by identity (two parses with different callables are different expressions)."""

    fn: str
    args: tuple[Expr, ...]
    kwargs: tuple[tuple[str, Expr], ...] = ()
    impl: Any = field(default=None, repr=False)
    span: Span = _span()

    def children(self) -> tuple[Expr, ...]:
        return self.args + tuple(v for _, v in self.kwargs)

    def __str__(self) -> str:
        return to_text(self)


@_structural
@dataclass(frozen=True, eq=False)
class Dist(Expr):
    """A distribution; ``params`` are (name, expr) pairs in the distribution's canonical order."""

    name: str
    params: tuple[tuple[str, Expr], ...]
    positional: int = 0  # how many leading params print positionally
    span: Span = _span()

    def children(self) -> tuple[Expr, ...]:
        return tuple(v for _, v in self.params)

    def param(self, name: str) -> Expr | None:
        return dict(self.params).get(name)

    def __str__(self) -> str:
        return to_text(self)


@dataclass(frozen=True)
class Binding:
    var: str
    dist: Dist
    span: Span = _span()

    def __post_init__(self) -> None:
        check_name(self.var)

    def __str__(self) -> str:
        return f"{self.var} ~ {self.dist}"

    def __repr__(self) -> str:
        return reprs.binding_repr(self)


@_structural
@dataclass(frozen=True, eq=False)
class Expect(Expr):
    body: Expr
    bindings: tuple[Binding, ...]
    span: Span = _span()

    def __post_init__(self) -> None:
        if not self.bindings:
            raise ValueError("an expectation needs at least one binding")

    def children(self) -> tuple[Expr, ...]:
        return (self.body,) + tuple(b.dist for b in self.bindings)

    def __str__(self) -> str:
        return to_text(self)


@_structural
@dataclass(frozen=True, eq=False)
class KL(Expr):
    """``KL(p || q)``: the Kullback-Leibler divergence of two distributions (elementwise over
    their batch shape), in closed form for the pairs in :mod:`stochgrad.kl`, else by Monte Carlo."""

    p: Dist
    q: Dist
    span: Span = _span()

    def children(self) -> tuple[Expr, ...]:
        return (self.p, self.q)

    def __str__(self) -> str:
        return to_text(self)


def _key(node: Expr) -> tuple[Any, ...]:
    """What a node is besides its children (which equality and hashing take in turn)."""
    t = type(node)
    if t is BinOp:
        return (node.op,)  # type: ignore[attr-defined]
    if t is Name:
        return (node.id,)  # type: ignore[attr-defined]
    if t is Num:
        return (node.value,)  # type: ignore[attr-defined]
    if t is Call:
        return (node.fn, len(node.args), tuple(k for k, _ in node.kwargs), node.impl)  # type: ignore[attr-defined]
    if t is Dist:
        return (node.name, tuple(k for k, _ in node.params), node.positional)  # type: ignore[attr-defined]
    if t is Expect:
        return tuple(b.var for b in node.bindings)  # type: ignore[attr-defined]
    key: tuple[Any, ...] = getattr(node, "static_key", ()) or getattr(node, "extra_key", ())
    return key  # Neg, KL: their children say it all (arraynodes, densities: their own key)


def _hash(self: Expr) -> int:
    return structural.tree_hash(self, _key, _STRUCTURAL)


def _eq(self: Expr, other: object) -> bool:
    if not isinstance(other, Expr):
        return NotImplemented
    return structural.tree_eq(self, other, _key, _STRUCTURAL)


def check_name(name: str) -> None:
    """A :class:`~stochgrad.errors.StochgradError` (a ``ValueError``) unless ``name`` is a DSL identifier."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise StochgradError(f"{name!r} is not a valid name (letters, digits and _, not starting with a digit)")
    if name in RESERVED:
        raise StochgradError(
            f"{name!r} is reserved (E[...] writes an expectation, KL(p || q) a divergence, pi is 3.14159...)"
        )


def negate(e: Expr) -> Expr:
    """``-e``, folding a literal so that printing and re-parsing agree."""
    if isinstance(e, Num):
        return Num(-e.value)
    return Neg(e)


def as_expr(value: object) -> Expr:
    """Lift Python numbers into :class:`Num`; pass expressions through."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Num(float(value))
    if hasattr(value, "__float__") and getattr(value, "shape", ()) == ():
        return Num(float(value))  # numpy scalars
    raise TypeError(f"cannot use {type(value).__name__} inside an expression; pass arrays as parameters by name")


def walk(e: Expr):
    """Yield every node of ``e`` (pre-order), without recursion."""
    stack = [e]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children()))


from .printer import to_text  # noqa: E402  (the printer needs the node classes above)
