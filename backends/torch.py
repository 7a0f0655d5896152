"""The PyTorch backend (CPU or CUDA; float64 by default so it agrees with autograd).

Gradients come from ``torch.autograd.grad``; ``stop_gradient`` is ``detach``.
Noise comes from a ``torch.Generator`` on the backend's device, except normal and uniform noise in
float64 on the CPU, which comes from numpy's PCG64: faster there than ``torch.randn`` (ziggurat
rather than Box-Muller), and the very numbers the autograd backend draws for the same seed.
Gamma draws get torch's implicit gradient through ``_torch_implicit._ImplicitGamma``, one derivative deep (a
second one raises the node's refusal, see :mod:`stochgrad.gammas`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from stochgrad.backend import Backend
from stochgrad.errors import BackendError, ValidationError
from stochgrad.noise import NumpyStream, fill
from stochgrad.validation import as_real_array

from ._torch_implicit import _Implicit, _ImplicitGamma


def cxx_compiler() -> str | None:
    """The C++ compiler torch.compile would use on the CPU, if one is installed."""
    return (
        shutil.which(os.environ.get("CXX", "")) or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    )


def _compare(op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    return lambda a, b: op(a, b).to(a.dtype)


def _where(c: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(c != 0, a, b)  # numeric condition: nonzero (NaN included) is true


def _device(device: Any) -> torch.device:
    """``device`` as a ``torch.device`` this torch can use, or a :class:`BackendError` saying why not
    (rather than an assertion from deep inside torch on the first array)."""
    try:
        out = torch.device(device if device is not None else "cpu")
    except (RuntimeError, TypeError, ValueError) as exc:
        raise BackendError(f"device {device!r} is not a torch device: {exc}") from None
    if out.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise BackendError(
                f"device {device!r}: this torch ({torch.__version__}) sees no CUDA device"
                " (torch.cuda.is_available() is False); use device='cpu'"
            )
        if out.index is not None and out.index >= count:
            raise BackendError(f"device {device!r}: there are {count} CUDA devices (indices 0 to {count - 1})")
    return out


_FLOATS = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _dtype(dtype: Any) -> torch.dtype:
    """The backend option ``dtype`` (a floating torch dtype or its name; default float64), or a
    :class:`ValidationError` naming it."""
    if dtype is None:
        return torch.float64
    out = _FLOATS.get(dtype) if isinstance(dtype, str) else dtype
    if out not in _FLOATS.values():
        raise ValidationError(
            f"torch backend option dtype={dtype!r}: the dtype must be a floating torch dtype or"
            f" its name ({', '.join(repr(k) for k in _FLOATS)}); default 'float64'"
        )
    return out  # type: ignore[return-value]  # checked against _FLOATS above


def _on(device: torch.device) -> Callable[[torch.Tensor], bool]:
    """A test of whether a tensor is on ``device`` (any index for an index-less one), cheaper than building
    the tensor's ``torch.device``: the CPU and CUDA cases read a flag."""
    if device.type == "cpu":
        return lambda x: x.is_cpu
    if device.type == "cuda":
        return (
            (lambda x: x.is_cuda) if device.index is None else (lambda x: x.is_cuda and x.get_device() == device.index)
        )
    return lambda x: x.device.type == device.type and (device.index is None or x.device.index == device.index)


_ONE_THREAD_LOCK = threading.Lock()
_ONE_THREAD = [0, 1]  # runs inside TorchBackend.one_thread_each, and the thread count before the first

_FUSED_SOFTMAX_ENTRIES = 1 << 22  # see TorchBackend._fused


class TorchBackend(Backend):
    name = "torch"
    capabilities = frozenset(
        {"implicit_reparam", "grad_inside", "hvp_inside"}
    )  # torch._standard_gamma has an implicit gradient

    def __init__(self, device: Any = None, dtype: Any = None, chunk_workers: int | None = None) -> None:
        self.device = _device(device)
        self.dtype = _dtype(dtype)
        if chunk_workers is not None and (
            isinstance(chunk_workers, bool) or not isinstance(chunk_workers, int) or chunk_workers < 1
        ):
            raise ValidationError(
                f"torch backend option chunk_workers={chunk_workers!r}: give an integer >= 1"
                " (chunks of an estimate run at once), or None for one per torch thread"
            )
        self._chunk_workers = chunk_workers
        self._on_device = _on(self.device)
        eps = torch.finfo(self.dtype).eps
        self._lo, self._hi = eps / 2, 1 - eps / 2
        # float64 on the CPU: normal and uniform noise from numpy's PCG64 (its ziggurat normals take
        # about 10 ns each here against torch.randn's 17; the same numbers as the autograd backend)
        self._numpy_noise = self.device.type == "cpu" and self.dtype == torch.float64
        self.fn = {
            "exp": torch.exp,
            "log": torch.log,
            "log1p": torch.log1p,
            "expm1": torch.expm1,
            "sqrt": torch.sqrt,
            "abs": torch.abs,
            "sin": torch.sin,
            "cos": torch.cos,
            "tan": torch.tan,
            "tanh": torch.tanh,
            "sigmoid": torch.sigmoid,
            "softplus": torch.nn.functional.softplus,
            "floor": torch.floor,
            "round": torch.round,
            "sign": torch.sign,
            "lgamma": torch.lgamma,
            "digamma": torch.digamma,
            "lt": _compare(torch.lt),
            "le": _compare(torch.le),
            "gt": _compare(torch.gt),
            "ge": _compare(torch.ge),
            "clip": torch.clamp,
            # the function table's (stochgrad.functions)
            "erf": torch.special.erf,
            "maximum": torch.maximum,
            "minimum": torch.minimum,
            "where": _where,
            "permute": torch.permute,
        }
        self.fn.update({"i0e": torch.special.i0e, "i1e": torch.special.i1e, "acos": torch.acos})  # von Mises

    def asarray(self, value: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(value), dtype=self.dtype, device=self.device)

    def native_problem(self, x: Any) -> str | None:
        if not isinstance(x, torch.Tensor):
            return f"it is a {type(x).__module__}.{type(x).__qualname__}, not a torch.Tensor"
        if x.dtype != self.dtype:
            if not x.is_floating_point():
                return f"its dtype is {x.dtype}, not floating point (the backend computes in {self.dtype})"
            name = str(x.dtype).replace("torch.", "")
            return (
                f"its dtype is {x.dtype}, but the backend computes in {self.dtype}: pass dtype={name!r} (backend"
                f" option of sg.estimate/sg.compile) to compute in {name}, or convert it with .to({self.dtype})"
            )
        if not self._on_device(x):
            return f"it is on device {x.device}, but the backend's device is {self.device} (backend option device=...)"
        return None

    def parameter(self, name: str, value: Any) -> torch.Tensor:
        """A tensor of the backend's floating dtype and device is used as it is (with its gradient); an
        integer tensor becomes a constant of that dtype (it carries no gradient); a bool or complex
        tensor, or one of another floating dtype or device, is refused by name.  Numbers, lists and
        numpy arrays become constants, and anything else is refused by name
        (:func:`stochgrad.validation.as_real_array`)."""
        if type(value) is torch.Tensor and value.dtype is self.dtype and self._on_device(value):
            return value  # the common case, decided in three attribute reads
        if not isinstance(value, torch.Tensor):
            return self.asarray(as_real_array(name, value))
        if value.dtype == torch.bool or value.is_complex():
            raise ValidationError(
                f"parameter {name!r} is a {value.dtype} tensor; stochgrad computes with real floating"
                f" numbers ({self.dtype}): convert it (e.g. .to({self.dtype}) or .real)"
            )
        if not value.is_floating_point():
            return value.to(device=self.device, dtype=self.dtype)
        problem = self.native_problem(value)
        if problem is not None:
            raise ValidationError(f"parameter {name!r}: {problem}")
        return value

    def leaf(self, value: np.ndarray, count: int) -> torch.Tensor:
        v = torch.as_tensor(value, dtype=self.dtype, device=self.device)  # from numpy: in no graph, so no detach
        return v.expand((count,) + tuple(v.shape)).requires_grad_(True)

    def take(self, x: torch.Tensor, index: np.ndarray, axis: int) -> torch.Tensor:
        flat = torch.as_tensor(np.ascontiguousarray(index).reshape(-1), dtype=torch.long, device=x.device)
        shape = tuple(x.shape)
        return torch.index_select(x, axis, flat).reshape(shape[:axis] + index.shape + shape[axis + 1 :])

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.detach().to("cpu", torch.float64).numpy()

    def item(self, x: torch.Tensor) -> float:
        return x.item()

    def stop_gradient(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach()

    def shape(self, x: torch.Tensor) -> tuple[int, ...]:
        return tuple(x.shape)

    def reshape(self, x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        return x.reshape(tuple(shape))

    def sum(self, x: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
        return torch.sum(x, dim=axes) if axes else x

    def chunk_workers(self) -> int:
        """On the CPU, as many chunks at once as torch has intra-op threads (the backend option
        ``chunk_workers`` overrides it; see :mod:`stochgrad.parallel`); one elsewhere (a GPU runs
        one stream of kernels)."""
        if self._chunk_workers is not None:
            return self._chunk_workers
        return torch.get_num_threads() if self.device.type == "cpu" else 1

    @contextlib.contextmanager
    def one_thread_each(self) -> Iterator[None]:
        """torch's thread count is one setting for the whole process: runs that overlap (estimates on
        several threads, or nested in a user function) share one saved count, restored by the last
        to leave, so none of them leaves torch on one thread."""
        with _ONE_THREAD_LOCK:
            if _ONE_THREAD[0] == 0:
                _ONE_THREAD[1] = torch.get_num_threads()
                torch.set_num_threads(1)
            _ONE_THREAD[0] += 1
        try:
            yield
        finally:
            with _ONE_THREAD_LOCK:
                _ONE_THREAD[0] -= 1
                if _ONE_THREAD[0] == 0:
                    torch.set_num_threads(_ONE_THREAD[1])

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean()

    def _fused(self, x: torch.Tensor) -> bool:
        """Whether torch's fused (log-)softmax kernels beat the composed ``x - logsumexp(x)``: always
        off the CPU; on the CPU only out of cache (measured here, with a last axis of 10 and its
        reverse pass: 2.6e6 entries 21 ms composed against 30-35 ms fused; 1e7 entries 265-338 ms
        against 231-252 ms; the crossover near 5e6).  Chunks of ``estimate`` stay below it."""
        return self.device.type != "cpu" or x.numel() > _FUSED_SOFTMAX_ENTRIES

    def log_softmax(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        if self._fused(x):
            return torch.log_softmax(x, dim=axis)
        return x - torch.logsumexp(x, dim=axis, keepdim=True)

    def softmax(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        return torch.softmax(x, dim=axis) if self._fused(x) else super().softmax(x, axis)  # exp(log_softmax)

    def one_hot_argmax(self, x: torch.Tensor) -> torch.Tensor:
        v = x.detach()
        return (v == v.amax(dim=-1, keepdim=True)).to(v.dtype)

    def generator(self, seed: int) -> torch.Generator | NumpyStream:
        if self._numpy_noise:
            return NumpyStream(seed)
        return torch.Generator(device=self.device).manual_seed(seed)

    def noise(self, kind: str, generator: Any, shape: tuple[int, ...], *params: Any) -> torch.Tensor:
        if isinstance(generator, NumpyStream):
            if kind in ("normal", "uniform"):
                return torch.from_numpy(fill(kind, [generator], [shape[0]], np.empty(shape)))
            generator = torch.Generator().manual_seed(generator.state >> 65)  # 63 bits of the stream's state
        opts = {"generator": generator, "dtype": self.dtype, "device": self.device}
        if kind == "normal":
            return torch.randn(shape, **opts)
        if kind == "uniform":
            return torch.rand(shape, **opts).clamp_(self._lo, self._hi)
        full = [q.expand(shape) for q in params]
        if kind == "poisson":
            return torch.poisson(full[0].detach().contiguous(), generator=generator)
        if kind == "binomial":
            count, probs = (q.detach().contiguous() for q in full)
            return torch.binomial(count, probs, generator=generator)
        if kind == "gamma":  # no gradient here: see implicit_gamma
            z = torch._standard_gamma(full[0].detach().contiguous(), generator=generator)
            return z.clamp(min=torch.finfo(self.dtype).tiny)
        raise ValueError(f"the torch backend cannot draw {kind!r} noise")

    def implicit_gamma(self, alpha: torch.Tensor, z: torch.Tensor, refusal: str) -> torch.Tensor:
        return _ImplicitGamma.apply(alpha.expand(z.shape), z, refusal)

    def implicit_grad(self, x: torch.Tensor, z: torch.Tensor, dz_dx: torch.Tensor, refusal: str) -> torch.Tensor:
        return _Implicit.apply(x.expand(z.shape), z.detach(), dz_dx.detach(), refusal)

    def noise_blocks(
        self, kind: str, generators: Sequence[Any], counts: Sequence[int], shape: tuple[int, ...]
    ) -> torch.Tensor:
        if kind not in ("normal", "uniform"):
            return super().noise_blocks(kind, generators, counts, shape)
        if self._numpy_noise:
            return torch.from_numpy(fill(kind, generators, counts, np.empty((sum(counts), *shape))))
        out = torch.empty((sum(counts), *shape), dtype=self.dtype, device=self.device)
        draw, start = (torch.randn if kind == "normal" else torch.rand), 0
        for g, c in zip(generators, counts):
            draw((c, *shape), generator=g, dtype=self.dtype, device=self.device, out=out[start : start + c])
            start += c
        return out if kind == "normal" else out.clamp_(self._lo, self._hi)

    def concat(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat(list(parts), dim=0)

    def cholesky(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return torch.linalg.cholesky(x)
        except torch.linalg.LinAlgError as exc:  # the contract's error, whatever the framework
            raise np.linalg.LinAlgError(str(exc)) from None

    def solve_triangular(self, a: torch.Tensor, b: torch.Tensor, lower: bool = True) -> torch.Tensor:
        return torch.linalg.solve_triangular(a, b, upper=not lower)

    def sample_sums(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        v = x.detach().reshape(x.shape[0], -1).to(torch.float64)  # float64 sums, also for float32 arrays
        if v.shape[1] == 1:
            s2 = torch.dot(v[:, 0], v[:, 0])[None]
        else:  # squares in cache-sized row blocks: 2x faster than vecdot at 10 columns, 15x at 784
            s2 = sum((b * b).sum(0) for b in v.split(max(1, (1 << 18) // v.shape[1])))
        rest = tuple(x.shape[1:])
        return v.sum(0).cpu().numpy().reshape(rest), s2.cpu().numpy().reshape(rest)

    def fuse(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``torch.compile`` (TorchDynamo and Inductor), with shapes fixed per compiled graph.

        Inductor writes C++ for the CPU, so there it needs a compiler (``$CXX``, g++ or clang++)."""
        if self.device.type == "cpu" and not cxx_compiler():
            raise BackendError(
                "fuse=True on the CPU needs a C++ compiler for torch.compile (set $CXX, or install"
                " g++ or clang++); none was found, so use fuse=False"
            )
        return torch.compile(fn, dynamic=False)

    def value_and_grad(self, fn: Callable[[list[Any]], tuple[Any, Any]], leaves: list[Any]) -> tuple[Any, list[Any]]:
        with torch.enable_grad():
            out, aux = fn(leaves)
            if not leaves or not out.requires_grad:
                return aux, [torch.zeros_like(x) for x in leaves]
            grads = torch.autograd.grad(out, leaves, allow_unused=True)
        return aux, [torch.zeros_like(x) if g is None else g for g, x in zip(grads, leaves)]

    def grad_inside(
        self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            out = fn(leaf)
            if not out.requires_grad:
                return out.detach(), torch.zeros_like(leaf)
            (g,) = torch.autograd.grad(out.sum(), leaf, allow_unused=True, retain_graph=True)
        return out.detach(), torch.zeros_like(leaf) if g is None else g.detach()

    def hvp_inside(
        self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        zero = torch.zeros_like(x)
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            out = fn(leaf)
            if not out.requires_grad:
                return out.detach(), zero, zero
            (g,) = torch.autograd.grad(out.sum(), leaf, create_graph=True, allow_unused=True)
            if g is None or not g.requires_grad:
                return out.detach(), zero if g is None else g.detach(), zero
            (hv,) = torch.autograd.grad((g * v.detach()).sum(), leaf, allow_unused=True, retain_graph=True)
        return out.detach(), g.detach(), zero if hv is None else hv.detach()
