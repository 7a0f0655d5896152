"""Calling a user function during lowering, and checking what it returns.

A user function (:class:`stochgrad.functions.UserFunction`) receives native arrays whose first axis
indexes samples, of size 1 (the same for every sample: parameters, constants) or ``m`` (one entry
per sample of the chunk, times the copies of an exact enumeration).  Its output has to be one value
per sample, so it must be

* a native array of the backend (its array type, its floating dtype, its device:
  :meth:`stochgrad.backend.Backend.native_problem`), whose leading axis has the size
  ``rows = max(input leading sizes)`` -- 1 when every input is the same for all samples, ``m``
  when any varies -- as elementwise code and ``torch.nn`` layers keep it; a 0-d array is accepted
  only when ``rows == 1`` (one value for all samples);
* or a Python ``int``/``float``: a constant, the same for every sample.

Anything else -- a sum over the sample axis (``z.sum()``, shape ``()`` for ``m`` samples), a numpy
array on torch, ``None``, a list, a string, an integer tensor, a float32 tensor under float64 --
would be silently misread as a value per sample, broadcast, or fail inside the backend later, so
it is a :class:`~stochgrad.errors.StochgradError` naming the function, what it returned (type,
shape, dtype) and what was expected.  An exception raised by the function is re-raised the same
way, chained to the original.  The checks compare a type, a dtype and one axis: no copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import StochgradError
from .shapes import broadcast
from .types import Array

if TYPE_CHECKING:
    from .backend import Backend


def call_user_function(B: Backend, name: str, fn: Any, args: Sequence[Array]) -> Array | float:
    """``fn(*args)`` checked (see the module docstring): a native array with the right sample axis
    (a 0-d one given a sample axis of size 1), or a Python float for a constant."""
    rows = 1
    for a in args:
        rows = max(rows, B.shape(a)[0])
    try:
        out = fn(*args)
    except Exception as exc:
        dtype = getattr(B, "dtype", None)
        hint = (
            f"; the backend computes in {dtype}: for a module or weights of another dtype pass the backend option"
            f" dtype (e.g. dtype='float32')"
            if dtype is not None and _about_dtype(str(exc))
            else ""
        )
        raise StochgradError(
            f"user function {name}() raised {type(exc).__name__}: {exc} (called on {_inputs(B, args)}){hint}"
        ) from exc
    if type(out) is int or type(out) is float:  # exactly: np.float64 subclasses float, a bool is an int
        return float(out)
    problem = B.native_problem(out)
    if problem is not None or not hasattr(out, "shape"):
        raise StochgradError(
            f"user function {name}() returned {describe(out)}: {problem or 'it has no shape'}; {_expected(B, rows)}"
        )
    shape = B.shape(out)
    if not shape:
        if rows == 1:
            return B.reshape(out, (1,))
        raise StochgradError(
            f"user function {name}() returned {describe(out)} for inputs with {rows} samples"
            f" ({_inputs(B, args)}): a single number, e.g. a sum over the sample axis; "
            f"{_expected(B, rows)}"
        )
    if shape[0] != rows:
        raise StochgradError(
            f"user function {name}() returned {describe(out)}, whose leading axis has size"
            f" {shape[0]}, for inputs with {rows} sample{'s' * (rows != 1)} ({_inputs(B, args)});"
            f" {_expected(B, rows)}"
        )
    return out


def check_operands(B: Backend, operands: Sequence[Array | float], where: Any) -> None:
    """A :class:`~stochgrad.errors.StochgradError` naming ``where`` if the operands' logical shapes (after
    the sample axis) do not broadcast: past the planner's shape pass (:mod:`stochgrad.shapes`), only a
    user function's output, whose shape is unknown until it runs, can bring such a mismatch."""
    broadcast([B.shape(x)[1:] for x in operands if not isinstance(x, float)], where)


def describe(x: Any) -> str:
    """``x``'s type, shape and dtype, for messages."""
    kind = type(x).__qualname__ if type(x).__module__ == "builtins" else f"{type(x).__module__}.{type(x).__qualname__}"
    if x is None or isinstance(x, (str, bytes, list, tuple, dict)):
        text = repr(x)
        return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"
    parts = [kind]
    if hasattr(x, "shape"):
        parts.append(f"of shape {tuple(x.shape)}")
    if hasattr(x, "dtype"):
        parts.append(f"dtype {x.dtype}")
    return " ".join(parts[:2]) + (", " + parts[2] if len(parts) > 2 else "")


def _about_dtype(message: str) -> bool:
    """Whether a framework's error message is about mixed dtypes (torch: "... Double and Float")."""
    return "dtype" in message or ("Double" in message and ("Float" in message or "Half" in message))


def _inputs(B: Backend, args: Sequence[Array]) -> str:
    if not args:
        return "no arguments"
    return "arguments of shapes " + ", ".join(str(B.shape(a)) for a in args)


def _expected(B: Backend, rows: int) -> str:
    dtype = getattr(B, "dtype", None)
    native = f"an array of the {B.name} backend" + (f" of dtype {dtype}" if dtype is not None else "")
    lead = (
        "a leading sample axis of size 1 (its inputs are the same for every sample)"
        if rows == 1
        else f"a leading sample axis of size {rows}, one value per sample (elementwise code keeps it;"
        " reduce over the other axes only)"
    )
    return f"expected {native} with {lead}, or a Python float for a constant"
