"""Distributions visible to one call: ``sg.estimate(..., distributions={"Policy": policy})``.

A user distribution (:class:`stochgrad.userdist.UserDistribution`, or any
:class:`~stochgrad.distributions.Distribution`) need not be registered for the whole process.
``distributions=`` on :func:`stochgrad.parse`, :func:`stochgrad.plan`, :func:`stochgrad.estimate`
and :func:`stochgrad.compile` makes it visible by name to that call only: the text is parsed, the
plan made, lowered and run inside :func:`scoped`, a context (a ``contextvars`` variable, so threads
and asynchronous tasks do not see each other's scopes) in which
:func:`stochgrad.distributions.lookup` finds the scoped laws before the registered ones.  A
:class:`~stochgrad.runnable.Plan` and a compiled objective keep their mapping and enter it on every
run.  No registry is changed.

The caches stay right because every one of them is keyed on :func:`scope_key` (the names and the
identities of the scoped laws): the parse cache, the planner's cache and, through the plans, the
lowered programs.  Two calls that define ``Policy`` differently never share a parse or a plan.

A scoped name may not be that of a built-in distribution or function (it would change the meaning
of text elsewhere in the same call); it may shadow a registered user distribution.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .errors import StochgradError

if TYPE_CHECKING:
    from .distributions import Distribution

_EMPTY: Mapping[str, Distribution] = MappingProxyType({})
_SCOPE: contextvars.ContextVar[Mapping[str, Distribution]] = contextvars.ContextVar(
    "stochgrad_distributions", default=_EMPTY
)


def active() -> Mapping[str, Distribution]:
    """The distributions scoped to the running call (empty outside any)."""
    return _SCOPE.get()


def scope_key() -> tuple[tuple[str, int], ...]:
    """What the caches key on: the scoped names and the identities of their laws."""
    scope = _SCOPE.get()
    return tuple(sorted((k, id(v)) for k, v in scope.items())) if scope else ()


def check_distributions(distributions: Any, where: str = "distributions") -> Mapping[str, Distribution]:
    """``distributions=`` checked: a mapping of DSL names to distribution objects (each object's
    own ``name`` must be the key), none of them a built-in's name; ``None`` is the empty mapping."""
    from .distributions import DISTRIBUTIONS, Distribution
    from .functions import FUNCTIONS

    if distributions is None:
        return _EMPTY
    if not isinstance(distributions, Mapping):
        raise StochgradError(
            f"{where} must be a mapping of names to distributions, e.g. {{'Policy': policy}};"
            f" got {type(distributions).__name__}"
        )
    out: dict[str, Distribution] = {}
    for name, dist in distributions.items():
        if not isinstance(dist, Distribution):
            raise StochgradError(f"{where}[{name!r}] is a {type(dist).__name__}, not a distribution")
        if name != dist.name:
            raise StochgradError(f"{where}[{name!r}] is the distribution named {dist.name!r}: the key must be its name")
        builtin = DISTRIBUTIONS.get(name)
        if builtin is not None and not getattr(builtin, "user_defined", False):
            raise StochgradError(
                f"{where}[{name!r}] would hide the built-in distribution {builtin.signature()}; choose another name"
            )
        if name in FUNCTIONS:
            raise StochgradError(f"{where}[{name!r}] would hide the built-in function {name}(); choose another name")
        out[name] = dist
    return MappingProxyType(out) if out else _EMPTY


@contextlib.contextmanager
def scoped(distributions: Mapping[str, Distribution]) -> Iterator[None]:
    """Run the body with ``distributions`` (checked) visible by name, over any scope already active."""
    if not distributions:
        yield
        return
    outer = _SCOPE.get()
    token = _SCOPE.set(MappingProxyType({**outer, **distributions}) if outer else distributions)
    try:
        yield
    finally:
        _SCOPE.reset(token)


__all__ = ["active", "check_distributions", "scope_key", "scoped"]
