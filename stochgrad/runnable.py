"""The runnable :class:`Plan` that :func:`stochgrad.plan` returns, and the parameter checks it and
:func:`stochgrad.estimate` share.

A ``Plan`` is a :class:`stochgrad.planned.Plan` (estimator per random node, with reasons) bound to
the shapes and backend it was made for: :meth:`Plan.estimate` runs it by
:func:`stochgrad.run.run_estimate` (Monte Carlo estimates with standard errors) and
:meth:`Plan.objective` makes a native objective (:class:`stochgrad.compiled.Objective`).  Nothing is
planned when a plan runs (:mod:`stochgrad.api` makes plans).
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from . import planned
from .arraynodes import as_index_array
from .backend import Backend
from .backend_registry import get_backend
from .baselines import single_sample
from .compiled import Objective
from .distributed import shardable, take
from .distributions import Distribution
from .distscope import scoped
from .errors import BiasWarning, ValidationError, did_you_mean
from .labels import check_kinds, data_parameters, integer_names
from .moments import Moments as _Moments  # noqa: F401  (kept importable from here)
from .moments import accumulate as _accumulate  # noqa: F401
from .noise import check_seed
from .run import CHUNK_ENTRIES, Estimate, auto_chunk, run_estimate  # noqa: F401  (CHUNK_ENTRIES, auto_chunk: re-exported)
from .validation import (
    as_real_array,
    check_count,
    check_mapping,
)


def _check_params(names: tuple[str, ...], params: Any, index: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The parameters as float64 arrays, each checked by :func:`stochgrad.validation.as_real_array`
    (the ``index`` ones, which gather as in ``theta[school]`` or hold integer data, as int64 arrays:
    :func:`as_index_array`, :mod:`stochgrad.labels`).
    Their shapes need not broadcast together: each random node and each operation checks its own
    operands (the planner's shape pass, :mod:`stochgrad.shapes`)."""
    params = check_mapping(params)
    needed = set(names)
    for name in params:
        if name == "pi" and name not in needed:
            raise ValidationError("'pi' is the constant 3.14159... in the DSL, not a parameter: rename the parameter")
        if name not in needed:
            raise ValidationError(
                f"unknown parameter {name!r}{did_you_mean(name, needed)}; the expression's parameters are: "
                f"{', '.join(names) or 'none'}"
            )
    out = {}
    for name in names:
        if name not in params:
            raise ValidationError(f"parameter {name!r} is missing; the expression needs: {', '.join(names)}")
        if name in index:
            out[name] = as_index_array(name, params[name])
            continue
        value = as_real_array(name, params[name])
        if not np.isfinite(value).all():
            raise ValidationError(f"parameter {name!r} must be finite, got {value!r}")
        out[name] = value
    return out


@dataclass(frozen=True, repr=False)  # planned.Plan's short repr
class Plan(planned.Plan):
    """A plan for parameters of given shapes on a given backend: print it (an estimator per random
    node, with reasons), compare it (``==``), run it (:meth:`estimate`, :meth:`objective`).

    ``shapes`` are the parameter shapes it was made for (``None``: all scalar, the default of
    ``sg.plan(expr)``); a run on parameters of other shapes is refused with a
    :class:`~stochgrad.errors.ValidationError` (make the plan for them: the supports, enumeration
    and plate depend on the shapes).  ``backend`` runs it (``None`` only when the default backend
    could not be loaded at planning time: it is looked up, and its error raised, when the plan runs).
    ``batch_axes`` and ``policy`` are those it was planned with.

    Attributes:
        backend: the backend that runs the plan (``None``: the default backend, looked up at run time).
        batch_axes: leading axes of independent examples the plan was made with.
        policy: ``"unbiased"``, ``"low_variance"`` or ``"min_variance"``.
        distributions: the user distributions scoped to the plan (``distributions=``), by name:
            every run of the plan sees them (:mod:`stochgrad.distscope`)."""

    backend: Backend | None = field(default=None, compare=False, repr=False)
    batch_axes: int = 0
    policy: str = "unbiased"
    distributions: tuple[tuple[str, Distribution], ...] = field(default=(), repr=False)

    @shardable
    def estimate(
        self,
        params: Mapping[str, Any] | None = None,
        *,
        n: int,
        seed: int | None = None,
        chunk_size: int | None = None,
        wrt: Iterable[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
        memory_limit: int | None = None,
        distributed: bool = False,
    ) -> Estimate:
        """Run this plan on ``params`` (values of the planned shapes); the keywords are
        :func:`stochgrad.estimate`'s (``seed=None``: a fresh seed, reported as :attr:`Estimate.seed`;
        ``distributed=True``: this rank's share of a sharded run, :mod:`stochgrad.distributed`).
        Nothing is planned here, min_variance pilots included: same plan, params and seed give the
        numbers ``sg.estimate`` gives for the inputs the plan was made from.

        Args:
            params: parameter values, of the shapes the plan was made for.
            n: number of samples (a positive integer).
            seed: non-negative integer fixing the noise; ``None`` draws a fresh one.
            chunk_size: at most this many samples in memory at once (rounded to whole noise blocks).
            wrt: names of the parameters to differentiate (default: all).
            progress: called as ``progress(done, n)`` after each chunk.
            memory_limit: bytes a chunk may take (default: half the physical memory).

        Returns:
            The :class:`~stochgrad.run.Estimate` (value, gradients, standard errors, diagnostics).

        Raises:
            ValidationError: a parameter is missing, invalid, or of another shape than planned.
            MemoryLimitError: even the smallest chunk would exceed ``memory_limit``."""
        n = check_count("n", n, 1, "the number of samples")
        if chunk_size is not None:
            chunk_size = check_count("chunk_size", chunk_size, 1)
        values = _check_params(self.parameters, params, data_parameters(self.expr, params))
        self.check_shapes({k: v.shape for k, v in values.items()})
        check_kinds(self.expr, integer_names(values))
        seed = secrets.randbits(63) if seed is None else check_seed(seed, "estimate: seed")
        return self._run(
            values, n=n, seed=seed, chunk_size=chunk_size, wrt=wrt, progress=progress, memory_limit=memory_limit
        )

    def objective(
        self, *, n: int, seed: int | None = None, fuse: bool = False, validate: bool = True, distributed: bool = False
    ) -> Objective:
        """A native objective that runs this plan (see :func:`stochgrad.compile`, whose objective it
        equals for the same seed), for parameters of this plan's shapes only.

        Args:
            n: samples per call.
            seed: seed of the first call's noise (``None``: fresh); call k draws its own noise.
            fuse: compile each call into one ``torch.compile`` graph (torch only).
            validate: check the distribution parameters on every call.

        Returns:
            A callable :class:`~stochgrad.compiled.Objective` of the parameters (keywords)."""
        return Objective(
            self.expr,
            n=n,
            backend=self._backend(),
            seed=seed,
            batch_axes=self.batch_axes,
            fuse=fuse,
            validate=validate,
            planned=self,
            distributed=distributed,
            distributions=dict(self.distributions),
        )

    def _backend(self) -> Backend:
        return get_backend(None) if self.backend is None else self.backend

    def __str__(self) -> str:
        if not self.batch_axes:
            return super().__str__()
        declared = f"plate declared (batch_axes={self.batch_axes})"  # it replaces what the planner inferred
        nodes = tuple(replace(n, plate_note=declared) if n.plate_note else n for n in self.nodes)
        return planned.Plan.__str__(replace(self, nodes=nodes))

    def _run(
        self,
        values: dict[str, np.ndarray],
        *,
        n: int,
        seed: int,
        chunk_size: int | None,
        wrt: Iterable[str] | None,
        progress: Callable[[int, int], None] | None,
        memory_limit: int | None,
    ) -> Estimate:
        """Run on checked values and arguments: what :meth:`estimate` and :func:`estimate` share."""
        for node in self.nodes:  # a biased choice the user did not ask for must not pass silently
            if node.biased and not node.reason.startswith("requested") and self.policy != "low_variance":
                warnings.warn(f"no unbiased estimator applies to {node}", BiasWarning, stacklevel=3)
        p = single_sample(self) if n == 1 else self  # leave-one-out has no other sample: say, and run, no baseline
        with scoped(dict(self.distributions)):  # the laws it was planned with (stochgrad.distscope)
            return run_estimate(
                p,
                values,
                self._backend(),
                n=n,
                seed=seed,
                chunk_size=chunk_size,
                wrt=wrt,
                progress=progress,
                memory_limit=memory_limit,
                batch_axes=self.batch_axes,
                shard=take(),
            )
