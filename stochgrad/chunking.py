"""How many samples a chunk holds: the per-sample memory footprint and the memory bound.

Every per-sample array of a run has ``count * copies`` rows, where ``copies`` is the product of
the joint states of the enumerated nodes (exact enumeration copies every value in scope once per
state), and each differentiated parameter of ``P`` entries adds a leaf and a gradient of ``count
* P`` entries.  Measured with tracemalloc (autograd backend), a run holds at its peak about 4
float64 arrays per entry of its random values (12 when enumerating: the scope copies, weights and
log-probabilities) and 2 per parameter entry; :func:`footprint` uses those factors, which
overestimate by at most about 2x.  Noise comes in blocks of :data:`stochgrad.noise.BLOCK`
samples and a chunk must start on a block boundary, so the smallest chunk is one block (or ``n``
when ``n`` is smaller): a run whose smallest chunk exceeds ``memory_limit`` is refused before
anything is allocated.  The chunks themselves are produced lazily.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping

import numpy as np

from .distributions import joint_states, lookup
from .errors import MemoryLimitError, ValidationError
from .noise import BLOCK
from .planner import Plan

#: float64 arrays alive per entry of a random value (per sample), without and with enumeration
LIVE, LIVE_ENUMERATED = 4, 12
#: float64 arrays alive per differentiated parameter entry (per sample): leaf and gradient
LIVE_PARAMETER = 2
#: the most samples a run takes: float64 counts them exactly up to here (and no run could do more)
MAX_SAMPLES = 1 << 53
#: the default ``memory_limit`` is this fraction of the machine's physical memory
MEMORY_FRACTION = 0.5
_FALLBACK_MEMORY = 8 << 30  # where the operating system does not say (os.sysconf missing)


def default_memory_limit() -> int:
    """:data:`MEMORY_FRACTION` of the physical memory (``os.sysconf``), else 4 GiB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = _FALLBACK_MEMORY
    return int(MEMORY_FRACTION * (total if total > 0 else _FALLBACK_MEMORY))


def check_memory_limit(limit: object) -> int:
    if limit is None:
        return default_memory_limit()
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
        raise ValidationError(f"memory_limit must be a number of bytes (an integer >= 1), got {limit!r}")
    return int(limit)


def copies(p: Plan) -> tuple[int, list[str]]:
    """The product of the enumerated nodes' joint states, and those nodes' variables."""
    total, names = 1, []
    for node in p.nodes:
        if node.spec.enumerates:
            shape = node.shape if isinstance(node.shape, tuple) else None
            states = joint_states(lookup(node.dist.name), node.dist, shape)
            total *= states or 1
            names.append(node.var)
    return total, names


def footprint(p: Plan, values: Mapping[str, np.ndarray], names: list[str]) -> int:
    """Estimated peak bytes per sample (see the module docstring)."""
    k, _ = copies(p)
    width = sum(math.prod(node.shape) for node in p.nodes if isinstance(node.shape, tuple)) or 1
    width = max(width, max((v.size for v in values.values()), default=1))
    live = LIVE if k == 1 else LIVE_ENUMERATED
    for node in p.nodes:  # an estimator that evaluates the cost on copies of the samples (rebar, mvd)
        if not node.spec.enumerates:
            k *= node.spec.evaluations(None, node)
    return 8 * (live * k * width + LIVE_PARAMETER * sum(values[n].size for n in names))


def fit(n: int, size: int, p: Plan, values: Mapping[str, np.ndarray], names: list[str], limit: int) -> int:
    """The chunk size to use: ``size`` (already whole blocks, or ``n``), lowered in whole blocks to
    fit ``limit``; raises :class:`MemoryLimitError` when even the smallest chunk cannot."""
    if n > MAX_SAMPLES:
        raise ValidationError(
            f"n = {n:.3g} samples is more than a run can take (at most 2**53 = {MAX_SAMPLES:,},"
            " the most float64 counts exactly; at 1e8 samples a second that is 3 years)"
        )
    per = footprint(p, values, names)
    if size * per <= limit:
        return size
    smallest = min(n, BLOCK)
    if smallest * per > limit:
        k, enumerated = copies(p)
        why = [f"{per:,} bytes a sample"]
        if k > 1:
            why.append(f"{k:,} enumerated joint states of {', '.join(enumerated)} copy every per-sample array")
        cures = (
            (["fewer samples (n)"] if n < BLOCK else [])
            + (["a smaller enumerate_budget (fewer states summed exactly; the rest sampled)"] if k > 1 else [])
            + ["smaller parameters", "wrt= fewer parameters", "a larger memory_limit"]
        )
        raise MemoryLimitError(
            f"the smallest chunk, {smallest:,} samples ({'n' if n < BLOCK else 'one noise block'}), needs about"
            f" {_bytes(smallest * per)} ({'; '.join(why)}), over memory_limit = {_bytes(limit)}; to reduce it use "
            + ", ".join(cures)
        )
    return max(BLOCK, limit // per // BLOCK * BLOCK)


def chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, count)`` of each chunk, lazily."""
    for start in range(0, n, size):
        yield start, min(size, n - start)


def _bytes(b: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= scale:
            return f"{b / scale:.3g} {unit} ({b:,} bytes)"
    return f"{b} bytes"
