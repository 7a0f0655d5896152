"""Running moments of per-sample values, accumulated chunk by chunk (``estimate``'s results).

Each chunk contributes its count, mean and sum of squared deviations ``M2``; chunks are merged by
Chan et al.'s (1979) pairwise update::

    n = n_a + n_b,  delta = mean_b - mean_a,
    mean = mean_a + delta n_b / n,  M2 = M2_a + M2_b + delta^2 n_a n_b / n,

and the standard error of the mean is ``sqrt(M2 / (n - 1) / n)``.  An infinite mean stays infinite
(the sum's semantics) and makes ``M2`` NaN, never ``inf - inf`` in the mean.  A chunk's own mean and
``M2`` come from its sums of ``x`` and ``x^2`` (one pass each, in float64), or, when those cancel,
from deviations about the mean (see :func:`accumulate`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import diagnostics
from .backend import row_sums

if TYPE_CHECKING:
    from .backend import Backend

_SMALL = 1 << 15  # arrays up to this many entries are summed in numpy: quicker than a framework's dispatch
_CANCELLATION = 1e-6  # below this ratio of M2 to the sum of squares, moments are summed about the mean


@dataclass
class Moments:
    """Running count, mean and sum of squared deviations (elementwise), and the largest
    deviations for the tail index (see :mod:`stochgrad.diagnostics`)."""

    n: int = 0
    mean: np.ndarray | float = 0.0
    m2: np.ndarray | float = 0.0
    tail: diagnostics.Tail = field(default_factory=diagnostics.Tail)
    _stderr: tuple[int, Any] | None = field(default=None, repr=False, compare=False)

    def finite(self) -> bool:
        if np.ndim(self.mean) == 0 and np.ndim(self.m2) == 0:  # one entry: no array ufuncs
            return math.isfinite(self.mean) and math.isfinite(self.m2)
        return bool(np.isfinite(self.mean).all() and np.isfinite(self.m2).all())

    def update(self, count: int, mean: np.ndarray, m2: np.ndarray) -> None:
        if self.n == 0:
            self.n, self.mean, self.m2 = count, mean, m2
            return
        total = self.n + count
        delta = mean - self.mean
        finite = np.isfinite(delta)  # else an infinite mean stays infinite (the sum's semantics), not inf - inf
        self.mean = np.where(finite, self.mean + delta * (count / total), self.mean + mean)
        self.m2 = self.m2 + m2 + np.where(finite, delta * delta * (self.n * count / total), np.nan)
        self.n = total

    def stderr(self) -> np.ndarray | float:
        """``sqrt(M2 / (n - 1) / n)``, NaN below two samples; computed once per count (an
        estimate's fields and its finiteness report both ask for it)."""
        cached = self._stderr
        if cached is not None and cached[0] == self.n:
            return cached[1]
        if self.n < 2:
            out = np.full_like(np.asarray(self.mean, dtype=float), np.nan)
        else:
            out = np.sqrt(self.m2 / (self.n - 1) / self.n)
        self._stderr = (self.n, out)
        return out


#: one result's part of a chunk: its moments ``(count, mean, M2)``, already scaled, and the rows
#: (one per entry, samples along the row) its tail diagnostic observes, or None
Part = tuple[int, Any, Any, "np.ndarray | None"]


def accumulate(B: Backend, items: list[tuple[Moments, Any, float]], count: int, tails: bool = False) -> None:
    """Fold a chunk of per-sample values into running moments: for each ``(m, x, scale)``, the
    values ``scale * x`` (``x`` with a sample axis of size 1 or ``count``) go into ``m``.  The same
    as :func:`merge` of :func:`summarize` (which ``estimate`` splits when chunks run in parallel)."""
    merge([m for m, _, _ in items], summarize(B, [(x, scale) for _, x, scale in items], count, tails))


def merge(moments: list[Moments], parts: list[Part]) -> None:
    """Fold one chunk's :func:`summarize` into the running moments (chunks in sample order, so
    that a run's numbers do not depend on how its chunks were scheduled)."""
    observed: list[tuple[diagnostics.Tail, np.ndarray]] = []  # tails fed together (diagnostics.observe_all)
    for m, (count, mean, m2, rows) in zip(moments, parts):
        m.update(count, mean, m2)
        if rows is not None:
            observed.append((m.tail, rows))
    diagnostics.observe_all(observed)


def summarize(B: Backend, items: list[tuple[Any, float]], count: int, tails: bool = False) -> list[Part]:
    """One chunk's moments of ``scale * x`` for each ``(x, scale)``, as numpy values (nothing is
    updated: safe to run beside other chunks).

    Large arrays are summed by the backend where they live (float64 sums of ``x`` and ``x * x``,
    one pass each); small ones are gathered into one numpy matrix and summed together, since
    there the fixed cost per operation dominates.  ``M2 = sum x^2 - (sum x)^2 / count`` is exact
    enough unless the spread is tiny next to the mean (``M2 < 1e-6 sum x^2``: then about
    ``log10(sum x^2 / M2)`` digits would cancel), and only then are deviations from the mean summed
    instead (a second pass, in numpy).  With ``tails``, the rows each entry's tail diagnostic
    observes are kept too (:class:`stochgrad.diagnostics.Tail`)."""
    out: list[Part | None] = [None] * len(items)
    small: list[tuple[int, float, tuple[int, ...], np.ndarray]] = []
    for i, (x, scale) in enumerate(items):
        shape = B.shape(x)
        if shape[0] == 1:  # the same for every sample: mean is the value, no spread
            out[i] = (count, scale * B.to_numpy(x)[0], np.zeros(shape[1:]), None)
        elif math.prod(shape) <= _SMALL:
            small.append((i, scale, shape[1:], B.to_numpy(x).reshape(shape[0], -1).T))  # one row per entry
        else:
            s1, s2 = B.sample_sums(x)
            mean, m2 = mean_m2(s1, s2, functools.partial(B.to_numpy, x), count)
            rows = None
            if tails and math.prod(shape[1:]) <= diagnostics.TAIL_ENTRIES:
                head = x[: diagnostics.TAIL_SAMPLES]  # all the tail diagnostic looks at
                rows = B.to_numpy(head).reshape(B.shape(head)[0], -1).T
            out[i] = (count, scale * mean, scale * scale * m2, rows)
    if small:
        rows = np.concatenate([r for *_, r in small], axis=0)  # contiguous rows: a copy
        mean, m2 = mean_m2(*row_sums(rows), lambda: rows.T, count)
        at = 0
        for i, scale, shape, r in small:
            part = slice(at, at + r.shape[0])
            out[i] = (
                count,
                scale * mean[part].reshape(shape),
                scale * scale * m2[part].reshape(shape),
                rows[part] if tails else None,
            )
            at += r.shape[0]
    return out  # type: ignore[return-value]


def mean_m2(
    s1: np.ndarray, s2: np.ndarray, values: Callable[[], np.ndarray], count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sum of squared deviations from a chunk's sums (see :func:`accumulate`);
    ``values()`` gives the chunk's values (sample axis first), needed only when the sums cancel."""
    mean = s1 / count
    m2 = s2 - s1 * mean
    if (m2 < _CANCELLATION * s2).any():
        d = values() - mean
        ds = d.sum(axis=0)
        m2 = np.einsum("i...,i...->...", d, d) - ds * ds / count
        mean = np.where(np.isfinite(mean), mean + ds / count, mean)  # an infinite mean stays as it is
    return mean, np.maximum(m2, 0.0)
