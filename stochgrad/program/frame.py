"""The evaluation frame of one run of a program: a value passed to every step, never a long-lived object.

A frame holds what one evaluation (one ``estimate`` chunk, one objective call) needs: the backend,
the parameters (native arrays with a sample axis), the noise, the numeric values of parameters known
on the host (``estimate``'s, so that their checks run once per run), the caches that outlive it
(``memo``: constant arrays and the constant parameter sets already checked), the moving-average
state (owned by the run or the objective, :class:`stochgrad.baselines.BaselineState`) and the
options (``first_order``, ``batch_axes``, ``checks``).  What changes during the run -- the current
enumeration multiplicity ``mult``, the tiled parameters, the arrays checked in this evaluation -- lives
here and dies with the frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..baselines import BaselineState
from ..noise import BLOCK, Noise
from ..sampleaxis import SampleAxis

if TYPE_CHECKING:
    from ..backend import Backend

from ..types import Array


class Frame(SampleAxis):
    """One evaluation's values (see the module docstring)."""

    def __init__(
        self,
        B: Backend,
        params: Mapping[str, Array],
        noise: Noise,
        *,
        known: Mapping[str, np.ndarray] | None = None,
        memo: dict[Any, Any] | None = None,
        checks: bool = True,
        first_order: bool = False,
        baselines: BaselineState | None = None,
        batch_axes: int = 0,
    ) -> None:
        self.B, self.params, self.noise = B, params, noise
        self.known: Mapping[str, np.ndarray] = known or {}
        self.memo: dict[Any, Any] = {} if memo is None else memo
        self.checks, self.first_order, self.batch_axes = checks, first_order, batch_axes
        self.baselines = BaselineState() if baselines is None else baselines
        self.mult = 1
        self.tiled: dict[tuple[str, int], Array] = {}
        self.checked_now: set[Any] = set()
        # leave-one-out groups: noise blocks when the noise comes in blocks, else the whole call
        self.loo_block = BLOCK if getattr(noise, "blocked", False) else None

    def param(self, name: str) -> Array:
        """Parameter ``name``, copied to the current enumeration multiplicity (once per frame)."""
        if self.mult == 1:
            return self.params[name]
        key = (name, self.mult)
        out = self.tiled.get(key)
        if out is None:
            out = self.tiled[key] = self.tile(self.params[name], self.mult)
        return out

    def stop(self, x: Array | float) -> Array | float:
        return x if isinstance(x, float) else self.B.stop_gradient(x)
