"""Plan -> program: a planned expression lowered once into steps that each call runs.

:func:`lower` gives the :class:`Program` of a plan's root, built on first use and kept (by the
identity of the root, which the plan caches of ``estimate`` and ``compile`` hold once per set of
parameter shapes), so every chunk of an ``estimate`` run and every call of an objective runs the same
program: ``program.run(Frame(B, params, noise, ...))`` (:mod:`.frame`).  A program is independent of
the backend, dtype and device (those are the frame's); what it resolves is listed in :mod:`.compile`.
"""

from __future__ import annotations

from typing import Any

from .. import ir
from .checks import DistCheck, check_given
from .compile import Program, Trace
from .frame import Frame

__all__ = ["DistCheck", "Frame", "Program", "builds", "check_given", "lower"]

_PROGRAMS: dict[int, tuple[ir.Expr, Program]] = {}  # by id(root); the root is kept, so its id is not reused
_MAX = 512
_BUILDS = [0]


def lower(root: ir.Expr | Any, trace: Trace | None = None) -> Program:
    """The program of a planned root (a :class:`~stochgrad.planner.Plan` or its ``root``); a traced
    program (see :mod:`.compile`) is built afresh, untraced ones once per root."""
    root = getattr(root, "root", root)
    if trace is not None:
        return Program(root, trace)
    hit = _PROGRAMS.get(id(root))
    if hit is not None and hit[0] is root:
        return hit[1]
    if len(_PROGRAMS) >= _MAX:
        _PROGRAMS.clear()
    _BUILDS[0] += 1
    program = Program(root)
    _PROGRAMS[id(root)] = (root, program)
    return program


def builds() -> int:
    """How many untraced programs have been built in this process (for tests of the cache)."""
    return _BUILDS[0]
