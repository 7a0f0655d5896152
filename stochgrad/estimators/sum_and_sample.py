"""Sum-and-sample (Liu, Regier, Tripuraneni, Jordan & McAuliffe 2019, "Rao-Blackwellized stochastic
gradients for discrete distributions", ICML): exact sum over the most probable states, one sample
of the rest.  Unbiased, first order only.

For ``L(phi) = E_{z ~ q_phi}[f(z)]`` over a finite support, let ``C`` be the ``k`` most probable
states, chosen per sample from ``stop(q)`` (so ``C`` carries no gradient and does not depend on the
sample's noise), and ``Q = q(C)``.  Then exactly

    E f = sum_{c in C} q(c) f(c) + (1 - Q) E_{z ~ q(. | not C)}[f(z)],

and one draw ``z ~ q(. | not C)`` gives the estimate ``sum_C q(c) f(c) + (1 - Q) f(z)`` and the
gradient (the remainder's expectation by the score function of ``q(. | not C) = q / (1 - Q)``)

    g = sum_C [grad q(c) f(c) + q(c) grad f(c)] - f(z) grad Q + (1 - Q) grad f(z)
        + (f(z) - b) [(1 - Q) grad log q(z) + grad Q],

which is Liu et al.'s ``sum_C q(c) (f(c) - b) grad log q(c) + (1 - Q) (f(z) - b) grad log q(z)`` (plus
the cost's own gradient) with one baseline ``b`` in both parts.  ``b`` is the leave-one-out mean of the
other samples' ``f(z)`` (Kool et al. 2019; grouped by noise block as :func:`~.score.leave_one_out`
does, none with a single sample): it depends on other samples only, and
``E_{z ~ q(.|not C)}[(1 - Q) grad log q(z) + grad Q] = 0``, so ``g`` is **unbiased** for every cost ``f``
(also a discontinuous one), whatever ``C``; choosing the most probable states makes the sampled
remainder's weight ``1 - Q`` small, which is where the variance falls (Liu et al.: the
Rao-Blackwellized estimator never has more variance than the one-sample score function it conditions,
at the same baseline; the leave-one-out baseline here is the remainder's, so single entries can be
noisier than score + leave-one-out, see the tests).  With ``k >=`` the number of states the remainder
is empty: exact enumeration, zero variance.  A remainder of zero mass (``probs`` with exact zeros
outside ``C``) is drawn uniformly with weight 0: the value stays exact, but derivatives in those zero
probabilities are not estimated (the score function does not see them either).

**Joint support.** The node is treated as one categorical over its *joint* support (a Categorical
with batch shape ``(D,)`` and ``K`` classes has ``K**D`` joint states, a Bernoulli vector ``2**D``):
``C`` is the ``k`` most probable joint states.  A per-coordinate ``C`` is not offered: with a cost
coupling the coordinates the exact part would be a sum over the product of the ``C``s (``k**D``
evaluations), and summing coordinates one at a time is a different estimator.  So the node's joint
support must have at most :data:`MAX_JOINT` states (refused by name otherwise); the sampler handles
the ``n x states`` probabilities on the host (numpy, without gradient: the choice of ``C`` and the
inverse-CDF draw of ``z``), once per distinct parameter row.

**Surrogate** (:func:`expect`): the expectation's scope is copied ``k + 1`` times on the sample axis
(block ``j < k`` holds the ``j``-th most probable state, block ``k`` the draw ``z``;
:mod:`.copies`), the cost is evaluated once on the copies (``k + 1`` evaluations per sample, the
price :meth:`SumAndSample.evaluations` reports) and the blocks are combined as
``S = sum_C q(c) f(c) + (1 - Q) f(z) + stop(f(z) - b) [(Q - stop Q) + stop(1 - Q) (L - stop L)]``,
``L = log q(z)``: value the estimate above, first derivative ``g``.  **First order only**
(``orders = 1``: a second derivative is refused by name).  The node must be the only random node of
its expectation, outside enumerations and ``batch_axes`` runs (:func:`~.copies.alone`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np

from ..distributions import joint_prob, joint_support
from ..errors import PlanError
from .base import Array, EstimatorSpec, ExpectStep, whole_option
from .copies import alone, cost_on_copies, tiled
from .score import leave_one_out

if TYPE_CHECKING:
    from ..backend import Backend
    from ..distributions import Distribution, Draw
    from ..planned import NodePlan, PlannedExpect
    from ..program.frame import Frame

#: the largest joint support summed-and-sampled (the sampler holds ``rows x states`` host arrays)
MAX_JOINT = 4096
LAWS = ("Categorical", "Bernoulli")


def _var(draw: Any) -> str:
    return getattr(getattr(draw, "node", None), "var", "the node")


@dataclass(frozen=True)
class JointSubset(EstimatorSpec):
    """Base of the estimators that evaluate the cost on a subset of the node's joint support (this
    module's and :mod:`.unordered_set`): where they apply (``use`` says how they use the support, in
    the refusal), and the plain draw the score function would make (their surrogates draw through
    ``sample_copies``, which the node step prefers)."""

    use: ClassVar[str] = ""

    def requires(self, d: Distribution, *, states: int | None, capabilities: frozenset[str] | None = None) -> None:
        check_node(self.name, d, states, self.use)

    def sample(self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]) -> tuple[Array, Array]:
        """An exact draw of the node and its ``log q`` (as the score function draws it)."""
        return d.sample_and_log_prob(B, p, draw, shape)


@dataclass(frozen=True)
class SumAndSample(JointSubset):
    """The ``k`` most probable joint states summed exactly, the rest by one sample (unbiased)."""

    name: ClassVar[str] = "sum_and_sample"
    use: ClassVar[str] = "sums the k most probable joint states of the node"
    scores: ClassVar[bool] = True
    piloted: ClassVar[bool] = True
    orders: ClassVar[int | None] = 1  # a second derivative is refused by name
    k: int = 3

    def __post_init__(self) -> None:
        whole_option(self, "k", "an integer >= 1 (the states summed exactly)")

    def describe(self) -> str:
        return (
            f"{self.name} (k={self.k}: the {self.k} most probable states summed, 1 sampled from the rest;"
            " exact when k >= the states)"
        )

    def evaluations(self, states: int | None, node: NodePlan | None = None) -> int:
        return self.k + 1 if states is None or states > self.k else states

    def own_surrogate(self, e: PlannedExpect, nodes: Sequence[Any], terms: Sequence[Any]) -> ExpectStep:
        """The surrogate evaluates the cost on ``k + 1`` copies (:func:`expect`)."""
        return lambda fr, env: expect(fr, e, env, nodes[0], list(terms))

    def sample_copies(
        self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]
    ) -> tuple[Array, Array]:
        """The ``k`` most probable joint states and a draw ``z`` from the rest, as blocks of ``n`` on the
        sample axis, and per block the weights the surrogate needs: ``q(c)`` for the summed blocks and
        ``log q(z)`` for the sampled one (which is absent when ``k >=`` the states)."""
        support = node_support(self.name, d, draw, shape)
        u = B.to_numpy(B.stop_gradient(draw("uniform", ())))  # one uniform per sample: the remainder's draw
        n = u.shape[0]
        logp, row = host_log_probs(d, B, p, support, n)
        states = len(support)
        k = min(self.k, states)
        top = np.argsort(-logp, axis=1, kind="stable")[:, :k]  # (rows, k): C, without gradient
        picks = [top[row, j] for j in range(k)]
        if k < states:
            picks.append(_draw_rest(logp, top, row, u))
        index = np.concatenate(picks)
        values = B.asarray(support[index])
        blocks = len(picks)
        tiled_p = {key: v if B.shape(v)[0] == 1 else B.concat([v] * blocks) for key, v in p.items()}
        q = joint_prob(B, d.prob(B, tiled_p, values))  # a product of probabilities: right where q(c) = 0
        if k == states:
            return values, q
        z = values[k * n :]
        lq = d.log_prob(B, p, z)
        lq = B.sum(lq, tuple(range(1, len(B.shape(lq))))) if len(B.shape(lq)) > 1 else lq
        return values, B.concat([q[: k * n], lq])

    def combine(self, B: Backend, f: list[Array], w: list[Array], base: Array | float) -> Array:
        """The surrogate from the per-block costs ``f`` and weights ``w`` (module docstring)."""
        k = min(self.k, len(f))
        total: Array | float = 0.0
        for fc, qc in zip(f[:k], w[:k]):
            total = total + qc * fc
        if len(f) == k:  # k >= the states: exact enumeration
            return cast(Array, total)
        Q = sum(w[1:k], w[0])
        rest, fz, L = self.remainder(B, Q), f[k], w[k]
        score = (Q - B.stop_gradient(Q)) + B.stop_gradient(1.0 - Q) * (L - B.stop_gradient(L))
        return cast(Array, total + rest * fz + B.stop_gradient(fz - base) * score)

    def remainder(self, B: Backend, Q: Array) -> Array:
        """The sampled remainder's weight ``1 - Q``, differentiable."""
        return 1.0 - Q


def check_node(name: str, d: Distribution, states: int | None, what: str) -> None:
    """``requires`` of the estimators over a node's joint support (this one, :mod:`.unordered_set`)."""
    if d.name not in LAWS:
        raise PlanError(f"{name} needs a Categorical or Bernoulli node; this node is {d.name}")
    if states is None:
        raise PlanError(f"{name} needs the {d.name} node's joint support known before sampling (its parameter shapes)")
    if states > MAX_JOINT:
        raise PlanError(
            f"{name} {what}, but its {states} joint states exceed {MAX_JOINT}: a per-coordinate version would"
            " need the product of the coordinates' sets when the cost couples them, which is not offered; use score"
        )


def node_support(name: str, d: Distribution, draw: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Every joint state of the drawing node, ``(states, *shape)`` (refused beyond :data:`MAX_JOINT`)."""
    node = getattr(draw, "node", None)
    support = None if node is None else joint_support(d, node.dist, shape)
    if support is None or len(support) > MAX_JOINT:
        raise PlanError(f"{name} on {_var(draw)}: its joint support is unknown or exceeds {MAX_JOINT} states")
    return support


def columns(B: Backend, w: Array, like: Array) -> Array:
    """A per-sample weight ``(n,)`` shaped to broadcast against a per-sample cost ``like``."""
    while len(B.shape(w)) < len(B.shape(like)):
        w = B.reshape(w, B.shape(w) + (1,))
    return w


def host_log_probs(d: Distribution, B: Backend, p: Any, support: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``log q`` of every joint state (no gradient) for each distinct parameter row, ``(rows, states)``,
    and each sample's row ``(n,)``."""
    host = {key: B.to_numpy(B.stop_gradient(v)) for key, v in p.items()}
    flat = np.concatenate(
        [np.broadcast_to(a.reshape(a.shape[0], -1), (n, int(np.prod(a.shape[1:], dtype=int)))) for a in host.values()],
        axis=1,
    )
    rows, first, row = np.unique(flat, axis=0, return_index=True, return_inverse=True)
    rank = support.ndim - 1
    unique = {}
    for key, a in host.items():
        a = a[first] if a.shape[0] == n else a  # (rows or 1, *pshape) -> (rows or 1, 1, ..., *pshape)
        unique[key] = B.asarray(a.reshape((a.shape[0], 1) + (1,) * (rank - (a.ndim - 1)) + a.shape[1:]))
    lq = d.log_prob(B, unique, B.asarray(support[None]))
    lq = B.sum(lq, tuple(range(2, len(B.shape(lq))))) if len(B.shape(lq)) > 2 else lq
    logp = np.broadcast_to(B.to_numpy(lq), (len(rows), len(support)))
    return np.asarray(logp, dtype=np.float64), np.asarray(row).reshape(-1)


def _draw_rest(logp: np.ndarray, top: np.ndarray, row: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Each sample's state drawn from ``q(. | not C)`` of its row by the inverse CDF at ``u``."""
    rest = logp.copy()
    np.put_along_axis(rest, top, -np.inf, axis=1)
    peak = np.max(rest, axis=1, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    mass = np.exp(rest - peak)
    empty = mass.sum(axis=1) == 0.0  # no mass outside C (zero probabilities): any state outside C, weight 0
    if np.any(empty):
        outside = np.ones_like(mass)
        np.put_along_axis(outside, top, 0.0, axis=1)
        mass[empty] = outside[empty]
    cum = np.cumsum(mass, axis=1)
    cum /= cum[:, -1:]
    last = mass.shape[1] - 1 - np.argmax(mass[:, ::-1] > 0, axis=1)  # the last state with mass
    if len(cum) == 1:
        index = np.searchsorted(cum[0], u, side="right")
    else:
        index = np.sum(cum[row] <= u[:, None], axis=1)
    return np.minimum(index, last[row])


def expect(fr: Frame, e: PlannedExpect, env: dict[str, Array], node: Any, terms: list[Any]) -> Array:
    """The sum-and-sample surrogate of an expectation whose one random node uses it (module docstring)."""
    spec, B = cast(SumAndSample, e.nodes[0].spec), fr.B
    alone(fr, e, spec.name)
    values, packed = node(fr, env)
    n = fr.noise.count
    blocks = B.shape(values)[0] // n
    scope = tiled(fr, env, blocks)
    scope[e.nodes[0].var] = values
    f = cost_on_copies(fr, e, scope, terms, blocks, spec.name)
    w = [columns(B, packed[j * n : (j + 1) * n], f[0]) for j in range(blocks)]
    base: Array | float = 0.0
    if blocks > spec.k and n >= 2:
        base = leave_one_out(B, f[-1], fr.noise.count, fr.loo_block)
    return spec.combine(B, f, w, base)
