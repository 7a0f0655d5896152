"""Chunks of an ``estimate`` run beside each other, with the numbers of one after another.

A chunk's samples are independent of every other chunk's: its noise is addressed by sample index
(:mod:`stochgrad.noise`), its constants and checks are shared read-mostly caches, and its result is
a summary (:func:`stochgrad.moments.summarize`) that the run folds into its moments in sample order
(:func:`stochgrad.moments.merge`).  So ``k`` chunks may run at once on ``k`` threads, each computing
on one thread of its own, and the estimate is bit for bit the one of a sequential run.

Why not one chunk at a time on all threads (the framework's intra-op parallelism)?  Every operation
then ends in a barrier where each thread waits for the others.  On a machine with another busy
process, one of the threads is often descheduled, and with the many cache-sized operations of a
chunked run the waits dominate: measured here (2 cores, torch 2.13, one spinning process beside),
a run of 38 chunks of 262,144 pathwise samples took 5.8 s on two intra-op threads, 0.61 s on one,
and 0.48 s as two chunks at a time on one thread each (``benchmarks/bench_chunking.py --load``).
Threads here only help where the framework releases the GIL inside its kernels (torch does); a
backend says how many chunks it can run at once (:meth:`stochgrad.backend.Backend.chunk_workers`).

A run of several chunks computes each chunk on one thread, whether they run one at a time or
several at once, so its numbers do not depend on the number of workers (the framework's reductions
round differently on different thread counts).  Chunks run one after another when a run carries state from chunk to chunk (moving-average
baselines, :attr:`EstimatorSpec.stateful`), when there is one chunk, or when ``memory_limit`` does
not hold two chunks at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .backend import Backend
    from .planned import Plan

T = TypeVar("T")


def workers(B: Backend, p: Plan, chunks: int, chunk_bytes: Callable[[], int], limit: int) -> int:
    """How many chunks to run at once: the backend's :meth:`~stochgrad.backend.Backend.chunk_workers`,
    at most the number of chunks and as many as ``limit`` bytes hold (``chunk_bytes()`` each, asked
    only when it matters); 1 when a node's estimator carries state from one chunk to the next."""
    if chunks < 2 or any(node.spec.stateful for node in p.nodes):
        return 1
    at_most = min(B.chunk_workers(), chunks)
    return 1 if at_most < 2 else max(1, min(at_most, limit // max(1, chunk_bytes())))


def ordered(fn: Callable[[int, int], T], items: Iterable[tuple[int, int]], count: int) -> Iterator[T]:
    """``fn(*item)`` for each item, in order, computed ``count`` at a time on threads (at most
    ``count`` results are held beyond the one being consumed).  A failure is raised at its item;
    chunks not yet started are then cancelled."""
    if count <= 1:
        for item in items:
            yield fn(*item)
        return
    it = iter(items)
    with ThreadPoolExecutor(count, thread_name_prefix="stochgrad-chunk") as pool:
        pending: deque[Future[T]] = deque(pool.submit(fn, *item) for _, item in zip(range(count), it))
        try:
            while pending:
                out = pending.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(fn, *nxt))
                yield out
        finally:
            for f in pending:
                f.cancel()
