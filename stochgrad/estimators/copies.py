"""The cost evaluated on copies of an expectation's samples, for estimators that assemble their own
surrogate (:meth:`~stochgrad.estimators.EstimatorSpec.own_surrogate`).

REBAR evaluates ``f`` at ``b``, ``s(z)`` and ``s(z~)``; a measure-valued derivative at ``z`` and at
each coordinate's ``z+`` / ``z-``; IndeCateR at ``z`` with one coordinate set to each class.  All of
them stack the ``C`` versions of the node's value as ``C`` blocks of ``n`` on the sample axis (block
``c`` holds copy ``c`` of every sample), tile the rest of the scope ``C`` times, evaluate the cost
*once* on the stacked scope (vectorized: no loop over samples or copies) and split it back into
the ``C`` per-copy costs (:func:`cost_on_copies`).  The node must be the only random node of its
expectation and outside enumerations (:func:`alone`): other nodes would be drawn once for all
copies, or the copies would mix with enumeration copies.  Under ``batch_axes`` (a declared plate of
independent examples) an estimator runs only where it opts in (``alone(..., batched=True)``: REBAR,
RELAX), having made its combine per example: :func:`cost_on_copies` with ``keep=True`` keeps one cost
per example, and :func:`paired_logq` pairs each example's cost with its own ``log q``.  The copies sit
on the sample axis, so the batch axes are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import PlanError, StochgradError
from ..types import Array

if TYPE_CHECKING:
    from .. import ir
    from ..planned import PlannedExpect
    from ..program.frame import Frame


def alone(fr: Frame, e: PlannedExpect, name: str, batched: bool = False) -> None:
    """Refuse, naming estimator ``name``, an expectation where copies of the node's samples would
    not be independent of the rest: a second random node, an enclosing enumeration, and batch axes
    unless the estimator combines its copies per example (``batched``)."""
    var = e.nodes[0].var
    if len(e.nodes) != 1:
        raise PlanError(
            f"{name}: {var} must be the only random node of its expectation "
            f"(it has {', '.join(n.var for n in e.nodes)})"
        )
    if fr.mult != 1 or (fr.batch_axes and not batched):
        why = f" ({name} pairs its copies with the whole log q, not per example)" if fr.mult == 1 else ""
        raise PlanError(f"{name}: {var} cannot sit inside an enumeration or a batch_axes run{why}")


def tiled(fr: Frame, env: dict[str, Array], copies: int) -> dict[str, Array]:
    """The scope ``env`` with every value copied ``copies`` times on the sample axis."""
    return {k: fr.tile(x, copies) for k, x in env.items()}


def cost_on_copies(
    fr: Frame,
    e: PlannedExpect,
    scope: dict[str, Array],
    terms: Sequence[Any],
    copies: int,
    name: str,
    keep: bool = False,
) -> list[Array]:
    """The per-sample cost of expectation ``e`` (its signed terms summed; a term kept per example,
    an inferred plate, summed over the examples unless ``keep``) evaluated once on ``scope``, whose
    values hold ``copies`` blocks on the sample axis: the ``copies`` blocks of the cost, each of ``n``
    samples.  With ``keep`` (a ``batch_axes`` run) each block keeps its per-example axes."""
    B = fr.B
    outer = fr.mult
    fr.mult = copies
    try:
        f: Array | float = 0.0
        plates = e.plates or (None,) * len(e.terms)
        for (sign, _), t, plate in zip(e.terms, terms, plates):
            value = fr.array(t(fr, scope))
            if plate is not None and not keep and len(B.shape(value)) > 1:  # one cost per example: their sum
                value = B.sum(value, (1,))
            f = f + (value if sign == 1.0 else -value)
    finally:
        fr.mult = outer
    f = fr.array(f)
    n = B.shape(f)[0] // copies
    if B.shape(f)[0] != copies * n or n == 0:
        raise StochgradError(f"{name}: the cost does not keep the sample axis")
    return [f[c * n : (c + 1) * n] for c in range(copies)]


def paired_logq(fr: Frame, logq: Array, like: Array, var: str, name: str) -> Array:
    """``log q`` of the node's values (elementwise, or per example), summed over all axes but the
    ``fr.batch_axes`` leading ones and shaped to broadcast against the cost ``like``: outside a
    ``batch_axes`` run one ``log q`` per sample (paired with every cost of the sample), inside it one
    per sample and example, each paired with its own example's cost -- which must then keep the
    batch axes (refused by name otherwise: a summed cost would pair each score with the whole batch)."""
    B, kept = fr.B, fr.batch_axes
    rank = len(B.shape(logq)) - 1
    axes = tuple(range(1 + min(kept, rank), 1 + rank))
    lq = B.sum(logq, axes) if axes else logq
    if kept and len(B.shape(like)) - 1 < min(kept, rank):
        raise StochgradError(
            f"{name}: batch_axes={kept}: the cost of {var}'s expectation has shape"
            f" {tuple(B.shape(like))[1:]} per sample; keep one cost per example (sum over the"
            " other axes only, e.g. sum(..., axis=-1)), or use batch_axes=0"
        )
    while len(B.shape(lq)) < len(B.shape(like)):
        lq = B.reshape(lq, B.shape(lq) + (1,))
    return lq


def check_plate(
    low: Frame, value: Array, logqs: list[Array], variables: list[str], term: ir.Expr, rank: int | None = None
) -> None:
    """With ``batch_axes``, a cost term scored by a node must keep the node's batch axes (one
    cost per example): a term summed over the examples would pair every example's score with
    the whole batch's cost, and be counted once per example.  ``rank``: the term's as written."""
    rank = len(low.B.shape(value)) - 1 if rank is None else rank
    for lq, var in zip(logqs, variables):
        kept = len(low.B.shape(lq)) - 1  # the batch axes of var's log-probability
        if rank < kept:
            raise StochgradError(
                f"batch_axes={low.batch_axes}: the cost term `{term}` depends on {var}, which has {kept}"
                f" batch ax{'is' if kept == 1 else 'es'} (independent examples), but the term has {rank}"
                f" ax{'is' if rank == 1 else 'es'}: keep one cost per example (sum over the other axes"
                f" only, e.g. sum(..., axis=-1)), or use batch_axes=0"
            )
