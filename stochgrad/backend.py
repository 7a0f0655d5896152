"""The one narrow interface every backend implements.

The core never imports a framework: a backend module is imported only when a
user asks for it by name (einops' rule).  Built-in backends register here
exactly as a third-party one would, with :func:`register_backend`.

The estimators are *surrogate builders* (DiCE, Foerster et al. 2018; optax's
``monte_carlo``): each builds a scalar whose value is the Monte Carlo estimate
and whose gradient is the estimator.  So a backend needs only array arithmetic,
``stop_gradient`` and its own reverse-mode autodiff -- no custom backward code.

Every array a backend handles during lowering has a leading *sample axis* of
size 1 or n followed by the value's logical shape.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import BackendError
from .types import Array

#: elementwise primitives a backend must supply in :attr:`Backend.fn`
PRIMITIVES = frozenset(
    {
        "exp",
        "log",
        "log1p",
        "expm1",
        "sqrt",
        "abs",
        "sin",
        "cos",
        "tan",
        "tanh",
        "sigmoid",
        "softplus",
        "floor",
        "round",
        "sign",
        "lt",
        "le",
        "gt",
        "ge",
        "clip",
        "lgamma",
        "digamma",
        # the function table's (stochgrad.functions): erf(x); maximum(a, b), minimum(a, b) (differentiable in
        # both); where(c, a, b) (a where c != 0, else b; no derivative in c); permute(x, axes) (numpy's transpose)
        "erf",
        "maximum",
        "minimum",
        "where",
        "permute",
    }
)
#: exponentially scaled modified Bessel functions ``i0e(x) = exp(-|x|) I0(x)``, ``i1e`` likewise, and ``acos``
#: (the von Mises distribution, :mod:`stochgrad.vonmises`)
PRIMITIVES = PRIMITIVES | {"i0e", "i1e", "acos"}


class Backend(ABC):
    """A framework adapter: the whole of what the core asks of an array framework.

    **Native arrays** (:data:`stochgrad.types.Array`: a ``torch.Tensor``, a numpy/autograd array).
    The core computes with them directly, relying only on

    * the operators ``+ - * / **`` and unary ``-``, between two native arrays or a native array and a
      Python float on either side, with numpy's broadcasting rules, giving a native array that
      :meth:`value_and_grad` differentiates;
    * basic indexing with integers and slices of positive step (``x[:k]``, ``x[:, j]``), as numpy does it;
    * ``a @ b`` of two native arrays of the same rank (at least 3), numpy's ``matmul`` with its batch
      axes broadcast (``a @ b`` in the DSL, :mod:`stochgrad.program.arraysteps`).

    Everything else goes through the backend: elementwise functions by name in :attr:`fn`
    (comparisons give 0.0/1.0, never booleans), shapes from :meth:`shape`, reductions from
    :meth:`sum`, copies out from :meth:`to_numpy`.

    **The sample axis.**  Every array the core passes a backend or gets back from one has a leading
    sample axis, of size n (one row per sample) or 1 (the same for every sample, broadcast against
    n), followed by the value's logical shape.  :meth:`leaf` adds it, :meth:`concat` joins along it,
    :meth:`sample_sums` reduces it; :meth:`shape`, :meth:`reshape` and :meth:`sum` see all axes, it
    included.

    **Gradients.**  :meth:`stop_gradient` is the same value treated as a constant.  The estimators are
    surrogates built from arithmetic and ``stop_gradient`` alone (see the module docstring), so a
    backend needs its own reverse-mode autodiff (:meth:`value_and_grad`) and no custom backward rules
    (:meth:`implicit_gamma` aside).

    **Noise.**  :meth:`generator` makes a generator from a 63-bit seed that :mod:`stochgrad.noise`
    derives from (seed, call, node, block); the core never looks inside it and only hands it back to
    :meth:`noise` and :meth:`noise_blocks`.  Draws must depend on the generator alone, so that a
    chunked run sees the noise of the unchunked one; backends drawing with numpy use
    :class:`stochgrad.noise.NumpyStream` so that every such backend sees the same numbers for a seed.

    **Required**: :attr:`name`, :attr:`fn` (every name of :data:`PRIMITIVES`) and the abstract
    methods (:meth:`asarray`, :meth:`leaf`, :meth:`to_numpy`, :meth:`stop_gradient`, :meth:`shape`,
    :meth:`reshape`, :meth:`sum`, :meth:`log_softmax`, :meth:`one_hot_argmax`, :meth:`generator`,
    :meth:`noise`, :meth:`concat`, :meth:`value_and_grad`).  **Defaulted** (override for speed or
    stricter checks): :meth:`native_problem`, :meth:`parameter`, :meth:`item`, :meth:`softmax`,
    :meth:`noise_blocks`, :meth:`sample_sums`.  **Optional**: :meth:`implicit_gamma` (with the
    ``"implicit_reparam"`` capability), :meth:`cholesky`, :meth:`solve_triangular` and :meth:`fuse`
    raise :class:`BackendError` unless implemented; an attribute ``dtype`` (a dtype or its name; float64 without one) sets the float
    type the precision checks, clips and messages assume.
    """

    name: str = ""
    #: optional abilities the planner may rely on: "implicit_reparam" means :meth:`implicit_gamma`
    #: makes ``noise("gamma", ...)`` differentiable in its concentration (Figurnov et al. 2018)
    capabilities: frozenset[str] = frozenset()
    #: elementwise primitives by name (see :data:`PRIMITIVES`); comparisons return 0.0/1.0;
    #: ``clip(x, lo, hi)`` takes float bounds; ``permute(x, axes)`` takes a tuple of ints
    fn: Mapping[str, Callable[..., Array]]

    # -- arrays -----------------------------------------------------------
    @abstractmethod
    def asarray(self, value: np.ndarray) -> Array:
        """A constant native array (no gradient) of the backend's dtype and device."""

    @abstractmethod
    def leaf(self, value: np.ndarray, count: int) -> Array:
        """A differentiable input of shape ``(count, *value.shape)``: one copy per sample,
        so the gradient with respect to it holds each sample's own contribution."""

    def native_problem(self, x: Any) -> str | None:
        """None if ``x`` is an array this backend computes with (its own type, of its floating dtype, on
        its device); else what is wrong with it, in words (for messages about user functions and
        compiled objectives).  This default accepts anything; the built-in backends check."""
        return None

    def parameter(self, name: str, value: Any) -> Array:
        """A parameter passed to a compiled objective as a native array.  Python numbers, lists and numpy
        arrays become constants of the backend's dtype and device (no gradient), by the rules of
        :func:`stochgrad.validation.as_real_array`; anything else is taken as a native array (the
        built-in backends check it, see :meth:`native_problem`)."""
        if isinstance(value, (numbers.Number, list, tuple, np.ndarray, np.generic, str, bytes)) or value is None:
            from .validation import as_real_array

            return self.asarray(as_real_array(name, value))
        return value

    @abstractmethod
    def to_numpy(self, x: Array) -> np.ndarray:
        """A float64 numpy copy of a value (gradient stripped)."""

    def item(self, x: Array) -> float:
        """The value of a one-entry array as a Python float (the parameter checks' common case,
        cheaper than a numpy copy on frameworks that have a direct route)."""
        return float(self.to_numpy(x).reshape(()))

    @abstractmethod
    def stop_gradient(self, x: Array) -> Array:
        """The same value, treated as a constant by differentiation."""

    @abstractmethod
    def shape(self, x: Array) -> tuple[int, ...]: ...

    @abstractmethod
    def reshape(self, x: Array, shape: Sequence[int]) -> Array: ...

    @abstractmethod
    def sum(self, x: Array, axes: tuple[int, ...]) -> Array:
        """Sum over ``axes`` (non-negative), dropping them."""

    def chunk_workers(self) -> int:
        """How many chunks of an ``estimate`` this backend can compute at once on threads of this
        process (see :mod:`stochgrad.parallel`): more than 1 only where the framework releases the
        GIL inside its kernels.  The default, 1, runs them one after another."""
        return 1

    def one_thread_each(self) -> contextlib.AbstractContextManager[None]:
        """A context in which each thread computing chunks computes on one thread of its own
        (the framework's intra-op parallelism off); the default changes nothing."""
        return contextlib.nullcontext()

    def mean(self, x: Array) -> Array:
        """The mean of all entries (a scalar): one operation where the framework has it, which a
        compiled objective's reverse pass then crosses once rather than a sum and a division."""
        shape = self.shape(x)
        return self.sum(x, tuple(range(len(shape)))) / max(1, math.prod(shape))

    @abstractmethod
    def log_softmax(self, x: Array, axis: int) -> Array:
        """``x - log(sum(exp(x)))`` along one axis, computed stably (same shape as ``x``)."""

    def softmax(self, x: Array, axis: int) -> Array:
        """``exp(x) / sum(exp(x))`` along one axis; a framework's fused kernel is fewer passes
        over memory, forward and backward, than this default ``exp(log_softmax(x))``."""
        return self.fn["exp"](self.log_softmax(x, axis))

    @abstractmethod
    def one_hot_argmax(self, x: Array) -> Array:
        """1.0 at the largest entry along the last axis, 0.0 elsewhere (no gradient)."""

    def take(self, x: Array, index: np.ndarray, axis: int) -> Array:
        """``x`` gathered along ``axis`` (the sample axis is axis 0) at ``index``, a numpy array of
        non-negative integers of any shape: numpy's ``take``, of shape ``x.shape[:axis] + index.shape
        + x.shape[axis + 1:]``, whose gradient adds up over repeated entries (``theta[school]`` in the
        DSL).  This default indexes natively, ``x[:, ..., index]``, as numpy and autograd do."""
        return x[(slice(None),) * axis + (index,)]

    # -- noise --------------------------------------------------------------
    @abstractmethod
    def generator(self, seed: int) -> Any:
        """A fresh random generator seeded with a 63-bit integer."""

    @abstractmethod
    def noise(self, kind: str, generator: Any, shape: tuple[int, ...], *params: Array) -> Array:
        """Random draws of ``shape`` (parameters broadcast to it):

        * ``"normal"``: standard normal; ``"uniform"``: strictly inside (0, 1), so that logs and
          inverse CDFs stay finite;
        * ``"poisson"`` (rate), ``"binomial"`` (total_count, probs): integer counts as floats;
        * ``"gamma"`` (concentration): standard gamma, not differentiable (see :meth:`implicit_gamma`)."""

    def implicit_gamma(self, alpha: Array, z: Array, refusal: str) -> Array:
        """Standard-gamma draws ``z`` (from ``noise("gamma", ..., alpha)``) made differentiable in
        ``alpha`` by implicit reparameterization, ``dz/dalpha = -(dF/dalpha) / p(z; alpha)``, to the
        first order: a second derivative raises ``PlanError(refusal)``.  Backends with the
        ``"implicit_reparam"`` capability implement it."""
        raise BackendError(f"the {self.name} backend has no implicit gamma gradient (capability implicit_reparam)")

    def implicit_grad(self, x: Array, z: Array, dz_dx: Array, refusal: str) -> Array:
        """``z`` (gradient-free draws, shape of ``z``) made differentiable in ``x`` (broadcast to ``z``) with the
        elementwise derivative ``dz_dx`` (gradient-free, shape of ``z``): implicit reparameterization for a
        sampler whose derivative is computed by hand (:mod:`stochgrad.vonmises`), to the first order; a second
        derivative raises ``PlanError(refusal)``.  Backends with the ``"implicit_reparam"`` capability implement it."""
        raise BackendError(f"the {self.name} backend has no implicit gradients (capability implicit_reparam)")

    def grad_inside(self, fn: Callable[[Array], Array], x: Array) -> tuple[Array, Array]:
        """``(fn(x), d sum(fn(x)) / dx)``, both gradient-free, computed *inside* a traced forward pass
        (``x`` gradient-free; ``fn`` may read traced values, which get no gradient from this call):
        with one row per sample, the gradient holds each sample's own.  For the delta-method control
        variate (:mod:`stochgrad.estimators.delta`).  Backends with the ``"grad_inside"`` capability
        implement it."""
        raise BackendError(
            f"the {self.name} backend cannot differentiate inside a forward pass (capability grad_inside)"
        )

    def hvp_inside(self, fn: Callable[[Array], Array], x: Array, v: Array) -> tuple[Array, Array, Array]:
        """``(fn(x), grad, H v)`` of ``sum(fn(x))`` at ``x``, all gradient-free, inside a traced forward
        pass (as :meth:`grad_inside`; ``v`` gradient-free, the shape of ``x``): per row, the Hessian of
        that row's cost times that row of ``v``.  For the second-order delta method
        (:mod:`stochgrad.estimators.pathwise_delta`); capability ``"hvp_inside"``."""
        raise BackendError(
            f"the {self.name} backend cannot take Hessian-vector products inside a forward pass (capability hvp_inside)"
        )

    def noise_blocks(
        self, kind: str, generators: Sequence[Any], counts: Sequence[int], shape: tuple[int, ...]
    ) -> Array:
        """Parameter-free noise (``"normal"``, ``"uniform"``) of shape ``(sum(counts), *shape)``, block
        ``i`` from ``generators[i]``: the numbers of :meth:`noise` per block, concatenated.  This
        default does just that; a backend may fill one array in place instead (no copy)."""
        return self.concat([self.noise(kind, g, (c, *shape)) for g, c in zip(generators, counts)])

    def call_noise(self, key: Any, count: int, native: Mapping[str, Array]) -> Any:
        """The noise of one call of a compiled objective given ``key`` (the call's PRNG key, ``None``
        when none was passed) and its native parameters: an object with ``draw`` as
        :class:`stochgrad.noise.NoiseSource` has it (and ``traced = True`` where the call is being
        traced abstractly, so the host-side checks are skipped), or ``None`` for stochgrad's own
        seeded streams.  This default takes no key (the JAX backend's noise is a function of one)."""
        if key is not None:
            raise BackendError(
                f"the {self.name} backend takes no PRNG key (key=...); its noise comes from the"
                " objective's seed and call count"
            )
        return None

    @abstractmethod
    def concat(self, parts: Sequence[Array]) -> Array:
        """Join arrays along the sample axis."""

    def sample_sums(self, x: Array) -> tuple[np.ndarray, np.ndarray]:
        """``sum_i x_i`` and ``sum_i x_i * x_i`` over the sample axis, as float64 numpy arrays of
        shape ``x.shape[1:]`` (for standard errors).  This default sums in numpy; a backend may
        sum where its arrays live, accumulating in float64."""
        return numpy_sample_sums(self.to_numpy(x))

    # -- autodiff -----------------------------------------------------------
    @abstractmethod
    def value_and_grad(
        self, fn: Callable[[list[Array]], tuple[Array, Any]], leaves: list[Array]
    ) -> tuple[Any, list[Array]]:
        """Run ``fn(leaves) -> (scalar, aux)``; return ``(aux, d scalar / d leaves)``.

        ``aux`` comes back as it was returned (already gradient-free)."""

    # -- optional -----------------------------------------------------------
    def cholesky(self, x: Array) -> Array:
        """The lower Cholesky factor ``L`` (``L L^T = x``) of symmetric positive definite matrices
        over the last two axes, batched over the leading ones (the sample axis included), reading
        the lower triangle, differentiable with a symmetric gradient.  A matrix with no factor raises
        ``numpy.linalg.LinAlgError`` (the caller names the parameter).  Optional (a
        MultivariateNormal's ``covariance_matrix`` needs it)."""
        raise BackendError(
            f"the {self.name} backend has no cholesky (a MultivariateNormal's covariance_matrix"
            " needs it; give scale_tril instead)"
        )

    def solve_triangular(self, a: Array, b: Array, lower: bool = True) -> Array:
        """``x`` with ``a @ x = b`` for triangular ``a`` (..., d, d), reading only its ``lower`` (or
        upper) triangle, and ``b`` (..., d, k); leading axes broadcast (numpy's rules, the sample
        axis included); differentiable in both.  Optional (a MultivariateNormal's log density and
        KL need it)."""
        raise BackendError(
            f"the {self.name} backend has no solve_triangular (a MultivariateNormal's log density needs it)"
        )

    def fuse(self, fn: Callable[..., Array]) -> Callable[..., Array]:
        """``fn`` compiled into fused kernels (for ``sg.compile(..., fuse=True)``); ``fn`` takes
        native arrays (and lists or dicts of them) and is pure given them.  Optional."""
        raise BackendError(f"the {self.name} backend cannot fuse; use fuse=False (or the torch backend)")


def numpy_sample_sums(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`Backend.sample_sums` of a float64 numpy array."""
    s1, s2 = row_sums(np.ascontiguousarray(v.reshape(v.shape[0], -1).T))
    return s1.reshape(v.shape[1:]), s2.reshape(v.shape[1:])


def row_sums(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sums of each row of a C-contiguous float64 matrix and of its squares (one row per entry,
    samples along the row, so each sum is one contiguous pass; a dot product for a single row)."""
    if rows.shape[0] == 1:
        return rows.sum(axis=1), np.dot(rows[0], rows[0]).reshape(1)
    return rows.sum(axis=1), np.einsum("ij,ij->i", rows, rows)


#: the registry's public names, still importable from here (``stochgrad.backend.get_backend``);
#: they live in :mod:`stochgrad.backend_registry`, imported on first use so this module has no cycle
_REGISTRY_NAMES = frozenset(
    {"DEFAULT_BACKEND", "available_backends", "get_backend", "option_names", "register_backend"}
)


def __getattr__(name: str) -> Any:
    if name in _REGISTRY_NAMES:
        from . import backend_registry

        return getattr(backend_registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
