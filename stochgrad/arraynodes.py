"""Linear algebra and indexing in the IR: ``a @ b`` (:class:`MatMul`) and ``x[...]`` (:class:`Index`).

Both follow numpy over the *logical* axes of a value (every array in a run also carries a leading
sample axis, which broadcasts like a batch axis and is never indexed):

* ``a @ b`` is ``numpy.matmul``: for shapes ``(..., m, k) @ (..., k, n) -> (..., m, n)`` it is
  ``out[..., i, j] = sum_l a[..., i, l] b[..., l, j]`` with the leading (batch) axes broadcast; a
  vector on the left is a row ``(1, k)`` and on the right a column ``(k, 1)``, and the added axis is
  dropped from the result, so ``(k,) @ (k,)`` is the inner product (a scalar), ``(m, k) @ (k,)`` has
  shape ``(m,)`` and ``(k,) @ (k, m)`` shape ``(m,)``.  A scalar operand is an error, as in numpy.
  Its gradients are ``dL/da = G b^T`` and ``dL/db = a^T G`` (summed over broadcast axes), which the
  backends' autodiff gives.
* ``x[i, j:k:s, ..., school]`` is numpy's basic indexing with integer literals (negative ones count
  from the end), slices with integer bounds and one ``...``, plus at most one *gather* by an integer
  array parameter (``theta[school]``, numpy's ``take``): with ``idx`` of shape ``q`` on axis ``a`` of
  ``x`` of shape ``s``, the result has shape ``s[:a] + q + s[a+1:]`` and holds ``x[..., idx[p], ...]``.
  Its gradient with respect to ``x`` adds the incoming gradient of each entry ``p`` into row
  ``idx[p]``: repeated indices add up, so ``d sum(theta[school]) / d theta = bincount(school)``.  The
  index itself is data: it is never differentiated, and a random variable cannot be one (the
  expectation would not be differentiable through it).  An integer literal and a gather in the same
  brackets are refused (numpy's advanced indexing would then broadcast them together and may move
  the axes); write ``x[0][:, school]``.

References: the numpy reference, "numpy.matmul" and "Indexing on ndarrays" (numpy.org/doc), and
C. R. Harris et al., "Array programming with NumPy", Nature 585 (2020).

The node classes register with the IR's structural equality (:func:`stochgrad.ir._structural`);
their static parts (the index items) take part in equality and hashing through ``static_key``.
:data:`stochgrad.ir.Expr` gets ``@`` and ``[]`` from :func:`_attach` below (the embedded form builds
the same nodes as the text), and ``pi`` is the number ``math.pi``, never a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import ir
from .errors import StochgradError
from .types import Shape
from .errors import ValidationError
from .validation import host_value


@dataclass(frozen=True)
class Slice:
    """A slice with integer bounds or none (``1:3``, ``::2``, ``:``); not an expression."""

    start: int | None = None
    stop: int | None = None
    step: int | None = None

    def __post_init__(self) -> None:
        for v in (self.start, self.stop, self.step):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))):
                raise StochgradError(f"slice bounds must be integers, got {v!r}")
        if self.step == 0:
            raise StochgradError("slice step cannot be zero")
        for k in ("start", "stop", "step"):
            v = getattr(self, k)
            if v is not None:
                object.__setattr__(self, k, int(v))

    def as_slice(self) -> slice:
        return slice(self.start, self.stop, self.step)

    def __str__(self) -> str:
        def part(v: int | None) -> str:
            return "" if v is None else str(v)

        text = f"{part(self.start)}:{part(self.stop)}"
        return text if self.step is None else f"{text}:{self.step}"


@ir._structural
@dataclass(frozen=True, eq=False)
class MatMul(ir.Expr):
    """``left @ right``, numpy's matmul over the logical axes (see the module docstring)."""

    left: ir.Expr
    right: ir.Expr
    span: ir.Span = ir._span()
    prec = 3  # ir.PREC["*"]: binds like * and /, left-associative (Python's rule)

    def children(self) -> tuple[ir.Expr, ...]:
        return (self.left, self.right)

    def rebuild(self, kids: list[ir.Expr]) -> MatMul:
        return MatMul(kids[0], kids[1], span=self.span)

    def __str__(self) -> str:
        return ir.to_text(self)


@ir._structural
@dataclass(frozen=True, eq=False)
class Index(ir.Expr):
    """``value[items]``: ``items`` are ints, :class:`Slice`, ``Ellipsis`` and at most one
    :class:`~stochgrad.ir.Name` (a gather by an integer array parameter)."""

    value: ir.Expr
    items: tuple[Any, ...]
    span: ir.Span = ir._span()

    def __post_init__(self) -> None:
        check_items(self.items)

    @property
    def gather(self) -> ir.Name | None:
        """The integer array parameter this node gathers with, if any."""
        return next((i for i in self.items if isinstance(i, ir.Name)), None)

    @property
    def static_key(self) -> tuple[Any, ...]:
        return tuple("name" if isinstance(i, ir.Expr) else i for i in self.items)

    def children(self) -> tuple[ir.Expr, ...]:
        return (self.value,) + tuple(i for i in self.items if isinstance(i, ir.Expr))

    def rebuild(self, kids: list[ir.Expr]) -> Index:
        rest = iter(kids[1:])
        items = tuple(next(rest) if isinstance(i, ir.Expr) else i for i in self.items)
        return Index(kids[0], items, span=self.span)

    def item_text(self, i: Any) -> str:
        return "..." if i is Ellipsis else str(i)

    def __str__(self) -> str:
        return ir.to_text(self)


def check_items(items: tuple[Any, ...]) -> None:
    """A :class:`StochgradError` unless ``items`` is a valid subscript (see :class:`Index`)."""
    if not isinstance(items, tuple) or not items:
        raise StochgradError("an index needs at least one item, e.g. x[0]")
    names = 0
    for i in items:
        if isinstance(i, ir.Name):
            names += 1
        elif isinstance(i, ir.Num) and i.value == np.pi:
            raise StochgradError(
                "pi is not an integer: an index is an integer, a slice, ... or an integer array parameter"
            )
        elif isinstance(i, ir.Expr):
            raise StochgradError(
                f"cannot index with `{i}`: an index is an integer, a slice, ... or the name of an"
                " integer array parameter"
            )
        elif not (i is Ellipsis or isinstance(i, Slice) or (isinstance(i, int) and not isinstance(i, bool))):
            raise StochgradError(
                f"cannot index with {i!r}: an index is an integer, a slice, ... or the name of an"
                " integer array parameter"
            )
    if sum(i is Ellipsis for i in items) > 1:
        raise StochgradError("an index can only have a single ellipsis ('...')")
    if names > 1:
        raise StochgradError("at most one integer array parameter per index; gather in two steps, e.g. x[i][:, j]")
    if names and any(isinstance(i, int) for i in items):
        raise StochgradError(
            "an integer and an integer array parameter in one index would follow numpy's advanced"
            " indexing rules; index in two steps, e.g. x[0][:, school]"
        )


def subscript(value: ir.Expr, key: Any) -> Index:
    """``value[key]`` in the embedded Python form: ints, slices, ``...`` and parameter names."""
    raw = key if isinstance(key, tuple) else (key,)
    items: list[Any] = []
    for k in raw:
        if isinstance(k, slice):
            items.append(Slice(k.start, k.stop, k.step))
        elif isinstance(k, np.integer):
            items.append(int(k))
        else:
            items.append(k)
    return Index(value, tuple(items))


def index_parameters(e: ir.Expr) -> tuple[str, ...]:
    """Names that ``e`` gathers with (``school`` in ``theta[school]``), in order of first appearance."""
    seen: dict[str, None] = {}
    for node in ir.walk(e):
        if isinstance(node, Index) and node.gather is not None:
            seen.setdefault(node.gather.id)
    return tuple(seen)


def as_index_array(name: str, value: Any) -> np.ndarray:
    """An index parameter's value as an int64 numpy array, or a ValidationError naming it: integers
    only (numpy's rule for an index: a float array, even of whole numbers, or a bool one is refused)."""

    raw = host_value(value)
    try:
        array = np.asarray(raw)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"index parameter {name!r} must be an integer array: {exc}") from None
    if array.dtype.kind not in "iu":
        got = "bools" if array.dtype.kind == "b" else f"dtype {array.dtype}"
        raise ValidationError(
            f"parameter {name!r} is an index (it gathers, as in theta[{name}]), so it must hold integers, got {got}"
        )
    return array.astype(np.int64, copy=False)


# -- shapes ------------------------------------------------------------------------
def matmul_shape(a: Shape, b: Shape, e: ir.Expr) -> Shape:
    """numpy's matmul shape rule, or a :class:`StochgradError` naming both shapes and ``e``."""
    if not a or not b:
        raise StochgradError(
            f"`@` needs values with at least one axis, got shapes {tuple(a)} and {tuple(b)} in `{e}`",
            getattr(e, "span", None),
        )
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    if a2[-1] != b2[-2]:
        where = "its only" if len(b) == 1 else "its second-to-last"
        raise StochgradError(
            f"shapes {tuple(a)} and {tuple(b)} do not match in `{e}`: the last axis of the left"
            f" operand ({a2[-1]}) must equal {where} axis of the right one ({b2[-2]})",
            getattr(e, "span", None),
        )
    try:
        batch = tuple(np.broadcast_shapes(a2[:-2], b2[:-2]))
    except ValueError:
        raise StochgradError(
            f"the batch axes of shapes {tuple(a)} and {tuple(b)} do not broadcast in `{e}`", getattr(e, "span", None)
        ) from None
    return batch + (() if len(a) == 1 else (a2[-2],)) + (() if len(b) == 1 else (b2[-1],))


def resolve(items: tuple[Any, ...], shape: Shape, e: ir.Expr) -> list[tuple[int, Any]]:
    """Each item with the logical axis of ``shape`` it applies to (the ellipsis expanded, integers
    checked against the axis length); a :class:`StochgradError` naming ``e`` otherwise."""
    used = sum(i is not Ellipsis for i in items)
    if used > len(shape):
        raise StochgradError(
            f"too many indices in `{e}`: {used} for a value with {len(shape)} axes (shape {tuple(shape)})",
            getattr(e, "span", None),
        )
    out: list[tuple[int, Any]] = []
    axis = 0
    for i in items:
        if i is Ellipsis:
            axis += len(shape) - used
            continue
        if isinstance(i, int) and not -shape[axis] <= i < shape[axis]:
            raise StochgradError(
                f"index {i} is out of range for axis {axis} of length {shape[axis]} in `{e}`", getattr(e, "span", None)
            )
        out.append((axis, i))
        axis += 1
    return out


def index_shape(shape: Shape, e: Index, gathered: Shape = ()) -> Shape:
    """The logical shape of ``e`` for a value of ``shape`` (``gathered``: the gather index's shape)."""
    out = list(shape)
    for axis, i in reversed(resolve(e.items, shape, e)):
        if isinstance(i, int):
            del out[axis]
        elif isinstance(i, Slice):
            out[axis] = len(range(*i.as_slice().indices(shape[axis])))
        else:
            out[axis : axis + 1] = list(gathered)
    return tuple(out)


def _attach() -> None:
    """``a @ b``, ``b @ a`` and ``x[...]`` on every expression (the embedded Python form)."""

    def matmul(self: ir.Expr, other: object) -> MatMul:
        return MatMul(self, ir.as_expr(other))

    def rmatmul(self: ir.Expr, other: object) -> MatMul:
        return MatMul(ir.as_expr(other), self)

    setattr(ir.Expr, "__matmul__", matmul)  # noqa: B010  (attached here: ir.py has no room)
    setattr(ir.Expr, "__rmatmul__", rmatmul)  # noqa: B010
    setattr(ir.Expr, "__getitem__", subscript)  # noqa: B010
    setattr(ir.Expr, "__iter__", None)  # noqa: B010  (__getitem__ alone would make an expression an endless sequence)


_attach()
