"""The immutable expression IR of stochgrad.

An expression is a tree of frozen dataclasses with structural equality and
hashing.  ``str(expr)`` prints canonical DSL text with the fewest parentheses
that keep the tree, so ``parse(str(e)) == e`` for every expression.

Nodes: :class:`Num`, :class:`Name` (a parameter, or a variable bound by an
enclosing expectation), :class:`Neg`, :class:`BinOp` (arithmetic and
comparisons), :class:`Call` (a function from the table in
:mod:`stochgrad.functions`), :class:`Dist` (a distribution with its parameters
in canonical order) and :class:`Expect` (``E[body, v ~ Dist, ...]``).  Source
spans ride along for error messages but take no part in equality.

Operator overloading on :class:`Expr` is the embedded Python form of the DSL
(``mu + sigma * z``); ``==`` stays structural equality, so equality tests
between random quantities are not part of the language.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Union

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
RESERVED = frozenset({"E", "KL"})

Span = Union[tuple[int, int], None]

#: precedence of each printed form: higher binds tighter
PREC = {"<": 1, "<=": 1, ">": 1, ">=": 1, "+": 2, "-": 2, "*": 3, "/": 3, "neg": 4, "**": 5}
COMPARISONS = frozenset({"<", "<=", ">", ">="})
ARITHMETIC = frozenset({"+", "-", "*", "/", "**"})
ATOM = 6


def _span() -> Span:
    return field(default=None, compare=False, hash=False, repr=False)


class Expr:
    """Base class of every expression node; operators build new nodes."""

    __slots__ = ()
    prec: int = ATOM

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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class Name(Expr):
    id: str
    span: Span = _span()

    def __post_init__(self) -> None:
        check_name(self.id)

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
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
        return "-" + _wrap(self.operand, self.operand.prec < PREC["neg"])


@dataclass(frozen=True)
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
        p = PREC[self.op]
        if self.op == "**":  # right-associative; the exponent may be a bare unary minus
            left = _wrap(self.left, self.left.prec <= p)
            right = _wrap(self.right, self.right.prec < PREC["neg"])
        else:  # left-associative (comparisons are not associative at all)
            left = _wrap(self.left, self.left.prec < p or (p == 1 and self.left.prec == 1))
            right = _wrap(self.right, self.right.prec <= p)
        return f"{left} {self.op} {right}"


@dataclass(frozen=True)
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
        parts = [str(a) for a in self.args] + [f"{k}={v}" for k, v in self.kwargs]
        return f"{self.fn}({', '.join(parts)})"


@dataclass(frozen=True)
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
        parts = [str(v) if i < self.positional else f"{k}={v}" for i, (k, v) in enumerate(self.params)]
        return f"{self.name}({', '.join(parts)})"


@dataclass(frozen=True)
class Binding:
    var: str
    dist: Dist
    span: Span = _span()

    def __post_init__(self) -> None:
        check_name(self.var)

    def __str__(self) -> str:
        return f"{self.var} ~ {self.dist}"


@dataclass(frozen=True)
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
        return f"E[{self.body}, {', '.join(str(b) for b in self.bindings)}]"


@dataclass(frozen=True)
class KL(Expr):
    """``KL(p || q)``: the Kullback-Leibler divergence of two distributions (elementwise over
    their batch shape), in closed form for the pairs in :mod:`stochgrad.kl`, else by Monte Carlo."""

    p: Dist
    q: Dist
    span: Span = _span()

    def children(self) -> tuple[Expr, ...]:
        return (self.p, self.q)

    def __str__(self) -> str:
        return f"KL({self.p} || {self.q})"


def _wrap(e: Expr, parens: bool) -> str:
    return f"({e})" if parens else str(e)


def check_name(name: str) -> None:
    """A :class:`~stochgrad.errors.StochgradError` (a ``ValueError``) unless ``name`` is a DSL identifier."""
    from .errors import StochgradError

    if not isinstance(name, str) or not NAME_RE.match(name):
        raise StochgradError(f"{name!r} is not a valid name (letters, digits and _, not starting with a digit)")
    if name in RESERVED:
        raise StochgradError(f"{name!r} is reserved (E[...] writes an expectation, KL(p || q) a divergence)")


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
    raise TypeError(
        f"cannot use {type(value).__name__} inside an expression; pass arrays as parameters by name"
    )


def walk(e: Expr):
    """Yield every node of ``e`` (pre-order), without recursion."""
    stack = [e]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children()))
