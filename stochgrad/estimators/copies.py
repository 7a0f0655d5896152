"""The cost evaluated on copies of an expectation's samples, for estimators that assemble their own
surrogate (:meth:`~stochgrad.estimators.EstimatorSpec.own_surrogate`).

REBAR evaluates ``f`` at ``b``, ``s(z)`` and ``s(z~)``; a measure-valued derivative at ``z`` and at
each coordinate's ``z+`` / ``z-``; IndeCateR at ``z`` with one coordinate set to each class.  All of
them stack the ``C`` versions of the node's value as ``C`` blocks of ``n`` on the sample axis (block
``c`` holds copy ``c`` of every sample), tile the rest of the scope ``C`` times, evaluate the cost
*once* on the stacked scope (vectorized: no loop over samples or copies) and split it back into
the ``C`` per-copy costs (:func:`cost_on_copies`).  The node must be the only random node of its
expectation and outside enumerations and ``batch_axes`` runs (:func:`alone`): other nodes would be
drawn once for all copies, or the copies would mix with enumeration copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import PlanError, StochgradError
from ..types import Array

if TYPE_CHECKING:
    from ..planned import PlannedExpect
    from ..program.frame import Frame


def alone(fr: Frame, e: PlannedExpect, name: str) -> None:
    """Refuse, naming estimator ``name``, an expectation where copies of the node's samples would
    not be independent of the rest: a second random node, an enclosing enumeration, batch axes."""
    var = e.nodes[0].var
    if len(e.nodes) != 1:
        raise PlanError(f"{name}: {var} must be the only random node of its expectation "
                        f"(it has {', '.join(n.var for n in e.nodes)})")
    if fr.mult != 1 or fr.batch_axes:
        raise PlanError(f"{name}: {var} cannot sit inside an enumeration or a batch_axes run")


def tiled(fr: Frame, env: dict[str, Array], copies: int) -> dict[str, Array]:
    """The scope ``env`` with every value copied ``copies`` times on the sample axis."""
    return {k: fr.tile(x, copies) for k, x in env.items()}


def cost_on_copies(fr: Frame, e: PlannedExpect, scope: dict[str, Array], terms: Sequence[Any], copies: int,
                   name: str) -> list[Array]:
    """The per-sample cost of expectation ``e`` (its signed terms summed; a term kept per example,
    an inferred plate, summed over the examples) evaluated once on ``scope``, whose values hold
    ``copies`` blocks on the sample axis: the ``copies`` blocks of the cost, each of ``n`` samples."""
    B = fr.B
    outer = fr.mult
    fr.mult = copies
    try:
        f: Array | float = 0.0
        plates = e.plates or (None,) * len(e.terms)
        for (sign, _), t, plate in zip(e.terms, terms, plates):
            value = fr.array(t(fr, scope))
            if plate is not None and len(B.shape(value)) > 1:  # one cost per example: their sum
                value = B.sum(value, (1,))
            f = f + (value if sign == 1.0 else -value)
    finally:
        fr.mult = outer
    f = fr.array(f)
    n = B.shape(f)[0] // copies
    if B.shape(f)[0] != copies * n or n == 0:
        raise StochgradError(f"{name}: the cost does not keep the sample axis")
    return [f[c * n:(c + 1) * n] for c in range(copies)]
