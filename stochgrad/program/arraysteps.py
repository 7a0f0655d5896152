"""Program steps for ``a @ b`` and ``x[...]`` (:mod:`stochgrad.arraynodes`), over arrays with a sample axis.

Every array here is ``(S, *logical)`` with ``S`` 1 or the samples (see :mod:`stochgrad.sampleaxis`).

* ``a @ b``: a vector operand becomes a row ``(S, 1, k)`` (left) or a column ``(S, k, 1)`` (right),
  the two are aligned to one rank by unit axes after the sample axis, the native ``@`` multiplies
  them (the sample axis broadcasts as a batch axis) and the added axes are dropped: numpy's matmul
  on the logical axes, ``out[s, ..., i, j] = sum_l a[s, ..., i, l] b[s, ..., l, j]``.
* ``x[...]``: integers and slices of positive step are one native basic index behind a full slice of
  the sample axis; a slice of negative step and a gather become :meth:`~stochgrad.backend.Backend.take`
  (numpy's ``take``, whose gradient adds up over repeated entries) with host index arrays, applied
  from the last axis to the first so that each one's axis is still where it was.

A gather's index is an integer array parameter, read on the host: from the values checked by
``estimate`` (``frame.known``), else from the frame's parameter (a compiled objective's), and
checked (integers, each in range for its axis) with an error naming the parameter and the text.
Shapes are checked by the rules of :mod:`stochgrad.arraynodes`, so a mismatch is reported against
the expression whatever made it (a user function's output too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..arraynodes import Index, MatMul, Slice, matmul_shape, resolve
from ..errors import StochgradError
from ..types import Array
from .frame import Frame

Step = Callable[[Frame, dict[str, Array]], Any]


def matmul_step(builder: Any, e: MatMul, bound: frozenset[str]) -> Step:
    left, right = builder.step(e.left, bound), builder.step(e.right, bound)

    def matmul(fr: Frame, env: dict[str, Array]) -> Array:
        B = fr.B
        a, b = fr.array(left(fr, env)), fr.array(right(fr, env))
        sa, sb = B.shape(a), B.shape(b)
        matmul_shape(sa[1:], sb[1:], e)  # a mismatch, named against the text
        row, column = len(sa) == 2, len(sb) == 2
        if row:
            a = B.reshape(a, (sa[0], 1, sa[1]))
        if column:
            b = B.reshape(b, (*sb, 1))
        a, b = fr.align(a, b)
        out = a @ b  # type: ignore[operator]  # both are arrays here (fr.array above)
        if row or column:
            so = B.shape(out)
            out = B.reshape(out, so[:-2] + (() if row else so[-2:-1]) + (() if column else so[-1:]))
        return out

    return matmul


def index_step(builder: Any, e: Index, bound: frozenset[str]) -> Step:
    value = builder.step(e.value, bound)
    name = None if e.gather is None else e.gather.id
    if name is not None and name in bound:  # check_scopes refuses this when the text is parsed
        raise StochgradError(f"`{e}` indexes with the random variable {name!r}, which is not differentiable", e.span)

    def index(fr: Frame, env: dict[str, Array]) -> Array:
        x = fr.array(value(fr, env))
        return take_items(fr, x, e, None if name is None else gather_index(fr, name, e))

    return index


def gather_index(fr: Frame, name: str, e: Index) -> np.ndarray:
    """The integer entries of index parameter ``name`` as a numpy array (no sample axis)."""
    known = fr.known.get(name)
    raw = np.asarray(known) if known is not None else fr.B.to_numpy(fr.params[name])[0]
    if raw.dtype.kind not in "iu":
        if not (np.isfinite(raw).all() and (raw == np.round(raw)).all()):
            bad = raw[~(np.isfinite(raw) & (raw == np.round(raw)))].flat[0]
            raise StochgradError(f"index parameter {name!r} of `{e}` must hold integers, got {bad!r}", e.span)
        raw = raw.astype(np.int64)
    return raw


def take_items(fr: Frame, x: Array, e: Index, gathered: np.ndarray | None) -> Array:
    """``x[e.items]`` on the logical axes of ``x`` (see the module docstring)."""
    B = fr.B
    logical = B.shape(x)[1:]
    key: list[Any] = [slice(None)]
    later: list[tuple[int, np.ndarray]] = []  # (axis of the basic result, host indices) for take
    for axis, item in resolve(e.items, logical, e):
        key.extend([slice(None)] * (axis + 1 - len(key)))  # the axes an ellipsis skips
        if isinstance(item, int):
            key.append(item)
            continue
        at = sum(not isinstance(k, int) for k in key)  # where this axis lands in the basic result
        if isinstance(item, Slice) and (item.step is None or item.step > 0):
            key.append(item.as_slice())
            continue
        key.append(slice(None))
        n = logical[axis]
        if isinstance(item, Slice):
            later.append((at, np.arange(n)[item.as_slice()]))
            continue
        assert gathered is not None
        out_of_range = (gathered < -n) | (gathered >= n)
        if out_of_range.any():
            bad = int(gathered[out_of_range].flat[0])
            raise StochgradError(
                f"index parameter {e.gather.id!r} has entry {bad}, out of range for axis {axis} of"  # type: ignore[union-attr]
                f" length {n} in `{e}`",
                e.span,
            )
        later.append((at, gathered % n if n else gathered))
    if any(not (isinstance(k, slice) and k == slice(None)) for k in key):
        x = x[tuple(key)]
    for at, indices in reversed(later):
        x = B.take(x, indices, at)
    return x
