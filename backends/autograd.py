"""The HIPS autograd (numpy) backend.

Gradients come from one autograd trace and one reverse pass with a root node per leaf (see
:func:`_value_and_grads`); ``stop_gradient`` unboxes a traced value (``autograd.tracer.getval``).
Noise comes from numpy's PCG64.

Gamma draws are differentiable in the concentration by implicit
reparameterization (Figurnov et al. 2018): for ``z ~ Gamma(a, 1)`` with CDF
``F(z; a)``, holding ``F`` fixed gives ``dz/da = -(dF/da) / p(z; a)``.  ``dF/da``
of the regularized incomplete gamma function has no closed form; it is taken
by a central difference of ``scipy.special.gammainc`` (relative error ~1e-8,
far below Monte Carlo error).  That difference cannot be traced, so ``dz/da`` is itself a
primitive whose vjp raises the node's :class:`~stochgrad.errors.PlanError`: a second derivative
through a pathwise Gamma, Beta or Dirichlet node is refused by name (see :mod:`stochgrad.gammas`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import autograd.numpy as anp
import numpy as np
from autograd.core import VJPNode, add_outgrads, toposort
from autograd.extend import defvjp, primitive, vspace
from autograd.scipy.special import digamma, erf, gammaln, logsumexp
from autograd.tracer import getval, isbox, new_box, trace_stack
from scipy import special

from stochgrad.backend import Backend, numpy_sample_sums
from stochgrad.errors import PlanError, ValidationError
from stochgrad.validation import as_real_array
from stochgrad.noise import NumpyStream, fill


@primitive
def _tanh(x: Any) -> Any:
    return np.tanh(x)


# 1 - tanh(x)**2 instead of autograd's 1 / cosh(x)**2, which overflows for |x| > 355
defvjp(_tanh, lambda ans, x: lambda g: g * (1.0 - ans * ans))


def _sigmoid(x: Any) -> Any:
    return 0.5 * (_tanh(0.5 * x) + 1.0)


def _softplus(x: Any) -> Any:
    return anp.logaddexp(0.0, x)


def _compare(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    return lambda a, b: anp.where(op(getval(a), getval(b)), 1.0, 0.0)


def _where(c: Any, a: Any, b: Any) -> Any:
    """``a`` where ``c != 0`` (NaN included), else ``b``; no derivative in ``c``.  ``a`` and ``b`` are broadcast
    first: autograd's ``where`` does not sum a broadcast operand's gradient back to its shape."""
    shape = np.broadcast_shapes(anp.shape(c), anp.shape(a), anp.shape(b))
    return anp.where(getval(c) != 0, anp.broadcast_to(a, shape), anp.broadcast_to(b, shape))


@primitive
def _implicit_gamma(alpha: np.ndarray, z: np.ndarray, refusal: str) -> np.ndarray:
    """Returns the standard-gamma draw ``z``; its gradient in ``alpha`` is implicit (see module doc)."""
    return z


@primitive
def _gamma_dz(alpha: np.ndarray, z: np.ndarray, refusal: str) -> np.ndarray:
    """``dz/dalpha`` of standard-gamma draws ``z`` (``alpha`` broadcast to them): a first derivative
    only, since its own vjp raises ``refusal`` (the finite difference below cannot be traced)."""
    return _dz_dalpha(alpha, z)


def _refuse(refusal: str) -> Callable[[Any], Any]:
    def vjp(g: Any) -> Any:
        raise PlanError(refusal)

    return vjp


def _dz_dalpha(alpha: np.ndarray, z: np.ndarray) -> np.ndarray:
    h = 1e-5 * np.maximum(alpha, 1.0)
    dF = (special.gammainc(alpha + h, z) - special.gammainc(np.maximum(alpha - h, 1e-300), z)) / (
        alpha + h - np.maximum(alpha - h, 1e-300)
    )
    log_pdf = (alpha - 1.0) * np.log(z) - z - special.gammaln(alpha)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        out = -dF * np.exp(-log_pdf)
    return np.where(np.isfinite(out), out, 0.0)


defvjp(
    _implicit_gamma,
    lambda ans, alpha, z, refusal: (
        lambda g: _unbroadcast(g * _gamma_dz(anp.broadcast_to(alpha, anp.shape(ans)), ans, refusal), anp.shape(alpha))
    ),
)
defvjp(_gamma_dz, lambda ans, alpha, z, refusal: _refuse(refusal), lambda ans, alpha, z, refusal: _refuse(refusal))


@primitive
def _i0e(x: Any) -> Any:
    return special.i0e(x)


@primitive
def _i1e(x: Any) -> Any:
    return special.i1e(x)


def _i1e_slope(ans: Any, x: Any) -> Any:
    """``i1e'(x) = i0e(x) - i1e(x) (sign(x) + 1/x)``, and 1/2 at 0."""
    small = anp.abs(x) < 1e-300
    safe = anp.where(small, 1.0, x)
    return anp.where(small, 0.5, _i0e(x) - ans * (anp.sign(x) + 1.0 / safe))


defvjp(_i0e, lambda ans, x: lambda g: g * (_i1e(x) - anp.sign(x) * ans))
defvjp(_i1e, lambda ans, x: lambda g: g * _i1e_slope(ans, x))


@primitive
def _implicit(x: Any, z: Any, dz_dx: Any, refusal: str) -> Any:
    """The draws ``z``, with the derivative ``dz_dx`` in ``x`` (see ``Backend.implicit_grad``)."""
    return z


@primitive
def _refused(x: Any, dz_dx: Any, refusal: str) -> Any:
    """``dz_dx``, connected to ``x`` so that differentiating it raises ``refusal``."""
    return dz_dx


defvjp(
    _implicit,
    lambda ans, x, z, dz_dx, refusal: (
        lambda g: _unbroadcast(g * _refused(anp.broadcast_to(x, anp.shape(ans)), dz_dx, refusal), anp.shape(x))
    ),
)
defvjp(_refused, lambda ans, x, dz_dx, refusal: _refuse(refusal))


@primitive
def _solve_triangular(a: np.ndarray, b: np.ndarray, lower: bool) -> np.ndarray:
    """``x`` with ``tri(a) @ x = b`` (``tri``: the lower or upper triangle), leading axes broadcast.
    numpy's batched LU solve of the triangle: scipy's triangular solve loops over the batch in
    Python (70x slower at 1e5 3x3 systems here)."""
    return np.linalg.solve(np.tril(a) if lower else np.triu(a), b)


def _solve_triangular_vjp_a(ans: Any, a: Any, b: Any, lower: bool) -> Callable[[Any], Any]:
    def vjp(g: Any) -> Any:  # d a = -(a^-T g) x^T, on a's triangle (the other one is not read)
        gb = _solve_triangular(anp.swapaxes(a, -1, -2), g, not lower)
        ga = -anp.matmul(gb, anp.swapaxes(ans, -1, -2))
        return _unbroadcast(anp.tril(ga) if lower else anp.triu(ga), anp.shape(a))

    return vjp


defvjp(
    _solve_triangular,
    _solve_triangular_vjp_a,
    lambda ans, a, b, lower: (
        lambda g: _unbroadcast(_solve_triangular(anp.swapaxes(a, -1, -2), g, not lower), anp.shape(b))
    ),
)


def _unbroadcast(x: Any, shape: tuple[int, ...]) -> Any:
    while anp.ndim(x) > len(shape):
        x = anp.sum(x, axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and anp.shape(x)[axis] != 1:
            x = anp.sum(x, axis=axis, keepdims=True)
    return x


class AutogradBackend(Backend):
    name = "autograd"
    capabilities = frozenset({"implicit_reparam", "grad_inside", "hvp_inside"})

    def __init__(self, dtype: Any = "float64") -> None:
        try:
            self.dtype = np.dtype(dtype)
        except TypeError:
            self.dtype = None
        if self.dtype not in (np.float32, np.float64):
            raise ValidationError(
                f"autograd backend option dtype={dtype!r}: the dtype must be 'float32' or 'float64' (default 'float64')"
            )
        self.fn = {
            "exp": anp.exp,
            "log": anp.log,
            "log1p": anp.log1p,
            "expm1": anp.expm1,
            "sqrt": anp.sqrt,
            "abs": anp.abs,
            "sin": anp.sin,
            "cos": anp.cos,
            "tan": anp.tan,
            "tanh": _tanh,
            "sigmoid": _sigmoid,
            "softplus": _softplus,
            "floor": anp.floor,
            "round": anp.round,
            "sign": anp.sign,
            "lt": _compare(np.less),
            "le": _compare(np.less_equal),
            "gt": _compare(np.greater),
            "ge": _compare(np.greater_equal),
            "clip": anp.clip,
            "lgamma": gammaln,
            "digamma": digamma,
            # the function table's (stochgrad.functions)
            "erf": erf,
            "maximum": anp.maximum,
            "minimum": anp.minimum,
            "where": _where,
            "permute": anp.transpose,
        }
        self.fn.update({"i0e": _i0e, "i1e": _i1e, "acos": anp.arccos})  # von Mises

    def asarray(self, value: np.ndarray) -> Any:
        return np.asarray(value, dtype=self.dtype)

    def native_problem(self, x: Any) -> str | None:
        v = x
        while isbox(v):  # nested traces (higher derivatives) box boxes
            v = v._value
        if type(v) is float and x is not v:  # a traced Python float (autograd.grad of a scalar function)
            return None
        if not isinstance(v, (np.ndarray, np.generic)):
            return f"it is a {type(x).__module__}.{type(x).__qualname__}, not a numpy array (autograd.numpy)"
        if v.dtype != self.dtype:
            if v.dtype.kind != "f":
                return f"its dtype is {v.dtype}, not floating point (the backend computes in {self.dtype})"
            return (
                f"its dtype is {v.dtype}, but the backend computes in {self.dtype}: pass dtype={v.dtype.name!r}"
                f" (backend option of sg.estimate/sg.compile) to compute in {v.dtype.name}, or convert it"
            )
        return None

    def parameter(self, name: str, value: Any) -> Any:
        """A traced value (an autograd box) of the backend's dtype is used as it is; numbers, lists and
        numpy arrays become constants (:meth:`Backend.parameter`); a tensor of another framework is
        refused by name (converting it would cut its gradient)."""
        if isbox(value):
            problem = self.native_problem(value)
            if problem is not None:
                raise ValidationError(f"parameter {name!r}: {problem}")
            return value
        if type(value).__module__.split(".")[0] in ("torch", "jax", "jaxlib", "tensorflow"):
            raise ValidationError(
                f"parameter {name!r} is a {type(value).__module__}.{type(value).__qualname__}; the"
                " autograd backend takes numpy arrays and autograd values (use backend='torch' for"
                " torch tensors)"
            )
        return self.asarray(as_real_array(name, value))

    def leaf(self, value: np.ndarray, count: int) -> Any:
        v = np.asarray(value, dtype=self.dtype)
        return np.broadcast_to(v, (count,) + v.shape)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.array(getval(x), dtype=np.float64)

    def stop_gradient(self, x: Any) -> Any:
        return getval(x)

    def shape(self, x: Any) -> tuple[int, ...]:
        return tuple(anp.shape(x))

    def reshape(self, x: Any, shape: Sequence[int]) -> Any:
        return anp.reshape(x, tuple(shape))

    def mean(self, x: Any) -> Any:
        return anp.mean(x)

    def sum(self, x: Any, axes: tuple[int, ...]) -> Any:
        return anp.sum(x, axis=axes) if axes else x

    def log_softmax(self, x: Any, axis: int) -> Any:
        return x - logsumexp(x, axis=axis, keepdims=True)

    def one_hot_argmax(self, x: Any) -> Any:
        v = getval(x)
        return (v == v.max(axis=-1, keepdims=True)).astype(self.dtype)

    def generator(self, seed: int) -> NumpyStream:
        return NumpyStream(seed)

    def noise(self, kind: str, stream: NumpyStream, shape: tuple[int, ...], *params: Any) -> Any:
        if kind in ("normal", "uniform"):
            return fill(kind, [stream], [shape[0]], np.empty(shape, dtype=self.dtype))
        generator = stream.generator()
        raw = [np.broadcast_to(getval(q), shape) for q in params]
        if kind == "poisson":
            return generator.poisson(raw[0]).astype(self.dtype)
        if kind == "binomial":
            return generator.binomial(raw[0].astype(np.int64), raw[1]).astype(self.dtype)
        if kind == "gamma":  # no gradient here: see implicit_gamma
            return np.maximum(generator.standard_gamma(raw[0]), np.finfo(self.dtype).tiny).astype(self.dtype)
        raise ValueError(f"the autograd backend cannot draw {kind!r} noise")

    def implicit_gamma(self, alpha: Any, z: Any, refusal: str) -> Any:
        return _implicit_gamma(alpha, z, refusal)

    def implicit_grad(self, x: Any, z: Any, dz_dx: Any, refusal: str) -> Any:
        return _implicit(x, getval(z), getval(dz_dx), refusal)

    def noise_blocks(
        self, kind: str, generators: Sequence[NumpyStream], counts: Sequence[int], shape: tuple[int, ...]
    ) -> Any:
        if kind not in ("normal", "uniform"):
            return super().noise_blocks(kind, generators, counts, shape)
        return fill(kind, generators, counts, np.empty((sum(counts), *shape), dtype=self.dtype))

    def concat(self, parts: Sequence[Any]) -> Any:
        return anp.concatenate(list(parts), axis=0)

    def cholesky(self, x: Any) -> Any:
        return anp.linalg.cholesky(x)  # numpy.linalg.LinAlgError where there is no factor

    def solve_triangular(self, a: Any, b: Any, lower: bool = True) -> Any:
        return _solve_triangular(a, b, lower)

    def sample_sums(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        return numpy_sample_sums(np.asarray(getval(x), dtype=np.float64))  # no copy: the sums only read it

    def value_and_grad(self, fn: Callable[[list[Any]], tuple[Any, Any]], leaves: list[Any]) -> tuple[Any, list[Any]]:
        return _value_and_grads(fn, leaves)

    def grad_inside(self, fn: Callable[[Any], Any], x: Any) -> tuple[Any, Any]:
        """A nested trace (autograd nests: the outer trace's boxes are constants to it)."""

        def inner(leaves: list[Any]) -> tuple[Any, Any]:
            out = fn(leaves[0])
            return anp.sum(out), out

        out, (g,) = _value_and_grads(inner, [getval(x)])
        return getval(out), getval(g)

    def hvp_inside(self, fn: Callable[[Any], Any], x: Any, v: Any) -> tuple[Any, Any, Any]:
        """Nested traces: the gradient traced once more, dotted with ``v``, differentiated again."""
        v = getval(v)

        def slope(leaves: list[Any]) -> tuple[Any, Any]:
            out, (g,) = _value_and_grads(lambda inner: (anp.sum(fn(inner[0])), fn(inner[0])), [leaves[0]])
            return anp.sum(g * v), (out, g)

        (out, g), (hv,) = _value_and_grads(slope, [getval(x)])
        return getval(out), getval(g), getval(hv)


def _value_and_grads(fn: Callable[[list[Any]], tuple[Any, Any]], leaves: list[Any]) -> tuple[Any, list[Any]]:
    """``fn(leaves) -> (scalar, aux)`` traced once; ``(aux, d scalar / d leaf for each leaf)``.

    This is ``autograd.grad_and_aux`` over a tuple of leaves, but with one root node per leaf.  The
    tuple route reads each leaf out of the boxed tuple, and the reverse pass of each read adds that
    leaf's gradient into zeros shaped like the whole tuple: with per-sample leaves, extra passes over
    all the samples, for every pair of leaves, that the plain accumulation below does not make."""
    roots = [VJPNode.new_root() for _ in leaves]
    with trace_stack.new_trace() as trace:
        out, aux = fn([new_box(x, trace, root) for x, root in zip(leaves, roots)])
    grads: dict[Any, Any] = {}
    if isbox(out) and out._trace == trace:  # else the scalar does not depend on the leaves: all zeros
        if vspace(getval(out)).size != 1:
            raise TypeError("value_and_grad needs a scalar objective")
        outgrads = {out._node: (vspace(getval(out)).ones(), False)}
        for node in toposort(out._node):  # autograd.core.backward_pass, keeping every root's gradient
            g = outgrads.pop(node)[0]
            if not node.parents:
                grads[node] = g
                continue
            for parent, ingrad in zip(node.parents, node.vjp(g)):
                outgrads[parent] = add_outgrads(outgrads.get(parent), ingrad)
    return aux, [
        grads[root] if root in grads else np.zeros(np.shape(x), np.result_type(x)) for root, x in zip(roots, leaves)
    ]
