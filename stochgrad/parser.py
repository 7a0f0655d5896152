"""Text form of the DSL: lark LALR(1) parser (grammar in ``grammar.lark``) to IR.

The text is data: it is tokenized and parsed, never evaluated.  Errors become
:class:`~stochgrad.errors.ParseError` with line, column, a caret under the text
and what the parser expected; unknown function or distribution names suggest
the closest known one.  Nesting deeper than :data:`MAX_DEPTH` is refused with a
clear error rather than a ``RecursionError`` later on; a flat chain of sums or
products (``a + b - c + ...``, any length) is one level, and the tree is turned
into IR with an explicit stack, so its length costs no recursion.  Valid text
takes a fast path first (:mod:`stochgrad.fastparse`: the same IR, spans and
nesting rule, several times faster); anything it does not accept comes here, and
errors are reported from lark's parse as always.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from importlib import resources
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import arraynodes, ir
from .analysis import check_scopes
from .densities import DENSITY_CALLS, Iid, make_density_call, make_iid
from .distributions import make_dist
from .distscope import check_distributions, scope_key, scoped
from .errors import ParseError, StochgradError
from .fastparse import fast_parse
from .functions import UserFunction, as_user_function, make_call

#: deepest nesting of the syntax tree that is accepted
MAX_DEPTH = 200
MAX_LENGTH = 100_000

_FRIENDLY = {
    "NAME": "a name",
    "NUMBER": "a number",
    "COMPARE": "a comparison",
    "$END": "end of input",
}


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    grammar = resources.files("stochgrad").joinpath("grammar.lark").read_text()
    return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


@functools.lru_cache(maxsize=1)
def _terminal_names() -> dict[str, str]:
    names = {}
    for t in _lark().terminals:
        pattern = t.pattern
        names[t.name] = _FRIENDLY.get(t.name) or (f"'{pattern.value}'" if pattern.type == "str" else t.name)
    names.update({k: v for k, v in _FRIENDLY.items() if k not in names})
    return names


def _describe(expected: set[str]) -> list[str]:
    names = _terminal_names()
    return sorted({names.get(e, e) for e in expected})


def _span(meta: Any) -> tuple[int, int] | None:
    return (meta.start_pos, meta.end_pos) if not getattr(meta, "empty", True) else None


class _Kwarg:
    def __init__(self, key: str, value: ir.Expr, pos: int) -> None:
        self.key, self.value, self.pos = key, value, pos


def _split_args(items: list[Any]) -> tuple[tuple[ir.Expr, ...], tuple[tuple[str, ir.Expr], ...]]:
    args, kwargs = [], []
    for item in items:
        if isinstance(item, _Kwarg):
            kwargs.append((item.key, item.value))
        elif kwargs:
            raise StochgradError("a positional argument cannot follow a keyword argument", span=_expr_span(item))
        else:
            args.append(item)
    return tuple(args), tuple(kwargs)


def _expr_span(e: Any) -> tuple[int, int] | None:
    return getattr(e, "span", None)


class _ToIR:
    """Builds the IR from lark's tree: one method per rule, called as ``method(meta, *children)``
    by :meth:`transform`, which walks the tree with an explicit stack (a 50,000-term sum is a
    tree that deep)."""

    def transform(self, tree: Tree) -> Any:
        values: list[Any] = []
        stack: list[tuple[Any, bool]] = [(tree, False)]
        while stack:
            node, ready = stack.pop()
            if not isinstance(node, Tree):
                values.append(node)
            elif ready:
                n = len(node.children)
                args = values[len(values) - n :]
                del values[len(values) - n :]
                values.append(getattr(self, node.data)(node.meta, *args))
            else:
                _mark_distributions(node)
                stack.append((node, True))
                stack.extend((c, False) for c in reversed(node.children))
        return values[0]

    def number(self, meta: Any, tok: Token) -> ir.Num:
        value = float(tok)
        if value == float("inf"):
            raise StochgradError(f"number {str(tok)[:20]}{'...' if len(tok) > 20 else ''} is too large", _span(meta))
        return ir.Num(value, span=_span(meta))

    def name(self, meta: Any, tok: Token) -> ir.Name | ir.Num:
        if tok == "pi":  # a constant, never a parameter
            return ir.Num(math.pi, span=_span(meta))
        _check_name(tok)
        return ir.Name(str(tok), span=_span(meta))

    # -- a @ b and x[...] (stochgrad.arraynodes) --
    def matmul(self, meta: Any, left: ir.Expr, _op: Token, right: ir.Expr) -> arraynodes.MatMul:
        return arraynodes.MatMul(left, right, span=_span(meta))

    def integer(self, meta: Any, *toks: Token) -> int:
        digits = toks[-1]
        if not digits.isdigit():
            raise StochgradError(f"index {digits} is not an integer", (digits.start_pos, digits.end_pos))  # type: ignore[arg-type]
        return -int(digits) if len(toks) == 2 else int(digits)

    def slice(self, meta: Any, *parts: Any) -> arraynodes.Slice:
        bounds: list[int | None] = [None]
        for p in parts:
            if isinstance(p, Token) and p.type == "COLON":
                bounds.append(None)
            else:
                bounds[-1] = p
        try:
            return arraynodes.Slice(*bounds)
        except StochgradError as exc:
            raise StochgradError(str(exc), _span(meta)) from None

    def subscripts(self, meta: Any, *items: Any) -> list[Any]:
        return [Ellipsis if isinstance(i, Token) else i for i in items]

    def index(self, meta: Any, value: ir.Expr, items: list[Any]) -> arraynodes.Index:
        try:
            return arraynodes.Index(value, tuple(items), span=_span(meta))
        except StochgradError as exc:
            raise StochgradError(str(exc), _span(meta)) from None

    def neg(self, meta: Any, _minus: Token, x: ir.Expr) -> ir.Expr:
        out = ir.negate(x)
        return ir.Num(out.value, span=_span(meta)) if isinstance(out, ir.Num) else ir.Neg(x, span=_span(meta))

    def pos(self, meta: Any, _plus: Token, x: ir.Expr) -> ir.Expr:
        return x

    def binop(self, meta: Any, left: ir.Expr, op: Token, right: ir.Expr) -> ir.BinOp:
        return ir.BinOp(str(op), left, right, span=_span(meta))

    compare = binop

    def args(self, meta: Any, *items: Any) -> list[Any]:
        return list(items)

    def kwarg(self, meta: Any, key: Token, value: ir.Expr) -> _Kwarg:
        return _Kwarg(str(key), value, key.start_pos)  # type: ignore[arg-type]  # propagate_positions: every token has one

    def __init__(self, user: Mapping[str, UserFunction]) -> None:
        self.user = user

    def call(self, meta: Any, name: Token, items: list[Any] | None = None) -> ir.Call:
        if str(name) in DENSITY_CALLS:  # log_prob(D, x), entropy(D) (stochgrad.densities)
            return _build(make_density_call, meta, name, items)
        return _build(lambda name, args, kwargs: make_call(name, args, kwargs, user=self.user), meta, name, items)

    def dist(self, meta: Any, name: Token, items: list[Any] | None = None) -> ir.Dist:
        return _build(make_iid if str(name) == "iid" else make_dist, meta, name, items)

    def binding(self, meta: Any, var: Token, dist: ir.Dist) -> ir.Binding:
        _check_name(var)
        return ir.Binding(str(var), dist, span=_span(meta))

    def kl(self, meta: Any, p: ir.Dist, q: ir.Dist) -> ir.KL:
        for d in (p, q):
            if isinstance(d, Iid):
                raise StochgradError("KL(p || q) takes the laws themselves, not iid(...) copies", d.span)
        return ir.KL(p, q, span=_span(meta))

    def expect(self, meta: Any, body: ir.Expr, *bindings: ir.Binding) -> ir.Expect:
        return ir.Expect(body, tuple(bindings), span=_span(meta))


def _build(make: Any, meta: Any, name: Token, items: list[Any] | None) -> Any:
    """Validate a call or distribution with the shared table code; errors point at its name (an
    error of stochgrad.densities' at the argument it names)."""
    args, kwargs = _split_args(items or [])
    try:
        node = make(str(name), args, kwargs)
    except StochgradError as exc:
        own = exc.span if make in (make_density_call, make_iid) else None
        raise StochgradError(str(exc), span=own or (name.start_pos, name.end_pos)) from None  # type: ignore[arg-type]
    return dataclasses.replace(node, span=_span(meta))


#: (rule, name) -> the position of the argument that is a distribution: log_prob(Normal(0, 1), x)
_DIST_ARGUMENT = {("call", "log_prob"): 0, ("call", "entropy"): 0, ("dist", "iid"): 1}


def _mark_distributions(node: Tree) -> None:
    """Parse the distribution argument of ``log_prob``/``entropy``/``iid`` as a distribution: lark
    reads ``Normal(0, 1)`` there as a call, renamed here to the ``dist`` rule before it is built."""
    if node.data not in ("call", "dist") or len(node.children) < 2:
        return
    at = _DIST_ARGUMENT.get((node.data, str(node.children[0])))
    args = node.children[1]
    if at is None or not isinstance(args, Tree) or at >= len(args.children):
        return
    arg = args.children[at]
    if isinstance(arg, Tree) and arg.data == "call":
        arg.data = "dist"


def _check_name(tok: Token) -> None:
    try:
        ir.check_name(str(tok))
    except ValueError as exc:
        raise StochgradError(str(exc), (tok.start_pos, tok.end_pos)) from None  # type: ignore[arg-type]


#: operators that chain: the left operand of ``a + b`` may be ``x - y`` at the same level
_CHAINS = {"PLUS": "+", "MINUS": "+", "STAR": "*", "SLASH": "*", "AT": "*"}
_CHAIN_RULES = ("binop", "matmul")


def _continues(parent: Tree, child: Tree) -> bool:
    """``child`` is the left operand of ``parent`` in one flat chain (``a - b + c``)."""
    if parent.data not in _CHAIN_RULES or child.data not in _CHAIN_RULES:
        return False
    group = _CHAINS.get(parent.children[1].type)  # type: ignore[union-attr]  # a binop's operator is a Token
    return group is not None and group == _CHAINS.get(child.children[1].type) and parent.children[0] is child  # type: ignore[union-attr]


def _check_depth(tree: Tree, text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH; a flat chain of sums or products is one level."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            pos = node.meta.start_pos if not node.meta.empty else 0
            raise ParseError(f"expression nested too deeply (more than {MAX_DEPTH} levels)", text, pos)
        stack.extend((c, depth if _continues(node, c) else depth + 1) for c in node.children if isinstance(c, Tree))


def _syntax_error(exc: UnexpectedInput, text: str) -> ParseError:
    if isinstance(exc, UnexpectedCharacters):
        return ParseError(f"unexpected character {text[exc.pos_in_stream]!r}", text, exc.pos_in_stream)  # type: ignore[index]
    if isinstance(exc, UnexpectedToken):
        expected = _describe(set(exc.accepts or exc.expected))
        tok = exc.token
        if tok.type == "$END":
            return ParseError(
                f"unexpected end of input; expected {' or '.join(expected)}", text, len(text), expected=expected
            )
        return ParseError(
            f"unexpected {str(tok)!r}; expected {' or '.join(expected)}",
            text,
            tok.start_pos,
            length=len(str(tok)),
            expected=expected,
        )
    if isinstance(exc, UnexpectedEOF):
        expected = _describe(set(exc.expected))
        return ParseError(
            f"unexpected end of input; expected {' or '.join(expected)}", text, len(text), expected=expected
        )
    return ParseError(str(exc), text, getattr(exc, "pos_in_stream", 0) or 0)


def parse(
    text: str, functions: Mapping[str, Any] | None = None, *, distributions: Mapping[str, Any] | None = None
) -> ir.Expr:
    """Parse DSL text into an immutable expression (cached: parse once, use many times).

    ``functions`` maps names to user functions (backend-native callables or
    :class:`~stochgrad.functions.UserFunction`) that the text may call, e.g.
    ``parse("E[loglik(x, z), z ~ Normal(mu, 1)]", functions={"loglik": fn})``.

    Args:
        text: the DSL text.
        functions: user functions the text may call, by name.
        distributions: user distributions the text may name, for this parse only
            (:mod:`stochgrad.distscope`); plan and run the expression with the same mapping.

    Returns:
        The expression (an immutable, hashable :class:`~stochgrad.ir.Expr`); ``str()`` prints it back.

    Raises:
        ParseError: the text is not valid, with the line, column and a caret under the problem."""
    if distributions is not None:
        with scoped(check_distributions(distributions)):
            return parse(text, functions)
    if not functions:
        return _parse(text, (), scope_key())
    taken = sorted(DENSITY_CALLS.union({"iid"}).intersection(functions))
    if taken:  # log_prob(D, x), entropy(D), iid(K, D): stochgrad.densities
        raise ParseError(f"user function {taken[0]!r} would hide the built-in {taken[0]}(...); choose another name")
    try:
        user = tuple((name, as_user_function(name, fn)) for name, fn in functions.items())
    except StochgradError as exc:
        raise ParseError(str(exc)) from None
    return _parse(text, user, scope_key())


def as_expression(expr: Any) -> ir.Expr:
    """``expr`` as an expression: DSL text is parsed (:func:`parse`), an expression passes as it is;
    anything else is a ``TypeError``.  Every entry point (``plan``, ``estimate``, ``compile``,
    ``compare``) takes either form through this one function."""
    if isinstance(expr, str):
        return parse(expr)
    if isinstance(expr, ir.Expr):
        return expr
    raise TypeError(f"expected DSL text or an expression, got {type(expr).__name__}")


@functools.lru_cache(maxsize=512)
def _parse(text: str, user: tuple[tuple[str, UserFunction], ...], scope: tuple[tuple[str, int], ...]) -> ir.Expr:
    """The cached parse; ``scope`` (:func:`~stochgrad.distscope.scope_key`) keys the distributions
    visible to the call."""
    if not isinstance(text, str):
        raise TypeError(f"parse() takes DSL text (str), got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ParseError(f"expression too long ({len(text)} characters; at most {MAX_LENGTH})")
    if not text.strip():
        raise ParseError("empty expression", text, 0, expected=["an expression"])
    fast = fast_parse(text, dict(user), MAX_DEPTH)  # valid text, quickly; else None
    if fast is not None:
        try:
            check_scopes(fast)
        except StochgradError as exc:
            raise _located(exc, text) from None
        return fast
    return parse_with_lark(text, user)


def parse_with_lark(text: str, user: tuple[tuple[str, UserFunction], ...] = ()) -> ir.Expr:
    """The reference path (lark's parser), which every error comes from; no cache."""
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, text) from None
    _check_depth(tree, text)
    try:
        expr = _ToIR(dict(user)).transform(tree)
        check_scopes(expr)
    except StochgradError as exc:
        raise _located(exc, text) from None
    return expr


def _located(exc: BaseException, text: str) -> BaseException:
    if isinstance(exc, StochgradError) and not isinstance(exc, ParseError):
        span = exc.span
        if span is None:
            return ParseError(str(exc), text, None)
        return ParseError(str(exc), text, span[0], length=span[1] - span[0])
    return exc
