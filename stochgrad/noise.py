"""Base noise for the samplers, in blocks addressed by sample index.

Sample ``i`` of node ``uid`` takes its noise from block ``i // BLOCK``, drawn by
a generator seeded from ``(seed, uid, stream, block)``.  So the noise of every
sample depends only on the seed and its index: a run split into chunks (which
always start on a block boundary) sees exactly the noise of the unchunked
run, and different seeds or nodes get independent streams.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: samples per noise block; chunks are whole multiples of it
BLOCK = 1 << 16

_KINDS = {"normal": 0, "uniform": 1}


def stream_seed(seed: int, uid: int, stream: int, kind: str, block: int) -> int:
    """A 63-bit seed for one block of one noise stream (SeedSequence mixes the words)."""
    words = np.random.SeedSequence([seed, uid, stream, _KINDS[kind], block]).generate_state(2, np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


class NoiseSource:
    """Noise for samples ``start .. start + count`` of one run."""

    def __init__(self, B: Any, seed: int, start: int, count: int) -> None:
        if start % BLOCK:
            raise ValueError("chunks must start on a noise-block boundary")
        self.B, self.seed, self.start, self.count = B, seed, start, count

    def draw(self, uid: int, stream: int, kind: str, shape: tuple[int, ...]) -> Any:
        """Standard ``kind`` noise of shape ``(count, *shape)`` for node ``uid``."""
        parts = []
        first = self.start // BLOCK
        end = self.start + self.count
        for block in range(first, (end - 1) // BLOCK + 1):
            size = min(BLOCK, end - block * BLOCK)
            gen = self.B.generator(stream_seed(self.seed, uid, stream, kind, block))
            parts.append(self.B.noise(kind, gen, (size,) + tuple(shape)))
        return parts[0] if len(parts) == 1 else self.B.concat(parts)
