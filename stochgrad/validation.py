"""The checks of options and parameter values shared by :func:`stochgrad.estimate` and :func:`stochgrad.compile`.

Every check names what it checks (the keyword or parameter) and what it got, and raises a
:class:`~stochgrad.errors.ValidationError` -- or a :class:`KeywordError`, also a ``TypeError``, for a keyword that no one accepts,
as Python does for a misspelt keyword.  The rules:

* counts (``n``, ``chunk_size``) are integers >= 1 and ``batch_axes`` an integer >= 0: Python or
  numpy integers, never a bool, a float (``1.5`` would be cut to 1) or a string;
* ``params`` is a mapping from names to values; a value is a real number or an array of real
  numbers: integers become floats, but a bool, a string (``"1.5"`` is not read as a number), a
  complex number (its imaginary part would be dropped), ``None`` and object arrays are refused.
  A framework tensor is detached and copied to the host first (``estimate`` makes its own leaves);
* ``batch_axes`` is at most the logical rank of every random node (a plate axis must exist);
* backend options come as one explicit ``backend_options`` mapping, or inside a backend object
  (:func:`resolve_backend`); any keyword that neither the function nor the backend names is a
  :class:`KeywordError` with a did-you-mean.  A backend option given as a bare keyword
  (``dtype="float32"``, the form before ``backend_options``) still works, with a ``DeprecationWarning``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .backend import Backend
from .backend_registry import DEFAULT_BACKEND, get_backend, option_names
from .errors import ValidationError, did_you_mean


class KeywordError(ValidationError, TypeError):
    """A keyword argument that neither the function nor the chosen backend accepts: a ``TypeError``, as
    Python raises for an unexpected keyword, and a :class:`~stochgrad.errors.StochgradError`, so that
    one ``except`` catches every bad input."""


def check_count(name: str, value: Any, minimum: int = 1, what: str = "") -> int:
    """``value`` as a Python int ``>= minimum``; ``what`` says what the count means, for the message."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        label = f"{name} ({what})" if what else name
        raise ValidationError(
            f"{label} must be an integer >= {minimum}, got {value!r}"
            + (f" (a {type(value).__name__})" if not isinstance(value, (int, np.integer)) else "")
        )
    return int(value)


def check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be True or False, got {value!r}")
    return value


def check_mapping(params: Any, what: str = "params") -> Mapping[str, Any]:
    """``params`` (``None`` for none) as a mapping from parameter names to values."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise ValidationError(
            f"{what} must be a mapping from parameter names to values (a dict such as"
            f" {{'mu': 0.5}}), got {type(params).__name__} {_short(params)}"
        )
    for key in params:
        if not isinstance(key, str):
            raise ValidationError(f"{what}: parameter names must be strings, got {key!r}")
    return params


def check_wrt(wrt: Any) -> list[str] | None:
    """``wrt`` (one name or an iterable of names; ``None`` for all) as a list of distinct names."""
    if wrt is None:
        return None
    if isinstance(wrt, str):
        return [wrt]
    if not isinstance(wrt, Iterable) or isinstance(wrt, Mapping):
        raise ValidationError(f"wrt must be a parameter name or a list of names, got {type(wrt).__name__} {wrt!r}")
    names = list(wrt)
    for k in names:
        if not isinstance(k, str):
            raise ValidationError(f"wrt must name parameters by strings, got {k!r} ({type(k).__name__}) in {wrt!r}")
    return list(dict.fromkeys(names))


def host_value(value: Any) -> Any:
    """A framework tensor as a host numpy array (detached: its graph is not ours); others unchanged."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        t = value.detach().cpu()
        return (t.float() if str(t.dtype) == "torch.bfloat16" else t).numpy()  # numpy has no bfloat16
    if type(value).__name__ == "ArrayBox" and hasattr(value, "_value"):  # a value inside an autograd trace
        return host_value(value._value)
    return value


def as_real_array(name: str, value: Any, where: str = "parameter") -> np.ndarray:
    """``value`` as a float64 numpy array, or a :class:`ValidationError` naming ``where name`` and saying
    what is wrong (see the module docstring for the rule)."""
    label = f"{where} {name!r}"
    raw = host_value(value)
    if raw is None or isinstance(raw, (str, bytes)):
        raise ValidationError(
            f"{label} must be a number or an array of numbers, got {_short(raw)}"
            + (" (a string is not read as a number)" if isinstance(raw, (str, bytes)) else "")
        )
    try:
        array = np.asarray(raw)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{label} must be a number or an array of numbers: {exc}") from None
    kind = array.dtype.kind
    if kind == "b":
        raise ValidationError(
            f"{label} must be a number or an array of numbers, got a bool{'' if array.ndim == 0 else ' array'}"
            f" ({_short(raw)}); write 1.0/0.0 if a number is meant"
        )
    if kind == "c":
        raise ValidationError(
            f"{label} is complex ({_short(raw)}); stochgrad computes with real numbers only"
            " (pass .real or abs() explicitly)"
        )
    if kind not in "iuf":
        raise ValidationError(
            f"{label} must be a number or an array of numbers, got {_short(raw)} (dtype {array.dtype})"
        )
    return array.astype(float, copy=False)


def check_options(
    caller: str, options: Mapping[str, Any], accepted: Sequence[str] | None, backend: str, own: Iterable[str]
) -> None:
    """A :class:`KeywordError` (a ``TypeError``) for a keyword of ``caller`` that the chosen backend does not accept either, with a
    did-you-mean among ``caller``'s own keywords and the backend's options (``accepted``; ``None``: any)."""
    if accepted is None:
        return
    for key in options:
        if key not in accepted:
            hint = did_you_mean(key, [*own, *accepted])
            listed = ", ".join(accepted) if accepted else "none"
            raise KeywordError(
                f"{caller}() got an unexpected keyword argument {key!r}{hint}; backend options for"
                f" {backend} are: {listed}"
            )


def backend_name(backend: str | Backend | None) -> str:
    """The backend's name, for messages (``backend=None`` is the default one)."""
    if isinstance(backend, Backend):
        return f"a backend instance ({backend.name})"
    return str(backend or os.environ.get("STOCHGRAD_BACKEND") or DEFAULT_BACKEND)


def resolve_backend(
    caller: str,
    backend: str | Backend | None,
    backend_options: Mapping[str, Any] | None,
    extra: Mapping[str, Any],
    own: Sequence[str],
) -> Backend:
    """The backend ``caller`` runs on: ``backend`` (a name, an instance, or ``None`` for the default)
    configured by the explicit ``backend_options`` mapping (``{"dtype": "float32"}``).

    ``extra`` holds the keywords ``caller`` did not recognise.  One that the backend accepts
    (``dtype="float32"`` for torch) still works, with a ``DeprecationWarning``; any other is a
    :class:`KeywordError` (a ``TypeError``) with a did-you-mean among ``own`` (the caller's
    keywords) and the backend's options.  Options for a backend instance (already configured) are
    refused, as are options given twice."""
    options = dict(check_mapping({} if backend_options is None else backend_options, "backend_options"))
    if extra:
        accepted = option_names(backend)
        for key in extra:
            if accepted is not None and key not in accepted:
                hint = did_you_mean(key, [*own, *accepted])
                listed = ", ".join(accepted) if accepted else "none"
                raise KeywordError(
                    f"{caller}() got an unexpected keyword argument {key!r}{hint}; backend options"
                    f" for {backend_name(backend)} are: {listed} (given as backend_options={{...}});"
                    f" {caller}'s own keywords are: {', '.join(own)}"
                )
            if key in options:
                raise KeywordError(f"{caller}() got backend option {key!r} twice: as a keyword and in backend_options")
        shown = ", ".join(f"{k}={v!r}" for k, v in extra.items())
        warnings.warn(
            f"{caller}(): backend options as bare keywords ({shown}) are deprecated; pass"
            f" backend_options={dict(extra)!r}",
            DeprecationWarning,
            stacklevel=3,
        )
        options.update(extra)
    if options:
        check_options(caller, options, option_names(backend), backend_name(backend), own)
    return get_backend(backend, **options)


def check_batch_axes_fit(batch_axes: int, nodes: Iterable[Any]) -> None:
    """Some random node (a :class:`~stochgrad.planner.NodePlan` with a known ``shape``) has at least
    ``batch_axes`` logical axes: a plate that no node has is a mistake, not a no-op.  A node with
    fewer axes than the plate (a global latent beside per-example ones) is one joint variable
    shared by every example, which is valid."""
    if not batch_axes:
        return
    shaped = [node for node in nodes if isinstance(getattr(node, "shape", None), tuple)]
    if shaped and all(len(node.shape) < batch_axes for node in shaped):
        widest = max(shaped, key=lambda node: len(node.shape))
        rank = len(widest.shape)
        raise ValidationError(
            f"batch_axes={batch_axes}, but no random node has that many axes: the widest,"
            f" {widest.var} ~ {widest.dist}, has shape {widest.shape} ({rank}"
            f" ax{'is' if rank == 1 else 'es'}); batch_axes counts leading axes of independent"
            f" examples"
        )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
