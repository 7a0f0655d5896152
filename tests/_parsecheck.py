"""Shared by the parser tests: the fast parsing path must build what lark builds, spans included."""

import stochgrad as sg
from stochgrad import fastparse, ir, parser


def spans(e):
    """Every node's type and source span (pre-order), bindings included: what equality leaves out."""
    out = []
    for node in ir.walk(e):
        out.append((type(node).__name__, node.span))
        if isinstance(node, ir.Expect):
            out.extend(("Binding", b.span) for b in node.bindings)
    return out


def same_as_lark(text, must_be_fast=False):
    """Parse ``text`` both ways; the fast path accepts only what lark accepts and builds the same tree
    and spans.  Returns lark's tree (None where lark refuses the text)."""
    fast = fastparse.fast_parse(text, {}, parser.MAX_DEPTH)
    try:
        slow = parser.parse_with_lark(text)
    except sg.ParseError:
        slow = None
    if must_be_fast:
        assert fast is not None, text
    if fast is not None:
        assert slow is not None, text
        assert fast == slow and spans(fast) == spans(slow), text
    return slow
