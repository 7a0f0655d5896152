"""Errors raised by stochgrad.

Every error is a ``ValueError`` subclass so that user code can catch bad input in
one place.  Errors about DSL text carry the position (line, column) and render a
caret under the offending text, in the manner of formulaic's token spans.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class StochgradError(ValueError):
    """Base class: bad input to stochgrad (expression, parameters, options).

    ``span`` optionally holds the (start, end) offsets of the DSL text at fault.
    """

    def __init__(self, message: str, span: tuple[int, int] | None = None) -> None:
        super().__init__(message)
        self.span = span


def _caret(text: str, pos: int, length: int = 1) -> tuple[int, int, str]:
    """Return (line, column, two-line snippet with a caret) for offset ``pos``."""
    pos = max(0, min(pos, len(text)))
    line_no = text.count("\n", 0, pos) + 1
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    end = len(text) if end == -1 else end
    column = pos - start + 1
    # show at most ~76 characters of a long line, around the position
    lo = max(start, min(pos - 30, end - 76))
    hi = min(end, lo + 76)
    prefix, suffix = ("..." if lo > start else ""), ("..." if hi < end else "")
    width = max(1, min(length, hi - pos))
    pad = len(prefix) + pos - lo
    return line_no, column, f"  {prefix}{text[lo:hi]}{suffix}\n  {' ' * pad}{'^' * width}"


class ParseError(StochgradError):
    """The DSL text is malformed or names something unknown.

    Attributes: ``text`` (the source), ``pos`` (0-based offset), ``line`` and
    ``column`` (1-based), ``expected`` (what the parser would have accepted).
    """

    def __init__(
        self,
        message: str,
        text: str = "",
        pos: int | None = None,
        *,
        length: int = 1,
        expected: Iterable[str] = (),
    ) -> None:
        self.text = text
        self.pos = pos
        self.expected = tuple(expected)
        self.message = message
        if pos is None:
            self.line = self.column = None
            full = message
        else:
            self.line, self.column, snippet = _caret(text, pos, length)
            full = f"{message} at line {self.line}, column {self.column}:\n{snippet}"
        super().__init__(full)


class ValidationError(StochgradError):
    """A parameter value, option or override is invalid (names the culprit)."""


class PlanError(StochgradError):
    """The requested estimator cannot be applied to a node."""


class BackendError(StochgradError):
    """Unknown backend name, or a backend whose framework is not installed."""


class BiasWarning(UserWarning):
    """The plan contains a biased estimator that the user did not request."""


class MemoryLimitError(StochgradError):
    """A run whose smallest chunk would need more memory than ``memory_limit`` allows (raised
    before anything is allocated; the message gives the estimated bytes and how to reduce them)."""


class NonFiniteWarning(UserWarning):
    """A value, gradient or standard error of an estimate is NaN or infinite (or a standard error is
    undefined, at n = 1); :attr:`stochgrad.Estimate.nonfinite` says which entries."""


class HeavyTailWarning(UserWarning):
    """The per-sample contributions to an entry have so heavy a tail (estimated tail index below
    :data:`stochgrad.diagnostics.HEAVY_TAIL_INDEX`) that its standard error cannot be trusted;
    :attr:`stochgrad.Estimate.tail_index` holds the estimates."""


class PrecisionWarning(UserWarning):
    """A location-scale node's scale is below one unit in the last place of its location in the
    backend's float type (``scale < eps * |loc|``): every sample rounds to the location, so the
    sampled values, and a score-function estimate built on them, cannot be trusted."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
