"""Implicit reparameterization for the jax backend, first order only (Figurnov, Mohamed & Mnih 2018).

For a draw ``z`` of a law with CDF ``F(z; x)`` the implicit function theorem gives
``dz/dx = -(dF/dx)(z; x) / p(z; x)``.  :func:`_implicit` and :func:`_implicit_gamma` are
``jax.custom_jvp`` s: the identity on ``z`` with tangent ``dz/dx * dx`` (for a standard gamma, JAX's own
``lax.random_gamma_grad``).  The factor ``dz/dx`` is a ``custom_vjp`` whose reverse rule raises the node's
:class:`~stochgrad.errors.PlanError` when a second reverse-mode derivative flows through it, and forward
over reverse (``jax.hessian``) is refused with the same error by name.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from stochgrad.errors import PlanError


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _refused(x: Any, dz_dx: Any, refusal: str) -> Any:
    """``dz_dx``, connected to ``x`` so that a cotangent reaching ``x`` through it raises ``refusal``
    (a custom_vjp: raised in the reverse pass only where a second derivative really flows, not when a
    draw is traced and then stopped, as the score estimator's ``stop_gradient(rsample)`` does)."""
    return dz_dx


def _refused_fwd(x: Any, dz_dx: Any, refusal: str) -> Any:
    return dz_dx, None


def _refused_bwd(refusal: str, res: Any, g: Any) -> Any:
    raise PlanError(refusal)


_refused.defvjp(_refused_fwd, _refused_bwd)


def _refusing(x: Any, dz_dx: Any, refusal: str) -> Any:
    """:func:`_refused`; under forward mode over this rule (``jax.hessian``: forward over reverse), where a
    second derivative is asked for, JAX refuses a custom_vjp with its own TypeError: refused by name instead."""
    try:
        return _refused(x, dz_dx, refusal)
    except TypeError as exc:
        if "custom_vjp" not in str(exc):
            raise
        raise PlanError(refusal) from None


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _implicit(x: Any, z: Any, dz_dx: Any, refusal: str) -> Any:
    """The draws ``z``, with the derivative ``dz_dx`` in ``x`` (see ``Backend.implicit_grad``)."""
    return z


@_implicit.defjvp
def _implicit_jvp(refusal: str, primals: Any, tangents: Any) -> Any:
    x, z, dz_dx = primals
    return z, _refusing(x, dz_dx, refusal) * tangents[0]


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _implicit_gamma(alpha: Any, z: Any, refusal: str) -> Any:
    """Standard-gamma draws ``z`` with JAX's own implicit gradient in ``alpha`` (``jax.random.gamma``'s,
    ``lax.random_gamma_grad``), computed only where a tangent is asked for (a constant ``alpha`` costs nothing)."""
    return z


@_implicit_gamma.defjvp
def _implicit_gamma_jvp(refusal: str, primals: Any, tangents: Any) -> Any:
    alpha, z = primals
    dz = jax.lax.random_gamma_grad(jax.lax.stop_gradient(alpha), z)
    dz = jnp.where(jnp.isfinite(dz), dz, 0.0)
    return z, _refusing(alpha, dz, refusal) * tangents[0]
