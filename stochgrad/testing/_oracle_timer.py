"""Wall-clock limits for the SymPy oracle: ``SIGALRM`` deadlines, main thread only."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class _Timeout(BaseException):
    """Raised by the alarm handler; a BaseException so that ``except Exception`` in SymPy lets it through."""


# -- timeouts ----------------------------------------------------------------------------------


class _Alarm:
    """A stack of deadlines served by one ``ITIMER_REAL`` timer (main thread only).

    The timer repeats every :attr:`REPEAT` seconds once it fires, so a ``_Timeout``
    swallowed by a bare ``except:`` is raised again.  While ``critical`` is set the
    handler does not raise, so the bookkeeping on exit is never interrupted."""

    REPEAT = 0.05

    def __init__(self) -> None:
        self.deadlines: list[float] = []
        self.critical = False
        self.saved_handler: Any = None
        self.foreign: tuple[float, float, float] | None = None  # (deadline, interval, delay) of a caller's timer

    def handler(self, signum: int, frame: Any) -> None:
        if not self.critical:
            raise _Timeout()

    def earliest(self) -> float:
        d = min(self.deadlines)
        return min(d, self.foreign[0]) if self.foreign else d

    def arm(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, max(self.earliest() - time.monotonic(), 1e-4), self.REPEAT)

    def expired(self) -> bool:
        return bool(self.deadlines) and time.monotonic() >= self.earliest()

    def enter_critical(self) -> None:
        while True:
            try:
                self.critical = True
                return
            except _Timeout:  # fired just before the flag was set
                continue


_ALARM = _Alarm()


def _alarm_usable() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`_Timeout` in the body after ``seconds`` (nested limits take the earliest)."""
    if seconds is None or math.isinf(seconds) or not _alarm_usable():
        yield
        return
    a = _ALARM
    outermost = not a.deadlines
    if outermost:
        a.saved_handler = signal.signal(signal.SIGALRM, a.handler)
        delay, interval = signal.setitimer(signal.ITIMER_REAL, 0)
        a.foreign = (time.monotonic() + delay, interval, delay) if delay > 0 else None
    a.deadlines.append(time.monotonic() + seconds)
    a.critical = False
    try:
        a.arm()
        yield
    finally:
        a.enter_critical()
        signal.setitimer(signal.ITIMER_REAL, 0)
        a.deadlines.pop()
        if outermost:
            signal.signal(signal.SIGALRM, a.saved_handler)
            if a.foreign is not None:  # give the caller's timer back what is left of it
                deadline, interval, _ = a.foreign
                signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 1e-4), interval)
            a.foreign = a.saved_handler = None
        else:
            a.arm()
        a.critical = False


def _remaining() -> float:
    if not _ALARM.deadlines or not _alarm_usable():
        return math.inf
    return _ALARM.earliest() - time.monotonic()
