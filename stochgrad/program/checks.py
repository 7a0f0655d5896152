"""Distribution-parameter checks, bound to their distribution when the program is built.

A :class:`DistCheck` knows, for each parameter of one distribution in the expression, whether it
is a number, a free name (a parameter of the expression) or computed.  At run time it checks the
parameter values against the distribution's constraints once per distinct set of values:

* all numbers, or free names whose values the run knows on the host (``estimate``): once per
  ``memo`` (a run, or an objective's calls), keyed by the expressions themselves;
* otherwise once per evaluation, keyed by the identity of the arrays (alive while the frame is).

Scalars are read as Python floats, larger values as numpy arrays.  A random node's check also asks
whether its samples would all round to its location (:func:`stochgrad.continuous.check_precision`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from .. import ir
from ..continuous import check_precision
from ..distributions import lookup
from .frame import Frame

from ..types import Array

_NUM, _FREE, _COMPUTED = 0, 1, 2


class DistCheck:
    """The check of one distribution ``d`` at one place (``context``: a variable, or a KL or
    log-ratio expression), with ``bound`` the variables in scope there."""

    __slots__ = ("context", "d", "kinds", "law", "random", "sources", "where")

    def __init__(self, d: ir.Dist, context: str | ir.Expr, bound: frozenset[str]) -> None:
        self.d, self.law, self.context = d, lookup(d.name), context
        self.kinds = tuple(
            _NUM if type(v) is ir.Num else _FREE if type(v) is ir.Name and v.id not in bound else _COMPUTED
            for _, v in d.params
        )
        self.random = isinstance(context, str)
        self.where: Callable[[], str] = (lambda: f"{context} ~ {d}") if self.random else (lambda: f"{context}: {d}")
        self.sources: Callable[[], dict[str, str]] = lambda: {k: str(v) for k, v in d.params}

    def __call__(self, fr: Frame, p: Mapping[str, Array]) -> None:
        if not fr.checks:
            return
        known = fr.known
        key = tuple(
            (k, v) if kind == _NUM or (kind == _FREE and v.id in known) else (k, id(p[k]))  # type: ignore[attr-defined]
            for kind, (k, v) in zip(self.kinds, self.d.params)
        )
        lasting = all(isinstance(k[1], ir.Expr) for k in key)
        seen = fr.memo if lasting else fr.checked_now
        full = (self.d.name, key)
        if full in seen:
            return
        values = {k: self._numeric(fr, kind, v, p.get(k)) for kind, (k, v) in zip(self.kinds, self.d.params)}
        self.law.validate(values, where=self.where, sources=self.sources)
        if self.random:  # are its samples all rounded to the location?
            check_precision(self.law, values, getattr(fr.B, "dtype", "float64"), self.where)
        if lasting:
            fr.memo[full] = True
        else:
            fr.checked_now.add(full)

    @staticmethod
    def _numeric(fr: Frame, kind: int, e: ir.Expr, value: Array) -> np.ndarray | float:
        """The value to check: a Python float for a scalar (one entry, no logical axes), else numpy."""
        if kind == _NUM:
            return e.value  # type: ignore[attr-defined]
        if kind == _FREE and e.id in fr.known:  # type: ignore[attr-defined]
            return fr.known[e.id]  # type: ignore[attr-defined]
        if isinstance(value, float):  # computed, and folded to a constant
            return value
        B = fr.B
        return B.item(value) if B.shape(value) in ((), (1,)) else B.to_numpy(value)


def check_given(fr: Frame, checks: list[DistCheck], native: Mapping[str, Array]) -> None:
    """Run the checks of distributions whose parameters are numbers or given parameters on the
    parameters ``native`` alone (a fused objective, before its compiled call)."""
    for c in checks:
        c(fr, {k: native[v.id] for k, v in c.d.params if isinstance(v, ir.Name)})
