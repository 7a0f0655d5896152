"""Shape rules and implementations of the built-in functions (the rows of :data:`stochgrad.functions.FUNCTIONS`).

A **shape rule** ``rule(call, shapes) -> shape`` gives a call's logical shape from its arguments'
(:mod:`stochgrad.shapes` calls it; errors name the function and the call's text and span):

* :func:`elementwise`: numpy broadcasting of all the arguments (``where``, ``maximum``, ``clip``...);
* :func:`reduction`: drops ``axis=k``, or every axis without it (``sum mean max min prod logsumexp
  logmeanexp``);
* :func:`along_axis`: keeps the shape, working along ``axis=k``, the last axis by default
  (``softmax log_softmax``); a scalar has no such axis;
* :func:`drop_last`: drops the last axis (``argmax``);
* :func:`reversed_axes`: the logical axes reversed (``transpose``; numpy's ``x.T``: a matrix's two
  axes swapped, a vector or a scalar unchanged).

An **implementation** ``impl(frame, values, axis, call) -> array`` computes the call on the arrays of a
program run (a leading sample axis, then the logical shape; Python floats for constants) from the
backend's primitives (:data:`stochgrad.backend.PRIMITIVES`) and the frame's sample-axis helpers.  The
maths, and where the derivative comes from:

* ``max``/``min``/``prod`` over an axis of length k are a balanced tree of ``maximum``/``minimum``/``*``
  over halves of the axis (about 2 log2 k operations, no loop over samples).  The derivative is the
  primitives' own: ``max`` sends it to the largest entry (``maximum`` splits a tie in halves), and
  ``prod``'s is the product of the other entries, exact at zeros and of every order (a quotient
  ``prod / x_i`` would give 0/0 at a zero entry).
* ``logsumexp(x) = m + log sum_i exp(x_i - m)`` with ``m = stop_gradient(max_i x_i)`` (0 where that
  is not finite, so that all-``-inf`` gives ``-inf`` and a ``+inf`` entry ``+inf``): no overflow, and,
  since the value does not depend on ``m``, the gradient is the softmax, ``exp(x_i - logsumexp(x))``.
  The log is ``log1p`` of ``sum_i exp(x_i - m) - 1``, summed as ``expm1(x_i - m)`` at the k largest
  entries (0 in value, derivative 1), ``exp(x_i - m)`` elsewhere, plus the exact ``k - 1``: full
  relative accuracy when one entry dominates (``logsumexp([0, -14]) = 8.3e-7``)
  (Blanchard, Higham & Higham 2021, "Accurately computing the log-sum-exp and softmax functions",
  IMA J. Numer. Anal. 41).  ``logmeanexp(x) = logsumexp(x) - log k``.
* ``softmax``/``log_softmax`` are the backend's stable forms (:meth:`stochgrad.backend.Backend.softmax`).
* ``logsigmoid(x) = -softplus(-x)``; ``clip(x, lo, hi) = minimum(maximum(x, lo), hi)`` (numpy's ``clip``,
  differentiable in all three; the backend's ``clip`` when both bounds are finite constants);
  ``where(c, a, b)`` is ``a`` where ``c != 0`` (a NaN condition counts as true, as numpy's ``bool``
  has it), ``b`` elsewhere: the derivative reaches ``a`` and ``b``, never ``c``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import ir
from .errors import StochgradError
from .shapes import broadcast
from .types import Array, Shape
import numpy as np

if TYPE_CHECKING:
    from .sampleaxis import SampleAxis

ShapeRule = Callable[[ir.Call, list[Shape]], Shape]
Impl = Callable[["SampleAxis", list[Any], "int | None", ir.Call], Any]


def option(e: ir.Call, key: str) -> int | None:
    """The integer option ``key`` of a call (validated as an integer literal by ``make_call``), or None."""
    for k, v in e.kwargs:
        if k == key and isinstance(v, ir.Num):
            return int(v.value)
    return None


def _axis_error(e: ir.Call, k: int, shape: Shape) -> StochgradError:
    return StochgradError(
        f"{e.fn}(): axis {k} is out of range for a value with {len(shape)} axes (shape {shape}) in `{e}`", e.span
    )


# -- shape rules ---------------------------------------------------------------------
def elementwise(e: ir.Call, shapes: list[Shape]) -> Shape:
    return shapes[0] if len(shapes) == 1 else broadcast(shapes, e)


def reduction(e: ir.Call, shapes: list[Shape]) -> Shape:
    shape, k = shapes[0], option(e, "axis")
    if k is None:
        return ()
    if not -len(shape) <= k < len(shape):
        raise _axis_error(e, k, shape)
    return shape[: k % len(shape)] + shape[k % len(shape) + 1 :]


def along_axis(e: ir.Call, shapes: list[Shape]) -> Shape:
    shape, k = shapes[0], option(e, "axis")
    if not shape:
        raise StochgradError(f"{e.fn}() needs a value with at least one axis, got a scalar in `{e}`", e.span)
    if k is not None and not -len(shape) <= k < len(shape):
        raise _axis_error(e, k, shape)
    return shape


def drop_last(e: ir.Call, shapes: list[Shape]) -> Shape:
    if not shapes[0]:
        raise StochgradError(f"{e.fn} needs a value with a last axis, got a scalar in `{e}`", e.span)
    return shapes[0][:-1]


def reversed_axes(e: ir.Call, shapes: list[Shape]) -> Shape:
    return tuple(reversed(shapes[0]))


# -- implementations -------------------------------------------------------------------
def unary(prim: str) -> Impl:
    """One backend primitive of one argument."""

    def impl(fr: SampleAxis, xs: list[Any], axis: int | None, e: ir.Call) -> Array:
        return fr.B.fn[prim](fr.array(xs[0]))

    return impl


def nary(prim: str) -> Impl:
    """One backend primitive of several arguments, aligned (broadcast) first."""

    def impl(fr: SampleAxis, xs: list[Any], axis: int | None, e: ir.Call) -> Array:
        arrays = fr.align(*(fr.array(x) for x in xs))
        try:
            return fr.B.fn[prim](*arrays)
        except (ValueError, RuntimeError):  # shapes only a user function's output made known: name the call
            from .userfn import check_operands

            check_operands(fr.B, arrays, e)
            raise

    return impl


def logsigmoid(fr: SampleAxis, xs: list[Any], axis: int | None, e: ir.Call) -> Array:
    return -fr.B.fn["softplus"](-fr.array(xs[0]))


def clip(fr: SampleAxis, xs: list[Any], axis: int | None, e: ir.Call) -> Array:
    x, lo, hi = xs
    if isinstance(lo, float) and isinstance(hi, float) and math.isfinite(lo) and math.isfinite(hi):
        return fr.B.fn["clip"](fr.array(x), lo, hi)
    maximum, minimum = nary("maximum"), nary("minimum")
    return minimum(fr, [maximum(fr, [x, lo], None, e), hi], None, e)


def _logical_axis(fr: SampleAxis, x: Array, axis: int | None, e: ir.Call) -> tuple[Array, int | None]:
    """``x`` and the (backend) axis a reduction works along: ``axis`` of the logical shape, or, for
    None, all the logical axes flattened into one (None when there is none: a scalar)."""
    shape = fr.B.shape(x)
    rank = len(shape) - 1
    if axis is not None:
        if not -rank <= axis < rank:
            raise _axis_error(e, axis, shape[1:])
        return x, axis % rank + 1
    if rank == 0:
        return x, None
    if rank > 1:
        x = fr.B.reshape(x, (shape[0], math.prod(shape[1:])))
    return x, 1


def _tree(fr: SampleAxis, x: Array, ax: int, op: Callable[[Any, Any], Any], e: ir.Call) -> Array:
    """``op`` folded over axis ``ax`` of ``x`` (dropping it) by a balanced tree over halves of the axis."""
    B = fr.B
    shape = B.shape(x)
    size = shape[ax]
    if size == 0:
        raise StochgradError(f"{e.fn}() of an empty axis (shape {shape[1:]}) in `{e}`", e.span)
    lead: tuple[slice, ...] = (slice(None),) * ax
    rest = None  # the odd entries set aside on the way, folded into one (size 1 along ax)
    while size > 1:
        if size % 2:
            last = x[lead + (slice(size - 1, size),)]
            rest = last if rest is None else op(rest, last)
            size -= 1
        half = size // 2
        x = op(x[lead + (slice(0, half),)], x[lead + (slice(half, size),)])
        size = half
    if rest is not None:
        x = op(x, rest)
    return B.reshape(x, shape[:ax] + shape[ax + 1 :])


def tree_reduction(kind: str) -> Impl:
    def impl(fr: SampleAxis, xs: list[Any], axis: int | None, e: ir.Call) -> Array:
        x, ax = _logical_axis(fr, fr.array(xs[0]), axis, e)
        if ax is None:
            return x
        if kind == "prod":
            if fr.B.shape(x)[ax] == 0:  # the empty product
                return fr.B.sum(x, (ax,)) + 1.0
            return _tree(fr, x, ax, lambda a, b: a * b, e)
        return _tree(fr, x, ax, fr.B.fn[kind], e)

    return impl


def _logsumexp(fr: SampleAxis, x: Array, ax: int, e: ir.Call) -> Array:
    B = fr.B
    shape = B.shape(x)
    kept = shape[:ax] + (1,) + shape[ax + 1 :]
    fixed = B.stop_gradient(x)
    m = B.reshape(_tree(fr, fixed, ax, B.fn["maximum"], e), kept)
    m = B.fn["where"](B.fn["lt"](B.fn["abs"](m), fr.array(math.inf)), m, fr.array(0.0))
    below = B.fn["lt"](fixed, m)  # 0 at the largest entries (and at NaN), 1 elsewhere
    u = x - m
    # sum_i exp(u_i) - 1 without cancellation: expm1 at the largest entries, plus their count less one (exact)
    rest = B.sum(B.fn["where"](below, B.fn["exp"](u), B.fn["expm1"](u)), (ax,)) + (B.sum(1.0 - below, (ax,)) - 1.0)
    return B.fn["log1p"](rest) + B.reshape(m, shape[:ax] + shape[ax + 1 :])


def logsumexp(fr: SampleAxis, xs: list[Any], axis: int | None, e: ir.Call) -> Array:
    x, ax = _logical_axis(fr, fr.array(xs[0]), axis, e)
    return x if ax is None else _logsumexp(fr, x, ax, e)


def logmeanexp(fr: SampleAxis, xs: list[Any], axis: int | None, e: ir.Call) -> Array:
    x, ax = _logical_axis(fr, fr.array(xs[0]), axis, e)
    if ax is None:
        return x
    return _logsumexp(fr, x, ax, e) - math.log(fr.B.shape(x)[ax])


def _along(fr: SampleAxis, x: Array, axis: int | None, e: ir.Call) -> int:
    rank = len(fr.B.shape(x)) - 1
    if rank == 0:
        raise StochgradError(f"{e.fn}() needs a value with at least one axis, got a scalar in `{e}`", e.span)
    k = -1 if axis is None else axis
    if not -rank <= k < rank:
        raise _axis_error(e, k, fr.B.shape(x)[1:])
    return k % rank + 1


def softmax(fr: SampleAxis, xs: list[Any], axis: int | None, e: ir.Call) -> Array:
    x = fr.array(xs[0])
    return fr.B.softmax(x, _along(fr, x, axis, e))


def log_softmax(fr: SampleAxis, xs: list[Any], axis: int | None, e: ir.Call) -> Array:
    x = fr.array(xs[0])
    return fr.B.log_softmax(x, _along(fr, x, axis, e))


def transpose(fr: SampleAxis, xs: list[Any], axis: int | None, e: ir.Call) -> Array:
    x = fr.array(xs[0])
    rank = len(fr.B.shape(x)) - 1
    return x if rank < 2 else fr.B.fn["permute"](x, (0,) + tuple(range(rank, 0, -1)))


def total(mean: bool) -> Impl:
    """``sum``/``mean`` over all logical axes or ``axis``."""

    def impl(fr: SampleAxis, xs: list[Any], axis: int | None, e: ir.Call) -> Array:
        x = fr.array(xs[0])
        rank = len(fr.B.shape(x)) - 1
        if axis is not None and not -rank <= axis < rank:
            raise _axis_error(e, axis, fr.B.shape(x)[1:])
        out, count = fr.reduce_logical(x, axis)
        return out / count if mean else out

    return impl


def argmax(fr: SampleAxis, xs: list[Any], axis: int | None, e: ir.Call) -> Array:
    v = fr.array(xs[0])
    B = fr.B
    shape = B.shape(v)
    if len(shape) < 2:
        raise StochgradError(f"argmax needs a value with a last axis, got a scalar in `{e}`", e.span)
    key = ("arange", shape[-1])
    if key not in fr.memo:
        fr.memo[key] = B.asarray(np.arange(shape[-1], dtype=float))
    return B.sum(B.one_hot_argmax(v) * fr.memo[key], (len(shape) - 1,))
