"""Integer data in ``log_prob``: class labels and counts, passed as integer arrays.

A parameter whose value has an integer dtype (a numpy integer array or scalar, a torch ``long`` /
``int`` tensor, a jax integer array; Python numbers and lists stay real-valued) is *data*: it is
read on the host and never differentiated, by the machinery of the gather indices of
``theta[school]`` (:func:`stochgrad.arraynodes.as_index_array`; ``wrt=`` naming it is an error).
Its dtype is known only when values are given, so the plan of an expression is made for the
*kinds* of its parameters: :func:`mark` rewrites each ``log_prob(D, y)`` whose value ``y`` is
integer data (``y`` or an index of it, ``y[:, 0]``) into one that says so (``LogProb.data``), and
that rewritten expression is what the planner's and the compiled objective's caches key on, so the
same text planned with float and then integer data gives two plans, each right.

* **Labels** (Categorical, the only law here whose value is an event of ``K`` categories): for an
  integer label ``y`` in ``{0, ..., K-1}``, ``log p(y) = log_softmax(logits)[y]``, read off the
  log-softmax as ``sum_k [y = k] log_softmax(logits)_k`` (the one-hot indicator is built from the
  labels, gradient-free: a gather's value and derivative on every backend, vectorized over samples),
  of the batch shape (``logits`` (N, K) and ``y`` (N,) give (N,)).  Its gradient in the logits is
  ``onehot(y) - softmax(logits)``.  A one-hot (float) value keeps its meaning.
* **Counts** (Bernoulli, Poisson, Binomial, Geometric): the mass function at ``y`` as a float.

A label outside ``{0, ..., K-1}``, a negative count, or a Bernoulli value other than 0 or 1 is a
:class:`~stochgrad.errors.StochgradError` naming the parameter and the entry (checked on the host
values when the frame has them: every ``estimate`` chunk, every objective call with
``validate=True``), not an index error or a silent ``-inf``; a count above a Binomial's
``total_count`` has mass 0 and gives ``-inf``, as for a float count.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from . import ir
from .arraynodes import Index, as_index_array, index_parameters
from .densities import Iid, LogProb, log_prob_value, param_event_ranks, with_copies
from .distributions import lookup
from .errors import StochgradError

if TYPE_CHECKING:
    from .program.frame import Frame
    from .types import Array

#: laws whose integer value is a category index into the last axis of their parameters
LABEL_LAWS = frozenset({"Categorical"})
#: the least (and, where fixed, the greatest) integer value of each count law
COUNT_RANGES: dict[str, tuple[int, int | None]] = {
    "Bernoulli": (0, 1),
    "Poisson": (0, None),
    "Binomial": (0, None),
    "Geometric": (0, None),
}


def is_integer_value(value: Any) -> bool:
    """Whether ``value`` is a typed integer array (numpy, torch, jax) or numpy integer scalar; a
    Python ``int``, a list or a bool array is not (they keep their meaning as real values)."""
    dtype = getattr(value, "dtype", None)
    if dtype is None or isinstance(value, (bool, int, float)):
        return False
    kind = getattr(dtype, "kind", None)  # numpy and jax dtypes
    if kind is not None:
        return kind in "iu"
    if getattr(dtype, "is_floating_point", True) or getattr(dtype, "is_complex", False):  # torch dtypes
        return False
    return str(dtype).startswith(("torch.int", "torch.uint"))


def data_parameters(e: ir.Expr, params: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The parameters read as integers: the gather indices of ``e`` (``theta[school]``) and every
    parameter given an integer-typed value."""
    given = params if isinstance(params, Mapping) else {}
    return index_parameters(e) + tuple(
        k for k, v in given.items() if k not in index_parameters(e) and is_integer_value(v)
    )


def integer_names(values: Mapping[str, np.ndarray]) -> tuple[str, ...]:
    """The names of checked values that are integer arrays (gather indices and integer data)."""
    return tuple(k for k, v in values.items() if v.dtype.kind in "iu")


def host_integers(params: Mapping[str, Any], index: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A compiled objective's integer parameters (gather indices and integer-typed values) as int64
    host arrays (:func:`~stochgrad.arraynodes.as_index_array`), read each call."""
    return {k: as_index_array(k, v) for k, v in params.items() if k in index or is_integer_value(v)}


def _base_name(x: ir.Expr) -> str | None:
    while isinstance(x, Index):
        x = x.children()[0]
    return x.id if isinstance(x, ir.Name) else None


def mark(e: ir.Expr, integers: tuple[str, ...] | frozenset[str]) -> ir.Expr:
    """``e`` with each ``log_prob(D, y)`` whose value is integer data (``y`` in ``integers``, or an
    index of it) marked ``data=y``; ``e`` itself when there is none (the usual case, no copy)."""
    ints = frozenset(integers)
    if not ints or not any(isinstance(n, LogProb) and n.data is None and _base_name(n.x) in ints for n in ir.walk(e)):
        return e
    memo: dict[int, Any] = {}

    def sub(v: Any) -> Any:
        if isinstance(v, tuple):
            out = tuple(sub(x) for x in v)
            return v if all(a is b for a, b in zip(out, v)) else out
        if not (isinstance(v, (ir.Expr, ir.Binding)) and dataclasses.is_dataclass(v)):
            return v
        if id(v) in memo:
            return memo[id(v)]
        changed = {}
        for f in dataclasses.fields(v):
            if f.init and f.compare:
                old = getattr(v, f.name)
                new = sub(old)
                if new is not old:
                    changed[f.name] = new
        if isinstance(v, LogProb) and v.data is None and _base_name(v.x) in ints:
            changed["data"] = _base_name(v.x)
        out = dataclasses.replace(v, **changed) if changed else v
        memo[id(v)] = out
        return out

    return sub(e)


def marked(e: ir.Expr) -> frozenset[str]:
    """The parameters ``e``'s ``log_prob`` nodes read as integer data."""
    return frozenset(n.data for n in ir.walk(e) if isinstance(n, LogProb) and n.data is not None)


def check_kinds(e: ir.Expr, integers: tuple[str, ...] | frozenset[str]) -> None:
    """A ValidationError unless the plan of ``e`` was made for these integer parameters: a plan made
    for float values of ``y`` reads ``y`` as one-hot or real values, one made for integers as labels."""
    from .errors import ValidationError

    ints = frozenset(integers)
    want = frozenset(n for n in map(_base_name, (v.x for v in ir.walk(e) if isinstance(v, LogProb))) if n in ints)
    have = marked(e)
    if want != have:
        name = sorted(want ^ have)[0]
        made, given = ("integer", "real (float)") if name in have else ("real (float)", "integer")
        raise ValidationError(
            f"this plan was made for {made} values of parameter {name!r}, and it was given {given}"
            " values: make the plan for these values (sg.plan(expr, params)), or pass the same kind"
        )


def label_shape(e: LogProb, shapes: list[tuple[int, ...]]) -> tuple[int, ...] | None:
    """The shape of a labelled ``log_prob`` (the law's batch shape broadcast with the labels'), or
    None when ``e`` reads no labels (the law's own rule applies)."""
    if e.data is None or e.dist.name not in LABEL_LAWS:
        return None
    from .shapes import broadcast

    dist, x = shapes
    return broadcast([dist[: len(dist) - lookup(e.dist.name).event_rank], x], e)


def one_hot_hint(e: LogProb, shapes: list[tuple[int, ...]]) -> str:
    """What to say when a float value of a Categorical lacks its category axis."""
    if e.dist.name not in LABEL_LAWS or e.data is not None or len(shapes[1]) >= len(shapes[0]):
        return ""
    return (
        f"; a one-hot value has the category axis ({shapes[0][-1]} categories), and class labels"
        " must be an integer array (numpy int, torch long, jax int), not floats"
    )


# -- evaluation ------------------------------------------------------------------------------------


def _check(fr: Frame, e: LogProb, categories: int | None) -> None:
    """The host values of the data parameter in range for the law, or a StochgradError naming it."""
    name = e.data
    y = fr.known.get(name) if (fr.checks and name is not None) else None
    if y is None or not y.size:
        return
    law = e.dist.name
    high: int | None
    if categories is not None:
        low, high, what = (
            0,
            categories - 1,
            f"a label of a Categorical of {categories} categories (0 to {categories - 1})",
        )
    elif law in COUNT_RANGES:
        low, top = COUNT_RANGES[law]
        high = top if top is not None else None
        what = f"a {law} value (0 or 1)" if top is not None else f"a {law} count (an integer >= 0)"
    else:
        return
    bad = (y < low) if high is None else (y < low) | (y > high)
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise StochgradError(
            f"`{e}`: parameter {name!r} has entry {int(y[at])} at index {at}, which is not {what}", e.span
        )


def log_prob_data(fr: Frame, e: LogProb, p: dict[str, Array], x: Array, fallback: Any) -> Array:
    """``log_prob(D, y)`` for integer data ``y`` (native, as floats): labels gathered from the
    log-softmax, counts by the mass function (``fallback()``, the float path), after the range check."""
    B = fr.B
    if e.dist.name not in LABEL_LAWS:
        _check(fr, e, None)
        return fallback()
    law = lookup(e.dist.name)
    names = list(p)
    arrays = [fr.array(v) for v in p.values()]
    ranks = param_event_ranks(e.dist)
    *values, y = fr.align(*arrays, fr.array(x), ranks=[ranks.get(k, 0) for k in names] + [0])
    if e.stopped:  # sticking the landing (stochgrad.estimators.stl)
        values = [B.stop_gradient(v) for v in values]
    given = dict(zip(names, values))
    lp = law.log_softmax(B, given)  # type: ignore[attr-defined]
    k = B.shape(lp)[-1]
    _check(fr, e, k)
    shape = B.shape(y)
    y = B.reshape(B.stop_gradient(y), tuple(shape) + (1,))
    grid = B.asarray(np.arange(k, dtype=float).reshape((1,) * len(shape) + (k,)))
    onehot = 1.0 - B.fn["clip"](B.fn["abs"](y - grid), 0.0, 1.0)  # [y = k]: integers differ by >= 1
    try:
        prod = onehot * lp
        out = B.sum(prod, (len(B.shape(prod)) - 1,))
    except (ValueError, RuntimeError, TypeError) as exc:
        raise StochgradError(
            f"`{e}`: the labels {e.data!r} of shape {tuple(shape[1:])} do not fit the batch shape of the"
            f" Categorical (logits {tuple(B.shape(lp)[1:])}): {exc}",
            e.span,
        ) from None
    batch = max(len(B.shape(v)) - 1 - ranks.get(q, 0) for q, v in given.items())
    return with_copies(B, e.dist, given, out, batch) if isinstance(e.dist, Iid) else out


__all__ = ["data_parameters", "is_integer_value", "log_prob_data", "log_prob_value", "mark", "marked"]
