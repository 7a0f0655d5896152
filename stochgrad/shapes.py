"""Static shape inference: the logical shape of every expression, given parameter shapes.

Shapes follow numpy broadcasting (``a @ b`` numpy's matmul, ``x[...]`` its indexing: :mod:`stochgrad.arraynodes`);
a function call follows its row's rule in
:data:`stochgrad.functions.FUNCTIONS` (reductions drop one axis or all); a random
variable has the broadcast shape of its distribution's parameters (batch shape,
then event shape for Categorical and Dirichlet).  The planner uses this to size
finite supports before anything is sampled, and mismatches are reported against
the text before any computation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from . import arraynodes, ir
from .errors import StochgradError
from .types import Shape


class UnknownShape(Exception):
    """The shape depends on a user function, which is opaque until it runs."""


def broadcast(shapes: list[Shape], where: ir.Expr) -> Shape:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        listed = " and ".join(str(s) for s in shapes)
        raise StochgradError(f"shapes {listed} do not broadcast in `{where}`", getattr(where, "span", None)) from None


def infer(e: ir.Expr, env: Mapping[str, Shape]) -> Shape:
    """Logical shape of ``e``; ``env`` maps parameters and bound variables to shapes (missing: scalar).

    One post-order pass with explicit stacks (no recursion, whatever the depth); the variables
    bound inside ``e`` live in one dict, restored on leaving each expectation."""
    local: dict[str, Shape] = {}
    values: list[Shape] = []
    stack: list[tuple[Any, ...]] = [(_VISIT, e)]
    while stack:
        task = stack.pop()
        kind, node = task[0], task[1]
        if kind is _VISIT:
            if isinstance(node, ir.Num):
                values.append(())
            elif isinstance(node, ir.Name):
                values.append(local[node.id] if node.id in local else tuple(env.get(node.id, ())))
            elif isinstance(node, ir.Expect):
                saved = {b.var: local.get(b.var) for b in node.bindings}
                todo: list[tuple[Any, ...]] = []
                for b in node.bindings:
                    todo += [(_VISIT, b.dist), (_BIND, b.var)]
                todo += [(_VISIT, node.body), (_RESTORE, saved)]
                stack.extend(reversed(todo))
            elif isinstance(node, ir.Call) and node.impl is not None:
                raise UnknownShape(node.fn)
            else:
                kids = node.args if isinstance(node, ir.Call) else node.children()  # a call's options are no values
                stack.append((_COMBINE, node, len(kids)))
                stack.extend((_VISIT, c) for c in reversed(kids))
        elif kind is _COMBINE:
            n = task[2]
            shapes = values[len(values) - n :]
            del values[len(values) - n :]
            values.append(_rule(node, shapes))
        elif kind is _BIND:
            local[node] = values.pop()
        else:  # _RESTORE
            for var, old in node.items():
                if old is None:
                    local.pop(var, None)
                else:
                    local[var] = old
    return values[-1]


_VISIT, _COMBINE, _BIND, _RESTORE = "visit", "combine", "bind", "restore"


def _rule(e: ir.Expr, shapes: list[Shape]) -> Shape:
    """The shape of ``e`` from its children's shapes (a call: of its arguments)."""
    own = getattr(e, "shape_rule", None)  # log_prob, entropy, iid (stochgrad.densities)
    if own is not None:
        return own(shapes)
    if isinstance(e, ir.Neg):
        return shapes[0]
    if isinstance(e, ir.Dist):
        from .distributions import lookup

        return lookup(e.name).value_shape(dict(zip((k for k, _ in e.params), shapes)), e)
    if isinstance(e, ir.BinOp):
        return broadcast(shapes, e)
    if isinstance(e, ir.Call):  # the function's own rule, from the table (fnimpl)
        from .functions import FUNCTIONS

        return FUNCTIONS[e.fn].shape(e, shapes)
    if isinstance(e, arraynodes.MatMul):
        return arraynodes.matmul_shape(shapes[0], shapes[1], e)
    if isinstance(e, arraynodes.Index):  # children: the value, then the gather index if any
        return arraynodes.index_shape(shapes[0], e, shapes[1] if len(shapes) > 1 else ())
    if isinstance(e, ir.KL):
        from .distributions import lookup

        shape = broadcast(shapes, e)
        return shape[: len(shape) - lookup(e.p.name).event_rank]
    raise TypeError(f"no shape rule for {type(e).__name__}")
