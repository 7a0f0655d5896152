"""A backend-native objective for training loops: :func:`compile`.

``sg.compile(expr, backend="torch", n=64)`` returns a callable taking the
parameters by name as native arrays (torch tensors that require grad, module
outputs, or autograd-numpy values) and returning a native scalar: the Monte
Carlo estimate of the expectation (summed over its entries), whose gradient
-- by ``.backward()``, ``torch.autograd.grad`` or ``autograd.grad`` -- is the
planned estimator.  Because the surrogates are DiCE's (Foerster et al. 2018),
differentiating again gives unbiased higher-order derivatives for pathwise,
score-function and enumerated nodes (a baseline ``(1 - [](L)) b`` has zero
mean at every order, since ``E[grad^2 L + grad L grad L^T] = 0``).

The plan is built once per set of parameter shapes; call ``k`` (0, 1, ...) draws fresh
noise from a hash of ``(seed, k, node, ...)`` (see :mod:`stochgrad.noise`; each node's in one
draw, since a call is never split into chunks), so objectives with seeds ``s`` and ``s + 1``
share no call's noise.  The objective owns the running state of its moving-average baselines
(:class:`stochgrad.MovingAverage` specs hold only the decay): ``f.baseline_state[var]`` has
``value`` and ``updates``, advanced once per call, and ``f.baseline_state.reset()`` clears it;
two objectives never share it.  On the jax backend the state can instead be explicit, in and out
(``state = f.init_state(**params); value, state = f(key=k, state=state, **params)``), which a
``jax.jit``-traced call needs: see :mod:`stochgrad.explicit_state`.  With ``n=1`` leave-one-out has no other sample, and the plan
says and runs "no baseline" (see :func:`stochgrad.baselines.single_sample`).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping
from typing import Any

from .analysis import parameters
from .arraynodes import index_parameters
from .backend import Backend
from .backend_registry import get_backend
from .baselines import BaselineState, single_sample
from .distributed import training
from .errors import BackendError, ValidationError, did_you_mean
from .estimators import EstimatorSpec
from .distscope import check_distributions, scoped
from .objective_parts import _NO_STATE, _RECORD, ObjectiveParts
from .fused import FusedCall, RecordingNoise, check_fusable, fused_key_of
from .labels import check_kinds, host_integers, mark
from .noise import NoiseSource, check_seed
from .parser import as_expression
from .planner import DEFAULT_BUDGET, Plan, plan
from .program import Frame, lower
from .sampleaxis import with_sample_axis
from .validation import check_batch_axes_fit, check_count, check_flag, resolve_backend


class Objective(ObjectiveParts):
    """``objective(**params) -> native scalar``; see :func:`compile`.

    ``calls`` counts the calls (call ``k`` draws the noise of ``(seed, k)``); ``baseline_state`` is
    this objective's own :class:`stochgrad.baselines.BaselineState` (moving averages by variable:
    ``f.baseline_state["b"].value``, ``.updates``; ``f.baseline_state.reset()``).

    Attributes:
        calls: how many times the objective has been called.
        baseline_state: the moving-average baselines' state, by variable."""

    def __init__(
        self,
        expr: Any,
        *,
        n: int,
        backend: Backend | str | None,
        estimators: Mapping[str, Any] | None = None,
        policy: str = "unbiased",
        seed: int | None = None,
        enumerate_budget: int = DEFAULT_BUDGET,
        batch_axes: int = 0,
        fuse: bool = False,
        validate: bool = True,
        planned: Plan | None = None,
        distributed: bool = False,
        distributions: Mapping[str, Any] | None = None,
    ) -> None:
        """``backend`` is a configured backend (:func:`compile` resolves names and options; a name
        or ``None`` here means that backend with its default options).  With
        ``planned`` (a plan of ``expr`` for given shapes: :meth:`stochgrad.Plan.objective`) every call
        runs that plan, and parameters of other shapes are refused; without, the objective plans once
        per set of parameter shapes from ``estimators``, ``policy`` and ``enumerate_budget``.
        ``distributions`` are user distributions visible to this objective only (stochgrad.distscope)."""
        n = check_count("n", n, 1, "samples per call")
        self._distributions = check_distributions(distributions, "compile: distributions")
        with scoped(self._distributions):
            self.expr = as_expression(expr)
        self.n = n
        self.B = backend if isinstance(backend, Backend) else get_backend(backend)
        self.parameters = parameters(self.expr)
        self._names = frozenset(self.parameters)
        self._options = dict(
            estimators=estimators, policy=policy, enumerate_budget=enumerate_budget, capabilities=self.B.capabilities
        )
        self._planned = planned
        self._estimators = estimators
        self.seed = secrets.randbits(63) if seed is None else check_seed(seed, "compile: seed")
        self.calls = 0
        self.baseline_state = BaselineState()  # moving averages, carried across this objective's calls
        self.noise_seed = self.seed  # what the calls' noise is drawn from; distributed: a hash of seed and rank
        if check_flag("distributed", distributed):  # one rank of data-parallel training (stochgrad.distributed)
            self.noise_seed, self.baseline_state = training(self.seed)
        self.batch_axes = check_count("batch_axes", batch_axes, 0)
        self._plans: dict[Any, Plan] = {}  # by the parameters' shapes, in their order, and the integer ones
        self._memo: dict[Any, Any] = {}  # constants made and checked once, not once per call
        self.validate = check_flag("validate", validate)
        check_flag("fuse", fuse)
        self._index = index_parameters(self.expr)  # gather indices (theta[school]): read on the host, each call
        if fuse:
            self.B.fuse(lambda: None)  # fails now, not at the end of the first call, if the backend cannot fuse
        self.fuse = fuse
        self._fused: dict[Any, FusedCall] = {}  # by fused_key_of: shapes (and gather indices)

    def control_parameters(self) -> list[Any]:
        """The learned control variates' tensors of the estimator objects given to this objective
        (:meth:`~stochgrad.estimators.EstimatorSpec.control_parameters`), for the optimizer."""
        specs = [s for s in (self._estimators or {}).values() if isinstance(s, EstimatorSpec)]
        specs += [node.spec for node in self._planned.nodes] if self._planned is not None else []
        return list({id(q): q for s in specs for q in s.control_parameters()}.values())

    def _bad_names(self, params: Mapping[str, Any]) -> None:
        missing = [k for k in self.parameters if k not in params]
        if missing:
            raise ValidationError(
                f"parameter {missing[0]!r} is missing; the expression needs: {', '.join(self.parameters)}"
            )
        for k in params:
            if k not in self.parameters:
                raise ValidationError(
                    f"unknown parameter {k!r}{did_you_mean(k, self.parameters)}; the expression's"
                    f" parameters are: {', '.join(self.parameters) or 'none'}"
                )

    def plan(self, **shapes: tuple[int, ...]) -> Plan:
        """The plan used for parameters of these shapes (built once, then reused)."""
        if len(shapes) != len(self.parameters) or any(k not in shapes for k in self.parameters):
            self._bad_names(shapes)
        with scoped(self._distributions):
            return self._plan_for(tuple(tuple(shapes[k]) for k in self.parameters), frozenset())

    def _plan_for(self, key: tuple[tuple[int, ...], ...], ints: frozenset[str]) -> Plan:
        """The plan for these shapes and integer-valued parameters (stochgrad.labels), made once."""
        if (key, ints) not in self._plans:
            if self._planned is not None:  # Plan.objective: its one plan, for its shapes only
                self._planned.check_shapes(dict(zip(self.parameters, key)))
                check_kinds(self._planned.expr, ints)
                p = self._planned
            else:
                shapes = dict(zip(self.parameters, key))
                p = plan(mark(self.expr, ints), shapes=shapes, **self._options)  # type: ignore[arg-type]
            check_batch_axes_fit(self.batch_axes, p.nodes)
            if self.batch_axes:  # the declared plate replaces what the planner inferred (as api.Plan prints it)
                note = f"plate declared (batch_axes={self.batch_axes})"
                p = dataclasses.replace(
                    p, nodes=tuple(dataclasses.replace(n, plate_note=note) if n.plate_note else n for n in p.nodes)
                )
            self._plans[key, ints] = single_sample(p) if self.n == 1 else p
        return self._plans[key, ints]

    def __call__(self, **params: Any) -> Any:
        if not self._distributions:
            return self._call(**params)
        with scoped(self._distributions):  # planned, lowered and run with its own laws
            return self._call(**params)

    def _call(self, **params: Any) -> Any:
        key = params.pop("key", None) if "key" not in self._names else None  # a PRNG key (jax): B.call_noise
        state = params.pop("state", _NO_STATE) if "state" not in self._names else _NO_STATE  # explicit_state
        if params.keys() != self._names:
            self._bad_names(params)
        B = self.B
        parameter, shape = B.parameter, B.shape
        known = host_integers(params, self._index)  # gather indices and integer data (labels): on the host
        if known:
            native = {k: B.asarray(known[k]) if k in known else parameter(k, v) for k, v in params.items()}
        else:
            native = {k: parameter(k, v) for k, v in params.items()}  # native arrays checked, numbers made
        shapes = tuple([shape(native[k]) for k in self.parameters])
        ints = frozenset(known)
        p = self._plans.get((shapes, ints))
        if p is None:
            p = self._plan_for(shapes, ints)
        keyed = B.call_noise(key, self.n, native)
        checks = self.validate and not getattr(keyed, "traced", False)  # abstract under jax.jit: no host reads
        explicit = None if state is _NO_STATE else self._explicit(p, state)
        if explicit is not None:  # moving averages in and out: (value, next state)
            call = self.calls
            self.calls += keyed is None and state is not _RECORD  # seeded noise: call k draws (seed, k)
            frame = Frame(
                B,
                with_sample_axis(B, native),
                keyed or NoiseSource(B, self.noise_seed, 0, self.n, blocked=False, call=call),
                known=known,
                batch_axes=self.batch_axes,
                memo=self._memo,
                checks=checks,
                baselines=explicit,  # type: ignore[arg-type]  # BaselineState.node, duck-typed
            )
            out = self._finish(frame, lower(p).run(frame))
            return (self._check_finite(out, p, native, call, keyed) if checks else out), explicit.out()
        if getattr(keyed, "traced", False):
            stateful = [node for node in p.nodes if node.spec.stateful]
            if stateful:
                raise BackendError(
                    f"node {stateful[0].var}'s estimator ({stateful[0].spec.describe()}) keeps state between calls,"
                    " which a traced (jax.jit) call cannot mutate: pass it in and out explicitly,"
                    " state = f.init_state(**params); value, state = f(key=k, state=state, **params)"
                )
        if keyed is not None:
            if self.fuse:
                raise ValidationError("fuse=True cannot take a PRNG key (key=...)")
            frame = Frame(
                B,
                with_sample_axis(B, native),
                keyed,
                known=known,
                batch_axes=self.batch_axes,
                memo=self._memo,
                checks=checks,
                baselines=self.baseline_state,
            )
            out = self._finish(frame, lower(p).run(frame))
            return self._check_finite(out, p, native, self.calls, keyed) if checks else out
        call = self.calls
        self.calls += 1
        if self.fuse:
            gathers = {k: v for k, v in known.items() if k in self._index}  # graph constants (labels: inputs)
            fused_key = fused_key_of((shapes, ints), gathers)  # a gather's indices are constants of a compiled graph
            if fused_key in self._fused:
                noise = NoiseSource(B, self.noise_seed, 0, self.n, blocked=False, call=call)
                return self._check_finite(self._fused[fused_key](native, noise), p, native, call)
            check_fusable(p)  # before the eager call changes any state
        noise = (RecordingNoise if self.fuse else NoiseSource)(B, self.noise_seed, 0, self.n, blocked=False, call=call)
        frame = Frame(
            B,
            with_sample_axis(B, native),
            noise,
            known=known,
            batch_axes=self.batch_axes,
            memo=self._memo,
            checks=self.validate,
            baselines=self.baseline_state,
        )
        out = self._finish(frame, lower(p).run(frame))
        if self.fuse:  # the first call for these shapes ran eagerly (and checked everything); later ones fuse
            self._fused[fused_key] = FusedCall(
                B,
                p,
                noise,  # type: ignore[arg-type]
                batch_axes=self.batch_axes,
                memo=self._memo,
                finish=self._finish,
                validate=self.validate,
                known=known,
            )
        return self._check_finite(out, p, native, call)


def compile(  # noqa: A001  (the public name the issue asks for)
    expr: Any,
    *,
    n: int,
    backend: str | Backend | None = None,
    estimators: Mapping[str, Any] | None = None,
    policy: str = "unbiased",
    seed: int | None = None,
    enumerate_budget: int = DEFAULT_BUDGET,
    batch_axes: int = 0,
    fuse: bool = False,
    validate: bool = True,
    backend_options: Mapping[str, Any] | None = None,
    distributed: bool = False,
    distributions: Mapping[str, Any] | None = None,
    **extra: Any,
) -> Objective:
    """A native objective: ``f = sg.compile(text, backend="torch", n=64); f(mu=mu_t).backward()``.

    ``batch_axes=1`` declares the first axis of every random node a plate of independent examples
    (each example's cost depends on its own latents only): score terms then pair each example's
    cost with its own log-probability and baseline, as a hand-written per-example REINFORCE does.

    ``fuse=True`` (torch) compiles each call into fused kernels with ``torch.compile``, after a first
    eager call per set of parameter shapes; the noise and results equal the eager objective's for
    the same seed.  It pays off where the work is memory-bound (large ``n``, on a GPU above all) and
    costs a compilation (seconds) up front; see :mod:`stochgrad.fused` for what it refuses.

    ``validate=False`` skips the checks of distribution parameters on every call (as
    ``torch.distributions``' ``validate_args=False``): invalid values then give wrong numbers rather
    than an error, but no call copies parameters to the host, which on a GPU means no sync.  With
    ``validate=True`` each call also reads its returned value (one scalar) and gives a
    :class:`~stochgrad.NonFiniteWarning` naming the expression and the first non-finite
    subexpression when it is NaN or infinite.  A gradient exists only after the caller's
    ``backward`` / ``grad``, outside the objective, so its finiteness is the caller's to check
    (``f.check_gradients(mu=mu.grad)`` counts and names non-finite entries).

    ``backend_options`` configure the backend (``{"dtype": "float32"}`` for torch), or ``backend`` is
    a configured backend object (``sg.get_backend("torch", dtype="float32")``); a bare backend
    option (``dtype="float32"``) still works but is deprecated, and any other unknown keyword is a
    ``TypeError``.  The objective plans once per set of parameter shapes;
    ``sg.plan(expr, shapes).objective(n=...)`` runs one given plan.

    ``distributed=True`` (inside an initialised ``torch.distributed`` group, e.g. with
    ``DistributedDataParallel``): every rank draws independent noise, from a hash of ``seed`` and its
    rank (``f.noise_seed``), and moving-average baselines average every rank's batch, so their state
    is the same on all ranks; see :mod:`stochgrad.distributed`.

    Args:
        expr: DSL text or an expression.
        n: samples per call.
        backend: a backend name (``"autograd"``, ``"torch"``, ``"jax"``) or a configured backend object.
        estimators: per-variable overrides (``{"z": "score"}``, ``{"b": sg.Relax(surrogate=net)}``).
        policy: ``"unbiased"`` (default), ``"low_variance"`` or ``"min_variance"``.
        seed: seed of the first call's noise (``None``: fresh); call k draws its own noise.
        enumerate_budget: the most joint states summed exactly.
        batch_axes: leading axes of independent examples (a declared plate).
        fuse: compile each call into one ``torch.compile`` graph (torch only).
        validate: check the distribution parameters on every call.
        distributed: one rank of data-parallel training (independent noise per rank).
        distributions: user distributions visible to this objective only, by name (:mod:`stochgrad.distscope`).
        backend_options: options for the named backend (``{"dtype": "float32"}``).

    Returns:
        An :class:`Objective`: call it with the parameters as keywords (native arrays or tensors) to
        get a native scalar whose gradient is the planned estimator.

    Raises:
        ParseError: the text is not a valid expression.
        PlanError: an override does not apply, or ``fuse=True`` meets a plan it cannot compile.
        BackendError: the backend cannot be loaded.
        TypeError: an unknown keyword (with a did-you-mean)."""
    B = resolve_backend("compile", backend, backend_options, extra, _KEYWORDS)
    return Objective(
        expr,
        n=n,
        backend=B,
        estimators=estimators,
        policy=policy,
        seed=seed,
        enumerate_budget=enumerate_budget,
        batch_axes=batch_axes,
        fuse=fuse,
        validate=validate,
        distributed=distributed,
        distributions=distributions,
    )


#: compile's own keywords, for the did-you-mean of a misspelt one
_KEYWORDS = (
    "n",
    "backend",
    "backend_options",
    "estimators",
    "policy",
    "seed",
    "enumerate_budget",
    "batch_axes",
    "fuse",
    "validate",
    "distributed",
    "distributions",
)
