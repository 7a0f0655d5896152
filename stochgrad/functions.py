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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True, eq=False)
class UserFunction:
    """A backend-native callable used inside expressions, as a differentiable black box.

    It receives native arrays whose first axis indexes samples (size 1 or n) and must return one
    with that axis first -- elementwise code and ``torch.nn`` layers do.  Gradients flow into
    whatever it closes over (a module's parameters).  ``differentiable=False`` tells the planner
    that its output is piecewise constant, so random variables reaching it get the score function.
    Calling it on expressions builds the IR (the embedded form): ``loglik(x, z)``."""

    fn: Callable[..., Any]
    differentiable: bool = True
    name: str = ""

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise StochgradError(f"UserFunction {self.name or ''}: fn must be callable, got {type(self.fn).__name__}")
        if self.name:
            check_function_name(self.name)

    def __call__(self, *args: Any) -> ir.Call:
        if not self.name:
            raise StochgradError("give the UserFunction a name to use it in the embedded form")
        return make_call(self.name, tuple(ir.as_expr(a) for a in args), (), {self.name: self})


def check_function_name(name: Any) -> None:
    """A user function's name must be a DSL identifier that means nothing else: not ``E``/``KL``, not a
    distribution's name (``Normal(...)`` draws), not a built-in function's."""
    try:
        ir.check_name(name)
    except StochgradError as exc:
        raise StochgradError(f"user function name {name!r}: {exc}") from None
    if name in FUNCTIONS:
        raise StochgradError(f"user function {name!r} would hide the built-in {name}(); choose another name")
    from .distributions import DISTRIBUTIONS

    if name in DISTRIBUTIONS:
        raise StochgradError(f"user function {name!r} has the name of the distribution {name}, which the DSL reads"
                             " as one; choose another name")


def as_user_function(name: str, value: Any) -> UserFunction:
    check_function_name(name)
    if isinstance(value, UserFunction):
        return value if value.name == name else UserFunction(value.fn, value.differentiable, name)
    if not callable(value):
        raise StochgradError(f"user function {name!r} must be callable, got {type(value).__name__}")
    return UserFunction(value, True, name)


def make_call(name: str, args: tuple[ir.Expr, ...], kwargs: tuple[tuple[str, ir.Expr], ...],
              user: Mapping[str, UserFunction] | None = None) -> ir.Call:
    """Validate a call against the table (or the user's functions) and build the node
    (shared by parser and embedded form)."""
    if user and name in user:
        if kwargs:
            raise StochgradError(f"user function {name}() takes positional arguments only")
        return ir.Call(name, tuple(args), (), impl=user[name])
    fn = FUNCTIONS.get(name)
    if fn is None:
        from .distributions import DISTRIBUTIONS

        if name in DISTRIBUTIONS:
            raise StochgradError(f"unknown function {name!r}: {name} is a distribution; draw from it with"
                                 f" E[..., v ~ {name}(...)]")
        known = list(FUNCTIONS) + list(user or ())
        raise StochgradError(f"unknown function {name!r}{did_you_mean(name, known)}")
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
