"""Checks on an estimate that its numbers mean what they say: finiteness and tail weight.

**Finiteness.**  A NaN or infinity in a value, gradient or standard error is reported entry by
entry (:func:`nonfinite`), and :func:`locate` re-runs the first chunk in which one appeared, with
the same noise, to name the first subexpression (in evaluation order) whose value is not finite.
At ``n = 1`` a standard error ``sd / sqrt(n)`` is undefined (``sd`` needs two samples): it is NaN
and said so.

**Tails.**  The standard error ``s / sqrt(n)`` is only as good as ``s``.  Its relative error is
about ``sqrt((kurtosis - 1) / (4 n))``, unbounded when the contributions' fourth moment is
infinite, and when the variance itself is infinite (tail index ``alpha <= 2``: Cauchy, ``1/u``,
a Weibull of small concentration) it estimates nothing.  :class:`Tail` keeps, per entry, the
``TAIL_KEEP`` largest ``|x_i - c|`` across chunks (``c`` a median, robust where a few samples
dominate the mean; bounded memory, two comparisons per value: see :class:`Tail`; from the first
:data:`TAIL_SAMPLES` samples or so, which is plenty to tell a tail and bounds the cost), and
:meth:`Tail.index` is Hill's (1975) estimator on the ``k = n / TAIL_FRACTION`` largest (at most
``TAIL_KEEP - 1``), ``alpha = 1 / mean_{i < k} log(X_(i) / X_(k))``, or the same on the ``k / 4``
largest where that is larger (location matters to Hill's estimator: see :meth:`Tail.index`).  For a Pareto tail
``P(|X| > t) ~ t^-alpha`` it is consistent, with sd ``alpha / sqrt(k)``; for lighter tails it
grows with ``n / k`` (about ``c log(n / k)`` for a Weibull-type tail ``exp(-t^c)``).  Measured
(the larger of the two estimates): about 6.5 for an exponential cost, 4.3 for the cube of a
normal, 3.0 for its fourth power and for ``exp`` of a normal, 1.0 for Cauchy, ``1/u`` and ``1/z``,
0.4 for a Weibull of concentration 0.05.  So from ``n = TAIL_MIN_N`` (k = 100)
:data:`HEAVY_TAIL_INDEX` = 1.5 flags Cauchy-like tails (alpha = 1, sd 0.1 to 0.2) while Normal,
Bernoulli, exponential and polynomial costs of normals up to degree 3 stay well clear.
"""

from __future__ import annotations

import math

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from . import ir
from .noise import Noise, NoiseSource
from .program import Frame, lower

if TYPE_CHECKING:
    from .backend import Backend

#: per entry, this many of the largest |x - c| are kept across chunks
TAIL_KEEP = 1000
#: Hill's estimator uses the ``n // TAIL_FRACTION`` largest (at most ``TAIL_KEEP - 1``)
TAIL_FRACTION = 100
#: fewer samples than this: too few order statistics to tell a heavy tail (no tail index)
TAIL_MIN_N = 10_000
#: a tail index below this is reported with a HeavyTailWarning
HEAVY_TAIL_INDEX = 1.5
#: arrays with more entries per sample than this get no tail index (memory: TAIL_KEEP per entry)
TAIL_ENTRIES = 1024
_PILOT = 2048  # samples of the first chunk that set the center and the first threshold
#: the tail is estimated from the chunks that start before this sample (a bounded cost per run)
TAIL_SAMPLES = 1 << 15


class Tail:
    """The largest deviations ``|x_i - c|`` of each entry, merged across chunks.

    Cheap on the hot path: ``c`` (a median) and a first threshold (the quantile that about
    ``2 TAIL_KEEP`` of the first chunk's samples exceed) come from the first chunk's first
    :data:`_PILOT` samples; then each chunk costs two comparisons per value, and only the values
    beyond the threshold (after the first chunk, a few per chunk) are merged into the kept ones
    (a partial sort), whose smallest becomes the next threshold.  Hill's estimator is scale-invariant, so the
    values are taken unscaled.  :func:`observe_all` and :func:`indices` do the same for a run's
    value and gradients together (one pilot, one merge, one sort for all their entries)."""

    __slots__ = ("center", "threshold", "top", "count")

    def __init__(self) -> None:
        self.count = 0  # samples observed
        self.center: np.ndarray | None = None  # (entries,)
        self.threshold: np.ndarray | None = None  # (entries,)
        self.top: np.ndarray | None = None  # (entries, TAIL_KEEP), in no order, 0-padded

    def observe(self, rows: np.ndarray) -> None:
        """Fold in a chunk: one row per entry, samples along the row (any memory layout: the
        comparisons run along whichever axis is contiguous); samples past the first
        :data:`TAIL_SAMPLES` observed are ignored."""
        observe_all([(self, rows)])

    def index(self) -> np.ndarray | None:
        """Tail index per entry: the larger of Hill's estimates at ``k`` and ``k / 4`` (a true
        power tail gives both alike; a light tail that starts near the center, as in a point mass
        at 0 beside a normal's edge, looks heavy at ``k`` only); NaN where something is not
        finite; None below :data:`TAIL_MIN_N` samples observed.  An entry whose largest
        values are mostly ties (a discrete cost: Hill's estimator assumes a continuous tail) or
        whose threshold ``X_(k)`` is 0 has no tail to speak of: inf."""
        return indices([self])[0]


def indices(tails: list[Tail]) -> list[np.ndarray | None]:
    """:meth:`Tail.index` of several tails (a run's value and gradients), computed together."""
    live = [t for t in tails if t.top is not None and t.count >= TAIL_MIN_N]
    if len({t.count for t in live}) > 1:
        return [indices([t])[0] for t in tails]
    if not live:
        return [None] * len(tails)
    count = live[0].count
    tops = [t.top for t in live if t.top is not None]  # all of them (live is filtered): narrowed for the checker
    kept = np.concatenate(tops) if len(tops) > 1 else tops[0]
    k = min(count // TAIL_FRACTION, kept.shape[1] - 1)
    largest = np.partition(kept, kept.shape[1] - k - 1, axis=1)[:, -k - 1 :]  # the k + 1 largest
    top = -np.sort(-largest, axis=1)
    alpha = np.maximum(_hill(top, k), _hill(top, k // 4))
    distinct = 1 + (np.diff(top, axis=1) != 0).sum(axis=1)
    alpha[distinct < (k + 1) / 2] = np.inf
    alpha[~np.isfinite(top).all(axis=1)] = np.nan
    ends = np.cumsum([top.shape[0] for top in tops])
    out = {id(t): alpha[end - top.shape[0] : end] for t, top, end in zip(live, tops, ends)}
    return [out.get(id(t)) for t in tails]


def observe_all(chunk: list[tuple[Tail, np.ndarray]]) -> None:
    """:meth:`Tail.observe` for several tails at once (a chunk's value and gradients): each
    one's rows are compared where they lie, and the fixed work per call (the pilot's partial
    sorts, the merge) is done once for all their entries together."""
    chunk = [(t, rows[:, : TAIL_SAMPLES - t.count]) for t, rows in chunk]
    chunk = [(t, rows) for t, rows in chunk if rows.shape[0] <= TAIL_ENTRIES and rows.shape[1] >= 2]
    if len({(t.count, t.center is None, rows.shape[1]) for t, rows in chunk}) > 1:
        for item in chunk:  # tails at different stages: one at a time
            observe_all([item])
        return
    if not chunk:
        return
    count = chunk[0][1].shape[1]
    sizes = [rows.shape[0] for _, rows in chunk]
    ends = np.cumsum(sizes)
    fresh = chunk[0][0].center is None
    if fresh:  # the pilot: a median, and the quantile about 2 TAIL_KEEP exceed
        pilot = (
            np.concatenate([rows[:, :_PILOT] for _, rows in chunk])
            if len(chunk) > 1
            else np.ascontiguousarray(chunk[0][1][:, :_PILOT])
        )
        m = pilot.shape[1]
        center = np.partition(pilot, m // 2, axis=1)[:, m // 2]
        q = int(max(0.0, 1.0 - 2.0 * TAIL_KEEP / count) * (m - 1))
        threshold = np.partition(np.abs(pilot - center[:, None]), q, axis=1)[:, q]
        top = np.zeros((int(ends[-1]), TAIL_KEEP))
    else:
        center, threshold, top = (
            np.concatenate([getattr(t, f) for t, _ in chunk]) if len(chunk) > 1 else getattr(chunk[0][0], f)
            for f in ("center", "threshold", "top")
        )
    lo, hi = center - threshold, center + threshold
    found: list[tuple[np.ndarray, np.ndarray]] = []  # (entry, value) of the values beyond the threshold
    for (_, rows), end, size in zip(chunk, ends, sizes):
        part = slice(end - size, end)
        if rows.flags.c_contiguous or not rows.T.flags.c_contiguous:
            beyond = rows > hi[part, None]
            beyond |= rows < lo[part, None]
            flat = np.flatnonzero(beyond)
            at = flat // count  # grouped by entry
            values = rows.ravel()[flat] if rows.flags.c_contiguous else rows[at, flat - at * count]
        else:  # samples along the first axis in memory: compare in that layout, then group by entry
            beyond = rows.T > hi[part]
            beyond |= rows.T < lo[part]
            flat = np.flatnonzero(beyond)
            at = flat % size
            if size > 1:  # a radix sort (TAIL_ENTRIES < 2**16)
                flat = flat[np.argsort(at.astype(np.uint8 if size <= 256 else np.uint16), kind="stable")]
                at = flat % size
            values = rows.T.ravel()[flat]
        found.append((at + (end - size), values))
    at = np.concatenate([a for a, _ in found]) if len(found) > 1 else found[0][0]
    if at.size:
        values = np.abs((np.concatenate([v for _, v in found]) if len(found) > 1 else found[0][1]) - center[at])
        hits = np.bincount(at, minlength=top.shape[0])
        touched = np.flatnonzero(hits)  # only the entries with new values are merged
        kept = 0 if fresh else TAIL_KEEP  # the first chunk has no kept values yet (all 0)
        width = max(TAIL_KEEP, kept + int(hits.max()))
        wide = np.zeros((touched.size, width))  # per touched entry: its kept values, then the new ones
        wide[:, :kept] = top[touched, :kept]
        # the i-th value (of entry e, grouped) goes to row(e), column kept + i - (first index of e's values)
        offset = (np.cumsum(hits > 0) - 1) * width + kept - (np.cumsum(hits) - hits)
        wide.ravel()[np.arange(at.size) + offset[at]] = values
        merged = (
            wide
            if wide.shape[1] == TAIL_KEEP
            else np.partition(wide, wide.shape[1] - TAIL_KEEP, axis=1)[:, -TAIL_KEEP:]
        )
        top[touched] = merged
        threshold[touched] = np.maximum(threshold[touched], merged.min(axis=1))
    for (t, _), end, size in zip(chunk, ends, sizes):
        part = slice(end - size, end)
        t.count += count
        t.center, t.threshold, t.top = center[part], threshold[part], top[part]


def _hill(top: np.ndarray, k: int) -> np.ndarray:
    """Hill's estimator ``1 / mean_{i < k} log(X_(i) / X_(k))`` per row of descending ``top``."""
    with np.errstate(all="ignore"):
        excess = np.log(top[:, :k]).mean(axis=1) - np.log(top[:, k])
        alpha = np.where(excess > 1e-9, 1.0 / excess, np.inf)
    alpha[~np.isfinite(excess) & np.isfinite(top).all(axis=1)] = np.inf  # threshold 0
    return alpha


def label(name: str, shape: tuple[int, ...], flat: int) -> str:
    """``grad['w'][1, 2]`` for entry ``flat`` of an array named ``grad['w']`` (the name for a scalar)."""
    if not shape:
        return name
    return f"{name}[{', '.join(map(str, np.unravel_index(flat, shape)))}]"


def nonfinite(fields: Mapping[str, Any]) -> dict[str, int]:
    """For each named result (``"value"``, ``"grad['mu']"``, ...), the number of entries that are
    NaN or infinite, listing only those with some."""
    out = {}
    for name, x in fields.items():
        if isinstance(x, (float, np.generic)) or (isinstance(x, np.ndarray) and x.ndim == 0):
            if math.isfinite(x):
                continue
            bad = 1
        else:
            bad = int(np.size(x) - np.isfinite(x).sum())
        if bad:
            out[name] = bad
    return out


def report(
    value_m: Any, grad_m: Mapping[str, Any], scalar: Mapping[str, bool], n: int, out: Callable[[Any, bool], Any]
) -> dict[str, Any]:
    """The finiteness and tail fields of an :class:`~stochgrad.Estimate`, from the running moments
    (``mean``, ``stderr()``, ``tail``) of the value and of each gradient; ``out(x, scalar)`` gives
    a result's public form."""
    results = {"value": value_m} | {f"grad[{k!r}]": m for k, m in grad_m.items()}
    with np.errstate(all="ignore"):
        fields = {"value": value_m.mean, "value_stderr": value_m.stderr()}
        for k, m in grad_m.items():
            fields |= {f"grad[{k!r}]": m.mean, f"stderr[{k!r}]": m.stderr()}
    tails: dict[str, float | np.ndarray] = {}
    heavy: dict[str, float] = {}
    for (name, m), alpha in zip(results.items(), indices([m.tail for m in results.values()])):
        if alpha is None or not np.isfinite(m.mean).all():
            continue
        shape = np.shape(m.mean)
        tails[name] = out(alpha.reshape(shape), name == "value" or scalar[name[6:-2]])
        heavy |= {label(name, shape, int(i)): float(alpha[i]) for i in np.flatnonzero(alpha < HEAVY_TAIL_INDEX)}
    return {"nonfinite": nonfinite(fields), "tail_index": tails, "heavy_tails": heavy}


def _kind(a: np.ndarray) -> str:
    kinds = [k for k, test in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)) if test(a).any()]
    return "/".join(kinds)


def describe(report: Mapping[str, int], sizes: Mapping[str, int], n: int) -> str:
    """The sentence a warning and the command line give for a finiteness report."""
    parts = []
    for name, count in report.items():
        if n == 1 and ("stderr" in name):
            continue
        parts.append(f"{name} ({count} of {sizes[name]} entries)" if sizes[name] > 1 else name)
    text = f"non-finite results: {', '.join(parts)}" if parts else ""
    if n == 1:
        text = "; ".join(
            filter(
                None,
                [
                    text,
                    "standard errors are undefined at n = 1 (they need two samples): value_stderr and stderr are NaN",
                ],
            )
        )
    return text


def _first_nonfinite(B: Backend, root: ir.Expr, params: Mapping[str, Any], noise: Noise, **options: Any) -> str | None:
    """Run ``root``'s program forward, traced (:mod:`stochgrad.program.compile`; a frame with
    ``options``), and name the first subexpression, in evaluation order, whose value has a NaN or
    infinity, else None."""
    found: list[str] = []

    def trace(e: ir.Expr, out: Any, fr: Frame) -> None:
        if not found:
            a = np.asarray(out, dtype=float) if isinstance(out, float) else B.to_numpy(fr.array(out))
            bad = ~np.isfinite(a)
            if bad.any():
                found.append(
                    f"`{e}` is {_kind(a[bad])} in {int(bad.sum())} of {a.size} entries"
                    if a.size > 1
                    else f"`{e}` is {_kind(a[bad])}"
                )

    with np.errstate(all="ignore"):
        try:
            lower(root, trace).run(Frame(B, params, noise, memo={}, first_order=True, **options))
        except Exception:  # a diagnostic: never the cause of a failure  # noqa: BLE001
            return None
    return found[0] if found else None


def locate(
    B: Backend, root: ir.Expr, values: Mapping[str, np.ndarray], seed: int, start: int, count: int, batch_axes: int
) -> str | None:
    """Re-run samples ``start .. start + count`` (the same noise) forward, and name the first
    subexpression whose value has a NaN or infinity: ``"`log(z)` is NaN in 49 of 100 entries"``."""
    params = {k: B.asarray(np.asarray(v)[None]) for k, v in values.items()}
    found = _first_nonfinite(B, root, params, NoiseSource(B, seed, start, count), known=values, batch_axes=batch_axes)
    return None if found is None else f"samples {start}..{start + count - 1}: {found}"


def describe_tails(heavy: Mapping[str, float]) -> str:
    """The sentence for entries with heavy tails (``heavy`` maps each to its tail index)."""
    items = list(heavy.items())
    shown = ", ".join(f"{h} (tail index {a:.2g})" for h, a in items[:5]) + (
        f" and {len(items) - 5} more" if len(items) > 5 else ""
    )
    return (
        f"heavy-tailed per-sample contributions to {shown}: with a tail index below {HEAVY_TAIL_INDEX}"
        " (2 or less: infinite variance) the standard error cannot be trusted"
    )


def locate_call(B: Backend, root: ir.Expr, params: Mapping[str, Any], noise: Noise, batch_axes: int) -> str | None:
    """For a compiled objective's call: re-run it forward on ``params`` (native arrays with a sample
    axis, their gradients stopped) and the same ``noise``, and name the first subexpression whose
    value has a NaN or infinity (``"`log(z)` is -inf in 3 of 64 entries"``), else None.  Called
    only once a call's value was found non-finite; its moving-average baselines start fresh (a
    baseline term's value is 0 whatever its state), so the objective's state is not advanced."""
    return _first_nonfinite(B, root, params, noise, batch_axes=batch_axes)
