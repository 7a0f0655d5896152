"""Checking the declarations of a :class:`stochgrad.userdist.UserDistribution`: its parameters
(names and constraints), their declared ranks, and shapes returned by user callables.  Each
problem is a :class:`~stochgrad.errors.StochgradError` naming the distribution and the argument."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from . import ir
from .distributions import Constraint, Param, positive, real
from .errors import StochgradError, did_you_mean
from .userfn import describe

#: constraints a parameter may name in text
CONSTRAINTS = {"real": real, "positive": positive}


def as_shape(given: Any, where: str) -> tuple[int, ...]:
    if isinstance(given, (int, np.integer)) and not isinstance(given, bool):
        given = (given,)
    try:
        out = tuple(given)
    except TypeError:
        raise StochgradError(f"{where} must be a tuple of integers >= 0, got {describe(given)}") from None
    if any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in out):
        raise StochgradError(f"{where} must be a tuple of integers >= 0, got {given!r}")
    return tuple(int(s) for s in out)


def as_ranks(name: str, params: list[str], ranks: Any) -> dict[str, int]:
    if ranks is None:
        return {}
    if not isinstance(ranks, Mapping):
        raise StochgradError(f"UserDistribution {name}: ranks must map parameter names to ranks, got {describe(ranks)}")
    for key, rank in ranks.items():
        if key not in params:
            raise StochgradError(
                f"UserDistribution {name}: ranks names {key!r}, which is not a parameter"
                f"{did_you_mean(str(key), params)}; the parameters are {', '.join(params)}"
            )
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 0:
            raise StochgradError(f"UserDistribution {name}: the rank of {key!r} must be an integer >= 0, got {rank!r}")
    return {k: int(r) for k, r in ranks.items()}


def as_params(name: str, params: Any) -> tuple[Param, ...]:
    if isinstance(params, str):
        params = (params,)
    items = list(params.items()) if isinstance(params, Mapping) else [(p, None) for p in params]
    out: list[Param] = []
    for key, constraint in items:
        if isinstance(key, Param):
            out.append(key)
            continue
        if not isinstance(key, str):
            raise StochgradError(f"UserDistribution {name}: a parameter is a name or a Param, got {describe(key)}")
        try:
            ir.check_name(key)
        except StochgradError as exc:
            raise StochgradError(f"UserDistribution {name}: parameter name: {exc}") from None
        if constraint is None:
            constraint = real
        elif isinstance(constraint, str):
            if constraint not in CONSTRAINTS:
                raise StochgradError(
                    f"UserDistribution {name}: parameter {key!r}: unknown constraint {constraint!r}"
                    f"{did_you_mean(constraint, CONSTRAINTS)}; give 'real', 'positive' or a"
                    " Constraint"
                )
            constraint = CONSTRAINTS[constraint]
        elif not isinstance(constraint, Constraint):
            raise StochgradError(
                f"UserDistribution {name}: parameter {key!r}: a constraint is 'real', 'positive' or"
                f" a Constraint, got {describe(constraint)}"
            )
        out.append(Param(key, constraint))
    names = [p.name for p in out]
    for n in names:
        if names.count(n) > 1:
            raise StochgradError(f"UserDistribution {name}: parameter {n!r} given twice")
    return tuple(out)
