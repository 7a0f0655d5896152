"""Public entry points: :func:`estimate` and the :class:`Estimate` it returns.

``estimate`` plans the expression (cached), then runs the surrogate in chunks of
samples.  Each chunk gives every parameter one copy per sample (a leaf of shape
``(count, *shape)``), so one reverse pass yields each sample's own gradient
contribution ``g_i``; the estimate is their mean and the standard error is
``sd(g_i) / sqrt(n)``, accumulated across chunks with Chan et al.'s (1979)
pairwise update from each chunk's sums of ``g_i`` and ``g_i**2``.  The same is done for the value.

Nothing non-finite passes silently: a NaN or infinity in a result is counted in
:attr:`Estimate.nonfinite` and named in a :class:`~stochgrad.errors.NonFiniteWarning`, and a
tail index of the per-sample contributions (:mod:`stochgrad.diagnostics`) flags standard errors
that heavy tails make meaningless.  Chunks are sized from the per-sample memory footprint and
bounded by ``memory_limit`` (:mod:`stochgrad.chunking`).
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import ir
from . import chunking, diagnostics, parallel
from .analysis import parameters
from .backend import DEFAULT_BACKEND, Backend, get_backend, option_names
from .baselines import BaselineState, single_sample
from .errors import BiasWarning, HeavyTailWarning, NonFiniteWarning, ValidationError, did_you_mean
from .noise import BLOCK, NoiseSource, check_seed
from .moments import Moments as _Moments, Part, merge, summarize
from .moments import accumulate as _accumulate  # noqa: F401  (kept importable from here)
from .parser import parse
from .program import Frame, lower
from .planner import DEFAULT_BUDGET, Plan, plan
from .validation import as_real_array, check_batch_axes_fit, check_count, check_mapping, check_options, check_wrt

#: entries per array that an automatic chunk aims at: arrays of a few MB stay in cache, and
#: measured on a 2-core CPU, a run in chunks of this size takes 0.36-0.55x the time of one
#: vectorized pass over 1e7-3e7 entries (benchmarks/bench_chunking.py)
CHUNK_ENTRIES = 1 << 18


def as_expression(expr: Any) -> ir.Expr:
    if isinstance(expr, str):
        return parse(expr)
    if isinstance(expr, ir.Expr):
        return expr
    raise TypeError(f"expected DSL text or an expression, got {type(expr).__name__}")


@dataclass(frozen=True)
class Estimate:
    """Monte Carlo estimate of an expectation and of its gradient, with standard errors.

    ``grad[name]`` is the gradient of ``value`` (summed over its entries, if it is
    an array) with respect to parameter ``name``; ``stderr[name]`` has its shape.
    """

    value: float | np.ndarray
    value_stderr: float | np.ndarray
    grad: dict[str, float | np.ndarray]
    stderr: dict[str, float | np.ndarray]
    plan: Plan
    n: int
    backend: str
    seed: int
    chunk_size: int = field(default=0)
    #: entries that are NaN or infinite, by result: ``{"value": 1, "grad['mu']": 1, ...}`` (empty:
    #: all finite); at n = 1 the standard errors are undefined, so NaN, and listed here
    nonfinite: dict[str, int] = field(default_factory=dict)
    #: Hill's tail index of the per-sample contributions, by result (shaped like it), where assessed
    #: (n >= diagnostics.TAIL_MIN_N); below diagnostics.HEAVY_TAIL_INDEX the standard error is not to be trusted
    tail_index: dict[str, float | np.ndarray] = field(default_factory=dict)
    #: the entries whose tail index is that low, with it: ``{"value": 0.98, "grad['w'][2]": 1.1}``
    heavy_tails: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        def se(x: Any) -> str:
            return "undefined (n = 1)" if self.n == 1 else _fmt(x)

        lines = [f"value = {_fmt(self.value)} \u00b1 {se(self.value_stderr)}"]
        for k in self.grad:
            lines.append(f"d/d{k} = {_fmt(self.grad[k])} \u00b1 {se(self.stderr[k])}")
        return "\n".join(lines)

    def problems(self) -> list[str]:
        """Sentences on what in this estimate is non-finite or untrustworthy (empty: nothing)."""
        out = []
        if self.nonfinite:
            sizes = {"value": np.size(self.value), "value_stderr": np.size(self.value_stderr)}
            sizes |= {f"grad[{k!r}]": np.size(v) for k, v in self.grad.items()}
            sizes |= {f"stderr[{k!r}]": np.size(v) for k, v in self.stderr.items()}
            out.append(diagnostics.describe(self.nonfinite, sizes, self.n))
        if self.heavy_tails:
            out.append(diagnostics.describe_tails(self.heavy_tails))
        return out


def _fmt(x: Any) -> str:
    return f"{x:.6g}" if np.ndim(x) == 0 else np.array2string(np.asarray(x), precision=6)


def _check_params(names: tuple[str, ...], params: Any) -> dict[str, np.ndarray]:
    """The parameters as float64 arrays, each checked by :func:`stochgrad.validation.as_real_array`.
    Their shapes need not broadcast together: each random node and each operation checks its own
    operands (the planner's shape pass, :mod:`stochgrad.shapes`)."""
    params = check_mapping(params)
    needed = set(names)
    for name in params:
        if name not in needed:
            raise ValidationError(
                f"unknown parameter {name!r}{did_you_mean(name, needed)}; the expression's parameters are: "
                f"{', '.join(names) or 'none'}"
            )
    out = {}
    for name in names:
        if name not in params:
            raise ValidationError(f"parameter {name!r} is missing; the expression needs: {', '.join(names)}")
        value = as_real_array(name, params[name])
        if not np.isfinite(value).all():
            raise ValidationError(f"parameter {name!r} must be finite, got {value!r}")
        out[name] = value
    return out


def auto_chunk(p: Plan, values: Mapping[str, np.ndarray]) -> int:
    """Samples per chunk when the caller gives no ``chunk_size``: about :data:`CHUNK_ENTRIES`
    entries per array, counting each sample's widest random value or parameter (the per-sample
    gradients have a parameter's shape) times the copies exact enumeration makes of every value
    (the product of the enumerated nodes' joint states), in whole noise blocks."""
    widths = [v.size for v in values.values()]
    widths += [math.prod(node.shape) for node in p.nodes if isinstance(node.shape, tuple)]
    return max(BLOCK, CHUNK_ENTRIES // (max(widths, default=1) * chunking.copies(p)[0]) // BLOCK * BLOCK)


def _check_wrt(wrt: Iterable[str] | None, values: Mapping[str, np.ndarray]) -> list[str]:
    names = check_wrt(wrt)
    if names is None:
        return list(values)
    for k in names:
        if k not in values:
            raise ValidationError(f"wrt names {k!r}{did_you_mean(k, values)}, which is not a parameter of the"
                                  f" expression; its parameters are: {', '.join(values) or 'none'}")
    return names


def estimate(
    expr: Any,
    params: Mapping[str, Any] | None = None,
    *,
    n: int,
    backend: str | Backend | None = None,
    seed: int | None = None,
    estimators: Mapping[str, Any] | None = None,
    chunk_size: int | None = None,
    policy: str = "unbiased",
    enumerate_budget: int = DEFAULT_BUDGET,
    progress: Callable[[int, int], None] | None = None,
    batch_axes: int = 0,
    wrt: Iterable[str] | None = None,
    memory_limit: int | None = None,
    **backend_options: Any,
) -> Estimate:
    """Estimate ``expr`` and its gradient with respect to every parameter (or those in ``wrt``).

    ``params`` maps parameter names to floats or numpy arrays (broadcasting like
    numpy); ``n`` is the number of samples; ``seed`` fixes the noise (a non-negative integer of
    any size, every bit of which counts; same seed and backend give identical results, moving
    averages included: each call starts them afresh); ``estimators`` overrides the planner per
    variable (``{"z": "score"}``, ``{"y": "relaxed:temperature=0.1"}``); ``policy`` is
    ``"unbiased"``, ``"low_variance"`` or ``"min_variance"`` (pilot runs, from a seed hashed from
    ``seed``; ``sg.plan(..., params=..., seed=...)`` shows the same plan); ``enumerate_budget``
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
    Other keywords (``device``, ``dtype`` for torch) configure the backend.
    """
    check_options("estimate", backend_options, option_names(backend) if backend_options else (), _backend_name(backend),
                  _KEYWORDS)
    n = check_count("n", n, 1, "the number of samples")
    batch_axes = check_count("batch_axes", batch_axes, 0)
    if chunk_size is not None:
        chunk_size = check_count("chunk_size", chunk_size, 1)
    B = get_backend(backend, **backend_options)
    e = as_expression(expr)
    values = _check_params(parameters(e), params)
    seed = secrets.randbits(63) if seed is None else check_seed(seed, "estimate: seed")
    p = plan_for_run(e, values, estimators, policy=policy, B=B, seed=seed, budget=enumerate_budget,
                     batch_axes=batch_axes, n=n)
    check_batch_axes_fit(batch_axes, p.nodes)
    for node in p.nodes:  # a biased choice the user did not ask for must not pass silently
        if node.biased and not node.reason.startswith("requested") and policy != "low_variance":
            warnings.warn(f"no unbiased estimator applies to {node}", BiasWarning, stacklevel=2)
    names = _check_wrt(wrt, values)
    size = auto_chunk(p, {k: values[k] for k in names}) if chunk_size is None else chunk_size
    size = n if n <= size else max(BLOCK, size - size % BLOCK)
    limit = chunking.check_memory_limit(memory_limit)
    size = chunking.fit(n, size, p, values, names, limit)

    fixed = {k: B.asarray(v[None]) for k, v in values.items() if k not in names}
    value_m, grad_m = _Moments(), {k: _Moments() for k in names}
    memo: dict[Any, Any] = {}  # constants made and checked once per run, not once per chunk
    first_bad: tuple[int, int] | None = None  # the first chunk that gave a NaN or infinity
    baselines = BaselineState()  # this run's moving averages: fresh per call, carried across its chunks
    program = lower(p)

    def chunk(start: int, count: int) -> list[Part]:
        noise = NoiseSource(B, seed, start, count)

        def objective(leaves: list[Any]) -> tuple[Any, Any]:
            s = program.run(Frame(B, {**fixed, **dict(zip(names, leaves))}, noise, known=values, memo=memo,
                                  first_order=True, baselines=baselines, batch_axes=batch_axes))
            shape = B.shape(s)
            return B.sum(s, tuple(range(len(shape)))) / shape[0], B.stop_gradient(s)

        leaves = [B.leaf(values[k], count) for k in names]
        with np.errstate(all="ignore"):  # non-finite values are reported below, by name
            per_sample, grads = B.value_and_grad(objective, leaves)
            return summarize(B, [(per_sample, 1.0)] + [(g, count) for g in grads], count,
                             tails=n >= diagnostics.TAIL_MIN_N and start < diagnostics.TAIL_SAMPLES)

    spans = list(chunking.chunks(n, size))  # run k at a time where the backend can (stochgrad.parallel)
    at_once = parallel.workers(B, p, len(spans), size * chunking.footprint(p, values, names), limit)
    # several chunks: each on one thread, however many run at once, so the numbers do not depend on it
    with B.one_thread_each() if len(spans) > 1 else contextlib.nullcontext():
        for (start, count), parts in zip(spans, parallel.ordered(chunk, spans, at_once)):
            merge([value_m, *(grad_m[k] for k in names)], parts)
            if first_bad is None and not all(m.finite() for m in (value_m, *grad_m.values())):
                first_bad = (start, count)
            if progress is not None:
                progress(start + count, n)
    scalar = {k: values[k].ndim == 0 for k in names}
    r = Estimate(
        value=_out(value_m.mean, True),
        value_stderr=_out(value_m.stderr(), True),
        grad={k: _out(grad_m[k].mean, scalar[k]) for k in names},
        stderr={k: _out(grad_m[k].stderr(), scalar[k]) for k in names},
        plan=p, n=n, backend=B.name, seed=seed, chunk_size=size,
        **diagnostics.report(value_m, grad_m, scalar, n, _out),
    )
    _warn(r, e, lambda: None if first_bad is None else diagnostics.locate(B, p.root, values, int(seed), *first_bad,
                                                                            batch_axes))
    return r


#: estimate's own keywords, for the did-you-mean of a misspelt one (``sead=0``)
_KEYWORDS = ("n", "backend", "seed", "estimators", "chunk_size", "policy", "enumerate_budget", "progress",
             "batch_axes", "wrt", "memory_limit")


def _backend_name(backend: Any) -> str:
    """The backend's name, for messages (``backend=None`` is the default one)."""
    if isinstance(backend, Backend):
        return f"a backend instance ({backend.name})"
    return str(backend or os.environ.get("STOCHGRAD_BACKEND") or DEFAULT_BACKEND)


def _warn(r: Estimate, e: ir.Expr, where: Callable[[], str | None]) -> None:
    """A NonFiniteWarning and a HeavyTailWarning, each naming the expression and the entries."""
    problems = r.problems()
    if r.nonfinite:
        located = where()
        warnings.warn(f"{e}: {problems[0]}" + (f"; first seen in {located}" if located else ""), NonFiniteWarning,
                      stacklevel=3)
    if r.heavy_tails:
        warnings.warn(f"{e}: {problems[-1]}", HeavyTailWarning, stacklevel=3)


def plan_for_run(e: ir.Expr, values: Mapping[str, np.ndarray], estimators: Mapping[str, Any] | None, *,
                 policy: str, B: Backend, seed: int, budget: int, batch_axes: int = 0, n: int | None = None) -> Plan:
    """The plan ``estimate`` runs (and ``sg.plan(..., params=...)`` shows) for checked parameter
    values: under ``policy="min_variance"`` the pilots' choice (see :mod:`stochgrad.variance`),
    with ``n=1`` leave-one-out baselines replaced by none (see :mod:`stochgrad.baselines`)."""
    shapes = {k: v.shape for k, v in values.items()}
    if policy == "min_variance":  # pilot runs pick, per node, the unbiased estimator cheapest for a given error
        from .variance import min_variance_plan

        p = min_variance_plan(e, values, estimators, B=B, seed=seed, budget=budget, batch_axes=batch_axes)
    else:
        p = plan(e, estimators, policy=policy, shapes=shapes, budget=budget, capabilities=B.capabilities)
    return single_sample(p) if n == 1 else p  # leave-one-out has no other sample: say, and run, no baseline


def plan_for_values(e: ir.Expr, estimators: Mapping[str, Any] | None, *, policy: str, shapes: Mapping[str, Any] | None,
                    budget: int, capabilities: frozenset[str] | None, params: Mapping[str, Any] | None,
                    seed: int | None, backend: str | Backend | None, n: int | None, batch_axes: int) -> Plan:
    """``sg.plan`` given parameter values or a sample count: the plan :func:`estimate` runs for them."""
    if n is not None:
        n = check_count("n", n, 1, "the number of samples")
    if params is None:
        p = plan(e, estimators, policy=policy, shapes=shapes, budget=budget, capabilities=capabilities)
        return single_sample(p) if n == 1 else p
    values = _check_params(parameters(e), params)
    if shapes is not None and {k: tuple(s) for k, s in shapes.items()} != {k: v.shape for k, v in values.items()}:
        raise ValidationError(f"shapes {dict(shapes)} disagree with the shapes of params; give one or the other")
    B = get_backend(backend)
    seed = secrets.randbits(63) if seed is None else check_seed(seed, "plan: seed")
    return plan_for_run(e, values, estimators, policy=policy, B=B, seed=seed, budget=budget, batch_axes=batch_axes,
                        n=None if n is None else int(n))


def _out(x: Any, scalar: bool) -> float | np.ndarray:
    a = np.asarray(x, dtype=float)
    return float(a) if scalar and a.ndim == 0 else a

