"""Gamma, Beta and Dirichlet: pathwise through implicit reparameterization.

A standard gamma draw has no closed-form inverse CDF, but it is still a
differentiable function of its shape ``a`` at fixed noise: differentiating
``F(z; a) = u`` gives ``dz/da = -(dF/da) / p(z; a)`` (implicit
reparameterization, Figurnov et al. 2018).  Backends draw ``G`` as the ``"gamma"`` noise kind and
attach that gradient with ``Backend.implicit_gamma`` (capability ``"implicit_reparam"``); a backend
without it gets the score function, and the plan says so.  Then

* ``Gamma(a, rate) = G / rate`` with ``G ~ Gamma(a, 1)``;
* ``Beta(a, b) = G_a / (G_a + G_b)``;
* ``Dirichlet(alpha) = G / sum(G)`` over the last axis.

``dz/da`` has no closed form (``dF/da`` of the regularized incomplete gamma function is a series), so
the backends give it to the first order only.  A second derivative through such a node (in
``sg.compile``'s objective: ``torch.autograd.grad(..., create_graph=True)`` then again, or
``autograd.grad(autograd.grad(f))``) raises a :class:`~stochgrad.errors.PlanError` naming the node
and its distribution, and pointing to ``estimators={"z": "score"}``: the score function's DiCE
surrogate differentiates the log density, which is closed-form, to every order.  The plan states
the limit in a pathwise node's reason ("derivatives up to order 1").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .distributions import Distribution, Param, positive, register_distribution
from .types import Array

if TYPE_CHECKING:
    from .backend import Backend

P = Mapping[str, Array]
_TINY, _EPS = float(np.finfo(float).tiny), float(np.finfo(float).eps) / 2


class _Implicit(Distribution):
    needs = frozenset({"implicit_reparam"})
    #: the pathwise gradient's derivative orders (the plan says so; see the module doc)
    pathwise_orders = 1

    def gamma(self, B: Backend, draw: Any, shape: tuple[int, ...], alpha: Array) -> Array:
        """Standard-gamma draws of concentration ``alpha``, differentiable in it to the first order."""
        return B.implicit_gamma(alpha, draw("gamma", shape, alpha), self.refusal(draw))

    def sample(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> Array:
        """The score function's draw, from gradient-free parameters: no derivative of any order or mode
        then reaches the first-order implicit gradient (forward over reverse, ``jax.hessian``, would
        otherwise meet it, since forward mode computes the tangent of a draw before it is stopped)."""
        fixed = {k: v if isinstance(v, (int, float, np.ndarray)) else B.stop_gradient(v) for k, v in p.items()}
        return B.stop_gradient(self.rsample(B, fixed, draw, shape))

    def refusal(self, draw: Any) -> str:
        """The error for a second derivative, naming the node the lowering's ``draw`` samples."""
        node = getattr(draw, "node", None)
        var, where = (node.var, f"{node.var} ~ {node.dist}") if node is not None else ("z", f"a {self.name} node")
        return (
            f"{where}: no second derivative through its pathwise gradient: {self.name} is sampled by implicit"
            " reparameterization, whose gradient dz/dalpha supports first derivatives only; use"
            f" estimators={{{var!r}: 'score'}}, which supports derivatives of every order"
        )


class Gamma(_Implicit):
    name = "Gamma"
    params = (Param("concentration", positive, "shape a"), Param("rate", positive, "rate (1 / scale)"))
    doc = "Gamma(concentration, rate): density rate^a z^(a-1) exp(-rate z) / Gamma(a)"

    def rsample(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> Array:
        return self.gamma(B, draw, shape, p["concentration"]) / p["rate"]

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        a, rate, log = p["concentration"], p["rate"], B.fn["log"]
        return a * log(rate) + (a - 1.0) * log(x) - rate * x - B.fn["lgamma"](a)

    def entropy(self, B: Backend, p: P) -> Array:
        a = p["concentration"]  # a - log(rate) + lgamma(a) + (1 - a) psi(a)
        return a - B.fn["log"](p["rate"]) + B.fn["lgamma"](a) + (1.0 - a) * B.fn["digamma"](a)


class Beta(_Implicit):
    name = "Beta"
    params = (Param("a", positive, "first shape"), Param("b", positive, "second shape"))
    doc = "Beta(a, b) on (0, 1): density z^(a-1) (1-z)^(b-1) / B(a, b)"

    def rsample(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> Array:
        ga, gb = self.gamma(B, draw, shape, p["a"]), self.gamma(B, draw, shape, p["b"])
        # G_a / (G_a + G_b) in log space: gamma draws of tiny shape are near the smallest float
        log = B.fn["log"]
        return B.fn["clip"](B.fn["sigmoid"](log(ga) - log(gb)), _TINY, 1.0 - _EPS)

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        a, b, lg = p["a"], p["b"], B.fn["lgamma"]
        return (a - 1.0) * B.fn["log"](x) + (b - 1.0) * B.fn["log1p"](-x) + lg(a + b) - lg(a) - lg(b)

    def entropy(self, B: Backend, p: P) -> Array:
        a, b, lg, psi = p["a"], p["b"], B.fn["lgamma"], B.fn["digamma"]  # log B(a, b) - ... + (a + b - 2) psi(a + b)
        return lg(a) + lg(b) - lg(a + b) - (a - 1.0) * psi(a) - (b - 1.0) * psi(b) + (a + b - 2.0) * psi(a + b)


class Dirichlet(_Implicit):
    name = "Dirichlet"
    params = (Param("concentration", positive, "concentrations (last axis)"),)
    event_rank = 1
    doc = "Dirichlet(concentration): points of the simplex over the last axis"

    def extra_check(self, values: Mapping[str, np.ndarray | float]) -> str | None:
        return None if np.ndim(values["concentration"]) else "parameter 'concentration' needs a last axis of categories"

    def rsample(self, B: Backend, p: P, draw: Any, shape: tuple[int, ...]) -> Array:
        log_g = B.fn["log"](self.gamma(B, draw, shape, p["concentration"]))  # normalize in log space
        return B.fn["clip"](B.softmax(log_g, len(shape)), _TINY, 1.0)

    def log_prob(self, B: Backend, p: P, x: Array) -> Array:
        a, lg = p["concentration"], B.fn["lgamma"]
        last = len(B.shape(x)) - 1
        terms = B.sum((a - 1.0) * B.fn["log"](x) - lg(a), (last,))
        return terms + lg(B.sum(a, (len(B.shape(a)) - 1,)))

    def entropy(self, B: Backend, p: P) -> Array:
        """``log B(alpha) + (alpha_0 - K) psi(alpha_0) - sum_j (alpha_j - 1) psi(alpha_j)``."""
        a, lg, psi = p["concentration"], B.fn["lgamma"], B.fn["digamma"]
        last = (len(B.shape(a)) - 1,)
        a0, k = B.sum(a, last), B.shape(a)[-1]
        return B.sum(lg(a) - (a - 1.0) * psi(a), last) - lg(a0) + (a0 - float(k)) * psi(a0)


for _cls in (Gamma, Beta, Dirichlet):
    register_distribution(_cls())
