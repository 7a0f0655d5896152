"""Fused objectives: ``sg.compile(..., fuse=True)`` runs the lowering inside the backend's compiler.

The lowering is plain Python over native arrays, so a tracing compiler (torch.compile) can turn
one call into a single graph of fused kernels, with no per-call tree walk.  What it cannot trace is
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
* **state**: a moving-average baseline's state (the objective's ``baseline_state``) changes every
  call, which a compiled function would bake in, so such a plan is refused by name, before any
  state changes (leave-one-out works).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import ir
from .errors import PlanError
from .lower import Lowering
from .sampleaxis import with_sample_axis
from .noise import NoiseSource
from .planner import LogRatio, Plan

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


class FusedCall:
    """The compiled function for one plan (one set of parameter shapes) of an objective."""

    def __init__(self, B: Backend, p: Plan, recorded: RecordingNoise, *, batch_axes: int, memo: dict[Any, Any],
                 finish: Callable[[Any, Any], Any], validate: bool = True) -> None:
        if recorded.needs_values:
            raise PlanError(f"fuse=True needs noise that can be drawn before the call, but {recorded.needs_values[0]!r}"
                            " noise depends on parameter values (Poisson, Binomial, Gamma, Beta, Dirichlet); use fuse=False")
        check_fusable(p)
        self.B, self.plan, self.draws, self.batch_axes, self.memo = B, p, recorded.log, batch_axes, memo
        self.finish = finish
        self.direct = _direct_distributions(p.root) if validate else []
        self.fn = B.fuse(self._body)

    def _body(self, params: dict[str, Any], noise: list[Any], count: int) -> Any:
        low = Lowering(self.B, params, ReplayNoise(noise, count), batch_axes=self.batch_axes,  # type: ignore[arg-type]
                       memo=self.memo, checks=False)
        return self.finish(low, low.evaluate(self.plan.root, {}))

    def __call__(self, native: Mapping[str, Any], source: NoiseSource) -> Any:
        self.check(native)
        noise = [source.draw(uid, stream, kind, shape, branch=branch) for uid, stream, kind, shape, branch in self.draws]
        params = with_sample_axis(self.B, native)
        return self.fn(params, noise, source.count)

    def check(self, native: Mapping[str, Any]) -> None:
        """Check, eagerly, every distribution whose parameters are constants or given parameters
        (constants were checked on the first call and stay in the memo)."""
        low = Lowering(self.B, {}, None, memo=self.memo)  # type: ignore[arg-type]
        for context, d in self.direct:
            low.check(d, {k: native[v.id] for k, v in d.params if isinstance(v, ir.Name)}, {}, where=(context, d))


def check_fusable(p: Plan) -> None:
    """Refuse, before anything runs, a plan with state that changes between calls."""
    for node in p.nodes:
        if node.spec.stateful:
            raise PlanError(f"fuse=True cannot carry the running state of {node.var}'s estimator ({node.spec.describe()})"
                            " across calls inside a compiled function; use the leave-one-out baseline or fuse=False")


def _direct_distributions(root: ir.Expr) -> list[tuple[Any, ir.Dist]]:
    """``(where, distribution)`` for the random nodes, KL and log-ratio terms in ``root`` whose
    distribution's parameters are all numbers or free names (the objective's parameters)."""
    out: dict[tuple[Any, ir.Dist], None] = {}
    bound: set[str] = set()

    def direct(d: ir.Dist) -> bool:
        return all(isinstance(v, ir.Num) or (isinstance(v, ir.Name) and v.id not in bound) for _, v in d.params)

    def visit(e: ir.Expr) -> None:
        for node in getattr(e, "nodes", ()):  # an expectation's random nodes, in order
            if direct(node.dist):
                out[(node.var, node.dist)] = None
            bound.add(node.var)
        if isinstance(e, (ir.KL, LogRatio)):
            out.update({(e, d): None for d in (e.p, e.q) if direct(d)})
        for c in e.children():
            visit(c)

    visit(root)
    return list(out)
