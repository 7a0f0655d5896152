"""Running a plan: :func:`run_estimate` and the :class:`Estimate` it returns.

A plan is run in chunks of samples.  Each chunk gives every parameter one copy per sample (a leaf
of shape ``(count, *shape)``), so one reverse pass yields each sample's own gradient contribution
``g_i``; the estimate is their mean and the standard error is ``sd(g_i) / sqrt(n)``, accumulated
across chunks by :mod:`stochgrad.moments` (Chan et al.'s 1979 pairwise update of each chunk's
sums of ``g_i`` and ``g_i**2``).  The same is done for the value.  Every chunk runs the one
program of the plan (:func:`stochgrad.program.lower`) on a fresh frame.

Nothing non-finite passes silently: a NaN or infinity in a result is counted in
:attr:`Estimate.nonfinite` and named in a :class:`~stochgrad.errors.NonFiniteWarning`, and a
tail index of the per-sample contributions (:mod:`stochgrad.diagnostics`) flags standard errors
that heavy tails make meaningless.  Chunks are sized from the per-sample memory footprint and
bounded by ``memory_limit`` (:mod:`stochgrad.chunking`).

This module runs the plan it is given and plans nothing: :func:`stochgrad.plan` plans
(:mod:`stochgrad.api`), :meth:`stochgrad.Plan.estimate` and :func:`stochgrad.estimate` call
:func:`run_estimate`, and so do the ``min_variance`` pilots (:mod:`stochgrad.variance`) on their
candidate plans.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import chunking, diagnostics, ir, parallel
from .arraynodes import index_parameters
from .labels import integer_names
from .backend import Backend
from .baselines import BaselineState
from .errors import HeavyTailWarning, NonFiniteWarning, ValidationError, did_you_mean
from .moments import Moments as _Moments
from .moments import Part, merge, summarize
from .noise import BLOCK, NoiseSource
from .planned import Plan
from .program import Frame, lower
from .reprs import estimate_repr
from .validation import check_wrt

if TYPE_CHECKING:
    from .distributed import Shard

#: entries per array that an automatic chunk aims at: arrays of a few MB stay in cache, and
#: measured on a 2-core CPU, a run in chunks of this size takes 0.36-0.55x the time of one
#: vectorized pass over 1e7-3e7 entries (benchmarks/bench_chunking.py)
CHUNK_ENTRIES = 1 << 18
#: frames between the warnings of a run and the caller of ``sg.estimate`` / ``Plan.estimate``
#: (``_warn`` <- ``run_estimate`` <- ``Plan._run`` <- the entry point <- the caller)
_CALLER = 5


@dataclass(frozen=True)
class Estimate:
    """Monte Carlo estimate of an expectation and of its gradient, with standard errors.

    ``grad[name]`` is the gradient of ``value`` (summed over its entries, if it is
    an array) with respect to parameter ``name``; ``stderr[name]`` has its shape.

    Attributes:
        value: the estimate of the expectation (a float, or an array for a vector-valued body).
        value_stderr: its standard error.
        grad: the gradient estimate by parameter name, shaped like the parameter.
        stderr: the gradient's standard errors, shaped like ``grad``.
        plan: the :class:`~stochgrad.api.Plan` that was run.
        n: the number of samples.
        backend: the backend's name.
        seed: the seed the noise came from (drawn when none was given).
        chunk_size: the samples per chunk the run used.
        nonfinite: counts of NaN or infinite entries by result (empty: all finite).
        tail_index: Hill's tail index of the per-sample contributions, where assessed.
        heavy_tails: the entries whose tail index is too low for their standard error to be trusted.
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

    def __repr__(self) -> str:  # one line (stochgrad.reprs), not the plan's whole tree
        return estimate_repr(self)

    def __str__(self) -> str:
        def se(x: Any) -> str:
            return "undefined (n = 1)" if self.n == 1 else _fmt(x)

        lines = [f"value = {_fmt(self.value)} \u00b1 {se(self.value_stderr)}"]
        for k in self.grad:
            lines.append(f"d/d{k} = {_fmt(self.grad[k])} \u00b1 {se(self.stderr[k])}")
        return "\n".join(lines)

    @property
    def grad_stderr(self) -> dict[str, float | np.ndarray]:
        """The standard errors of :attr:`grad` (the same dict as :attr:`stderr`)."""
        return self.stderr

    def to_json(self) -> dict[str, Any]:
        """This estimate as JSON-ready values (lists for arrays; NaN and infinities, which JSON lacks,
        as ``None``, and :attr:`nonfinite` says which they were): what ``stochgrad estimate --json``
        prints, less the CLI's own entries (exact values, warnings)."""
        return {
            "expression": str(self.plan.expr),
            "n": self.n,
            "backend": self.backend,
            "seed": self.seed,
            "chunk_size": self.chunk_size,
            "value": jsonable(self.value),
            "value_stderr": jsonable(self.value_stderr),
            "grad": {k: jsonable(v) for k, v in self.grad.items()},
            "stderr": {k: jsonable(v) for k, v in self.stderr.items()},
            "plan": [
                {"var": nd.var, "estimator": nd.estimator, "reason": nd.reason, "biased": nd.biased}
                for nd in self.plan.nodes
            ],
            "nonfinite": dict(self.nonfinite),
            "heavy_tails": dict(self.heavy_tails),
            "tail_index": {k: jsonable(v) for k, v in self.tail_index.items()},
        }

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


def jsonable(x: Any) -> Any:
    """A number or array as JSON values: nested lists, with NaN and infinities as ``None``."""
    return json_safe(np.asarray(x).tolist())


def json_safe(x: Any) -> Any:
    """``x`` (nested lists, dicts, numbers) with NaN and infinities as None: JSON has no NaN."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def auto_chunk(p: Plan, values: Mapping[str, np.ndarray]) -> int:
    """Samples per chunk when the caller gives no ``chunk_size``: about :data:`CHUNK_ENTRIES`
    entries per array, counting each sample's widest random value or parameter (the per-sample
    gradients have a parameter's shape) times the copies exact enumeration makes of every value
    (the product of the enumerated nodes' joint states), in whole noise blocks."""
    widths = [v.size for v in values.values()]
    widths += [math.prod(node.shape) for node in p.nodes if isinstance(node.shape, tuple)]
    return max(BLOCK, CHUNK_ENTRIES // (max(widths, default=1) * chunking.copies(p)[0]) // BLOCK * BLOCK)


def _check_wrt(
    wrt: Iterable[str] | None, values: Mapping[str, np.ndarray], index: tuple[str, ...] = (), data: tuple[str, ...] = ()
) -> list[str]:
    names = check_wrt(wrt)
    if names is None:  # an index parameter (theta[school]) and integer data (labels, counts): no gradient
        return [k for k in values if k not in index and k not in data]
    for k in names:
        if k in index:
            raise ValidationError(
                f"wrt names {k!r}, an index parameter (it gathers, as in theta[{k}]): it has no gradient"
            )
        if k in data:
            raise ValidationError(
                f"wrt names {k!r}, which was given integer values: integer data (labels, counts) is"
                f" never differentiated; pass {k!r} as floats to differentiate it"
            )
        if k not in values:
            raise ValidationError(
                f"wrt names {k!r}{did_you_mean(k, values)}, which is not a parameter of the"
                f" expression; its parameters are: {', '.join(values) or 'none'}"
            )
    return names


def pair_units(B: Backend, x: Any, count: int) -> Any:
    """Per-sample rows of a chunk whose samples are antithetic pairs ``(i, i + m)``, ``m = count // 2``
    (:attr:`~stochgrad.estimators.EstimatorSpec.paired`), as ``m`` equally weighted units with the
    same mean: ``(x_i + x_{i+m} + x_last / m) m / count`` (``x_last``: the unpaired last sample of an
    odd count, else nothing), so the standard error is that of the mean of independent pairs."""
    if B.shape(x)[0] != count:
        return x  # the same for every sample
    m = count // 2
    units = x[:m] + x[m : 2 * m]
    if count % 2:
        units = units + x[2 * m :] / m
    return units * (m / count)


def run_estimate(
    p: Plan,
    values: Mapping[str, np.ndarray],
    B: Backend,
    *,
    n: int,
    seed: int,
    chunk_size: int | None = None,
    wrt: Iterable[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    memory_limit: int | None = None,
    batch_axes: int = 0,
    shard: Shard | None = None,
) -> Estimate:
    """Run plan ``p`` on checked parameter ``values`` (float64 arrays of the planned shapes) with ``n``
    samples of the noise of ``seed`` on backend ``B``; the keywords are :func:`stochgrad.estimate`'s,
    ``n``, ``seed`` and ``chunk_size`` already checked (``wrt`` is checked here).  With ``shard``
    (:mod:`stochgrad.distributed`) this rank runs its share of the chunks and returns the estimate of all."""
    e = p.expr
    names = _check_wrt(wrt, values, index_parameters(e), integer_names(values))
    size = auto_chunk(p, {k: values[k] for k in names}) if chunk_size is None else chunk_size
    size = n if n <= size else max(BLOCK, size - size % BLOCK)
    limit = chunking.check_memory_limit(memory_limit)
    size = chunking.fit(n, size, p, values, names, limit)
    if shard is not None:  # every rank runs the same thing, in chunks of one size
        size = shard.agree(p, values, names, B, n=n, seed=seed, size=size, batch_axes=batch_axes)

    fixed = {k: B.asarray(v[None]) for k, v in values.items() if k not in names}
    value_m, grad_m = _Moments(), {k: _Moments() for k in names}
    memo: dict[Any, Any] = {}  # constants made and checked once per run, not once per chunk
    first_bad: tuple[int, int] | None = None  # the first chunk that gave a NaN or infinity
    baselines = BaselineState()  # this run's moving averages: fresh per call, carried across its chunks
    program = lower(p)
    paired = any(node.spec.paired for node in p.nodes)

    def chunk(start: int, count: int) -> list[Part]:
        noise = NoiseSource(B, seed, start, count)

        def objective(leaves: list[Any]) -> tuple[Any, Any]:
            s = program.run(
                Frame(
                    B,
                    {**fixed, **dict(zip(names, leaves))},
                    noise,
                    known=values,
                    memo=memo,
                    first_order=True,
                    baselines=baselines,
                    batch_axes=batch_axes,
                )
            )
            shape = B.shape(s)
            return B.sum(s, tuple(range(len(shape)))) / shape[0], B.stop_gradient(s)

        leaves = [B.leaf(values[k], count) for k in names]
        with np.errstate(all="ignore"):  # non-finite values are reported below, by name
            per_sample, grads = B.value_and_grad(objective, leaves)
            units = count
            if paired and count >= 2:  # antithetic partners are dependent: one unit per pair
                per_sample, grads, units = (
                    pair_units(B, per_sample, count),
                    [pair_units(B, g, count) for g in grads],
                    count // 2,
                )
            return summarize(
                B,
                [(per_sample, 1.0)] + [(g, count) for g in grads],
                units,
                tails=n >= diagnostics.TAIL_MIN_N and start < diagnostics.TAIL_SAMPLES,
            )

    spans = list(chunking.chunks(n, size))  # run k at a time where the backend can (stochgrad.parallel)
    several = len(spans) > 1
    if shard is not None:  # this rank's chunks r, r + W, ...
        spans = shard.select(spans)
        progress = shard.progress(progress, spans, n)
    at_once = parallel.workers(B, p, len(spans), lambda: size * chunking.footprint(p, values, names), limit)
    # several chunks: each on one thread, however many run at once, so the numbers do not depend on it
    with B.one_thread_each() if several else contextlib.nullcontext():
        for (start, count), parts in zip(spans, parallel.ordered(chunk, spans, at_once)):
            merge([value_m, *(grad_m[k] for k in names)], parts)
            if first_bad is None and not all(m.finite() for m in (value_m, *grad_m.values())):
                first_bad = (start, count)
            if progress is not None:
                progress(start + count, n)
    if shard is not None:  # the moments of all ranks, merged in rank order
        first_bad = shard.reduce([value_m, *(grad_m[k] for k in names)], first_bad)
    scalar = {k: values[k].ndim == 0 for k in names}
    r = Estimate(
        value=_out(value_m.mean, True),
        value_stderr=_out(value_m.stderr(), True),
        grad={k: _out(grad_m[k].mean, scalar[k]) for k in names},
        stderr={k: _out(grad_m[k].stderr(), scalar[k]) for k in names},
        plan=p,
        n=n,
        backend=B.name,
        seed=seed,
        chunk_size=size,
        **diagnostics.report(value_m, grad_m, scalar, n, _out),
    )
    _warn(
        r,
        e,
        lambda: None if first_bad is None else diagnostics.locate(B, p.root, values, int(seed), *first_bad, batch_axes),
    )
    return r


def _warn(r: Estimate, e: ir.Expr, where: Callable[[], str | None]) -> None:
    """A NonFiniteWarning and a HeavyTailWarning, each naming the expression and the entries."""
    problems = r.problems()
    if r.nonfinite:
        located = where()
        warnings.warn(
            f"{e}: {problems[0]}" + (f"; first seen in {located}" if located else ""),
            NonFiniteWarning,
            stacklevel=_CALLER,
        )
    if r.heavy_tails:
        warnings.warn(f"{e}: {problems[-1]}", HeavyTailWarning, stacklevel=_CALLER)


def _out(x: Any, scalar: bool) -> float | np.ndarray:
    a = np.asarray(x, dtype=float)
    return float(a) if scalar and a.ndim == 0 else a
