"""Pathwise with the second-order delta-method control variate (``"pathwise_delta"``), Normal nodes.

Mohamed, Rosca, Figurnov & Mnih 2020, "Monte Carlo gradient estimation in machine learning"
(JMLR), section 7.2 (the second-order expansion); Miller, Foti, D'Amour & Adams 2017, "Reducing
reparameterization gradient variance" (NeurIPS).  For ``z = mu + sigma * eps ~ Normal(mu, sigma)``
(elementwise over the node's ``D`` elements) and the cost's second-order Taylor expansion at the
mean, coefficients held at the current parameters,

    h(z) = f(mu) + g^T (z - mu) + 1/2 (z - mu)^T H (z - mu),   g = grad f(mu),  H = hess f(mu),

``E[h] = f(mu) + 1/2 sum_d H_dd sigma_d^2`` and the estimator is

    grad f(z) - (g + H (z - mu))^T dz/dtheta + g^T dmu/dtheta + 1/2 sum_d H_dd dsigma_d^2/dtheta.

* **Bias: none** for a cost differentiable along the path (pathwise's own condition): with ``eps``
  standard normal, ``E[(g + H sigma eps)^T (dmu + dsigma eps)] = g^T dmu + sum_d H_dd sigma_d dsigma_d``,
  the gradient of ``E[h]``, for any coefficients that do not depend on the sample.
* **Variance**: the pathwise gradient minus its own first-order Taylor expansion in ``eps``; zero for
  a quadratic cost (``h = f``); for a smooth cost and a small ``sigma``, ``O(sigma^2)`` of it remains.
* **Orders**: the first only (``orders = 1``: a second derivative is refused by name).
* **Price**: ``H (z - mu)`` and ``diag H`` are ``D + 1`` Hessian-vector products at the mean on copies of
  the samples (``Backend.hvp_inside``, capability ``"hvp_inside"``: torch and autograd; at most
  :data:`MAX_SIZE` elements); the node must
  be the only random node of its expectation (:func:`~.copies.alone`).  Non-finite coefficients
  are set to 0 (still unbiased).  ``compare`` runs it where it applies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import PlanError
from .base import Array, EstimatorSpec, ExpectStep
from .copies import alone, cost_on_copies, tiled

if TYPE_CHECKING:
    from ..backend import Backend
    from ..distributions import Distribution, Draw
    from ..planned import NodePlan, PlannedExpect
    from ..program.frame import Frame


#: the most elements per sample (each costs a Hessian-vector product on a copy of the samples)
MAX_SIZE = 64


@dataclass(frozen=True)
class PathwiseDelta(EstimatorSpec):
    """Reparameterization minus the pathwise gradient of the cost's second-order expansion at the mean."""

    name: ClassVar[str] = "pathwise_delta"
    through_sample: ClassVar[bool] = True
    pathwise: ClassVar[bool] = True
    orders: ClassVar[int | None] = 1  # a second derivative is refused by name

    def describe(self) -> str:
        return "pathwise_delta (pathwise, second-order delta-method control variate at the mean; first order only)"

    def requires(self, d: Distribution, *, states: int | None, capabilities: frozenset[str] | None = None) -> None:
        if d.name != "Normal":
            raise PlanError(f"pathwise_delta needs a Normal node (z = loc + scale * eps); this node is {d.name}")
        if capabilities is not None and "hvp_inside" not in capabilities:
            raise PlanError(
                "pathwise_delta needs Hessian-vector products inside the forward pass; the backend lacks"
                " the hvp_inside capability"
            )

    def evaluations(self, states: int | None, node: NodePlan | None = None) -> int:
        return 4  # the cost, and Hessian-vector products at the mean (about 3 each; D + 1 of them)

    def own_surrogate(self, e: PlannedExpect, nodes: Sequence[Any], terms: Sequence[Any]) -> ExpectStep:
        return lambda fr, env: expect(fr, e, env, nodes[0], list(terms))

    def sample(self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]) -> tuple[Array, None]:
        return d.rsample(B, p, draw, shape), None

    def sample_copies(
        self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]
    ) -> tuple[Array, None]:
        """``z``, ``loc`` and ``scale`` (broadcast to ``z``, differentiable) as three blocks on the sample axis."""
        z = d.rsample(B, p, draw, shape)
        zero = 0.0 * B.stop_gradient(z)
        return B.concat([z, p["loc"] + zero, p["scale"] + zero]), None


def _finite(B: Backend, x: Array) -> Array:
    ok = B.fn["lt"](B.fn["abs"](x), math.inf)
    return B.stop_gradient(B.fn["where"](ok, x, ok * 0.0))


def expect(fr: Frame, e: PlannedExpect, env: dict[str, Array], node: Any, terms: list[Any]) -> Array:
    """The surrogate (module docstring): value ``f(z)``, first derivative the controlled estimator."""
    B, var = fr.B, e.nodes[0].var
    alone(fr, e, "pathwise_delta")
    values, _ = node(fr, env)
    n = B.shape(values)[0] // 3
    z, mu, sigma = values[:n], values[n : 2 * n], values[2 * n :]
    at, shape = B.stop_gradient(mu), B.shape(z)[1:]
    size = int(np.prod(shape, dtype=np.int64))
    if size > MAX_SIZE:
        raise PlanError(
            f"pathwise_delta: {var} has {size} elements per sample; diag H costs one Hessian-vector"
            f" product per element, at most {MAX_SIZE} (use 'pathwise')"
        )
    (f,) = cost_on_copies(fr, e, {**env, var: z}, terms, 1, "pathwise_delta")
    # block 0: v = z - mu (the H (z - mu) of the path term); block 1 + d: the basis vector e_d (diag H)
    basis = np.eye(size).reshape((size, 1) + shape) + np.zeros((size, n) + shape)
    v = B.concat([B.stop_gradient(z) - at, B.asarray(basis.reshape((size * n,) + shape))])
    scope = tiled(fr, env, size + 1)

    def cost(x: Array) -> Array:
        return B.concat(cost_on_copies(fr, e, {**scope, var: x}, terms, size + 1, "pathwise_delta"))

    _, g, hv = B.hvp_inside(cost, B.concat([at] * (size + 1)), v)
    g, hv = _finite(B, g[:n]), _finite(B, hv)
    path, columns = hv[:n], B.reshape(hv[n:], (size, n, size))
    diag = B.reshape(B.sum(columns * B.asarray(np.eye(size)[:, None, :]), (0,)), (n,) + shape)
    axes = tuple(range(1, len(shape) + 1))

    def dot(a: Array, b: Array) -> Array:
        return B.sum(a * b, axes) if axes else a * b

    var2 = sigma * sigma
    return f - dot(g + path, z - B.stop_gradient(z)) + dot(g, mu - at) + 0.5 * dot(diag, var2 - B.stop_gradient(var2))
