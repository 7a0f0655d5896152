"""A fast path for parsing valid text: one regular expression tokenizes, a precedence-climbing
parser builds the IR directly.  The grammar is ``grammar.lark``'s; lark stays the reference.

lark's LALR parser costs ~10 microseconds a token, its tree ~as much again, so the longest
text accepted (100,000 characters) took seconds.  This path builds exactly what the lark path
builds -- the same nodes with the same spans (a node spans from the first to the last token
its rule matched, with the parentheses around its first and last operands: lark's
``propagate_positions``) -- and measures nesting exactly as the lark path does (a flat chain
of sums or products is one level).  It answers ``None`` for anything else: any syntax error,
any error while building (unknown function, bad argument...), nesting deeper than
``MAX_DEPTH``, or parentheses nested deeper than it recurses; the lark path then parses
the text again and reports the error as before.  So errors, their order and their wording
are the lark path's, and this path only decides how fast valid text parses.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from . import arraynodes, ir
from .densities import DENSITY_CALLS, make_density_call, make_iid
from .distributions import make_dist
from .errors import StochgradError
from .functions import UserFunction, make_call

_TOKEN = re.compile(
    r"""(?:[ \t\f\r\n]+|\#[^\n]*)*(?:
    (?P<NUMBER>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<NAME>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<OP>\*\*|<=|>=|\|\||\.\.\.|[-+*/@:<>()\[\],~=])
  | (?P<END>\Z))""",
    re.X,
)
_KEYWORDS = {"E", "KL"}
_PREC = {"+": 2, "-": 2, "*": 3, "/": 3, "@": 3}


class _Fail(Exception):
    """Not for the fast path: let the lark path parse (and report)."""


def tokenize(text: str) -> list[tuple[str, str, int, int]]:
    """(kind, text, start, end) per token, kind one of NUMBER, NAME, E, KL, OP, END."""
    out: list[tuple[str, str, int, int]] = []
    pos, match = 0, _TOKEN.match
    while True:
        m = match(text, pos)
        if m is None:
            raise _Fail
        kind: str = m.lastgroup  # type: ignore[assignment]  # every alternative of _TOKEN is a named group
        start, end = m.span(kind)
        value = m.group(kind)
        if kind == "NAME" and value in _KEYWORDS:
            kind = value
        out.append((kind, value, start, end))
        if kind == "END":
            return out
        pos = end


class _Parser:
    """Each parse method returns ``(node, height, start, end)``: the IR node, the depth of the
    lark tree it stands for, and the text it covers with its parentheses (lark's container)."""

    def __init__(self, text: str, user: Mapping[str, UserFunction], max_depth: int) -> None:
        self.toks = tokenize(text)
        self.i = 0
        self.user, self.max_depth = user, max_depth
        self.calls = 0  # nesting of parse calls, bounded (redundant parentheses add no height)

    def peek(self) -> tuple[str, str, int, int]:
        return self.toks[self.i]

    def take(self, value: str) -> tuple[str, str, int, int]:
        tok = self.toks[self.i]
        if tok[1] != value or tok[0] not in ("OP", "E", "KL"):
            raise _Fail
        self.i += 1
        return tok

    def check(self, height: int) -> int:
        if height > self.max_depth:
            raise _Fail
        return height

    def expr(self) -> tuple[ir.Expr, int, int, int]:
        self.calls += 1
        if self.calls > self.max_depth + 10:
            raise _Fail
        left = self.chain(2)
        tok = self.peek()
        if tok[0] == "OP" and tok[1] in ("<", "<=", ">", ">="):
            self.i += 1
            right = self.chain(2)
            left = self.binop(tok[1], left, right, self.check(1 + max(left[1], right[1])))
        self.calls -= 1
        return left

    def binop(self, op: str, left: Any, right: Any, height: int) -> tuple[ir.Expr, int, int, int]:
        span = (left[2], right[3])
        node = (
            arraynodes.MatMul(left[0], right[0], span=span) if op == "@" else ir.BinOp(op, left[0], right[0], span=span)
        )
        return node, height, left[2], right[3]

    def chain(self, prec: int) -> tuple[ir.Expr, int, int, int]:
        """A flat chain of ``+ -`` (prec 2) or ``* /`` (prec 3): one level above its operands."""
        first = self.chain(3) if prec == 2 else self.unary()
        out, top = first, first[1]
        while True:
            tok = self.peek()
            if tok[0] != "OP" or _PREC.get(tok[1]) != prec:
                return out
            self.i += 1
            right = self.chain(3) if prec == 2 else self.unary()
            top = max(top, right[1])
            out = self.binop(tok[1], out, right, self.check(1 + top))

    def unary(self) -> tuple[ir.Expr, int, int, int]:
        signs = []
        while self.peek()[0] == "OP" and self.peek()[1] in ("-", "+"):
            signs.append(self.toks[self.i])
            self.i += 1
        out = self.power()
        node, height, _, end = out
        for tok in reversed(signs):  # innermost first, as lark reduces them
            height = self.check(height + 1)
            if tok[1] == "-":
                neg = ir.negate(node)
                node = (
                    ir.Num(neg.value, span=(tok[2], end))
                    if isinstance(neg, ir.Num)
                    else ir.Neg(node, span=(tok[2], end))
                )
            out = (node, height, tok[2], end)
        return out

    def power(self) -> tuple[ir.Expr, int, int, int]:
        base = self.atom()
        tok = self.peek()
        if tok[0] == "OP" and tok[1] == "**":
            self.i += 1
            exponent = self.unary()
            return self.binop("**", base, exponent, self.check(1 + max(base[1], exponent[1])))
        return base

    def atom(self) -> tuple[ir.Expr, int, int, int]:
        out = self.primary()
        while self.peek()[0] == "OP" and self.peek()[1] == "[":  # x[...][...]: postfix, left to right
            out = self.index(out)
        return out

    def index(self, value: tuple[ir.Expr, int, int, int]) -> tuple[ir.Expr, int, int, int]:
        """``value[items]``: lark's trees index(value, subscripts(integer | name | slice(integer...)))."""
        self.take("[")
        items: list[Any] = []
        top = 0  # height of the subscripts' children
        while True:
            item, height = self.subscript()
            items.append(item)
            top = max(top, height)
            if self.peek()[1] == "," and self.peek()[0] == "OP":
                self.i += 1
                continue
            break
        close = self.take("]")
        node = arraynodes.Index(value[0], tuple(items), span=(value[2], close[3]))
        return node, self.check(1 + max(value[1], 1 + top)), value[2], close[3]

    def integer(self) -> int | None:
        """``-3``, ``0``: an integer literal, or None (no integer here)."""
        kind, value, _, _ = self.peek()
        negative = kind == "OP" and value == "-"
        if negative:
            kind, value, _, _ = self.toks[self.i + 1]
        if kind != "NUMBER":
            if negative:
                raise _Fail
            return None
        if not value.isdigit():
            raise _Fail
        self.i += 2 if negative else 1
        return -int(value) if negative else int(value)

    def subscript(self) -> tuple[Any, int]:
        """One item and the height of its tree (0: a token)."""
        kind, value, start, end = self.peek()
        if kind == "NAME":
            self.i += 1
            if value == "pi":
                raise _Fail
            return ir.Name(value, span=(start, end)), 1
        if kind == "OP" and value == "...":
            self.i += 1
            return Ellipsis, 0
        first = self.integer()
        if not (self.peek()[0] == "OP" and self.peek()[1] == ":"):
            if first is None:
                raise _Fail
            return first, 1
        bounds: list[int | None] = [first]
        while self.peek()[0] == "OP" and self.peek()[1] == ":" and len(bounds) < 3:
            self.i += 1
            bounds.append(self.integer())
        height = 2 if any(b is not None for b in bounds) else 1
        return arraynodes.Slice(*bounds), height

    def primary(self) -> tuple[ir.Expr, int, int, int]:
        kind, value, start, end = tok = self.peek()
        if kind == "NUMBER":
            self.i += 1
            number = float(value)
            if number == float("inf"):
                raise _Fail
            return ir.Num(number, span=(start, end)), 1, start, end
        if kind == "NAME":
            if self.toks[self.i + 1][1] == "(" and self.toks[self.i + 1][0] == "OP":
                if value in DENSITY_CALLS:  # log_prob(D, x), entropy(D): the first argument is a distribution
                    return self.call(make_density_call, dist_at=0)
                return self.call(lambda name, args, kwargs: make_call(name, args, kwargs, user=self.user))
            self.i += 1
            if value == "pi":  # the constant, as the lark path makes it
                return ir.Num(math.pi, span=(start, end)), 1, start, end
            return ir.Name(value, span=(start, end)), 1, start, end
        if kind == "E":
            return self.expect()
        if kind == "KL":
            self.i += 1
            self.take("(")
            p = self.call(make_dist)
            self.take("||")
            q = self.call(make_dist)
            close = self.take(")")
            return ir.KL(p[0], q[0], span=(start, close[3])), self.check(1 + max(p[1], q[1])), start, close[3]
        if kind == "OP" and value == "(":
            self.i += 1
            node, height, _, _ = self.expr()
            close = self.take(")")
            return node, height, tok[2], close[3]
        raise _Fail

    def call(self, make: Callable[..., Any], dist_at: int = -1) -> tuple[Any, int, int, int]:
        """``name(args)``: a call, or a distribution (``make`` is the table's constructor); the
        positional argument ``dist_at`` is parsed as a distribution (``log_prob``, ``iid``)."""
        kind, name, start, end = self.peek()
        if kind != "NAME":
            raise _Fail
        self.i += 1
        self.take("(")
        args: list[ir.Expr] = []
        kwargs: list[tuple[str, ir.Expr]] = []
        height = 0
        if self.peek()[1] != ")" or self.peek()[0] != "OP":
            top = 0
            while True:
                tok, after = self.peek(), self.toks[self.i + 1]
                if tok[0] == "NAME" and after[0] == "OP" and after[1] == "=":
                    self.i += 2
                    value = self.expr()
                    kwargs.append((tok[1], value[0]))
                    top = max(top, 1 + value[1])
                else:
                    value = self.call(make_dist) if len(args) == dist_at else self.expr()
                    if kwargs:
                        raise _Fail  # a positional argument after a keyword: the lark path says so
                    args.append(value[0])
                    top = max(top, value[1])
                if self.peek()[1] == "," and self.peek()[0] == "OP":
                    self.i += 1
                    continue
                break
            height = 1 + top
        close = self.take(")")
        node = make(name, tuple(args), tuple(kwargs))
        node = dataclasses.replace(node, span=(start, close[3]))
        return node, self.check(1 + height), start, close[3]

    def expect(self) -> tuple[ir.Expect, int, int, int]:
        start = self.take("E")[2]
        self.take("[")
        body = self.expr()
        top = body[1]
        bindings = []
        while self.peek()[1] == "," and self.peek()[0] == "OP":
            self.i += 1
            kind, var, vstart, _ = self.peek()
            if kind != "NAME":
                raise _Fail
            self.i += 1
            self.take("~")
            iid = self.peek()[1] == "iid" and self.peek()[0] == "NAME"
            dist = self.call(make_iid, dist_at=1) if iid else self.call(make_dist)
            bindings.append(ir.Binding(var, dist[0], span=(vstart, dist[3])))
            top = max(top, self.check(1 + dist[1]))
        if not bindings:
            raise _Fail
        close = self.take("]")
        return ir.Expect(body[0], tuple(bindings), span=(start, close[3])), self.check(1 + top), start, close[3]


def fast_parse(text: str, user: Mapping[str, UserFunction], max_depth: int) -> ir.Expr | None:
    """The expression ``text`` denotes, or None: let the lark path parse it (see the module doc)."""
    try:
        p = _Parser(text, user, max_depth)
        node = p.expr()[0]
        if p.peek()[0] != "END":
            return None
        return node
    except (_Fail, StochgradError, ValueError, TypeError, IndexError, RecursionError):
        return None
