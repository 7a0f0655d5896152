"""The JAX backend (``backend="jax"``): float32 by default, JAX's convention; float64 when
``jax.config.jax_enable_x64`` is on (read on every use, so turning it on later takes effect).

Gradients come from ``jax.value_and_grad`` over the per-sample leaves; ``stop_gradient`` is
``jax.lax.stop_gradient``.  The core reads values out of arrays while it lowers a program
(parameter checks, a categorical node's sizes, baselines): under ``jax.grad`` (not under ``jax.jit``)
every traced array has a concrete value, which :meth:`JaxBackend.to_numpy` reads
(``Tracer.to_concrete_value``); under ``jax.jit`` there is none, and the backend says so by name.

Noise comes from stochgrad's own numpy streams (:class:`stochgrad.noise.NumpyStream`), converted to
JAX arrays: ``sg.estimate(..., backend="jax")`` draws the very numbers the autograd backend draws for
the same seed (in the same dtype).  A compiled objective called with a PRNG key,
``f = sg.compile(expr, backend="jax", n=64); f(key=k, mu=...)``, draws from ``jax.random`` instead
(:class:`KeyNoise`, through the core's :meth:`~stochgrad.backend.Backend.call_noise` hook): it is then a
pure function of the key and the parameters, so ``jax.jit``, ``jax.vmap`` over keys, ``jax.grad`` and
``jax.hessian`` apply; under ``jax.jit`` the host-side parameter checks are skipped (values are abstract),
and steps that read values on the host (von Mises' rejection loop) are refused by name; moving-average
baselines are explicit state in and out there (``value, state = f(key=k, state=state, **params)``,
:mod:`stochgrad.explicit_state`), and refused by name under ``jax.jit`` without it.  Without a key, an abstract call is refused (the numpy noise would freeze into the trace).

Implicit reparameterization (Figurnov et al. 2018) is a ``jax.custom_jvp``: a standard-gamma draw
``z`` gets the tangent ``dz/dalpha * dalpha`` with JAX's own ``lax.random_gamma_grad`` (the gradient
``jax.random.gamma`` has), and :meth:`JaxBackend.implicit_grad` the given ``dz/dx``.  Both are first
order only: the derivative factor is a ``custom_vjp`` whose reverse rule raises the node's
:class:`~stochgrad.errors.PlanError` when a second reverse-mode derivative flows through it (so a draw
that is traced and then stopped, as the score estimator's, costs no refusal).  Forward over reverse
(``jax.hessian``) through such a node's pathwise gradient is refused with the same PlanError (JAX cannot
take forward mode through a custom_vjp); the score estimator's Gamma/Beta/Dirichlet draws are made from
gradient-free parameters (``stochgrad.gammas``), so ``jax.hessian`` of a score objective never meets it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.special as jsp
import numpy as np

from stochgrad.backend import Backend, numpy_sample_sums
from stochgrad.errors import BackendError, ValidationError
from stochgrad.noise import NumpyStream, fill
from stochgrad.validation import as_real_array

from ._jax_implicit import _implicit, _implicit_gamma


def _concrete(x: Any) -> Any:
    """The value of ``x`` as a numpy-convertible array: ``x`` itself, or a traced array's concrete value
    (under ``jax.grad``, nested or not); a :class:`BackendError` under ``jax.jit``, where there is none."""
    if isinstance(x, jax.core.Tracer):
        v = x.to_concrete_value()
        if v is None:
            raise BackendError(
                "the jax backend needs a concrete value here, but the array is abstract (traced by jax.jit or"
                " jax.vmap): this step reads a value on the host (von Mises' rejection sampler, a moving-average"
                " baseline, seeded numpy noise), so it cannot be traced; call the objective outside"
                " jax.jit/jax.vmap (jax.grad works), or choose another estimator or baseline"
            )
        return v
    return x


def _abstract(x: Any) -> bool:
    """Whether ``x`` is traced with no concrete value (under ``jax.jit`` or ``jax.vmap``)."""
    return isinstance(x, jax.core.Tracer) and x.to_concrete_value() is None


_KINDS = {"normal": 0, "uniform": 1, "poisson": 2, "binomial": 3, "gamma": 4}


class KeyNoise:
    """The noise of one call from a JAX PRNG key: node ``uid``'s stream ``stream`` of ``kind`` (and
    enumeration branch ``branch``) draws from ``fold_in`` of the key by those four words, so the
    draws are a pure function of the key (same key, same numbers; under ``jax.jit`` too).  Draws are
    gradient-free, as :meth:`Backend.noise` promises (gamma draws get their gradient from
    :meth:`JaxBackend.implicit_gamma`).  ``traced``: the call is abstract, so host-side checks are off."""

    def __init__(self, key: Any, count: int, backend: JaxBackend, traced: bool) -> None:
        if not (
            isinstance(key, jax.Array)
            and (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or (key.dtype == jnp.uint32 and key.shape[-1:] == (2,)))
        ):
            raise ValidationError(
                f"key must be a JAX PRNG key (jax.random.key(0) or jax.random.PRNGKey(0)), got"
                f" {type(key).__module__}.{type(key).__qualname__}"
            )
        self.key, self.count, self.B, self.traced = key, count, backend, traced

    def draw(self, uid: int, stream: int, kind: str, shape: tuple[int, ...], *params: Any, branch: int = 0) -> Any:
        k = self.key
        for word in (uid, stream, _KINDS[kind], branch):
            k = jax.random.fold_in(k, word)
        dtype, full = self.B.dtype, (self.count, *shape)
        raw = [jnp.broadcast_to(jax.lax.stop_gradient(q), full) for q in params]
        if kind == "normal":
            return jax.random.normal(k, full, dtype)
        if kind == "uniform":
            eps = float(np.finfo(dtype).eps)
            return jnp.clip(jax.random.uniform(k, full, dtype), eps / 2, 1 - eps / 2)
        if kind == "poisson":
            return jax.random.poisson(k, raw[0], full).astype(dtype)
        if kind == "binomial":
            return jax.random.binomial(k, raw[0], raw[1], full).astype(dtype)
        if kind == "gamma":  # gradient-free here: see implicit_gamma
            return jnp.maximum(jax.lax.stop_gradient(jax.random.gamma(k, raw[0], full, dtype)), np.finfo(dtype).tiny)
        raise ValueError(f"the jax backend cannot draw {kind!r} noise")


def _value_and_row_grads(fn: Callable[[Any], Any], x: Any) -> tuple[Any, Any]:
    """``(fn(x), d sum(fn(x)) / dx)`` by one ``jax.vjp`` with an all-ones cotangent."""
    out, pull = jax.vjp(fn, x)
    return out, pull(jnp.ones_like(out))[0]


def _compare(op: Callable[[Any, Any], Any], backend: JaxBackend) -> Callable[[Any, Any], Any]:
    return lambda a, b: jnp.where(op(a, b), 1.0, 0.0).astype(backend.dtype)


def _where(c: Any, a: Any, b: Any) -> Any:
    return jnp.where(c != 0, a, b)  # numeric condition: nonzero (NaN included) is true


_FLOATS: dict[str, np.dtype[Any]] = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


def _x64() -> bool:
    """Whether ``jax_enable_x64`` is on (read each time: it may be turned on after the backend is made)."""
    return bool(jax.dtypes.canonicalize_dtype(np.float64) == np.float64)


class JaxBackend(Backend):
    name = "jax"
    capabilities = frozenset({"implicit_reparam", "explicit_state", "grad_inside", "hvp_inside"})

    def __init__(self, dtype: Any = None) -> None:
        if dtype is not None:
            try:
                wanted = np.dtype(dtype)
            except TypeError:
                wanted = None
            if wanted not in _FLOATS.values():
                raise ValidationError(
                    f"jax backend option dtype={dtype!r}: the dtype must be 'float32' or 'float64'"
                    " (default: float64 when jax_enable_x64 is on, else float32)"
                )
        self._dtype: np.dtype[Any] | None = None if dtype is None else np.dtype(dtype)
        f = jnp
        self.fn = {
            "exp": f.exp,
            "log": f.log,
            "log1p": f.log1p,
            "expm1": f.expm1,
            "sqrt": f.sqrt,
            "abs": f.abs,
            "sin": f.sin,
            "cos": f.cos,
            "tan": f.tan,
            "tanh": f.tanh,
            "sigmoid": jax.nn.sigmoid,
            "softplus": jax.nn.softplus,
            "floor": f.floor,
            "round": f.round,
            "sign": f.sign,
            "lt": _compare(f.less, self),
            "le": _compare(f.less_equal, self),
            "gt": _compare(f.greater, self),
            "ge": _compare(f.greater_equal, self),
            "clip": f.clip,
            "lgamma": jsp.gammaln,
            "digamma": jsp.digamma,
            # the function table's (stochgrad.functions)
            "erf": jsp.erf,
            "maximum": f.maximum,
            "minimum": f.minimum,
            "where": _where,
            "permute": f.transpose,
            "i0e": jsp.i0e,
            "i1e": jsp.i1e,
            "acos": f.arccos,  # von Mises
        }

    @property
    def dtype(self) -> np.dtype[Any]:
        """float64 when ``jax_enable_x64`` is on, else float32 (JAX's convention); the option
        ``dtype`` fixes it (float64 then needs x64 on)."""
        x64 = _x64()
        if self._dtype is None:
            return _FLOATS["float64" if x64 else "float32"]
        if self._dtype == np.float64 and not x64:
            raise BackendError(
                "jax backend option dtype='float64' needs 64-bit JAX: set"
                " jax.config.update('jax_enable_x64', True) (or JAX_ENABLE_X64=1) first"
            )
        return self._dtype

    # -- arrays -----------------------------------------------------------------------------------
    def asarray(self, value: np.ndarray) -> Any:
        return jnp.asarray(np.asarray(value, dtype=self.dtype))

    def native_problem(self, x: Any) -> str | None:
        if not isinstance(x, jax.Array):
            return f"it is a {type(x).__module__}.{type(x).__qualname__}, not a jax.Array"
        if x.dtype != self.dtype:
            if not jnp.issubdtype(x.dtype, jnp.floating):
                return f"its dtype is {x.dtype}, not floating point (the backend computes in {self.dtype})"
            return (
                f"its dtype is {x.dtype}, but the backend computes in {self.dtype} (jax_enable_x64 is"
                f" {'on' if _x64() else 'off'}): convert it with .astype({self.dtype.name!r})"
            )
        return None

    def parameter(self, name: str, value: Any) -> Any:
        """A JAX array (traced or not) of the backend's dtype is used as it is (with its gradient); an
        integer one becomes a constant of that dtype; a bool or complex one, or one of another floating
        dtype, is refused by name (an abstract one, traced by ``jax.jit`` or ``jax.vmap``, needs a PRNG key:
        see :meth:`call_noise`).  Numbers, lists and numpy arrays become constants; a tensor of
        another framework is refused by name (converting it would cut its gradient)."""
        if isinstance(value, jax.Array):
            if jnp.issubdtype(value.dtype, jnp.integer):
                return value.astype(self.dtype)
            if value.dtype == jnp.bool_ or jnp.issubdtype(value.dtype, jnp.complexfloating):
                raise ValidationError(
                    f"parameter {name!r} is a {value.dtype} array; stochgrad computes with real"
                    f" floating numbers ({self.dtype}): convert it"
                )
            problem = self.native_problem(value)
            if problem is not None:
                raise ValidationError(f"parameter {name!r}: {problem}")
            return value
        if type(value).__module__.split(".")[0] in ("torch", "tensorflow", "autograd"):
            raise ValidationError(
                f"parameter {name!r} is a {type(value).__module__}.{type(value).__qualname__}; the"
                " jax backend takes numbers, numpy arrays and jax arrays"
            )
        return self.asarray(as_real_array(name, value))

    def leaf(self, value: np.ndarray, count: int) -> Any:
        v = self.asarray(value)
        return jnp.broadcast_to(v, (count,) + v.shape)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.array(_concrete(x), dtype=np.float64)

    def item(self, x: Any) -> float:
        return float(np.asarray(_concrete(x)).reshape(()))

    def stop_gradient(self, x: Any) -> Any:
        return jax.lax.stop_gradient(x)

    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(jnp.shape(x))

    def reshape(self, x: Any, shape: Sequence[int]) -> Any:
        return jnp.reshape(x, tuple(shape))

    def mean(self, x: Any) -> Any:
        return jnp.mean(x)

    def sum(self, x: Any, axes: tuple[int, ...]) -> Any:
        return jnp.sum(x, axis=axes) if axes else x

    def log_softmax(self, x: Any, axis: int) -> Any:
        return jax.nn.log_softmax(x, axis=axis)

    def softmax(self, x: Any, axis: int) -> Any:
        return jax.nn.softmax(x, axis=axis)

    def one_hot_argmax(self, x: Any) -> Any:
        v = jax.lax.stop_gradient(x)
        return (v == jnp.max(v, axis=-1, keepdims=True)).astype(self.dtype)

    def take(self, x: Any, index: np.ndarray, axis: int) -> Any:
        return jnp.take(x, jnp.asarray(index), axis=axis)

    def concat(self, parts: Sequence[Any]) -> Any:
        return jnp.concatenate(list(parts), axis=0)

    def sample_sums(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        return numpy_sample_sums(self.to_numpy(x))

    # -- noise (stochgrad's numpy streams: the autograd backend's numbers) ---------------------------
    def generator(self, seed: int) -> NumpyStream:
        return NumpyStream(seed)

    def noise(self, kind: str, stream: NumpyStream, shape: tuple[int, ...], *params: Any) -> Any:
        dtype = self.dtype
        if kind in ("normal", "uniform"):
            return jnp.asarray(fill(kind, [stream], [shape[0]], np.empty(shape, dtype=dtype)))
        generator = stream.generator()
        raw = [np.broadcast_to(np.asarray(_concrete(jax.lax.stop_gradient(q))), shape) for q in params]
        if kind == "poisson":
            out = generator.poisson(raw[0])
        elif kind == "binomial":
            out = generator.binomial(raw[0].astype(np.int64), raw[1])
        elif kind == "gamma":  # no gradient here: see implicit_gamma
            out = np.maximum(generator.standard_gamma(raw[0].astype(np.float64)), np.finfo(dtype).tiny)
        else:
            raise ValueError(f"the jax backend cannot draw {kind!r} noise")
        return jnp.asarray(out.astype(dtype))

    def call_noise(self, key: Any, count: int, native: Mapping[str, Any]) -> KeyNoise | None:
        """With ``key`` (a ``jax.random.key`` or ``PRNGKey``), noise from ``jax.random`` folded by node,
        stream, kind and branch (:class:`KeyNoise`): the objective is then a pure function of the key and
        the parameters, for ``jax.jit``, ``jax.vmap`` over keys and ``jax.grad``.  Without one, the
        seeded numpy streams, which refuse abstract parameters by name (a trace would freeze them)."""
        abstract = any(_abstract(v) for v in native.values())
        if key is None:
            if abstract:
                raise BackendError(
                    "the objective is traced abstractly (jax.jit or jax.vmap) but got no PRNG key:"
                    " its seeded numpy noise would be frozen into the trace; call it as"
                    " f(key=jax.random.key(0), ...) and split the key between calls"
                )
            return None
        return KeyNoise(key, count, self, traced=abstract or _abstract(key))

    def noise_blocks(
        self, kind: str, generators: Sequence[NumpyStream], counts: Sequence[int], shape: tuple[int, ...]
    ) -> Any:
        if kind not in ("normal", "uniform"):
            return super().noise_blocks(kind, generators, counts, shape)
        return jnp.asarray(fill(kind, generators, counts, np.empty((sum(counts), *shape), dtype=self.dtype)))

    def implicit_gamma(self, alpha: Any, z: Any, refusal: str) -> Any:
        z = jax.lax.stop_gradient(z)
        return _implicit_gamma(jnp.broadcast_to(alpha, jnp.shape(z)), z, refusal)

    def implicit_grad(self, x: Any, z: Any, dz_dx: Any, refusal: str) -> Any:
        z = jax.lax.stop_gradient(z)
        return _implicit(jnp.broadcast_to(x, jnp.shape(z)), z, jax.lax.stop_gradient(dz_dx), refusal)

    # -- linear algebra ------------------------------------------------------------------------------
    def cholesky(self, x: Any) -> Any:
        out = jnp.linalg.cholesky(x)  # NaN where there is no factor: the contract's error, where it can be seen
        v = out.to_concrete_value() if isinstance(out, jax.core.Tracer) else out
        if v is not None and not bool(np.all(np.isfinite(np.asarray(v)))):
            raise np.linalg.LinAlgError("Matrix is not positive definite")
        return out

    def solve_triangular(self, a: Any, b: Any, lower: bool = True) -> Any:
        batch = jnp.broadcast_shapes(jnp.shape(a)[:-2], jnp.shape(b)[:-2])
        tri = jnp.tril(a) if lower else jnp.triu(a)  # only the triangle is read, and gets a gradient
        tri = jnp.broadcast_to(tri, batch + jnp.shape(a)[-2:])
        return jax.lax.linalg.triangular_solve(
            tri, jnp.broadcast_to(b, batch + jnp.shape(b)[-2:]), left_side=True, lower=lower
        )

    def fuse(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        raise BackendError(
            "the jax backend cannot fuse a stochgrad objective (its lowering reads values with numpy); use fuse=False"
        )

    # -- autodiff ------------------------------------------------------------------------------------
    def grad_inside(self, fn: Callable[[Any], Any], x: Any) -> tuple[Any, Any]:
        """``jax.vjp`` of ``fn`` at the gradient-free ``x`` (JAX nests: the outer trace's arrays are
        constants to it), the cotangent all ones: the gradient of ``sum(fn(x))``, row by row."""
        out, g = _value_and_row_grads(fn, jax.lax.stop_gradient(x))
        return jax.lax.stop_gradient(out), jax.lax.stop_gradient(g)

    def hvp_inside(self, fn: Callable[[Any], Any], x: Any, v: Any) -> tuple[Any, Any, Any]:
        """Reverse over reverse: the gradient of ``sum(grad . v)`` (forward mode would meet the implicit
        gradients' ``custom_vjp``); ``v`` gradient-free."""
        v = jax.lax.stop_gradient(v)

        def slope(y: Any) -> tuple[Any, Any]:
            out, g = _value_and_row_grads(fn, y)
            return jnp.sum(g * v), (out, g)

        (_, (out, g)), hv = jax.value_and_grad(slope, has_aux=True)(jax.lax.stop_gradient(x))
        return jax.lax.stop_gradient(out), jax.lax.stop_gradient(g), jax.lax.stop_gradient(hv)

    def value_and_grad(self, fn: Callable[[list[Any]], tuple[Any, Any]], leaves: list[Any]) -> tuple[Any, list[Any]]:
        if not leaves:
            return fn([])[1], []
        (_, aux), grads = jax.value_and_grad(lambda ls: fn(ls), has_aux=True)(list(leaves))
        return aux, list(grads)
