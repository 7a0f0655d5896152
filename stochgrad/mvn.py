"""The multivariate normal: ``MultivariateNormal(loc, scale_tril=L)`` or ``(loc, covariance_matrix=S)``.

With ``S = L L^T`` (``L`` lower-triangular with a positive diagonal: the Cholesky factor of ``S``)
and ``d`` coordinates (standard results; e.g. Murphy, *Machine Learning: a Probabilistic
Perspective*, 2012, sections 4.1 and 2.8; Rasmussen & Williams 2006, appendix A):

* **sampling** is pathwise: ``z = loc + L eps`` with ``eps ~ N(0, I_d)``, differentiable in
  ``loc`` and ``L`` -- the reparameterization of full-rank Gaussian variational inference
  (Titsias & Lazaro-Gredilla 2014; Kucukelbir et al. 2017, ADVI's full-rank family);
* **log density**: with ``y = L^{-1} (x - loc)`` (a triangular solve, never an inverse),
  ``log p(x) = -|y|^2 / 2 - sum_i log L_ii - (d / 2) log(2 pi)``, since ``log det S = 2 sum_i log L_ii``;
* **entropy**: ``(d / 2) (1 + log(2 pi)) + sum_i log L_ii``;
* **KL divergence** of ``p = N(m1, L1 L1^T)`` from ``q = N(m2, L2 L2^T)``:
  ``1/2 (|L2^{-1} L1|_F^2 + |L2^{-1} (m2 - m1)|^2 - d) + sum_i log L2_ii - sum_i log L1_ii``
  (``tr(S2^{-1} S1) = |L2^{-1} L1|_F^2``, Frobenius norm).

**Shapes.**  ``loc`` has shape ``(..., d)`` (event rank 1), ``L`` and ``S`` ``(..., d, d)`` (event
rank 2); their batch shapes (the axes before) broadcast, and a sample has shape ``(batch, d)``:
one event axis, which ``log_prob`` and the entropy reduce.  The program aligns the parameters on
their batch axes only (:attr:`stochgrad.distributions.Param.event_rank`); the methods here lift
their arguments to a common batch rank themselves too, so they also take unaligned parameters.

**Constraints.**  ``scale_tril`` must be lower-triangular (entries above the diagonal exactly 0)
with a positive diagonal; the upper triangle is masked out of the computation as well, so its
gradient is exactly 0 (an optimizer step keeps it triangular).  ``covariance_matrix`` must be
symmetric (to a relative 1e-6) and positive definite; the factor is the backend's Cholesky
(reading the lower triangle, with a symmetric gradient).  A violation is a
:class:`~stochgrad.errors.StochgradError` naming the parameter and the entry; a Cholesky that fails
with the checks off is one naming ``covariance_matrix`` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from . import ir
from .distributions import HALF_LOG_2PI, Distribution, Param, real, register_distribution
from .errors import StochgradError
from .types import Array
from .shapes import broadcast

if TYPE_CHECKING:
    from .backend import Backend

P = Mapping[str, Array]
_MATRICES = ("scale_tril", "covariance_matrix")
_SYMMETRY_RTOL = 1e-6


def _batch_rank(B: Backend, x: Array, event: int) -> int:
    return max(0, len(B.shape(x)) - 1 - event)


def _lift(B: Backend, x: Array, event: int, top: int) -> Array:
    """``x`` (sample axis, batch axes, ``event`` event axes) with unit batch axes after the sample
    axis up to batch rank ``top``."""
    s = B.shape(x)
    b = max(0, len(s) - 1 - event)
    return x if b >= top else B.reshape(x, s[:1] + (1,) * (top - b) + s[1:])


def _matvec(B: Backend, m: Array, v: Array) -> Array:
    """``m @ v`` over the last axes (``m``: (..., d, d), ``v``: (..., d)), leading axes broadcast."""
    out = m @ B.reshape(v, B.shape(v) + (1,))
    return B.reshape(out, B.shape(out)[:-1])


def _solve(B: Backend, lower: Array, v: Array) -> Array:
    """``lower^{-1} v`` for vectors ``v`` (..., d)."""
    out = B.solve_triangular(lower, B.reshape(v, B.shape(v) + (1,)), lower=True)
    return B.reshape(out, B.shape(out)[:-1])


def _entry(index: np.ndarray) -> str:
    return f"[{', '.join(str(int(i)) for i in index[-2:])}]"


class MultivariateNormal(Distribution):
    name = "MultivariateNormal"
    params = (
        Param("loc", real, "mean vector (last axis: the d coordinates)", event_rank=1),
        Param(
            "scale_tril",
            real,
            "lower-triangular d x d factor L of the covariance L L^T (positive diagonal)",
            event_rank=2,
        ),
        Param("covariance_matrix", real, "symmetric positive definite d x d covariance", event_rank=2),
    )
    parameterizations = (("loc", "scale_tril"), ("loc", "covariance_matrix"))
    event_rank = 1
    doc = (
        "MultivariateNormal(loc, scale_tril=L) or MultivariateNormal(loc, covariance_matrix=S): the normal on"
        " d-vectors with mean loc and covariance L L^T = S"
    )

    # -- shapes and checks -------------------------------------------------------------------
    def value_shape(self, shapes: Mapping[str, tuple[int, ...]], where: ir.Expr | None = None) -> tuple[int, ...]:
        here = where if where is not None else ir.Name(self.name)
        span = getattr(where, "span", None)
        key = "scale_tril" if "scale_tril" in shapes else "covariance_matrix"
        m, loc = tuple(shapes[key]), tuple(shapes["loc"])
        if len(m) < 2 or m[-1] != m[-2] or m[-1] == 0:
            raise StochgradError(
                f"parameter {key!r} must be d x d matrices over its last two axes (shape (..., d, d),"
                f" d >= 1), got shape {m} in `{here}`",
                span,
            )
        d = m[-1]
        if not loc or loc[-1] != d:
            raise StochgradError(
                f"parameter 'loc' must have the d = {d} coordinates of {key!r} (shape {m}) as its last"
                f" axis (shape (..., {d})), got shape {loc} in `{here}`",
                span,
            )
        return broadcast([loc[:-1], m[:-2]], here) + (d,)

    def extra_check(self, values: Mapping[str, np.ndarray | float]) -> str | None:
        key = "scale_tril" if "scale_tril" in values else "covariance_matrix"
        if key not in values:
            return None
        m = np.asarray(values[key], dtype=float)
        if m.ndim < 2 or m.shape[-1] != m.shape[-2]:
            return None  # not matrices: value_shape says so, with the logical shapes
        d = m.shape[-1]
        if key == "scale_tril":
            above = (m != 0) & np.triu(np.ones((d, d), dtype=bool), 1)
            if above.any():
                i = np.argwhere(above)[0]
                return (
                    f"parameter 'scale_tril' must be lower-triangular: its entry {_entry(i)} above the diagonal"
                    f" is {float(m[tuple(i)])!r}, not 0"
                )
            diag = np.diagonal(m, axis1=-2, axis2=-1)
            if not (diag > 0).all():
                i = np.argwhere(~(diag > 0))[0]
                return (
                    f"parameter 'scale_tril' must have a positive diagonal: its entry [{i[-1]}, {i[-1]}]"
                    f" is {float(diag[tuple(i)])!r}"
                )
            return None
        t = np.swapaxes(m, -1, -2)
        asym = np.abs(m - t) > _SYMMETRY_RTOL * np.maximum(np.abs(m), np.abs(t))
        if asym.any():
            i = np.argwhere(asym)[0]
            j = tuple(i[:-2]) + (i[-1], i[-2])
            return (
                f"parameter 'covariance_matrix' must be symmetric: its entries {_entry(i)} = {float(m[tuple(i)])!r}"
                f" and {_entry(np.array(j))} = {float(m[j])!r} differ"
            )
        try:
            np.linalg.cholesky(m)
        except np.linalg.LinAlgError:
            low = float(np.linalg.eigvalsh(m).min())
            return (
                f"parameter 'covariance_matrix' must be positive definite: its smallest eigenvalue is {low:.6g}"
                " (its Cholesky factorization fails)"
            )
        return None

    # -- the factor L ----------------------------------------------------------------------
    def scale_tril(self, B: Backend, p: P) -> Array:
        """``L`` of either parameterization: ``scale_tril`` with its upper triangle masked out, or the
        Cholesky factor of ``covariance_matrix``."""
        if "scale_tril" in p:
            L = p["scale_tril"]
            d = B.shape(L)[-1]
            return L * B.asarray(np.tril(np.ones((d, d))))
        try:
            return B.cholesky(p["covariance_matrix"])
        except np.linalg.LinAlgError:
            raise StochgradError(
                f"{self.name}: parameter 'covariance_matrix' is not positive definite (its Cholesky"
                " factorization failed)"
            ) from None

    @staticmethod
    def half_log_det(B: Backend, L: Array) -> Array:
        """``sum_i log L_ii`` (``log det S / 2``) over the last two axes."""
        d = B.shape(L)[-1]
        last = len(B.shape(L)) - 2
        diag = B.sum(L * B.asarray(np.eye(d)), (last + 1,))
        return B.sum(B.fn["log"](diag), (last,))

    def _aligned(self, B: Backend, p: P, *vectors: Array) -> tuple[Array, Array, list[Array]]:
        """``loc``, ``L`` and ``vectors`` (event rank 1) lifted to one batch rank."""
        L, loc = self.scale_tril(B, p), p["loc"]
        top = max([_batch_rank(B, L, 2), _batch_rank(B, loc, 1)] + [_batch_rank(B, v, 1) for v in vectors])
        return _lift(B, loc, 1, top), _lift(B, L, 2, top), [_lift(B, v, 1, top) for v in vectors]

    # -- the maths ---------------------------------------------------------------------------
    def rsample(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> Array:
        eps = draw("normal", shape)
        loc, L, _ = self._aligned(B, p, eps)
        return loc + _matvec(B, L, eps)

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        loc, L, (x,) = self._aligned(B, p, x)
        y = _solve(B, L, x - loc)
        last = len(B.shape(y)) - 1
        return -0.5 * B.sum(y * y, (last,)) - self.half_log_det(B, L) - B.shape(L)[-1] * HALF_LOG_2PI

    def sample_and_log_prob(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> tuple[Array, Array]:
        """``z = stop(loc + L eps)`` and ``log p(z)``, with ``z - loc`` written as
        ``stop(L) eps + (stop(loc) - loc)``: the same value and derivatives in the parameters
        (``z`` held), without the cancellation of ``z - loc`` (see :mod:`stochgrad.continuous`)."""
        eps = draw("normal", shape)
        loc, L, (eps,) = self._aligned(B, p, eps)
        stop = B.stop_gradient
        z = stop(loc + _matvec(B, L, eps))
        y = _solve(B, L, _matvec(B, stop(L), eps) + (stop(loc) - loc))
        last = len(B.shape(y)) - 1
        return z, -0.5 * B.sum(y * y, (last,)) - self.half_log_det(B, L) - B.shape(L)[-1] * HALF_LOG_2PI

    def entropy(self, B: Backend, p: P) -> Array | None:
        """``(d / 2) (1 + log(2 pi)) + sum_i log L_ii``, of the batch shape (``loc`` included)."""
        loc, L, _ = self._aligned(B, p)
        d = B.shape(L)[-1]
        batch = B.sum(0.0 * B.stop_gradient(loc), (len(B.shape(loc)) - 1,))  # loc's batch axes, no gradient
        return self.half_log_det(B, L) + d * (0.5 + HALF_LOG_2PI) + batch


def kl_mvn(B: Backend, p: P, q: P) -> Array:
    """``KL(N(m1, L1 L1^T) || N(m2, L2 L2^T))`` of the batch shape (see the module docstring)."""
    d = MVN
    L1, L2 = d.scale_tril(B, p), d.scale_tril(B, q)
    m1, m2 = p["loc"], q["loc"]
    top = max(_batch_rank(B, L1, 2), _batch_rank(B, L2, 2), _batch_rank(B, m1, 1), _batch_rank(B, m2, 1))
    L1, L2, m1, m2 = _lift(B, L1, 2, top), _lift(B, L2, 2, top), _lift(B, m1, 1, top), _lift(B, m2, 1, top)
    k = len(B.shape(L1)) - 2
    m = B.solve_triangular(L2, L1, lower=True)  # L2^{-1} L1
    trace = B.sum(m * m, (k, k + 1))
    y = _solve(B, L2, m2 - m1)
    quad = B.sum(y * y, (k,))
    dim = float(B.shape(L1)[-1])
    return 0.5 * (trace + quad - dim) + d.half_log_det(B, L2) - d.half_log_det(B, L1)


MVN = MultivariateNormal()
register_distribution(MVN)
