"""VIMCO: the score function for multi-sample objectives, with a leave-one-out baseline per copy.

Mnih & Rezende 2016, "Variational inference for Monte Carlo objectives" (ICML).  For the K-sample
bound ``L = E[logmeanexp_k w_k, z ~ iid(K, q_phi)]`` with log weights ``w_k = T(z)_k`` (each
depending on its own copy ``z_k``, and on parameters ``theta, phi`` directly, e.g.
``w_k = log p_theta(x, z_k) - log q_phi(z_k)``), the gradient is

    grad L = E[ sum_k (L^ - L^_{-k}) grad log q_phi(z_k)  +  sum_k w~_k grad w_k ],
    L^ = log (1/K) sum_j exp(w_j),    w~_k = softmax_k(w)_k  (the normalized weights),
    L^_{-k} = log (1/K) (sum_{j != k} exp(w_j) + exp(mean_{j != k} w_j))

(the paper's geometric-mean baseline, eq. (10): the copy's weight replaced by the geometric mean of
the others').  The second sum is the direct gradient of ``L^`` through the weights, parameters
inside ``log_prob`` included.  ``L^_{-k}`` depends on the other copies only, so
``E[L^_{-k} grad log q(z_k)] = 0``: **unbiased** for the first derivative, for any cost ``T`` whose
weights keep the copies apart (the recognition in :mod:`.multisample` checks the structure), and
for a node of any law with a fixed support (the planner marks the node biased otherwise).  The
per-copy signal ``L^ - L^_{-k}`` is small where copy ``k`` hardly moves the bound, unlike the
whole ``L^`` that the plain score function (with a leave-one-out over *samples*) multiplies
``sum_k grad log q(z_k)`` by: much lower variance at equal samples.

Surrogate of one bound (per sample; ``S_k = log q(z_k) - stop(log q(z_k))``, value 0):

    L^ + sum_k stop(L^ - L^_{-k}) S_k          (value L^, first derivative the estimator above)

``L^_{-k}`` is formed for all ``k`` at once on a ``K x K`` array (``O(K^2)`` memory per sample).
Where another copy's weight is 0 (``w_j = -inf``) the geometric mean is ``-inf``: the arithmetic
mean of the other copies' weights, ``logmeanexp_{j != k} w_j``, replaces it there, and where every
other weight is 0 the baseline is 0.  Each choice depends on the other copies only (no bias
added), and a run that meets no sample with every weight 0 stays finite, never NaN (in expectation
such a bound is -inf: the all-zero event has positive probability).  The
node is sampled without a gradient path and is *not* scored by the shared surrogate (``scores`` is
False: its score terms are the per-copy ones above, in the bound), so nothing is counted twice.
**First order only** (the stopped signal makes the second derivative wrong): refused by name
(``orders = 1``).

**Per example.**  Where the bound keeps a per-example axis (``T`` of shape ``(K, N, ...)`` whose
example ``i`` depends only on its own latent ``z_{.,i}``, along a batch axis of ``Q``: proven by
:mod:`.per_example` with the plate analysis), example ``i``'s per-copy signal multiplies only
``S_{k,i} = log q_i(z_{k,i}) - stop(...)`` (``log q`` summed over the node's other axes):

    L^_i + sum_k stop(L^_i - L^_{i,-k}) S_{k,i}      per example i (then the cost's sum over i)

unbiased by the independence of the examples' rows (:mod:`.per_example`), and without the other
examples' bound noise in each example's score.  Where that cannot be proven (the latent of image
``i`` in image ``j``'s term, unknown shapes) each bound element keeps the whole ``log q(z_k)`` per
copy (unbiased; the plan note says why).  ``pairing="whole"`` asks for the whole pairing always.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .. import ir
from ..distributions import lookup
from ..errors import PlanError, StochgradError
from ..fnimpl import _logsumexp
from .base import Array, EstimatorSpec, ExpectStep, Rebuild, Rewrite
from .multisample import Bound, alone_in_law, bound_sites
from .per_example import example_axis
from .stl import _law
from ..densities import LogProb

_HUGE = 1e30  # bound on |log q(z_k)|, as stochgrad.program.nodes bounds a node's log q

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ..backend import Backend
    from ..distributions import Distribution, Draw
    from ..planned import PlannedExpect


@dataclass(frozen=True)
class Vimco(EstimatorSpec):
    """VIMCO's per-copy score terms with the geometric-mean leave-one-out baseline of the other copies."""

    name: ClassVar[str] = "vimco"
    compared: ClassVar[bool] = True  # compare runs it; it refuses (PlanError) anything but a K-sample bound
    piloted: ClassVar[bool] = True  # unbiased wherever it applies (a K-sample bound); refuses anything else
    orders: ClassVar[int | None] = 1  # a second derivative is refused by name
    cost_form: ClassVar[str] = "a K-sample bound logmeanexp(T, axis=0) of z ~ iid(K, Q), K >= 2"
    pairing: str = "example"  # "whole": each bound element with the whole log q per copy (module docstring)

    def __post_init__(self) -> None:
        if self.pairing not in ("example", "whole"):
            raise PlanError(f"vimco's pairing must be 'example' or 'whole', got {self.pairing!r}")

    def describe(self) -> str:
        return "vimco (per-copy score terms, leave-one-out over the K copies)"

    def sample(self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]) -> tuple[Array, None]:
        return B.stop_gradient(d.sample(B, p, draw, shape)), None  # the score terms are the bound's (surrogate)

    def rewrite_cost(
        self, body: ir.Expr, var: str, dist: ir.Dist, rebuild: Rebuild, shapes: Mapping[str, Any] | None = None
    ) -> Rewrite:
        law = _law(dist)  # iid(K, Q): Q
        k = int(getattr(dist, "count", 1))
        pairs: list[str] = []

        def make(site: ir.Call, t: ir.Expr) -> Bound:
            n, why = (
                (None, "pairing='whole' was asked") if self.pairing == "whole" else example_axis(t, var, dist, shapes)
            )
            pairs.append(f"per example over {n} examples" if n else f"with the whole log q per copy ({why})")
            return Bound(
                self.name, var, k, t, site, partial(surrogate, per_example=n is not None), LogProb(law, ir.Name(var))
            )

        body, sites = bound_sites(body, var, dist, rebuild, self.name, make)
        note = (
            f"{var}: vimco scores each of the {k} copies in {sites} bound{'s' if sites > 1 else ''}"
            f" logmeanexp(..., axis=0), with the leave-one-out (geometric mean) of the other copies as baseline"
            f" (Mnih & Rezende 2016; first order only); paired {'; '.join(dict.fromkeys(pairs))}"
        )
        biased = (
            ""
            if lookup(dist.name).fixed_support
            else (f"vimco's score terms are biased: {dist.name}'s support depends on its parameters")
        )
        return Rewrite(body, note, biased)

    def own_surrogate(self, e: PlannedExpect, nodes: Sequence[Any], terms: Sequence[Any]) -> ExpectStep | None:
        alone_in_law(e, self.name)  # a check only: the shared assembly builds the expectation
        return None


def surrogate(fr: Any, b: Bound, weights: Any, score: Any, env: dict[str, Array], per_example: bool = False) -> Array:
    """VIMCO's surrogate of one bound (module docstring), per sample: ``(rows, ...)``; with
    ``per_example`` the bound's axis 0 (``T``'s axis 1) pairs with the node's axis 1 (its examples)."""
    B = fr.B
    w = b.log_weights(fr, weights, env)  # (rows, K, *rest), differentiable: the direct term
    rows, k, rest = B.shape(w)[0], b.count, tuple(B.shape(w)[2:])
    bound = _logsumexp(fr, w, 1, b.source) - math.log(k)
    ws = B.reshape(B.stop_gradient(w), (rows, 1, k) + rest)  # row k of the K x K array: the weights, copy k's swapped
    eye = B.asarray(np.eye(k).reshape((1, k, k) + (1,) * len(rest)))
    # the mean of the other copies' w, summed off the diagonal (no -inf - -inf where a weight is 0)
    others = B.sum(B.fn["where"](eye, fr.array(0.0), ws), (2,)) / (k - 1)
    arithmetic = _logsumexp(fr, B.fn["where"](eye, fr.array(-math.inf), ws), 2, b.source) - math.log(k - 1)
    others = B.fn["where"](_finite(B, others), others, arithmetic)  # a zero weight among the others
    swapped = B.fn["where"](eye, B.reshape(others, (rows, k, 1) + rest), ws)
    loo = _logsumexp(fr, swapped, 2, b.source) - math.log(k)  # L_{-k}: (rows, K, *rest)
    signal = B.reshape(B.stop_gradient(bound), (rows, 1) + rest) - B.fn["where"](_finite(B, loo), loo, fr.array(0.0))
    signal = B.fn["where"](_finite(B, signal), signal, fr.array(0.0))  # L = -inf: every weight 0, the value -inf
    lq = fr.array(score(fr, env))
    kept = 3 if per_example else 2  # log q(z_{k,i}): (rows, K, N), or log q(z_k): (rows, K)
    lq = B.sum(lq, tuple(range(kept, len(B.shape(lq))))) if len(B.shape(lq)) > kept else lq
    if per_example and (len(B.shape(lq)) != 3 or not rest or B.shape(lq)[2] != rest[0]):
        raise StochgradError(
            f"vimco: the bound `{b.source}` of shape {rest} does not keep {b.var}'s examples"
            f" (log q of shape {tuple(B.shape(lq)[1:])}) on its axis 0",
            b.source.span,
        )
    lq = B.fn["clip"](lq, -_HUGE, _HUGE)  # an infinite density at a sample (as the node steps clip it)
    term = B.reshape(lq - B.stop_gradient(lq), tuple(B.shape(lq)) + (1,) * (len(rest) + 2 - len(B.shape(lq))))
    return bound + B.sum(signal * term, (1,))


def _finite(B: Backend, x: Array) -> Array:
    return B.fn["lt"](B.fn["abs"](x), math.inf)
