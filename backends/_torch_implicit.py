"""Implicit reparameterization gradients for the torch backend, one derivative deep.

For a draw ``z = F^{-1}(u; x)`` whose inverse CDF has no usable derivative, the implicit function
theorem gives ``dz/dx = -(dF/dx)(z; x) / p(z; x)`` (Figurnov, Mohamed & Mnih 2018).  These
``torch.autograd.Function`` s are the identity on ``z`` with that derivative attached; differentiating
the derivative itself raises the node's refusal (a :class:`~stochgrad.errors.PlanError`), since a
second derivative would need the derivative of ``dz/dx``, which they do not have.
"""

from __future__ import annotations

from typing import Any

import torch

from stochgrad.errors import PlanError


class _ImplicitGamma(torch.autograd.Function):
    """Identity on a standard-gamma draw ``z`` with the implicit gradient ``dz/dalpha`` (torch's
    ``_standard_gamma_grad``, the gradient ``torch._standard_gamma`` itself has), which supports one
    derivative: a second one reaches :class:`_GammaGrad`'s backward and gets ``refusal``."""

    @staticmethod
    def forward(ctx: Any, alpha: torch.Tensor, z: torch.Tensor, refusal: str) -> torch.Tensor:
        ctx.save_for_backward(alpha, z)
        ctx.refusal = refusal
        return z.clone()

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        alpha, z = ctx.saved_tensors
        return g * _GammaGrad.apply(alpha, z, ctx.refusal), None, None


class _GammaGrad(torch.autograd.Function):
    """``dz/dalpha`` of a standard-gamma draw (torch's sampler already returns at least ``tiny``, so
    the draw's clamp never cut a gradient); differentiating it raises the node's refusal."""

    @staticmethod
    def forward(ctx: Any, alpha: torch.Tensor, z: torch.Tensor, refusal: str) -> torch.Tensor:
        ctx.refusal = refusal
        return torch._standard_gamma_grad(alpha.contiguous(), z)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[None, None, None]:
        raise PlanError(ctx.refusal)


class _Implicit(torch.autograd.Function):
    """Identity on draws ``z`` with the given derivative ``dz/dx`` (see ``Backend.implicit_grad``), one
    derivative deep: a second one reaches :class:`_Refused`'s backward and gets ``refusal``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, z: torch.Tensor, dz_dx: torch.Tensor, refusal: str) -> torch.Tensor:
        ctx.save_for_backward(x, dz_dx)
        ctx.refusal = refusal
        return z.clone()

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        x, dz_dx = ctx.saved_tensors
        return g * _Refused.apply(x, dz_dx, ctx.refusal), None, None, None


class _Refused(torch.autograd.Function):
    """``dz/dx`` as a value connected to ``x``, so that differentiating it raises the node's refusal."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dz_dx: torch.Tensor, refusal: str) -> torch.Tensor:
        ctx.refusal = refusal
        return dz_dx.clone()

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[None, None, None]:
        raise PlanError(ctx.refusal)
