"""Fused objectives: ``sg.compile(..., fuse=True)`` runs the plan's program inside the backend's compiler.

The program (:mod:`stochgrad.program`) is plain Python over native arrays, so a tracing compiler
(torch.compile) can turn its ``run`` into a single graph of fused kernels.  What it cannot trace is
kept outside the compiled function:

* **noise**: every draw of one call is recorded on the objective's first (eager) call for a set of
  parameter shapes -- node, stream, kind, shape -- and later calls draw the same list eagerly,
  with that call's seed, then hand it to the compiled function, which replays it in order.  So a
  fused call sees exactly the noise of the eager call with the same seed (tested).  Noise whose
  draw depends on parameter values (Poisson, Binomial, Gamma and its relatives) cannot be drawn
  ahead, and such plans are refused;
* **checks**: constants are checked on the first call; a distribution whose parameters are all
  constants or parameters given by name is checked before every call; a parameter computed inside
  the expression (``Normal(mu, exp(s))``) is checked on the first call only;
* **gather indices** (``theta[school]``, ``school`` an index parameter): read on the host and checked
  (integers, in range) by the eager first call, then held as constants of the compiled graph, which
  is keyed by their values as well as the parameter shapes: a call with new indices runs eagerly
  once more and compiles anew (so fuse suits indices fixed across calls, a hierarchical model's
  groups; indices that change every call, minibatches, recompile every call: use fuse=False there);
* **state**: a moving-average baseline's state (the objective's ``baseline_state``) changes every
  call, which a compiled function would bake in, so such a plan is refused by name, before any
  state changes (leave-one-out works).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import PlanError
from .noise import NoiseSource
from .planner import Plan
from .program import Frame, check_given, lower
from .sampleaxis import with_sample_axis

if TYPE_CHECKING:
    from .backend import Backend

Draw = tuple[int, int, str, tuple[int, ...], int]  # node uid, stream, kind, shape, branch


class RecordingNoise(NoiseSource):
    """A noise source that also records what was drawn, and whether a draw needed parameter values."""

    def __init__(self, B: Backend, seed: int, start: int, count: int, blocked: bool = True, call: int = 0) -> None:
        super().__init__(B, seed, start, count, blocked, call)
        self.log: list[Draw] = []
        self.needs_values: list[str] = []

    def draw(self, uid: int, stream: int, kind: str, shape: tuple[int, ...], *params: Any, branch: int = 0) -> Any:
        self.log.append((uid, stream, kind, tuple(shape), branch))
        if params:
            self.needs_values.append(kind)
        return super().draw(uid, stream, kind, shape, *params, branch=branch)


class ReplayNoise:
    """Hands out arrays drawn ahead, in the order the recording saw them."""

    def __init__(self, arrays: list[Any], count: int) -> None:
        self._arrays, self._next, self.count = arrays, 0, count  # an index: the compiler cannot trace next()

    def draw(self, uid: int, stream: int, kind: str, shape: tuple[int, ...], *params: Any, branch: int = 0) -> Any:
        self._next += 1
        return self._arrays[self._next - 1]


class _NoNoise:
    """The noise of a frame that only checks parameters: it draws nothing."""

    count = 0

    def draw(self, uid: int, stream: int, kind: str, shape: tuple[int, ...], *params: Any, branch: int = 0) -> Any:
        raise PlanError("a parameter check drew noise")


_NO_NOISE = _NoNoise()


class FusedCall:
    """The compiled function for one plan (one set of parameter shapes) of an objective."""

    def __init__(
        self,
        B: Backend,
        p: Plan,
        recorded: RecordingNoise,
        *,
        batch_axes: int,
        memo: dict[Any, Any],
        finish: Callable[[Any, Any], Any],
        validate: bool = True,
        known: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        if recorded.needs_values:
            raise PlanError(
                f"fuse=True needs noise that can be drawn before the call, but {recorded.needs_values[0]!r}"
                " noise depends on parameter values (Poisson, Binomial, Gamma, Beta, Dirichlet); use fuse=False"
            )
        check_fusable(p)
        self.B, self.plan, self.draws, self.batch_axes, self.memo = B, p, recorded.log, batch_axes, memo
        self.finish, self.known = finish, dict(known or {})  # gather indices, checked by the eager call
        self.program = lower(p)
        self.direct = self.program.checks if validate else []
        self.fn = B.fuse(self._body)

    def _body(self, params: dict[str, Any], noise: list[Any], count: int) -> Any:
        frame = Frame(
            self.B,
            params,
            ReplayNoise(noise, count),
            known=self.known,
            batch_axes=self.batch_axes,
            memo=self.memo,
            checks=False,
        )
        return self.finish(frame, self.program.run(frame))

    def __call__(self, native: Mapping[str, Any], source: NoiseSource) -> Any:
        self.check(native)
        noise = [
            source.draw(uid, stream, kind, shape, branch=branch) for uid, stream, kind, shape, branch in self.draws
        ]
        params = with_sample_axis(self.B, native)
        return self.fn(params, noise, source.count)

    def check(self, native: Mapping[str, Any]) -> None:
        """Check, eagerly, every distribution whose parameters are constants or given parameters
        (constants were checked on the first call and stay in the memo)."""
        check_given(Frame(self.B, {}, _NO_NOISE, memo=self.memo), self.direct, native)


def fused_key_of(shapes: tuple[Any, ...], known: Mapping[str, np.ndarray]) -> Any:
    """The key of a compiled graph: the parameter shapes, and the gather indices' values (constants of it)."""
    if not known:
        return shapes
    return (shapes,) + tuple((k, v.dtype.str, v.shape, v.tobytes()) for k, v in sorted(known.items()))


def check_fusable(p: Plan) -> None:
    """Refuse, before anything runs, a plan with state that changes between calls."""
    for node in p.nodes:
        if node.spec.stateful:
            raise PlanError(
                f"fuse=True cannot carry the running state of {node.var}'s estimator ({node.spec.describe()})"
                " across calls inside a compiled function; use fuse=False (or an estimator without state, e.g."
                " the leave-one-out baseline)"
            )
