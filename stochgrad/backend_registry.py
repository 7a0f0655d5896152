"""The backend registry: names to backend factories, imported lazily (einops' rule).

The core never imports a framework: a backend module is imported only when a user asks for it by
name.  The built-in backends register here exactly as a third-party one would, with
:func:`register_backend`; :func:`get_backend` shares one instance per (name, options), since
backends are stateless.  The interface itself is :class:`stochgrad.backend.Backend`.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from typing import Any

from .backend import Backend
from .errors import BackendError, did_you_mean

#: backend name -> "module:Class" (lazily imported) or a factory
_REGISTRY: dict[str, str | Callable[..., Backend]] = {
    "autograd": "stochgrad.backends.autograd:AutogradBackend",
    "torch": "stochgrad.backends.torch:TorchBackend",
    "jax": "stochgrad.backends.jax:JaxBackend",
}
_INSTALL_HINT = {
    "autograd": "pip install autograd  (or: pip install 'stochgrad[autograd]')",
    "torch": "pip install torch  (or: pip install 'stochgrad[torch]')",
    "jax": "pip install jax  (or: pip install 'stochgrad[jax]')",
}
DEFAULT_BACKEND = "autograd"


def register_backend(name: str, factory: str | Callable[..., Backend]) -> None:
    """Make ``backend=name`` available; ``factory`` is a class/callable or ``"module:Class"``.

    Args:
        name: the name ``backend=`` will take.
        factory: the backend class (or a callable returning a backend), or ``"module:Class"``,
            imported only when the backend is first used."""
    _REGISTRY[name] = factory
    for key in [k for k in _INSTANCES if k[0] == name]:
        del _INSTANCES[key]


def available_backends() -> list[str]:
    """The registered backend names, sorted (registered, not necessarily installed)."""
    return sorted(_REGISTRY)


def get_backend(name: str | Backend | None = None, **options: Any) -> Backend:
    """Instantiate a backend by name (default: ``$STOCHGRAD_BACKEND``, else autograd).

    ``options`` (e.g. ``device``, ``dtype`` for torch) go to the backend's constructor.
    Backends are stateless, so instances are shared between calls with equal options.

    Args:
        name: a registered backend name, a backend object (returned as is), or ``None`` for the default.
        **options: the backend's constructor options.

    Returns:
        The configured backend.

    Raises:
        BackendError: the name is unknown, its framework is not installed (the error names the
            extra to install), or an option is refused (a device this build cannot use).
    """
    if isinstance(name, Backend):
        if options:
            raise BackendError("backend options cannot be combined with a backend instance")
        return name
    if name is None:
        name = os.environ.get("STOCHGRAD_BACKEND") or DEFAULT_BACKEND
    try:
        key = (name, tuple(sorted((k, type(v), v) for k, v in options.items())))  # True is not 1
        hash(key)
    except TypeError:
        return _make_backend(name, options)
    if key not in _INSTANCES:
        _INSTANCES[key] = _make_backend(name, options)
    return _INSTANCES[key]


_INSTANCES: dict[tuple[str, tuple[tuple[str, type, Any], ...]], Backend] = {}


def option_names(name: str | Backend | None = None) -> tuple[str, ...] | None:
    """The keyword options backend ``name`` accepts (read from its constructor's signature; ``None``
    when it takes any keyword).  A backend instance takes none."""
    if isinstance(name, Backend):
        return ()
    factory = _factory(name or os.environ.get("STOCHGRAD_BACKEND") or DEFAULT_BACKEND)
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # no signature to read: let the constructor decide
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return tuple(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def _make_backend(name: str, options: dict[str, Any]) -> Backend:
    factory = _factory(name)
    try:
        return factory(**options)
    except TypeError as exc:
        raise BackendError(f"backend {name!r} does not accept options {sorted(options)}: {exc}") from exc


def _factory(name: str) -> Callable[..., Backend]:
    factory = _REGISTRY.get(name)
    if factory is None:
        raise BackendError(
            f"unknown backend {name!r}{did_you_mean(name, _REGISTRY)}; available: {', '.join(available_backends())}"
        )
    if isinstance(factory, str):
        module_name, _, cls_name = factory.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing = (exc.name or module_name).split(".")[0]
            if missing == name and name in _INSTALL_HINT:
                hint = _INSTALL_HINT[name]
            else:
                hint = f"pip install {missing}" + (
                    f"  (or: pip install 'stochgrad[{name}]')" if name in _INSTALL_HINT else ""
                )
            raise BackendError(f"backend {name!r} needs {missing}, which is not installed: {hint}") from exc
        factory = getattr(module, cls_name)
    return factory
