"""Public entry points: :func:`estimate` and the :class:`Estimate` it returns.

``estimate`` plans the expression (cached), then runs the surrogate in chunks of
samples.  Each chunk gives every parameter one copy per sample (a leaf of shape
``(count, *shape)``), so one reverse pass yields each sample's own gradient
contribution ``g_i``; the estimate is their mean and the standard error is
``sd(g_i) / sqrt(n)``, accumulated across chunks with Chan et al.'s (1979)
pairwise update from each chunk's sums of ``g_i`` and ``g_i**2``.  The same is done for the value.
"""

from __future__ import annotations

import math
import secrets
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import ir
from .analysis import parameters
from .backend import Backend, get_backend, row_sums
from .baselines import BaselineState, single_sample
from .errors import BiasWarning, ValidationError, did_you_mean
from .lower import Lowering
from .noise import BLOCK, NoiseSource, check_seed
from .parser import parse
from .planner import DEFAULT_BUDGET, Plan, plan

#: entries per array that an automatic chunk aims at: arrays of a few MB stay in cache, and
#: measured on a 2-core CPU, a run in chunks of this size takes 0.36-0.55x the time of one
#: vectorized pass over 1e7-3e7 entries (benchmarks/bench_chunking.py)
CHUNK_ENTRIES = 1 << 18
_SMALL = 1 << 15  # arrays up to this many entries are summed in numpy: quicker than a framework's dispatch
_CANCELLATION = 1e-6  # below this ratio of M2 to the sum of squares, moments are summed about the mean


def as_expression(expr: Any) -> ir.Expr:
    if isinstance(expr, str):
        return parse(expr)
    if isinstance(expr, ir.Expr):
        return expr
    raise TypeError(f"expected DSL text or an expression, got {type(expr).__name__}")


@dataclass
class _Moments:
    """Running count, mean and sum of squared deviations (elementwise)."""

    n: int = 0
    mean: np.ndarray | float = 0.0
    m2: np.ndarray | float = 0.0

    def update(self, count: int, mean: np.ndarray, m2: np.ndarray) -> None:
        if self.n == 0:
            self.n, self.mean, self.m2 = count, mean, m2
            return
        total = self.n + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.n * count / total)
        self.n = total

    def stderr(self) -> np.ndarray | float:
        if self.n < 2:
            return np.full_like(np.asarray(self.mean, dtype=float), np.nan)
        return np.sqrt(self.m2 / (self.n - 1) / self.n)


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

    def __str__(self) -> str:
        lines = [f"value = {_fmt(self.value)} \u00b1 {_fmt(self.value_stderr)}"]
        for k in self.grad:
            lines.append(f"d/d{k} = {_fmt(self.grad[k])} \u00b1 {_fmt(self.stderr[k])}")
        return "\n".join(lines)


def _fmt(x: Any) -> str:
    return f"{x:.6g}" if np.ndim(x) == 0 else np.array2string(np.asarray(x), precision=6)


def _check_params(names: tuple[str, ...], params: Mapping[str, Any]) -> dict[str, np.ndarray]:
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
        try:
            value = np.asarray(params[name], dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"parameter {name!r} must be a number or an array of numbers: {exc}") from None
        if not np.isfinite(value).all():
            raise ValidationError(f"parameter {name!r} must be finite, got {value!r}")
        out[name] = value
    try:
        np.broadcast_shapes(*(v.shape for v in out.values()))
    except ValueError:
        shapes = ", ".join(f"{k}: {v.shape}" for k, v in out.items())
        raise ValidationError(f"parameter shapes do not broadcast together ({shapes})") from None
    return out


def auto_chunk(p: Plan, values: Mapping[str, np.ndarray]) -> int:
    """Samples per chunk when the caller gives no ``chunk_size``: about :data:`CHUNK_ENTRIES`
    entries per array, counting each sample's widest random value or parameter (the per-sample
    gradients have a parameter's shape), in whole noise blocks."""
    widths = [v.size for v in values.values()]
    widths += [math.prod(node.shape) for node in p.nodes if isinstance(node.shape, tuple)]
    return max(BLOCK, CHUNK_ENTRIES // max(widths, default=1) // BLOCK * BLOCK)


def _check_wrt(wrt: Iterable[str] | None, values: Mapping[str, np.ndarray]) -> list[str]:
    if wrt is None:
        return list(values)
    if isinstance(wrt, str):
        wrt = [wrt]
    names = list(dict.fromkeys(wrt))
    for k in names:
        if k not in values:
            raise ValidationError(f"wrt names {k!r}{did_you_mean(k, values)}, which is not a parameter of the"
                                  f" expression; its parameters are: {', '.join(values) or 'none'}")
    return names


def _chunks(n: int, chunk_size: int) -> list[tuple[int, int]]:
    return [(start, min(chunk_size, n - start)) for start in range(0, n, chunk_size)]


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
    which saves their per-sample gradients.  Other keywords (``device``, ``dtype`` for torch)
    configure the backend.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValidationError(f"n (the number of samples) must be an integer >= 1, got {n!r}")
    n = int(n)
    if isinstance(batch_axes, bool) or not isinstance(batch_axes, int) or batch_axes < 0:
        raise ValidationError(f"batch_axes must be an integer >= 0, got {batch_axes!r}")
    B = get_backend(backend, **backend_options)
    e = as_expression(expr)
    values = _check_params(parameters(e), params or {})
    seed = secrets.randbits(63) if seed is None else check_seed(seed, "estimate: seed")
    p = plan_for_run(e, values, estimators, policy=policy, B=B, seed=seed, budget=enumerate_budget,
                     batch_axes=batch_axes, n=n)
    for node in p.nodes:  # a biased choice the user did not ask for must not pass silently
        if node.biased and not node.reason.startswith("requested") and policy != "low_variance":
            warnings.warn(f"no unbiased estimator applies to {node}", BiasWarning, stacklevel=2)
    names = _check_wrt(wrt, values)
    size = auto_chunk(p, {k: values[k] for k in names}) if chunk_size is None else int(chunk_size)
    if size < 1:
        raise ValidationError(f"chunk_size must be >= 1, got {chunk_size!r}")
    size = n if n <= size else max(BLOCK, size - size % BLOCK)

    fixed = {k: B.asarray(v[None]) for k, v in values.items() if k not in names}
    value_m, grad_m = _Moments(), {k: _Moments() for k in names}
    chunks = _chunks(n, size)
    memo: dict[Any, Any] = {}  # constants made and checked once per run, not once per chunk
    baselines = BaselineState()  # this run's moving averages: fresh per call, carried across its chunks
    for start, count in chunks:
        lowering = Lowering(B, {}, NoiseSource(B, seed, start, count), known=values, batch_axes=batch_axes,
                            memo=memo, first_order=True, baselines=baselines)

        def objective(leaves: list[Any], lowering: Lowering = lowering) -> tuple[Any, Any]:
            lowering.params = {**fixed, **dict(zip(names, leaves))}
            s = lowering.array(lowering.evaluate(p.root, {}))
            shape = B.shape(s)
            return B.sum(s, tuple(range(len(shape)))) / shape[0], B.stop_gradient(s)

        leaves = [B.leaf(values[k], count) for k in names]
        per_sample, grads = B.value_and_grad(objective, leaves)
        _accumulate(B, [(value_m, per_sample, 1.0)] + [(grad_m[k], g, count) for k, g in zip(names, grads)], count)
        if progress is not None:
            progress(start + count, n)
    scalar = {k: values[k].ndim == 0 for k in names}
    return Estimate(
        value=_out(value_m.mean, True),
        value_stderr=_out(value_m.stderr(), True),
        grad={k: _out(grad_m[k].mean, scalar[k]) for k in names},
        stderr={k: _out(grad_m[k].stderr(), scalar[k]) for k in names},
        plan=p, n=n, backend=B.name, seed=seed, chunk_size=size,
    )


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
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ValidationError(f"n (the number of samples) must be an integer >= 1, got {n!r}")
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


def _accumulate(B: Any, items: list[tuple[_Moments, Any, float]], count: int) -> None:
    """Fold a chunk of per-sample values into running moments: for each ``(m, x, scale)``, the
    values ``scale * x`` (``x`` with a sample axis of size 1 or ``count``) go into ``m``.

    Large arrays are summed by the backend where they live (float64 sums of ``x`` and ``x * x``,
    one pass each); small ones are gathered into one numpy matrix and summed together, since
    there the fixed cost per operation dominates.  ``M2 = sum x^2 - (sum x)^2 / count`` is exact
    enough unless the spread is tiny next to the mean (``M2 < 1e-6 sum x^2``: then about
    ``log10(sum x^2 / M2)`` digits would cancel), and only then are deviations from the mean summed
    instead (a second pass, in numpy)."""
    small: list[tuple[_Moments, float, tuple[int, ...], np.ndarray]] = []
    for m, x, scale in items:
        shape = B.shape(x)
        if shape[0] == 1:  # the same for every sample: mean is the value, no spread
            m.update(count, scale * B.to_numpy(x)[0], np.zeros(shape[1:]))
        elif math.prod(shape) <= _SMALL:
            small.append((m, scale, shape[1:], B.to_numpy(x).reshape(shape[0], -1).T))  # one row per entry
        else:
            s1, s2 = B.sample_sums(x)
            mean, m2 = _mean_m2(s1, s2, lambda x=x: B.to_numpy(x), count)
            m.update(count, scale * mean, scale * scale * m2)
    if not small:
        return
    rows = np.concatenate([r for *_, r in small], axis=0)  # contiguous rows: a copy
    mean, m2 = _mean_m2(*row_sums(rows), lambda: rows.T, count)
    at = 0
    for m, scale, shape, r in small:
        part = slice(at, at + r.shape[0])
        m.update(count, scale * mean[part].reshape(shape), scale * scale * m2[part].reshape(shape))
        at += r.shape[0]


def _mean_m2(s1: np.ndarray, s2: np.ndarray, values: Callable[[], np.ndarray], count: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sum of squared deviations from a chunk's sums (see :func:`_accumulate`);
    ``values()`` gives the chunk's values (sample axis first), needed only when the sums cancel."""
    mean = s1 / count
    m2 = s2 - s1 * mean
    if (m2 < _CANCELLATION * s2).any():
        d = values() - mean
        ds = d.sum(axis=0)
        m2 = np.einsum("i...,i...->...", d, d) - ds * ds / count
        mean = mean + ds / count
    return mean, np.maximum(m2, 0.0)


def _out(x: Any, scalar: bool) -> float | np.ndarray:
    a = np.asarray(x, dtype=float)
    return float(a) if scalar and a.ndim == 0 else a

