"""The HIPS autograd (numpy) backend.

Gradients come from ``autograd.grad_and_aux``; ``stop_gradient`` unboxes a
traced value (``autograd.tracer.getval``).  Noise comes from numpy's PCG64.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import autograd.numpy as anp
import numpy as np
from autograd import grad_and_aux
from autograd.extend import defvjp, primitive
from autograd.tracer import getval

from stochgrad.backend import Backend


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


class AutogradBackend(Backend):
    name = "autograd"

    def __init__(self, dtype: Any = "float64") -> None:
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
        eps = np.finfo(self.dtype).eps
        self._lo, self._hi = self.dtype.type(eps / 2), self.dtype.type(1 - eps / 2)
        self.fn = {
            "exp": anp.exp, "log": anp.log, "log1p": anp.log1p, "expm1": anp.expm1, "sqrt": anp.sqrt,
            "abs": anp.abs, "sin": anp.sin, "cos": anp.cos, "tan": anp.tan, "tanh": _tanh,
            "sigmoid": _sigmoid, "softplus": _softplus, "floor": anp.floor, "sign": anp.sign,
            "lt": _compare(np.less), "le": _compare(np.less_equal),
            "gt": _compare(np.greater), "ge": _compare(np.greater_equal), "clip": anp.clip,
        }

    def asarray(self, value: np.ndarray) -> Any:
        return np.asarray(value, dtype=self.dtype)

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

    def sum(self, x: Any, axes: tuple[int, ...]) -> Any:
        return anp.sum(x, axis=axes) if axes else x

    def generator(self, seed: int) -> np.random.Generator:
        return np.random.Generator(np.random.PCG64(seed))

    def noise(self, kind: str, generator: np.random.Generator, shape: tuple[int, ...]) -> Any:
        if kind == "normal":
            return generator.standard_normal(shape, dtype=self.dtype)
        return np.clip(generator.random(shape, dtype=self.dtype), self._lo, self._hi)

    def concat(self, parts: Sequence[Any]) -> Any:
        return np.concatenate(parts, axis=0)

    def value_and_grad(self, fn: Callable[[list[Any]], tuple[Any, Any]], leaves: list[Any]) -> tuple[Any, list[Any]]:
        if not leaves:
            return fn([])[1], []
        with warnings.catch_warnings():  # a cost that ignores a parameter has gradient 0: not a problem
            warnings.filterwarnings("ignore", "Output seems independent of input")
            grads, aux = grad_and_aux(lambda xs: fn(list(xs)))(tuple(leaves))
        return aux, list(grads)
