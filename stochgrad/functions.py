"""The table of functions the DSL knows: one row per function, everything about it in the row.

A :class:`Function` row carries

* its **arity** and the names of its arguments (``where(condition, a, b)``, ``clip(x, lo, hi)``);
* its **derivative story**, one flag per argument: a function is differentiable in an argument or
  has derivative zero almost everywhere in it (``floor``, ``sign``, ``argmax``, the condition of
  ``where``).  A pathwise estimator through such an argument would silently report 0, so the
  planner reads these flags (:func:`stochgrad.analysis.nondiff_uses`) and picks the score function
  for a variable that reaches one (Mohamed et al. 2020, section 5).  ``where(z > 0, z, 0)`` is
  pathwise-broken in ``z`` (the condition), ``where(c, z, 0)`` with ``c`` free of ``z`` is not;
* its **options** (keyword integer literals: ``axis``);
* its **shape rule** and its **implementation** (:mod:`stochgrad.fnimpl`, where the maths is), used
  by the shape pass (:mod:`stochgrad.shapes`) and the compiler (:mod:`stochgrad.program.compile`)
  without any case on the function's name;
* ``primitive``: for a one-argument elementwise function, the backend primitive computing it.

Constants fold with IEEE semantics where :func:`stochgrad.ieee.call` has a scalar form of the
function (by name); others are computed by the backend.

Reductions (``sum mean max min prod logsumexp logmeanexp``) reduce over every non-sample axis, or over
``axis=k``; ``softmax``/``log_softmax`` work along the last axis, or ``axis=k``; ``transpose`` reverses
the axes (a matrix's two swapped).

Adding a function is one row here (with its rule and implementation in :mod:`stochgrad.fnimpl`), plus
an entry in each backend's primitive table for a new primitive (:data:`stochgrad.backend.PRIMITIVES`
lists what a backend must supply).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import fnimpl, ir
from .errors import StochgradError, did_you_mean
from .distributions import DISTRIBUTIONS


@dataclass(frozen=True)
class Function:
    name: str
    params: tuple[str, ...]  # argument names (the arity is their number)
    differentiable_in: tuple[bool, ...]  # per argument: is the function differentiable in it
    doc: str
    shape: fnimpl.ShapeRule
    impl: fnimpl.Impl
    primitive: str | None = None  # a one-argument elementwise function's backend primitive
    options: tuple[str, ...] = ()  # keyword options (integer literals)

    @property
    def arity(self) -> int:
        return len(self.params)

    @property
    def differentiable(self) -> bool:
        """Whether the output is differentiable in some argument (a user function's flag has this meaning)."""
        return any(self.differentiable_in)


def _elementwise(name: str, doc: str, differentiable: bool = True) -> Function:
    return Function(name, ("x",), (differentiable,), doc, fnimpl.elementwise, fnimpl.unary(name), primitive=name)


def _reduction(name: str, doc: str, impl: fnimpl.Impl) -> Function:
    return Function(
        name,
        ("x",),
        (True,),
        f"{doc} over all non-sample axes, or over axis=k",
        fnimpl.reduction,
        impl,
        options=("axis",),
    )


def _along(name: str, doc: str, impl: fnimpl.Impl) -> Function:
    return Function(
        name, ("x",), (True,), f"{doc} along the last axis, or along axis=k", fnimpl.along_axis, impl, options=("axis",)
    )


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
        _elementwise("lgamma", "log|Gamma(x)|"),
        _elementwise("digamma", "d/dx log Gamma(x)"),
        _elementwise("erf", "the error function, 2/sqrt(pi) * integral of exp(-t**2) from 0 to x"),
        Function(
            "logsigmoid",
            ("x",),
            (True,),
            "log(sigmoid(x)) = -softplus(-x), computed stably",
            fnimpl.elementwise,
            fnimpl.logsigmoid,
        ),
        _elementwise("floor", "largest integer <= x (not differentiable)", differentiable=False),
        _elementwise("round", "nearest integer, halves to even (not differentiable)", differentiable=False),
        _elementwise("sign", "-1, 0 or 1 (not differentiable)", differentiable=False),
        Function(
            "maximum",
            ("a", "b"),
            (True, True),
            "the larger of a and b, elementwise (broadcast)",
            fnimpl.elementwise,
            fnimpl.nary("maximum"),
        ),
        Function(
            "minimum",
            ("a", "b"),
            (True, True),
            "the smaller of a and b, elementwise (broadcast)",
            fnimpl.elementwise,
            fnimpl.nary("minimum"),
        ),
        Function(
            "where",
            ("condition", "a", "b"),
            (False, True, True),
            "a where the condition is nonzero, else b, elementwise (differentiable in a and b, not in the condition)",
            fnimpl.elementwise,
            fnimpl.nary("where"),
        ),
        Function(
            "clip",
            ("x", "lo", "hi"),
            (True, True, True),
            "minimum(maximum(x, lo), hi), elementwise",
            fnimpl.elementwise,
            fnimpl.clip,
        ),
        Function(
            "argmax",
            ("x",),
            (False,),
            "index of the largest entry along the last axis (not differentiable)",
            fnimpl.drop_last,
            fnimpl.argmax,
        ),
        _reduction("sum", "sum", fnimpl.total(mean=False)),
        _reduction("mean", "mean", fnimpl.total(mean=True)),
        _reduction("max", "largest entry (its gradient goes to that entry)", fnimpl.tree_reduction("maximum")),
        _reduction("min", "smallest entry (its gradient goes to that entry)", fnimpl.tree_reduction("minimum")),
        _reduction("prod", "product", fnimpl.tree_reduction("prod")),
        _reduction("logsumexp", "log(sum(exp(x))), computed stably", fnimpl.logsumexp),
        _reduction("logmeanexp", "log(mean(exp(x))), computed stably", fnimpl.logmeanexp),
        _along("softmax", "exp(x) / sum(exp(x))", fnimpl.softmax),
        _along("log_softmax", "x - logsumexp(x)", fnimpl.log_softmax),
        Function(
            "transpose",
            ("x",),
            (True,),
            "the axes reversed (a matrix transposed; a vector or scalar unchanged)",
            fnimpl.reversed_axes,
            fnimpl.transpose,
        ),
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

    if name in DISTRIBUTIONS:
        raise StochgradError(
            f"user function {name!r} has the name of the distribution {name}, which the DSL reads"
            " as one; choose another name"
        )


def as_user_function(name: str, value: Any) -> UserFunction:
    check_function_name(name)
    if isinstance(value, UserFunction):
        return value if value.name == name else UserFunction(value.fn, value.differentiable, name)
    if not callable(value):
        raise StochgradError(f"user function {name!r} must be callable, got {type(value).__name__}")
    return UserFunction(value, True, name)


def make_call(
    name: str,
    args: tuple[ir.Expr, ...],
    kwargs: tuple[tuple[str, ir.Expr], ...],
    user: Mapping[str, UserFunction] | None = None,
) -> ir.Call:
    """Validate a call against the table (or the user's functions) and build the node
    (shared by parser and embedded form)."""
    if user and name in user:
        if kwargs:
            raise StochgradError(f"user function {name}() takes positional arguments only")
        return ir.Call(name, tuple(args), (), impl=user[name])
    fn = FUNCTIONS.get(name)
    if fn is None:
        if name in DISTRIBUTIONS:
            raise StochgradError(
                f"unknown function {name!r}: {name} is a distribution; draw from it with E[..., v ~ {name}(...)]"
            )
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
