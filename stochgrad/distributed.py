"""Past one process: sample-sharded estimates and data-parallel objectives on ``torch.distributed``.

**Sharded estimates** (``sg.estimate(..., distributed=True)``, ``Plan.estimate(..., distributed=True)``,
called alike on every rank of an initialised process group).  Every draw depends only on ``(seed,
node, noise block)`` (:mod:`stochgrad.noise`), leave-one-out groups are noise blocks, and antithetic
pairs live inside a chunk, so a run is a list of independent chunks (whole noise blocks, the
single-process run's list).  Rank ``r`` of ``W`` runs chunks ``r, r + W, ...`` (with
``chunk_size = BLOCK``: exactly noise blocks ``r, r + W, ...``) and keeps their running moments
(count, mean and ``M2`` per entry, float64: :mod:`stochgrad.moments`).  The ranks then exchange
those, one float64 vector each (``all_gather``), and every rank merges them in rank order by Chan
et al.'s (1979) pairwise update::

    n = n_a + n_b,  delta = mean_b - mean_a,  mean = mean_a + delta n_b / n,  M2 = M2_a + M2_b + delta^2 n_a n_b / n,

so every rank holds the same bits (the merge order is fixed, whatever the collective's own
reduction order) and the result is the single-process one to rounding (about 1e-16 relative; the
tests ask 1e-12), with ``n`` the total.  The tail diagnostic looks at the first chunk only, which
rank 0 runs, and rank 0 sends it.

**Agreement before work.**  Ranks that disagree would silently compute nonsense (or wait forever in
a collective).  So each call exchanges, before any chunk runs, a digest (BLAKE2b) of the expression,
the plan, the parameter values, the seed, ``n``, ``wrt``, ``batch_axes`` and the backend; any
difference raises :class:`DistributedMismatchError` on every rank, naming the fields and ranks.  A
rank that fails before or during its chunks (a bad parameter, a memory limit) still joins the next
exchange, carrying its error: it raises its own, the others a :class:`DistributedError` naming it.
No rank is left waiting.  ``seed=None`` takes rank 0's fresh seed on every rank.  Chunk sizes,
which a default ``memory_limit`` makes machine-dependent, are agreed on as the smallest.

**Training** (``sg.compile(..., distributed=True)``, e.g. under ``DistributedDataParallel``): the
objective's noise comes from a seed hashed from ``(seed, tag, rank)`` (:func:`stochgrad.noise.derive_seed`),
so every rank draws independent noise (never ``seed + rank``, which would make rank 1 of seed ``s``
replay rank 0 of seed ``s + 1``), and moving-average baselines fold in the mean of every rank's
batch mean (gathered and averaged in rank order), so their state is the same on every rank.
Leave-one-out baselines are per rank: they use the rank's own ``n`` samples, independent of each
other, which keeps them unbiased.

torch is imported only when a distributed run is asked for: the core imports without it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import numpy as np

from .baselines import AverageState, BaselineState
from .errors import StochgradError
from .noise import derive_seed
from .validation import check_flag
import os

if TYPE_CHECKING:
    from .backend import Backend
    from .moments import Moments
    from .planned import Plan
    from .planner import NodePlan

P = ParamSpec("P")
R = TypeVar("R")

#: the purpose tag of a rank's training seed (:func:`stochgrad.noise.derive_seed`): b"RANK"
RANK_TAG = 0x52414E4B


class DistributedError(StochgradError):
    """A distributed run cannot start or failed on some rank (no process group, no torch, a rank's error)."""


class DistributedMismatchError(DistributedError):
    """The ranks of a distributed run were given different expressions, parameters, seeds or options."""


def _dist(where: str) -> Any:
    """``torch.distributed``, with an initialised default group, or a :class:`DistributedError`."""
    try:
        import torch.distributed as dist
    except ImportError:
        raise DistributedError(
            f"{where}: distributed=True needs torch (torch.distributed): pip install torch"
        ) from None
    if not dist.is_available() or not dist.is_initialized():
        raise DistributedError(
            f"{where}: distributed=True needs an initialised torch.distributed process group; call"
            " torch.distributed.init_process_group(...) on every rank first (torchrun sets the environment:"
            " init_process_group('gloo') on CPU, 'nccl' on GPUs), or drop distributed=True"
        )
    return dist


class Shard:
    """One rank's view of a sharded run: which chunks it runs, and the exchanges with the others.

    The exchanges happen in a fixed order on every rank: the seed (:meth:`common_seed`), the
    agreement (:meth:`agree`), the moments (:meth:`reduce`).  :meth:`guard` makes a rank that
    fails take part in the next pending exchange with its error, so that no rank waits for it."""

    def __init__(self, dist: Any, where: str) -> None:
        self.dist, self.where = dist, where
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self._stage = 0  # exchanges done after the seed: 1 after agree, 2 after reduce

    def _device(self) -> Any:
        import torch

        if self.dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def _gather(self, payload: Any, error: BaseException | None = None) -> list[Any]:
        """Every rank's ``payload``; raises on every rank if some rank carries an error."""
        sent = (payload, None if error is None else f"{type(error).__name__}: {error}")
        got: list[Any] = [None] * self.world
        self.dist.all_gather_object(got, sent)
        self._stage += 1
        failed = [(r, e) for r, (_, e) in enumerate(got) if e is not None]
        if failed and error is None:
            r, e = failed[0]
            raise DistributedError(f"{self.where}: rank {r} of {self.world} failed, so this rank stops too: {e}")
        return [p for p, _ in got]

    def common_seed(self, seed: Any) -> Any:
        """``seed`` as given, or (``None`` on every rank) rank 0's fresh 63-bit seed on all ranks."""
        proposal = secrets.randbits(63)
        given = seed if seed is None or isinstance(seed, (int, np.integer)) else repr(seed)
        got: list[Any] = [None] * self.world
        self.dist.all_gather_object(got, (given, proposal))
        return got[0][1] if all(g is None for g, _ in got) else seed

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Run a rank's part; on an error, take part in the pending exchange with it, then raise it."""
        try:
            yield
        except Exception as exc:
            if self._stage < 2 and not isinstance(exc, DistributedError):
                with contextlib.suppress(Exception):  # the others learn of it; this rank raises its own
                    self._gather(None, exc)
            raise

    def agree(
        self,
        p: Plan,
        values: Mapping[str, np.ndarray],
        names: Sequence[str],
        B: Backend,
        *,
        n: int,
        seed: int,
        size: int,
        batch_axes: int,
    ) -> int:
        """Check that every rank runs the same thing (see the module docstring); the chunk size all use."""
        fields = {
            "expression": str(p.expr),
            "plan": str(p),
            "seed": str(seed),
            "n": str(n),
            "wrt": ",".join(names),
            "batch_axes": str(batch_axes),
            "backend": f"{B.name} {getattr(B, 'dtype', '')}",
            "parameters": _digest_values(values),
        }
        mine = {k: hashlib.blake2b(v.encode(), digest_size=16).hexdigest() for k, v in fields.items()}
        got = self._gather((mine, size))
        differ = [k for k in mine if len({g[0][k] for g in got}) > 1]
        if differ:
            ranks = [r for r, g in enumerate(got) if any(g[0][k] != got[0][0][k] for k in differ)]
            raise DistributedMismatchError(
                f"{self.where}: the ranks disagree on {', '.join(differ)} (rank{'s' * (len(ranks) > 1)}"
                f" {', '.join(map(str, ranks))} {'differ' if len(ranks) > 1 else 'differs'} from rank 0); every rank of a distributed run must be given the same expression, parameters,"
                " seed and options"
            )
        stateful = [node for node in p.nodes if node.spec.stateful]
        if stateful:
            raise DistributedError(
                f"{self.where}: node {stateful[0].var}'s estimator ({stateful[0].spec.describe()}) carries a moving"
                " average from chunk to chunk, which split chunks cannot reproduce; use a leave-one-out baseline"
                " (score:baseline=loo) or run without distributed=True"
            )
        return min(s for _, s in got)

    def select(self, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """This rank's chunks: ``r, r + W, ...``."""
        return spans[self.rank :: self.world]

    def progress(
        self, progress: Callable[[int, int], None] | None, mine: list[tuple[int, int]], n: int
    ) -> Callable[[int, int], None] | None:
        """On rank 0 only: ``progress`` told the run's progress as rank 0's share done, scaled to ``n``."""
        if progress is None or self.rank != 0:
            return None
        ends, total, done = {s + c: c for s, c in mine}, max(1, sum(c for _, c in mine)), [0]

        def tell(end: int, _: int) -> None:
            done[0] += ends.get(end, 0)
            progress(n if done[0] >= total else done[0] * n // total, n)

        return tell

    def reduce(self, moments: list[Moments], first_bad: tuple[int, int] | None) -> tuple[int, int] | None:
        """Replace this rank's moments by those of all ranks (same bits on every rank); the first
        chunk, over all ranks, with a NaN or infinity."""
        import torch

        local = moments[0].n > 0
        info = {
            "shapes": [np.shape(m.mean) for m in moments] if local else None,
            "first_bad": first_bad,
            "tails": [m.tail for m in moments] if self.rank == 0 else None,
        }
        got = self._gather(info)
        shapes = next(g["shapes"] for g in got if g["shapes"] is not None)  # rank 0 always has chunk 0
        parts = []
        for m, shape in zip(moments, shapes):
            mean = np.broadcast_to(np.asarray(m.mean, dtype=np.float64), shape) if local else np.zeros(shape)
            m2 = np.broadcast_to(np.asarray(m.m2, dtype=np.float64), shape) if local else np.zeros(shape)
            parts += [np.array([float(m.n)]), mean.ravel(), m2.ravel()]
        vec = torch.from_numpy(np.concatenate(parts)).to(self._device())
        every = [torch.empty_like(vec) for _ in range(self.world)]
        self.dist.all_gather(every, vec)
        rows = [t.cpu().numpy() for t in every]
        from .moments import Moments as Fresh

        at = 0
        for i, (m, shape) in enumerate(zip(moments, shapes)):
            size = int(np.prod(shape, dtype=np.int64))
            merged = Fresh()
            for row in rows:  # rank order: the same merge, so the same bits, on every rank
                count = int(row[at])
                if count:
                    mean, m2 = row[at + 1 : at + 1 + size], row[at + 1 + size : at + 1 + 2 * size]
                    merged.update(count, mean.reshape(shape), m2.reshape(shape))
            at += 1 + 2 * size
            m.n, m.mean, m.m2, m._stderr = merged.n, merged.mean, merged.m2, None
            m.tail = got[0]["tails"][i]
        bad = [g["first_bad"] for g in got if g["first_bad"] is not None]
        return min(bad) if bad else None


_ACTIVE: contextvars.ContextVar[Shard | None] = contextvars.ContextVar("stochgrad_shard", default=None)


def take() -> Shard | None:
    """The shard of the distributed call being run, once (a nested estimate runs on its own)."""
    shard = _ACTIVE.get()
    if shard is not None:
        _ACTIVE.set(None)
    return shard


def shardable(fn: Callable[P, R]) -> Callable[P, R]:
    """``distributed=True`` for an estimate entry point (``sg.estimate``, ``Plan.estimate``): the
    shard is opened, the seed agreed on and the call guarded here; :func:`stochgrad.run.run_estimate`
    runs this rank's chunks (:func:`take`)."""
    name = fn.__qualname__  # "estimate" or "Plan.estimate", for the errors

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        if not check_flag("distributed", kwargs.get("distributed", False)):
            return fn(*args, **kwargs)
        shard = Shard(_dist(name), name)
        options: dict[str, Any] = kwargs
        options["seed"] = shard.common_seed(options.get("seed"))
        token = _ACTIVE.set(shard)
        try:
            with shard.guard():
                return fn(*args, **kwargs)
        finally:
            _ACTIVE.reset(token)

    return call


def _digest_values(values: Mapping[str, np.ndarray]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for k in sorted(values):
        v = np.ascontiguousarray(values[k])
        h.update(f"{k}:{v.dtype.str}:{v.shape};".encode())
        h.update(v.tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------- training


def training(seed: int, where: str = "compile") -> tuple[int, BaselineState]:
    """For a compiled objective with ``distributed=True``: this rank's noise seed (a hash of ``seed``
    and the rank) and a baseline state whose moving averages are the same on every rank."""
    dist = _dist(where)
    return derive_seed(seed, RANK_TAG, dist.get_rank()), SharedBaselineState(dist)


class SharedAverage(AverageState):
    """A moving average fed the mean, over the ranks, of their batch means (rank order: same bits)."""

    __slots__ = ("dist",)

    def __init__(self, var: str, dist: Any) -> None:
        super().__init__(var)
        self.dist = dist

    def update(self, batch_mean: np.ndarray, decay: float) -> None:
        got: list[Any] = [None] * self.dist.get_world_size()
        self.dist.all_gather_object(got, np.asarray(batch_mean, dtype=np.float64))
        shapes = {np.shape(g) for g in got}
        if len(shapes) > 1:
            raise DistributedMismatchError(
                f"the moving-average baseline of {self.var}: the ranks' batch costs have different shapes"
                f" ({', '.join(map(str, sorted(shapes)))}); give every rank batches of one shape (drop_last=True)"
            )
        total = got[0]
        for g in got[1:]:
            total = total + g
        super().update(total / len(got), decay)


class SharedBaselineState(BaselineState):
    """A :class:`BaselineState` of :class:`SharedAverage` s."""

    def __init__(self, dist: Any) -> None:
        super().__init__()
        self._dist = dist

    def node(self, node: NodePlan) -> AverageState:
        if node.uid not in self._nodes:
            self._nodes[node.uid] = SharedAverage(node.var, self._dist)
        return self._nodes[node.uid]


def init_from_env(where: str = "--distributed") -> bool:
    """Initialise the default process group from torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``...), gloo on CPU and NCCL when CUDA is there; False if already initialised."""
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        raise DistributedError(f"{where} needs torch (torch.distributed): pip install torch") from None
    if dist.is_initialized():
        return False

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise DistributedError(
            f"{where}: no process group to join (RANK and WORLD_SIZE unset); launch with"
            " torchrun --nproc_per_node=2 -m stochgrad estimate ... --distributed"
        )
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    return True
