"""Public entry points: :func:`plan` (which returns a runnable :class:`~stochgrad.runnable.Plan`) and :func:`estimate`.

The plan is the centre of the API.  ``sg.plan(expr, shapes_or_params)`` picks an estimator per
random node for parameters of given shapes (or values) on a given backend and returns a
:class:`Plan` that can be printed, compared and run: :meth:`Plan.estimate` (Monte Carlo estimates
with standard errors, by :func:`stochgrad.run.run_estimate`) and :meth:`Plan.objective` (a native
objective for training loops, :class:`stochgrad.compiled.Objective`).  ``policy="min_variance"``
runs its pilots here, when the plan is made (it needs values), never when the plan runs.

:func:`estimate` is ``plan`` then ``Plan.estimate`` (the same checks, the same seed), so the plan
shown for some parameters is the plan run for them.  Backend options are an explicit
``backend_options`` mapping (or a configured backend object from :func:`stochgrad.get_backend`);
an unknown keyword is a ``TypeError`` (:func:`stochgrad.validation.resolve_backend`).

The layers below know nothing of this module: the planner (:mod:`stochgrad.planner`) makes the
static plan, :mod:`stochgrad.variance` the pilots' plan, :mod:`stochgrad.run` runs a plan.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from typing import Any, cast

import numpy as np

from . import ir, planned
from .analysis import parameters
from .backend import Backend
from .backend_registry import get_backend
from .baselines import single_sample
from .distributed import shardable
from .errors import BackendError, ValidationError
from .estimators import EstimatorSpec
from .distscope import active, check_distributions, scoped
from .labels import data_parameters, integer_names, mark
from .moments import Moments as _Moments  # noqa: F401  (kept importable from here)
from .moments import accumulate as _accumulate  # noqa: F401
from .noise import check_seed
from .parser import as_expression
from .planner import DEFAULT_BUDGET
from .planner import plan as static_plan
from .run import CHUNK_ENTRIES, Estimate, auto_chunk, run_estimate  # noqa: F401  (CHUNK_ENTRIES, auto_chunk: re-exported)
from .runnable import Plan, _check_params
from .validation import (
    check_batch_axes_fit,
    check_count,
    check_mapping,
    resolve_backend,
)
from .variance import min_variance_plan


def plan(
    expr: Any,
    shapes_or_params: Mapping[str, Any] | None = None,
    *,
    backend: str | Backend | None = None,
    backend_options: Mapping[str, Any] | None = None,
    estimators: Mapping[str, Any] | None = None,
    policy: str = "unbiased",
    enumerate_budget: int = DEFAULT_BUDGET,
    batch_axes: int = 0,
    seed: int | None = None,
    n: int | None = None,
    shapes: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    distributions: Mapping[str, Any] | None = None,
    **extra: Any,
) -> Plan:
    """Plan an expression (text or IR) for a backend: an estimator per random node, with reasons.

    ``shapes_or_params`` maps parameter names to shapes (tuples: ``{"q": (3,)}``) or to values
    (numbers, arrays: ``{"q": np.ones(3) / 3}``); ``None`` means all scalar.  With values the result
    is the plan :func:`estimate` runs for them (same seed, same min_variance pilots); ``shapes=`` and
    ``params=`` say the same by keyword.  ``estimators`` overrides per variable; ``policy`` is
    ``"unbiased"``, ``"low_variance"`` or ``"min_variance"`` (pilot runs now, on the plan's backend,
    from a seed hashed from ``seed``: needs values); ``enumerate_budget`` caps the joint states
    summed exactly; ``batch_axes`` as in :func:`stochgrad.compile`; ``n=1`` gives the single-sample
    plan (no leave-one-out baseline).  ``backend`` (a name or a configured object) with
    ``backend_options`` supplies the capabilities planned for and runs the plan.

    Deprecated forms, which still work with a ``DeprecationWarning``: estimators as the second
    argument (``sg.plan(text, {"z": "score"})``), ``budget=`` for ``enumerate_budget=``, and bare
    backend options (``dtype="float32"``).  Any other keyword is a ``TypeError``.

    Args:
        expr: DSL text or an expression (:class:`~stochgrad.ir.Expr`).
        shapes_or_params: parameter shapes (tuples) or values; ``None``: all scalar.
        backend: a backend name (``"autograd"``, ``"torch"``, ``"jax"``) or a configured backend object.
        backend_options: options for the named backend (``{"dtype": "float32"}``).
        estimators: per-variable overrides, names or :class:`~stochgrad.estimators.EstimatorSpec` objects.
        policy: ``"unbiased"`` (default), ``"low_variance"`` or ``"min_variance"``.
        enumerate_budget: the most joint states summed exactly.
        batch_axes: leading axes of independent examples (a declared plate).
        seed: seed of the ``min_variance`` pilots.
        n: the sample count the plan is for (``1``: no leave-one-out baseline).
        shapes: parameter shapes, by keyword.
        params: parameter values, by keyword.
        distributions: user distributions visible to this plan only, by name (:mod:`stochgrad.distscope`).

    Returns:
        The :class:`Plan`: printable, comparable, runnable.

    Raises:
        ParseError: the text is not a valid expression.
        PlanError: an override does not apply to its node, or ``min_variance`` has no values.
        TypeError: an unknown keyword (with a did-you-mean)."""
    if "budget" in extra:
        warnings.warn("plan(budget=...) is deprecated; write enumerate_budget=...", DeprecationWarning, stacklevel=2)
        enumerate_budget = extra.pop("budget")
    if backend is None and not backend_options and not extra:
        try:  # planning needs no framework: without one, the plan takes the planner's capabilities
            B: Backend | None = get_backend(None)
        except BackendError:
            B = None
    else:
        B = resolve_backend("plan", backend, backend_options, extra, _PLAN_KEYWORDS)
    if _is_estimators(shapes_or_params):
        if estimators is not None:
            raise TypeError("plan() got estimators both as its second argument and as estimators=")
        warnings.warn(
            "sg.plan(expr, {var: estimator}) is deprecated; write sg.plan(expr, estimators={...})",
            DeprecationWarning,
            stacklevel=2,
        )
        estimators, shapes_or_params = shapes_or_params, None
    if shapes_or_params is not None:
        if shapes is not None or params is not None:
            raise TypeError("plan() got shapes_or_params and shapes= or params=; give one of them")
        shapes, params = _split(shapes_or_params)
    with scoped(check_distributions(distributions, "plan: distributions")):  # stochgrad.distscope
        e = as_expression(expr)
        values = None if params is None else _check_params(parameters(e), params, data_parameters(e, params))
        e = e if values is None else mark(e, integer_names(values))  # integer data: labels, counts
        return _plan(
            e,
            B,
            values,
            shapes,
            estimators=estimators,
            policy=policy,
            enumerate_budget=enumerate_budget,
            batch_axes=batch_axes,
            seed=seed,
            n=n,
        )


def _is_estimators(given: Any) -> bool:
    """The old positional form ``sg.plan(text, {"z": "score"})``: every value an estimator."""
    return (
        isinstance(given, Mapping) and bool(given) and all(isinstance(v, (str, EstimatorSpec)) for v in given.values())
    )


def _split(given: Any) -> tuple[dict[str, tuple[int, ...]] | None, dict[str, Any] | None]:
    """``shapes_or_params`` as shapes (every value a tuple of integers: ``()``, ``(3,)``) or as
    values (numbers and arrays; an int is a value, not a shape)."""
    given = check_mapping(given, "shapes_or_params")
    tuples = [isinstance(v, tuple) for v in given.values()]
    if given and all(tuples):
        for k, s in given.items():
            if any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 0 for x in s):
                raise ValidationError(
                    f"shapes_or_params: the shape of {k!r} must be a tuple of integers >= 0, got {s!r}"
                )
        return {k: tuple(int(x) for x in s) for k, s in given.items()}, None
    if any(tuples):
        raise ValidationError(
            "shapes_or_params mixes shapes (tuples) and values (numbers, arrays); give all shapes or all values"
        )
    return None, dict(given)


def _plan(
    e: ir.Expr,
    B: Backend | None,
    values: dict[str, np.ndarray] | None,
    shapes: Mapping[str, Any] | None,
    *,
    estimators: Mapping[str, Any] | None,
    policy: str,
    enumerate_budget: int,
    batch_axes: int,
    seed: int | None,
    n: int | None,
) -> Plan:
    """The plan for checked values (or shapes, or neither: all scalar) on backend ``B``."""
    if n is not None:
        n = check_count("n", n, 1, "the number of samples")
    batch_axes = check_count("batch_axes", batch_axes, 0)
    if seed is not None:
        seed = check_seed(seed, "plan: seed")
    if values is not None:
        given = {k: v.shape for k, v in values.items()}
        if shapes is not None and {k: tuple(s) for k, s in shapes.items()} != given:
            raise ValidationError(f"shapes {dict(shapes)} disagree with the shapes of params; give one or the other")
        shapes = given
    caps = None if B is None else B.capabilities
    if policy == "min_variance" and values is not None:  # pilots pick, per node, the cheapest unbiased estimator
        B = get_backend(None) if B is None else B
        base = min_variance_plan(
            e,
            values,
            estimators,
            B=B,
            seed=secrets.randbits(63) if seed is None else seed,
            enumerate_budget=enumerate_budget,
            batch_axes=batch_axes,
        )
    else:  # values matter only through their shapes; the planner refuses min_variance without values
        base = static_plan(
            e, estimators, policy=policy, shapes=shapes, enumerate_budget=enumerate_budget, capabilities=caps
        )
    check_batch_axes_fit(batch_axes, base.nodes)
    out = _runnable(base, B, batch_axes, policy)
    return cast(Plan, single_sample(out)) if n == 1 else out  # single_sample replaces fields: the class stays


def _runnable(base: planned.Plan, B: Backend | None, batch_axes: int, policy: str) -> Plan:
    """The planner's plan with what running it needs.  Kept, so that equal inputs give the same
    object, as the planner's cached plans do (``base`` is one object per planning input)."""
    key = (id(base), id(B), batch_axes, policy)
    kept = _RUNNABLE.get(key)
    if kept is not None and kept[0] is base and kept[1] is B:
        return kept[2]
    out = Plan(
        **{f.name: getattr(base, f.name) for f in fields(planned.Plan)},
        backend=B,
        batch_axes=batch_axes,
        policy=policy,
        distributions=tuple(sorted(active().items())),  # base is planned per scope: its laws run it
    )
    if len(_RUNNABLE) >= _KEEP:
        _RUNNABLE.pop(next(iter(_RUNNABLE)))
    _RUNNABLE[key] = (base, B, out)
    return out


_RUNNABLE: dict[tuple[int, int, int, str], tuple[planned.Plan, Backend | None, Plan]] = {}
_KEEP = 256


@shardable
def estimate(
    expr: Any,
    params: Mapping[str, Any] | None = None,
    *,
    n: int,
    backend: str | Backend | None = None,
    backend_options: Mapping[str, Any] | None = None,
    seed: int | None = None,
    estimators: Mapping[str, Any] | None = None,
    chunk_size: int | None = None,
    policy: str = "unbiased",
    enumerate_budget: int = DEFAULT_BUDGET,
    progress: Callable[[int, int], None] | None = None,
    batch_axes: int = 0,
    wrt: Iterable[str] | None = None,
    memory_limit: int | None = None,
    distributed: bool = False,
    distributions: Mapping[str, Any] | None = None,
    **extra: Any,
) -> Estimate:
    """Estimate ``expr`` and its gradient with respect to every parameter (or those in ``wrt``).

    ``params`` maps parameter names to floats or numpy arrays (broadcasting like
    numpy); ``n`` is the number of samples; ``seed`` fixes the noise (a non-negative integer of
    any size, every bit of which counts; same seed and backend give identical results, moving
    averages included: each call starts them afresh); ``estimators`` overrides the planner per
    variable (``{"z": "score"}``, ``{"y": "relaxed:temperature=0.1"}``); ``policy`` is
    ``"unbiased"``, ``"low_variance"`` or ``"min_variance"`` (pilot runs, from a seed hashed from
    ``seed``; ``sg.plan(expr, params, seed=...)`` shows the same plan); ``enumerate_budget``
    caps the joint states summed exactly; ``progress(done, n)`` is called after each chunk; ``batch_axes`` declares leading
    axes of independent examples (see :func:`stochgrad.compile`); ``chunk_size`` bounds how many samples are
    held in memory at once (rounded down to a multiple of
    :data:`stochgrad.noise.BLOCK`; by default :func:`auto_chunk` sizes chunks to the cache);
    ``wrt`` names the parameters to differentiate (default: all), the others are held constant,
    which saves their per-sample gradients.  ``memory_limit`` (bytes; default half the machine's
    physical memory) bounds a chunk's estimated footprint (:func:`stochgrad.chunking.footprint`,
    enumeration copies included): chunks shrink to fit, and a run whose smallest chunk (one noise
    block, or ``n`` samples if fewer) cannot fit is refused with a
    :class:`~stochgrad.errors.MemoryLimitError` before anything is allocated.  A NaN or infinity in
    the results, or a standard error undefined (n = 1) or made meaningless by heavy tails, is
    reported in :attr:`Estimate.nonfinite` / :attr:`Estimate.heavy_tails` and by a
    :class:`~stochgrad.errors.NonFiniteWarning` / :class:`~stochgrad.errors.HeavyTailWarning`.
    ``backend_options`` configure the backend (``{"device": "cuda", "dtype": "float32"}`` for torch),
    or ``backend`` is a configured backend object; a bare backend option (``dtype="float32"``) still
    works but is deprecated, and any other unknown keyword is a ``TypeError`` with a did-you-mean.

    ``distributed=True``, called alike on every rank of an initialised ``torch.distributed`` process
    group, runs rank ``r``'s share of the chunks (``r, r + W, ...``) and returns, on every rank, the
    estimate of all ``n`` samples: the single-process one to rounding (:mod:`stochgrad.distributed`).

    This is ``sg.plan(expr, params, ...)`` then :meth:`Plan.estimate`: the plan run is the plan
    that ``sg.plan`` shows for these inputs (``r.plan``).

    Args:
        expr: DSL text or an expression.
        params: parameter values (floats, arrays, tensors) by name.
        n: number of samples.
        backend: a backend name or a configured backend object (default: ``$STOCHGRAD_BACKEND``, else autograd).
        backend_options: options for the named backend (``device``, ``dtype``, ``chunk_workers`` on torch).
        seed: non-negative integer fixing the noise; ``None`` draws a fresh one (reported in the result).
        estimators: per-variable overrides (``{"z": "score"}``, ``{"z": sg.Score(baseline=None)}``).
        chunk_size: at most this many samples in memory at once.
        policy: ``"unbiased"`` (default), ``"low_variance"`` or ``"min_variance"``.
        enumerate_budget: the most joint states summed exactly.
        progress: called as ``progress(done, n)`` after each chunk.
        batch_axes: leading axes of independent examples (a declared plate).
        wrt: names of the parameters to differentiate (default: all).
        memory_limit: bytes a chunk may take (default: half the physical memory).
        distributions: user distributions visible to this call only, by name (:mod:`stochgrad.distscope`).

    Returns:
        An :class:`~stochgrad.run.Estimate`: ``value``, ``value_stderr``, ``grad``, ``stderr``,
        ``plan``, ``n``, ``seed`` and the diagnostics.

    Raises:
        ParseError: the text is not a valid expression.
        ValidationError: a parameter is missing or violates its distribution's constraint.
        PlanError: an estimator override does not apply to its node.
        BackendError: the backend cannot be loaded or cannot use the device asked for.
        MemoryLimitError: even the smallest chunk would exceed ``memory_limit``.
        TypeError: an unknown keyword (with a did-you-mean).
    """
    B = resolve_backend("estimate", backend, backend_options, extra, _KEYWORDS)
    n = check_count("n", n, 1, "the number of samples")
    if chunk_size is not None:
        chunk_size = check_count("chunk_size", chunk_size, 1)
    with scoped(check_distributions(distributions, "estimate: distributions")):  # stochgrad.distscope
        e = as_expression(expr)
        values = _check_params(parameters(e), params, data_parameters(e, params))
        e = mark(e, integer_names(values))  # integer data: labels, counts (stochgrad.labels)
        seed = secrets.randbits(63) if seed is None else check_seed(seed, "estimate: seed")
        p = _plan(
            e,
            B,
            values,
            None,
            estimators=estimators,
            policy=policy,
            enumerate_budget=enumerate_budget,
            batch_axes=batch_axes,
            seed=seed,
            n=None,
        )
    return p._run(values, n=n, seed=seed, chunk_size=chunk_size, wrt=wrt, progress=progress, memory_limit=memory_limit)


#: each entry point's own keywords, for the did-you-mean of a misspelt one (``sead=0``)
_KEYWORDS = (
    "n",
    "backend",
    "backend_options",
    "seed",
    "estimators",
    "chunk_size",
    "policy",
    "enumerate_budget",
    "progress",
    "batch_axes",
    "wrt",
    "memory_limit",
    "distributed",
    "distributions",
)
_PLAN_KEYWORDS = (
    "shapes_or_params",
    "backend",
    "backend_options",
    "estimators",
    "policy",
    "enumerate_budget",
    "batch_axes",
    "seed",
    "n",
    "shapes",
    "params",
    "distributions",
)
