"""The embedded Python form of the DSL: build the same IR without strings.

    >>> import stochgrad as sg
    >>> mu, sigma, z = sg.symbols("mu sigma z")
    >>> e = sg.E(z**2, z=sg.Normal(mu, sigma))
    >>> str(e)
    'E[z ** 2, z ~ Normal(mu, sigma)]'

Distribution constructors (``sg.Normal``...) and functions (``sg.exp``...) are
generated from the same tables the parser uses, and validate their arguments
the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import ir
from .densities import entropy, iid, log_prob  # noqa: F401  (sg.log_prob, sg.entropy, sg.iid)
from .distributions import DISTRIBUTIONS, make_dist
from .functions import FUNCTIONS, make_call
from .analysis import check_scopes


def symbols(names: str) -> tuple[ir.Name, ...] | ir.Name:
    """``symbols("mu sigma")`` -> names usable in expressions (one name -> one symbol)."""
    out = tuple(ir.Name(n) for n in names.replace(",", " ").split())
    return out[0] if len(out) == 1 else out


def E(body: Any, **bindings: ir.Dist) -> ir.Expect:
    """``E(body, z=Normal(mu, 1), x=Normal(z, s))``: bindings in the order given."""
    if not bindings:
        raise TypeError("E() needs at least one binding, e.g. E(z**2, z=Normal(mu, sigma))")
    pairs = []
    for var, dist in bindings.items():
        if not isinstance(dist, ir.Dist):
            raise TypeError(
                f"binding {var}= must be a distribution such as Normal(mu, sigma), got {type(dist).__name__}"
            )
        pairs.append(ir.Binding(var, dist))

    e = ir.Expect(ir.as_expr(body), tuple(pairs))
    check_scopes(e)
    return e


def _builder(name: str, make: Callable[..., Any], doc: str) -> Callable[..., Any]:
    def build(*args: Any, **kwargs: Any) -> Any:
        return make(name, tuple(ir.as_expr(a) for a in args), tuple((k, ir.as_expr(v)) for k, v in kwargs.items()))

    build.__name__ = build.__qualname__ = name
    build.__doc__ = doc
    return build


def KL(p: ir.Dist, q: ir.Dist) -> ir.KL:
    """``KL(p || q)`` of two distribution nodes: ``sg.KL(sg.Normal(mu, s), sg.Normal(0, 1))``."""
    if not (isinstance(p, ir.Dist) and isinstance(q, ir.Dist)):
        raise TypeError("KL() takes two distributions, e.g. KL(Normal(mu, s), Normal(0, 1))")
    return ir.KL(p, q)


def dist_constructor(name: str) -> Callable[..., ir.Dist]:
    """``Normal(mu, sigma)``-style constructor of distribution nodes (validated like the parser)."""
    return _builder(name, make_dist, f"{DISTRIBUTIONS[name].doc or name} (builds a distribution node)")


def function(name: str) -> Callable[..., ir.Call]:
    """``exp(x)``-style constructor of function calls (validated like the parser)."""
    return _builder(name, make_call, FUNCTIONS[name].doc)
