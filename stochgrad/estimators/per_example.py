"""Per-example K-sample bounds: when each example's bound may pair with that example's ``log q`` only.

A VAE trained on a batch writes ``E[sum(logmeanexp(T, axis=0)), z ~ iid(K, Q)]`` with ``T`` of
shape ``(K, N)`` and ``Q`` with a batch axis of ``N`` examples (one latent per image).  Let
``z_k = (z_{k,1}, ..., z_{k,N})`` with ``q(z_k) = prod_i q_i(z_{k,i})`` (the examples' axis is a
*batch* axis of ``Q``, so its rows are independent), and let the bound of example ``i``,
``L_i = logmeanexp_k T_{k,i}``, depend on the node only through its rows ``z_{.,i}``.  Then for
``j != i`` and any ``c`` that depends on the copies' rows ``z_{.,i}`` (and on nothing of example ``j``)

    E[c  grad log q_j(z_{k,j})] = E[c] E[grad log q_j(z_{k,j})] = 0,

so VIMCO's per-copy signal of example ``i`` may multiply ``grad log q_i(z_{k,i})`` alone (the
example's own latent; ``log q`` summed over the node's other axes), instead of the whole
``grad log q(z_k)``: unbiased still, without the ``N - 1`` other examples' bound noise in each
example's gradient (the plate-level Rao-Blackwellization of :mod:`stochgrad.plates`, per copy).

The structure is proven statically, by the plate analysis of :mod:`stochgrad.plates` (``analyze``),
run on ``T`` with the node's value marked a row value whose examples' axis is axis 1 (axis 0 holds
the copies): ``T`` must keep that axis as its own axis 1 (elementwise operations, broadcasting that
keeps it aligned, reductions over other axes, ``log_prob``, ``@`` and indexing by the plate rules).
Other names (parameters, other nodes of the expectation) are constants for this argument: the
identity above holds conditionally on them.  Where it fails (a sum over the examples inside ``T``,
unknown shapes, no batch axis of 2 or more), :func:`example_axis` returns why, and VIMCO keeps the
whole ``log q`` per copy (always unbiased); the plan note says which.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import ir
from ..distributions import lookup
from ..errors import StochgradError
from ..shapes import UnknownShape
from .stl import _law


def example_axis(t: ir.Expr, var: str, dist: ir.Dist, shapes: Mapping[str, Any] | None) -> tuple[int | None, str]:
    """``(N, "")`` where the log weights ``t`` of node ``var ~ dist = iid(K, Q)`` keep ``N >= 2``
    independent examples of the node on their axis 1, each depending on its own rows only;
    ``(None, why)`` otherwise (module docstring)."""
    from ..plates import analyze  # here: stochgrad.plates imports the planner's types, which import the estimators

    if shapes is None:
        return None, "the shapes are unknown: plan with parameter values or shapes"
    try:
        zshape = tuple(shapes[var])
    except (UnknownShape, KeyError, TypeError):
        return None, f"the shape of {var} is unknown"
    law = _law(dist)
    try:
        rank = lookup(law.name).event_rank
    except (StochgradError, KeyError):
        return None, f"{law.name} is not analyzed for plates"
    if len(zshape) - 1 - rank < 1 or zshape[1] < 2:
        return None, f"{law} has no batch axis of 2 or more examples"
    n = int(zshape[1])
    try:
        shape, kind = analyze(t, n, {var: (zshape, ("row", 1))}, shapes)
    except (StochgradError, TypeError, ValueError, KeyError):
        return None, f"the log weights `{t}` are not analyzed for plates"
    if kind[0] == "joint":
        return None, str(kind[1])
    if kind != ("row", 1) or shape is None or len(shape) < 2 or shape[1] != n:
        return None, f"the log weights do not keep the {n} examples of {var} on their axis 1"
    return n, ""
