"""The table of functions the DSL knows.

Each entry names the backend primitive that computes it and whether it is
differentiable.  A function marked non-differentiable (``floor``, ``sign``,
comparisons) has derivative zero almost everywhere, so a pathwise estimator
through it would silently report 0: the planner reads this flag and picks the
score function instead (Mohamed et al. 2020, section 5).

Adding a function is one row here plus one entry in each backend's primitive
table (:data:`stochgrad.backend.PRIMITIVES` lists what a backend must supply).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import ir
from .errors import StochgradError, did_you_mean


@dataclass(frozen=True)
class Function:
    name: str
    arity: int
    differentiable: bool
    doc: str
    primitive: str | None = None  # elementwise backend primitive; None for reductions
    options: tuple[str, ...] = ()  # keyword options (integer literals)


def _elementwise(name: str, doc: str, differentiable: bool = True) -> Function:
    return Function(name, 1, differentiable, doc, primitive=name)


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in [
        _elementwise("exp", "e**x"),
        _elementwise("log", "natural logarithm"),
        _elementwise("log1p", "log(1 + x), accurate near 0"),
        _elementwise("expm1", "exp(x) - 1, accurate near 0"),
        _elementwise("sqrt", "square root"),
        _elementwise("abs", "absolute value (differentiable almost everywhere)"),
        _elementwise("sin", "sine"),
        _elementwise("cos", "cosine"),
        _elementwise("tan", "tangent"),
        _elementwise("tanh", "hyperbolic tangent"),
        _elementwise("sigmoid", "1 / (1 + exp(-x))"),
        _elementwise("softplus", "log(1 + exp(x)), computed stably"),
        _elementwise("floor", "largest integer <= x (not differentiable)", differentiable=False),
        _elementwise("round", "nearest integer, halves to even (not differentiable)", differentiable=False),
        _elementwise("sign", "-1, 0 or 1 (not differentiable)", differentiable=False),
        Function("argmax", 1, False, "index of the largest entry along the last axis (not differentiable)"),
        Function("sum", 1, True, "sum over all non-sample axes, or over axis=k", options=("axis",)),
        Function("mean", 1, True, "mean over all non-sample axes, or over axis=k", options=("axis",)),
    ]
}

#: comparison operators lower to these primitives; they are never differentiable
COMPARISON_PRIMITIVES = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge"}


def make_call(name: str, args: tuple[ir.Expr, ...], kwargs: tuple[tuple[str, ir.Expr], ...]) -> ir.Call:
    """Validate a call against the table and build the node (shared by parser and embedded form)."""
    fn = FUNCTIONS.get(name)
    if fn is None:
        from .distributions import DISTRIBUTIONS

        if name in DISTRIBUTIONS:
            raise StochgradError(f"unknown function {name!r}: {name} is a distribution; draw from it with"
                                 f" E[..., v ~ {name}(...)]")
        raise StochgradError(f"unknown function {name!r}{did_you_mean(name, FUNCTIONS)}")
    if len(args) != fn.arity:
        raise StochgradError(f"{name}() takes {fn.arity} argument{'s' * (fn.arity != 1)}, got {len(args)}")
    seen = set()
    for key, value in kwargs:
        if key not in fn.options:
            allowed = f"; it accepts {', '.join(fn.options)}" if fn.options else ""
            raise StochgradError(f"{name}() has no option {key!r}{allowed}")
        if key in seen:
            raise StochgradError(f"{name}() got option {key!r} twice")
        seen.add(key)
        if not (isinstance(value, ir.Num) and value.value.is_integer()):
            raise StochgradError(f"{name}(): option {key!r} must be an integer literal, got {value}")
    return ir.Call(name, tuple(args), tuple(kwargs))
