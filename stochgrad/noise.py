"""Base noise for the samplers, in blocks addressed by sample index.

Sample ``i`` of node ``uid`` takes its noise from block ``i // BLOCK``, drawn by
a generator seeded from a hash of ``(seed, call, uid, stream, kind, block)``.  So the
noise of every sample depends only on the seed, the call and its index: a run split
into chunks (which always start on a block boundary) sees exactly the noise of the
unchunked run, and different seeds, calls or nodes get independent streams.

Every word enters the hash on its own (SplitMix64 rounds, one per 64-bit word), never
added to another: call ``k`` of a compiled objective with seed ``s`` shares nothing with
call ``k - 1`` of the objective with seed ``s + 1`` (as ``seed + call`` would), and a seed
of any size enters with all its 64-bit words, preceded by their count, so ``s`` and
``2**64 + s`` differ.  Seeds derived for auxiliary runs (pilots, replicates) are hashes of
the seed and a purpose tag (:func:`derive_seed`), never ``seed + offset``.

Backends that draw with numpy (autograd, and torch in float64 on the CPU) use
:class:`NumpyStream`: PCG64 (O'Neill 2014) with its state set from SplitMix64
(Steele et al. 2014) outputs of the block's seed, so both backends see the same
numbers for a seed.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .errors import ValidationError

if TYPE_CHECKING:
    from .backend import Backend


#: samples per noise block; chunks are whole multiples of it
BLOCK = 1 << 16

_KINDS = {"normal": 0, "uniform": 1, "poisson": 2, "binomial": 3, "gamma": 4}


_MASK = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """One step of SplitMix64 (Steele et al. 2014): a bijective 64-bit mixer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def check_seed(seed: Any, where: str = "seed") -> int:
    """``seed`` as a Python int: a non-negative integer (numpy integers too) of any size;
    bool, float, str, negative numbers are refused by name (``where`` says whose seed)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValidationError(f"{where} must be a non-negative integer, got {seed!r}")
    return int(seed)


@functools.lru_cache(maxsize=1024)
def _seed_state(seed: int) -> int:
    """The hash state after the seed's words: their count, then each 64-bit word, lowest first."""
    words = [(seed >> (64 * i)) & _MASK for i in range(max(1, -(-seed.bit_length() // 64)))]
    h = 0
    for word in [len(words)] + words:
        h = _splitmix64(h ^ word)
    return h


def stream_seed(seed: int, call: int, uid: int, stream: int, kind: str, block: int, branch: int = 0) -> int:
    """A 63-bit seed for one block of one noise stream of call ``call`` (0 for ``estimate``):
    the seed's words, then each further word, folded in by SplitMix64 (see the module docstring)."""
    h = _seed_state(seed)
    for word in (
        (call, uid, stream, _KINDS[kind], block, branch) if branch else (call, uid, stream, _KINDS[kind], block)
    ):
        h = _splitmix64(h ^ (word & _MASK))
    return h >> 1


#: purpose tags of derived seeds (:func:`derive_seed`), one per kind of auxiliary run
PILOT, REPLICATE = 1, 2


def derive_seed(seed: int, tag: int, *words: int) -> int:
    """A 63-bit seed for an auxiliary run (a pilot, a replicate): a hash of the seed, a purpose tag
    and indices, so its noise is independent of the run with ``seed`` and of other derived runs."""
    h = _splitmix64(_seed_state(seed) ^ _MASK)  # a round no noise stream takes: call words are small
    for word in (tag, *words):
        h = _splitmix64(h ^ (word & _MASK))
    return h >> 1


class NumpyStream:
    """A stream of numpy's PCG64 generator (O'Neill 2014) named by a 63-bit seed, for backends that
    draw with numpy.  The 128-bit state and odd increment are SplitMix64 outputs of the seed, set
    directly: numpy's own seeding (``PCG64(seed)``, through ``SeedSequence``) costs about 8 us per
    generator, as much as drawing 1,000 normals, and every noise block needs a fresh generator.

    Uniform noise: ``random()`` returns multiples of 2**-53 (2**-24 in float32) in [0, 1), so its
    largest value is already 1 - eps/2, and raising it to at least eps/2 (which moves only 0) keeps
    it strictly inside (0, 1), as ``Backend.noise`` promises, without a two-sided clip."""

    __slots__ = ("state", "inc")

    def __init__(self, seed: int) -> None:
        a = _splitmix64(seed)
        b = _splitmix64(a)
        c = _splitmix64(b)
        self.state, self.inc = (a << 64) | b, (c << 64) | _splitmix64(c) | 1

    def generator(self) -> np.random.Generator:
        """numpy's ``Generator`` at the start of this stream: one object per thread, reset on each
        call, so use it before the next call in the same thread."""
        try:
            gen, bits = _LOCAL.generator
        except AttributeError:
            bits = np.random.PCG64(0)
            gen, _ = _LOCAL.generator = (np.random.Generator(bits), bits)
        bits.state = {
            "bit_generator": "PCG64",
            "state": {"state": self.state, "inc": self.inc},
            "has_uint32": 0,
            "uinteger": 0,
        }
        return gen


def fill(kind: str, streams: Sequence[NumpyStream], counts: Sequence[int], out: np.ndarray) -> np.ndarray:
    """Write ``"normal"`` or ``"uniform"`` (strictly inside (0, 1)) draws into ``out`` (float32 or
    float64): the first ``counts[0]`` rows from ``streams[0]``, and so on; returns ``out``."""
    if len(streams) == 1 and counts[0] == len(out) and kind == "normal":  # one stream: the common case
        return streams[0].generator().standard_normal(dtype=out.dtype, out=out)
    start = 0
    for stream, count in zip(streams, counts):
        part, gen = (out if count == len(out) else out[start : start + count]), stream.generator()
        gen.standard_normal(dtype=out.dtype, out=part) if kind == "normal" else gen.random(dtype=out.dtype, out=part)
        start += count
    if kind == "uniform":  # see NumpyStream: only 0 moves
        np.maximum(out, np.finfo(out.dtype).eps / 2, out=out)
    return out


_LOCAL = threading.local()


class Noise(Protocol):
    """What a program draws its noise from: :class:`NoiseSource`, and the recording and replaying
    sources of fused objectives (:mod:`stochgrad.fused`).  ``count`` is the number of samples;
    ``draw(uid, stream, kind, shape, *params, branch=)`` gives ``(count, *shape)`` draws of stream
    ``stream`` of node ``uid`` (``params``: sample axis of size 1 or ``count``)."""

    count: int

    def draw(self, uid: int, stream: int, kind: str, shape: tuple[int, ...], *params: Any, branch: int = 0) -> Any: ...


class NoiseSource:
    """Noise for samples ``start .. start + count`` of one run (call ``call`` of an objective; 0 for
    ``estimate``)."""

    def __init__(self, B: Backend, seed: int, start: int, count: int, blocked: bool = True, call: int = 0) -> None:
        """``blocked=False`` draws each node's noise in one piece, as block 0 of any size: for a
        run that is never chunked (a compiled objective's call), where one large draw is much
        faster than many block-sized ones (on a GPU above all)."""
        if start % BLOCK:
            raise ValueError("chunks must start on a noise-block boundary")
        self.B, self.seed, self.start, self.count, self.blocked = B, seed, start, count, blocked
        self.call = call

    def draw(self, uid: int, stream: int, kind: str, shape: tuple[int, ...], *params: Any, branch: int = 0) -> Any:
        """``kind`` draws of shape ``(count, *shape)`` for node ``uid``.

        ``params`` have a sample axis of size 1 or ``count``; ``branch`` separates the copies of
        the samples made by exact enumeration (each copy gets independent noise)."""
        first = self.start // BLOCK
        end = self.start + self.count
        if end - first * BLOCK <= BLOCK or not self.blocked:  # one piece: no slicing, no concatenation
            gen = self.B.generator(stream_seed(self.seed, self.call, uid, stream, kind, first, branch))
            return self.B.noise(kind, gen, (self.count, *shape), *params)
        blocks = range(first, (end - 1) // BLOCK + 1)
        if not params:  # fill one array block by block, without a concatenation
            counts = [min(BLOCK * (b + 1), end) - max(b * BLOCK, self.start) for b in blocks]
            gens = [self.B.generator(stream_seed(self.seed, self.call, uid, stream, kind, b, branch)) for b in blocks]
            return self.B.noise_blocks(kind, gens, counts, tuple(shape))
        parts = []
        for block in blocks:
            lo, hi = block * BLOCK - self.start, min(BLOCK * (block + 1), end) - self.start
            rows = [q if self.B.shape(q)[0] == 1 else q[lo:hi] for q in params]
            gen = self.B.generator(stream_seed(self.seed, self.call, uid, stream, kind, block, branch))
            parts.append(self.B.noise(kind, gen, (hi - lo,) + tuple(shape), *rows))
        return parts[0] if len(parts) == 1 else self.B.concat(parts)
