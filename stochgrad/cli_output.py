"""What the command line reads and prints, apart from its argument parser (:mod:`stochgrad.cli`).

* :func:`sample_count`: ``-n 1e5``, ``100_000`` and ``1e+05`` are whole numbers of samples; ``1.5``,
  ``-3`` and ``1e-3`` are argparse errors.
* :func:`reported`: warnings raised while a command runs become one-line sentences
  (``stochgrad: warning: ...`` on stderr, and the ``warnings`` entry of ``--json``) instead of
  Python's ``path:line: Category: message`` lines.  Only the CLI does this: library callers keep
  Python warnings.
* :func:`dumps`: JSON that is always valid.  JSON has no NaN or infinity: such a number is written
  ``null`` and its place is listed under ``"nulls"`` with what it was (``{"rows[2].bias.mu": "nan"}``);
  numpy scalars and arrays become numbers and lists, anything else its text.
* :func:`z_text`: the z-score of an estimate against a closed form, or ``exact`` where the standard
  error is 0 and the estimate agrees (an enumerated or otherwise exact result), never ``nan``.
* :func:`missing_extra`: which ``pip install 'stochgrad[extra]'`` brings a missing module.
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

from .errors import BiasWarning, HeavyTailWarning, NonFiniteWarning, PrecisionWarning

#: module (top-level name) -> the extra of pyproject.toml that installs it
EXTRAS = {
    "autograd": "autograd",
    "scipy": "autograd",
    "torch": "torch",
    "jax": "jax",
    "jaxlib": "jax",
    "optax": "jax",
    "sympy": "oracle",
    "matplotlib": "examples",
    "rich": None,
}
#: the largest -n accepted (anything larger is a typo: it would not fit in memory or time)
MAX_COUNT = 10**15


def missing_extra(module: str) -> str:
    """How to install ``module``, naming the extra that brings it (the form of the backends' errors,
    :func:`stochgrad.backend.get_backend`): ``pip install sympy  (or: pip install 'stochgrad[oracle]')``."""
    top = module.split(".")[0]
    extra = EXTRAS.get(top)
    return f"pip install {top}  (or: pip install 'stochgrad[{extra}]')" if extra else f"pip install {top}"


def sample_count(text: str) -> int:
    """An argparse type: a whole number >= 1, written as an integer (``100000``, ``100_000``) or in
    scientific notation (``1e5``, ``1e+05``, ``2.5e3``); read exactly (Decimal), never through a float."""
    try:
        d = Decimal(text.strip())
    except InvalidOperation:
        raise argparse.ArgumentTypeError(
            f"expected a whole number such as 10000, 100_000 or 1e5, got {text!r}"
        ) from None
    if not d.is_finite() or d != d.to_integral_value():
        raise argparse.ArgumentTypeError(f"expected a whole number such as 10000 or 1e5, got {text!r}")
    if d < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    if d > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be at most 1e15, got {text!r}")
    return int(d)


#: stochgrad's own warnings, said without their category (every other warning is reported too, its
#: category named, except a library's DeprecationWarning, which Python's default filters hide)
OWN = (BiasWarning, NonFiniteWarning, HeavyTailWarning, PrecisionWarning)


def sentence(w: warnings.WarningMessage) -> str:
    """A warning as one line: its message with the whitespace collapsed, and the category named
    when it is not one of stochgrad's own."""
    text = " ".join(str(w.message).split())
    own = issubclass(w.category, OWN) or w.category.__module__.startswith("stochgrad")
    return text if own else f"{text} ({w.category.__name__})"


@contextmanager
def reported(notes: list[str]) -> Iterator[None]:
    """Run with every warning recorded as a sentence in ``notes`` (once each), not shown."""
    with warnings.catch_warnings(record=True) as caught:  # the same filters whoever runs us (pytest sets its own)
        warnings.simplefilter("always")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning):  # Python's defaults
            warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("always", category=DeprecationWarning, module=r"stochgrad(\.|$)")
        try:
            yield
        finally:
            for w in caught:
                text = sentence(w)
                if text not in notes:
                    notes.append(text)


def plain(x: Any, nulls: dict[str, str], path: str = "") -> Any:
    """``x`` as JSON values; each non-finite number becomes None, its path and value noted in ``nulls``."""
    if isinstance(x, dict):
        return {str(k): plain(v, nulls, f"{path}.{k}" if path else str(k)) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        x = x.tolist()
    if isinstance(x, (list, tuple)):
        return [plain(v, nulls, f"{path}[{i}]") for i, v in enumerate(x)]
    if isinstance(x, np.generic):
        x = x.item()
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        if math.isfinite(x):
            return x
        nulls[path] = "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
        return None
    return str(x)


def dumps(obj: dict[str, Any]) -> str:
    """``obj`` as indented JSON text; non-finite numbers as null, listed under ``"nulls"``."""
    nulls: dict[str, str] = {}
    out = plain(obj, nulls)
    if nulls:
        out["nulls"] = nulls
    return json.dumps(out, indent=2, allow_nan=False)


def error_document(exc: BaseException, notes: list[str], kind: str | None = None) -> str:
    """The ``--json`` answer of a failed command: ``{"error": {"type", "message"}, "warnings"}``."""
    return dumps({"error": {"type": kind or type(exc).__name__, "message": str(exc)}, "warnings": notes})


def fmt(x: Any) -> str:
    a = np.asarray(x, dtype=float)
    return f"{float(a):.6g}" if a.ndim == 0 else np.array2string(a, precision=4)


def _z_one(estimate: float, exact: float, se: float) -> str:
    if se > 0:
        return f"{(estimate - exact) / se:.6g}"
    if not (math.isfinite(estimate) and math.isfinite(exact) and math.isfinite(se)):
        return "undefined"  # n = 1, or a non-finite result
    agrees = abs(estimate - exact) <= 1e-9 * max(1.0, abs(exact))
    return "exact" if agrees else f"s.e. 0, off by {estimate - exact:.3g}"


def z_text(estimate: Any, exact: Any, se: Any) -> str:
    """``z = (estimate - exact) / se`` as text, elementwise; ``exact`` where ``se`` is 0 and the
    estimate agrees with the closed form to 1e-9 (relative), the difference where it does not."""
    e, x, s = np.broadcast_arrays(np.asarray(estimate, float), np.asarray(exact, float), np.asarray(se, float))
    texts = [_z_one(float(a), float(b), float(c)) for a, b, c in zip(e.ravel(), x.ravel(), s.ravel())]
    if e.ndim == 0:
        return texts[0]
    if all(t == "exact" for t in texts):
        return "exact"
    return np.array2string(np.array(texts, dtype=object).reshape(e.shape), formatter={"all": str})
