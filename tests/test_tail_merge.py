"""The tail diagnostic's bookkeeping (stochgrad.diagnostics.Tail) against a direct computation.

``Tail`` keeps, per entry, the largest ``|x - c|`` beyond a threshold, merging chunk by chunk
and only the entries that got new values; its index is Hill's estimator on the ``k + 1``
largest.  Here every entry's kept values are compared with a full sort of all its deviations,
and the index with Hill's formula written out on that sort, over many entries (some constant,
some with rare outliers, so that chunks leave entries untouched), both memory layouts and
arbitrary chunk boundaries."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stochgrad.diagnostics import TAIL_FRACTION, TAIL_KEEP, TAIL_MIN_N, Tail, indices, observe_all


def _entries(rng: np.random.Generator, n: int, kinds: list[int]) -> np.ndarray:
    """``n`` samples (rows) of one column per kind: normal, Cauchy, constant, rare outliers, ties."""
    cols = []
    for kind in kinds:
        if kind == 0:
            cols.append(rng.normal(size=n))
        elif kind == 1:
            cols.append(rng.standard_cauchy(size=n))
        elif kind == 2:
            cols.append(np.full(n, 3.0))
        elif kind == 3:
            cols.append(np.where(rng.random(n) < 2e-4, rng.normal(size=n) * 1e3, 0.0))
        else:
            cols.append(rng.integers(0, 4, size=n).astype(float))
    return np.stack(cols, axis=1)


def _hill(desc: np.ndarray, k: int) -> float:
    """Hill's estimator 1 / mean_{i < k} log(X_(i) / X_(k)) on descending ``desc``; inf where the
    excess is not positive and finite (a threshold X_(k) of 0, or ties)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        excess = float(np.mean(np.log(desc[:k])) - np.log(desc[k]))
    return 1.0 / excess if np.isfinite(excess) and excess > 1e-9 else np.inf


@settings(max_examples=25, deadline=None)
@given(kinds=st.lists(st.integers(0, 4), min_size=1, max_size=12), seed=st.integers(0, 2**31),
       cuts=st.lists(st.integers(2, 20_000), max_size=5), n=st.integers(TAIL_MIN_N, 30_000))
def test_tail_keeps_each_entrys_largest_deviations_and_hills_index(kinds, seed, cuts, n):
    x = _entries(np.random.default_rng(seed), n, kinds)
    bounds = sorted({0, n, *(c for c in cuts if c < n)})
    parts = [(a, b) for a, b in zip(bounds, bounds[1:]) if b - a >= 2]
    by_entry, by_sample = Tail(), Tail()
    for a, b in parts:
        by_entry.observe(np.ascontiguousarray(x[a:b].T))  # one contiguous row per entry
        by_sample.observe(x[a:b].T)  # samples along the first axis in memory
    np.testing.assert_array_equal(by_sample.top, by_entry.top)
    np.testing.assert_array_equal(by_sample.threshold, by_entry.threshold)
    used = np.concatenate([x[a:b] for a, b in parts])
    alpha = by_entry.index()
    assert (alpha is None) == (used.shape[0] < TAIL_MIN_N)
    k = min(used.shape[0] // TAIL_FRACTION, TAIL_KEEP - 1)
    for j in range(len(kinds)):
        dev = np.sort(np.abs(used[:, j] - by_entry.center[j]))[::-1]
        kept = np.sort(by_entry.top[j][by_entry.top[j] > 0])[::-1]
        # every kept value is one of the largest deviations, and all of them beyond the threshold
        # (equal up to rounding: the threshold is compared as x > c + t, not |x - c| > t)
        np.testing.assert_allclose(kept, dev[:kept.size], rtol=1e-12)
        if kept.size < TAIL_KEEP:  # not full: all the deviations beyond the (first) threshold are kept
            assert kept.size == int((dev > by_entry.threshold[j]).sum())
        if alpha is None:
            continue
        desc = -np.sort(-by_entry.top[j])[:k + 1]
        if (1 + np.count_nonzero(np.diff(desc))) < (k + 1) / 2:
            expected = np.inf  # mostly ties: no continuous tail
        else:
            expected = max(_hill(desc, k), _hill(desc, k // 4))
        assert alpha[j] == expected or np.isclose(alpha[j], expected, rtol=1e-12), (j, kinds[j], alpha[j], expected)


@settings(max_examples=15, deadline=None)
@given(groups=st.lists(st.lists(st.integers(0, 4), min_size=1, max_size=4), min_size=1, max_size=4),
       seed=st.integers(0, 2**31), cuts=st.lists(st.integers(2, 20_000), max_size=3), layouts=st.integers(0, 15))
def test_tails_observed_together_equal_tails_observed_alone(groups, seed, cuts, layouts):
    """observe_all (a chunk's value and gradients at once) keeps what each tail alone keeps."""
    rng = np.random.default_rng(seed)
    n = 12_000
    xs = [_entries(rng, n, kinds) for kinds in groups]
    bounds = sorted({0, n, *(c for c in cuts if c < n)})
    together, alone = [Tail() for _ in xs], [Tail() for _ in xs]
    for a, b in zip(bounds, bounds[1:]):
        rows = [x[a:b].T if layouts >> i & 1 else np.ascontiguousarray(x[a:b].T) for i, x in enumerate(xs)]
        observe_all(list(zip(together, rows)))
        for t, r in zip(alone, rows):
            t.observe(r)
    for t, u, a in zip(together, alone, indices(together)):
        if u.top is None:
            assert t.top is None
            continue
        np.testing.assert_array_equal(np.sort(t.top, axis=1), np.sort(u.top, axis=1))
        np.testing.assert_array_equal(t.threshold, u.threshold)
        np.testing.assert_array_equal(a, u.index())
