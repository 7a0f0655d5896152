"""Arrays with a leading *sample axis*, and the arithmetic that keeps it aligned.

Every array in a program run has a leading sample axis followed by its logical shape; Python floats
stand for constants.  The sample axis has size 1 (the value does not vary) or ``mult * count``:
``count`` samples, copied ``mult`` times by exact enumeration (block k holds copy k).  Binary
operations align logical shapes from the right, as numpy broadcasting does, by inserting unit axes
after the sample axis; reductions act on logical axes only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import StochgradError

if TYPE_CHECKING:
    from .backend import Backend

from .types import Array


def with_sample_axis(B: Backend, arrays: Mapping[str, Array]) -> dict[str, Array]:
    """Native arrays given without a sample axis, with one of size 1 (the same for every sample)."""
    return {k: B.reshape(v, (1,) + B.shape(v)) for k, v in arrays.items()}


class SampleAxis:
    """Shape helpers of an evaluation frame (:mod:`stochgrad.program.frame`): ``B`` is the backend, ``memo`` a cache of constant arrays."""

    B: Backend
    memo: dict[Any, Any]

    def array(self, x: Array | float) -> Array:
        """``x`` as a native array; a constant becomes one of shape (1,), made once per ``memo``."""
        if not isinstance(x, float):
            return x
        out = self.memo.get(x)  # float keys cannot collide with the tuple keys of checked parameters
        if out is None:
            out = self.memo[x] = self.B.asarray(np.array([x], dtype=float))
        return out

    def align(self, *xs: Array | float, ranks: Sequence[int] | None = None) -> list[Array | float]:
        """``xs`` lifted to their largest logical rank (each shape is looked at once).  With
        ``ranks`` (each array's number of trailing event axes) only the batch axes before them are
        aligned: unit axes go after the sample axis up to the largest batch rank (a vector ``loc``
        of shape (d,) and a matrix of shape (b, d, d) become (1, d) and (b, d, d))."""
        if ranks is not None:
            return self._align_batch(xs, ranks)
        if len(xs) == 2:  # a binary operation: the common case, without the lists
            a, b = xs
            if isinstance(a, float) or isinstance(b, float):
                return [a, b]
            sa, sb = self.B.shape(a), self.B.shape(b)
            if len(sa) == len(sb):
                return [a, b]
            if len(sa) < len(sb):
                return [self.B.reshape(a, sa[:1] + (1,) * (len(sb) - len(sa)) + sa[1:]), b]
            return [a, self.B.reshape(b, sb[:1] + (1,) * (len(sa) - len(sb)) + sb[1:])]
        shapes = [None if isinstance(x, float) else self.B.shape(x) for x in xs]
        top = max(len(s) for s in shapes if s is not None) if any(s is not None for s in shapes) else 0
        return [
            x if s is None or len(s) >= top else self.B.reshape(x, s[:1] + (1,) * (top - len(s)) + s[1:])
            for x, s in zip(xs, shapes)
        ]

    def _align_batch(self, xs: Sequence[Array | float], ranks: Sequence[int]) -> list[Array | float]:
        shapes = [None if isinstance(x, float) else self.B.shape(x) for x in xs]
        batch = [0 if s is None else max(0, len(s) - 1 - r) for s, r in zip(shapes, ranks)]
        top = max(batch, default=0)
        return [
            x if s is None or b >= top else self.B.reshape(x, s[:1] + (1,) * (top - b) + s[1:])
            for x, s, b in zip(xs, shapes, batch)
        ]

    def reduce_logical(self, x: Array, axis: int | None) -> tuple[Array, int]:
        """Sum over all logical axes (``axis=None``) or one; returns (sum, count summed)."""
        shape = self.B.shape(x)
        if axis is None:
            axes = tuple(range(1, len(shape)))
        else:
            rank = len(shape) - 1
            if not -rank <= axis < rank:
                raise StochgradError(f"axis {axis} is out of range for a value with {rank} axes (shape {shape[1:]})")
            axes = (axis % rank + 1,)
        count = math.prod([shape[a] for a in axes])
        return (self.B.sum(x, axes) if axes else x), count

    def tile(self, x: Array | float, factor: int) -> Array | float:
        """``factor`` copies of ``x`` along the sample axis (block k = copy k)."""
        if factor == 1 or isinstance(x, float) or self.B.shape(x)[0] == 1:
            return x
        return self.B.concat([x] * factor)

    def fold(self, x: Array | float, factor: int) -> Array | float:
        """Average the ``factor`` outermost blocks of the sample axis: undoes :meth:`tile`."""
        if factor == 1 or isinstance(x, float) or self.B.shape(x)[0] == 1:
            return x
        shape = self.B.shape(x)
        return self.B.sum(self.B.reshape(x, (factor, shape[0] // factor) + shape[1:]), (0,)) / factor


def add(low: SampleAxis, a: Array | float, b: Array | float) -> Array | float:
    if isinstance(a, float) and a == 0.0:
        return b
    a, b = low.align(a, b)
    return a + b


def sub(low: SampleAxis, a: Array | float, b: Array | float) -> Array | float:
    a, b = low.align(a, b)
    return a - b


def mul(low: SampleAxis, a: Array | float, b: Array | float) -> Array | float:
    if isinstance(a, float) and a == 1.0:
        return b
    a, b = low.align(a, b)
    return a * b


def sum_aligned(low: SampleAxis, xs: list[Array]) -> Array:
    out = xs[0]
    for x in xs[1:]:
        out = add(low, out, x)
    return out
