"""Memory is bounded: chunks are sized from the per-sample footprint (enumeration copies and
parameter width included), a run whose smallest chunk cannot fit ``memory_limit`` is refused by
name before anything is allocated, and an absurd ``n`` is refused, not turned into a chunk list."""

from __future__ import annotations

import itertools
import os
import tracemalloc
import warnings

import numpy as np
import pytest

import stochgrad as sg
from stochgrad import chunking
from stochgrad.api import CHUNK_ENTRIES, auto_chunk
from stochgrad.chunking import chunks
from stochgrad.noise import BLOCK

ENUMERATED = "E[sum(w * y), y ~ Bernoulli(p)]"  # p of 10 entries: 1,024 joint states, enumerated
WIDE = {"p": np.full(10, 0.3), "w": np.ones(10)}


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_enumeration_copies_are_counted_and_refused_by_name(backend):
    """1,024 enumerated states at n = 50,000: about 50 GB, refused before allocating."""
    assert sg.plan(ENUMERATED, shapes={"p": (10,), "w": (10,)}).nodes[0].estimator == "enumerate"

    def attempt() -> None:
        with pytest.raises(sg.MemoryLimitError) as info:
            sg.estimate(ENUMERATED, WIDE, n=50_000, seed=0, backend=backend, memory_limit=2 << 30)
        text = str(info.value)
        for part in ("1,024 enumerated joint states of y", "50,000 samples", "memory_limit", "enumerate_budget",
                     "fewer samples"):
            assert part in text, text

    attempt()  # plans and imports once, outside the measurement
    assert _peak(attempt) < 1 << 20  # nothing the size of a chunk (or of one copied array) was allocated


def test_a_wide_parameter_is_counted():
    """A 1e6-entry parameter at n = 100: gigabytes of per-sample gradients, refused under 1 GB."""
    with pytest.raises(sg.MemoryLimitError, match="smaller parameters"):
        sg.estimate("E[sum(w * z), z ~ Normal(0, 1)]", {"w": np.ones(10**6)}, n=100, seed=0, memory_limit=10**9)


def test_footprint_grows_with_copies_and_width():
    p1 = sg.plan("E[y * w, y ~ Bernoulli(p)]", shapes={"p": (), "w": ()})
    p10 = sg.plan(ENUMERATED, shapes={"p": (10,), "w": (10,)})
    assert chunking.copies(p1) == (2, ["y"]) and chunking.copies(p10) == (1024, ["y"])
    small = chunking.footprint(p1, {"p": np.array(0.3), "w": np.array(1.0)}, ["p", "w"])
    large = chunking.footprint(p10, WIDE, ["p", "w"])
    assert large > 1024 * 10 * 8 > small > 0  # at least one float64 per copied entry


def test_auto_chunk_counts_enumeration_copies():
    """Two joint states double every per-sample array: half the samples per chunk."""
    values = {"mu": np.array(0.0), "p": np.array(0.3)}
    plain = sg.plan("E[z * 3, z ~ Normal(mu, 1)]", shapes={"mu": ()})
    two = sg.plan("E[y * z, y ~ Bernoulli(p), z ~ Normal(mu, 1)]", shapes={"mu": (), "p": ()})
    assert auto_chunk(plain, {"mu": values["mu"]}) == CHUNK_ENTRIES
    assert auto_chunk(two, values) == CHUNK_ENTRIES // 2


def test_chunks_shrink_to_the_limit_with_the_same_estimate(backend):
    """A limit that admits two blocks gives chunks of two blocks, and the same numbers."""
    text, params = "E[z**2, z ~ Normal(mu, sigma)]", {"mu": 1.0, "sigma": 2.0}
    per = chunking.footprint(sg.plan(text, shapes={"mu": (), "sigma": ()}), {k: np.array(v) for k, v in params.items()},
                             ["mu", "sigma"])
    whole = sg.estimate(text, params, n=5 * BLOCK, seed=0, backend=backend, chunk_size=5 * BLOCK)
    bounded = sg.estimate(text, params, n=5 * BLOCK, seed=0, backend=backend, memory_limit=2 * BLOCK * per + 1)
    assert bounded.chunk_size == 2 * BLOCK
    assert bounded.value == pytest.approx(whole.value, rel=1e-12)
    assert bounded.grad["mu"] == pytest.approx(whole.grad["mu"], rel=1e-12)


def test_the_traced_peak_stays_under_the_limit():
    """autograd's arrays are numpy's, which tracemalloc sees: the run's peak stays under the limit
    that shrank its chunks (the footprint overestimates, by design)."""
    text, params = "E[sum(w * z**2), z ~ Normal(mu, 1)]", {"mu": np.zeros(8), "w": np.ones(8)}
    limit = 40 << 20
    sg.estimate(text, params, n=100, seed=0)  # warm caches outside the measurement
    r = None

    def go() -> None:
        nonlocal r
        r = sg.estimate(text, params, n=3 * BLOCK, seed=0, memory_limit=limit)

    peak = _peak(go)
    assert r is not None and r.chunk_size == BLOCK
    assert peak < limit


def test_smallest_chunk_is_a_block():
    """Chunks start on noise-block boundaries, so one block is the least: beyond the limit, refused."""
    with pytest.raises(sg.MemoryLimitError, match="one noise block"):
        sg.estimate("E[z, z ~ Normal(mu, 1)]", {"mu": 0.0}, n=2 * BLOCK, seed=0, memory_limit=BLOCK)
    r = sg.estimate("E[z, z ~ Normal(mu, 1)]", {"mu": 0.0}, n=1000, seed=0, memory_limit=1000 * 200)
    assert r.chunk_size == 1000  # n below a block: the whole of n is the smallest chunk


def test_absurd_n_is_refused_quickly_and_chunks_are_lazy(backend):
    with pytest.raises(sg.ValidationError, match=r"n = 1e\+30 samples"):
        sg.estimate("E[z, z ~ Normal(mu, 1)]", {"mu": 0.0}, n=10**30, backend=backend)
    first = list(itertools.islice(chunks(10**30, BLOCK), 2))
    assert first == [(0, BLOCK), (BLOCK, BLOCK)]


@pytest.mark.parametrize("bad", [True, 0, -5, 1.5, "1GB"])
def test_memory_limit_is_validated(bad):
    with pytest.raises(sg.ValidationError, match="memory_limit"):
        sg.estimate("E[z, z ~ Normal(mu, 1)]", {"mu": 0.0}, n=10, memory_limit=bad)


def test_default_limit_is_half_the_physical_memory():
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert chunking.default_memory_limit() == int(chunking.MEMORY_FRACTION * total)
    with warnings.catch_warnings():
        warnings.simplefilter("error", sg.NonFiniteWarning)
        sg.estimate("E[z, z ~ Normal(mu, 1)]", {"mu": 0.0}, n=10, seed=0)  # the default admits an ordinary run
