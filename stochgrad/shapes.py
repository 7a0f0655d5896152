"""Static shape inference: the logical shape of every expression, given parameter shapes.

Shapes follow numpy broadcasting; ``sum``/``mean`` drop one axis or all; a random
variable has the broadcast shape of its distribution's parameters (batch shape,
then event shape for Categorical and Dirichlet).  The planner uses this to size
finite supports before anything is sampled, and mismatches are reported against
the text before any computation.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import ir
from .errors import StochgradError

Shape = tuple[int, ...]


class UnknownShape(Exception):
    """The shape depends on a user function, which is opaque until it runs."""


def broadcast(shapes: list[Shape], where: ir.Expr) -> Shape:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        listed = " and ".join(str(s) for s in shapes)
        raise StochgradError(f"shapes {listed} do not broadcast in `{where}`", getattr(where, "span", None)) from None


def infer(e: ir.Expr, env: Mapping[str, Shape]) -> Shape:
    """Logical shape of ``e``; ``env`` maps parameters and bound variables to shapes (missing: scalar)."""
    if isinstance(e, ir.Num):
        return ()
    if isinstance(e, ir.Name):
        return tuple(env.get(e.id, ()))
    if isinstance(e, ir.Neg):
        return infer(e.operand, env)
    if isinstance(e, ir.BinOp):
        return broadcast([infer(e.left, env), infer(e.right, env)], e)
    if isinstance(e, ir.Call):
        if e.impl is not None:
            raise UnknownShape(e.fn)
        shape = infer(e.args[0], env)
        if e.fn == "argmax":
            if not shape:
                raise StochgradError(f"argmax needs a value with a last axis, got a scalar in `{e}`", e.span)
            return shape[:-1]
        if e.fn not in ("sum", "mean"):
            return shape
        axis = dict(e.kwargs).get("axis")
        if axis is None:
            return ()
        k = int(axis.value)  # type: ignore[attr-defined]
        if not -len(shape) <= k < len(shape):
            raise StochgradError(f"axis {k} is out of range for a value with {len(shape)} axes (shape {shape}) in `{e}`",
                                 e.span)
        return shape[: k % len(shape)] + shape[k % len(shape) + 1:]
    if isinstance(e, ir.Dist):
        return broadcast([infer(v, env) for _, v in e.params], e)
    if isinstance(e, ir.KL):
        from .distributions import lookup

        shape = broadcast([infer(e.p, env), infer(e.q, env)], e)
        return shape[: len(shape) - lookup(e.p.name).event_rank]
    if isinstance(e, ir.Expect):
        inner = dict(env)
        for b in e.bindings:
            inner[b.var] = infer(b.dist, inner)
        return infer(e.body, inner)
    raise TypeError(f"no shape rule for {type(e).__name__}")
