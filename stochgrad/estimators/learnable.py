"""Learnable control-variate scalars shared by REBAR and RELAX (Tucker et al. 2017; Grathwohl et
al. 2018): the temperature ``lambda`` of the relaxation ``sigmoid(z / lambda)`` / ``softmax(z /
lambda)`` and the scale ``eta`` of the relaxed cost, learned (``learn=True``) as torch leaf tensors
``log lambda`` and ``eta`` by the variance gradient of :mod:`.relax`, or fixed.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import PlanError


def check_control(name: str, temperature: Any, scale: Any) -> None:
    """Refuse, naming estimator ``name``, a temperature that is not a finite number > 0 or a scale
    that is not a finite number."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise PlanError(f"{name}: temperature must be a finite number > 0, got {temperature!r}")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale)):
        raise PlanError(f"{name}: scale must be a finite number, got {scale!r}")


class Scalars:
    """A spec's learnable ``log lambda`` and ``eta``: torch float64 leaf tensors made with the spec."""

    def __init__(self, name: str, temperature: float, scale: float) -> None:
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is installed with the torch backend
            raise PlanError(
                f"{name}: learn=True needs torch (its parameters are torch tensors); pass learn=False for fixed values"
            ) from None
        self.log_temperature = torch.tensor(math.log(temperature), dtype=torch.float64, requires_grad=True)
        self.scale = torch.tensor(float(scale), dtype=torch.float64, requires_grad=True)

    def values(self) -> tuple[float, float]:
        return math.exp(self.log_temperature.item()), self.scale.item()

    def tensors(self) -> list[Any]:
        return [self.log_temperature, self.scale]

    def __repr__(self) -> str:
        t, s = self.values()
        return f"Scalars(temperature={t:g}, scale={s:g})"


class LearnedControl:
    """For a spec with ``temperature``, ``scale``, ``learn`` fields and its ``scalars`` (a
    :class:`Scalars` when learning): its state and current values."""

    temperature: float
    scale: float
    learn: bool
    scalars: Any

    @property
    def stateful(self) -> bool:
        """With ``learn``, parameters that change between calls (``fuse=True`` refuses them)."""
        return self.learn

    def current(self) -> tuple[float, float]:
        """The temperature and scale now (the learned values when ``learn``)."""
        return self.scalars.values() if self.scalars is not None else (self.temperature, self.scale)
