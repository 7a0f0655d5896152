"""The unordered set estimator (Kool, van Hoof & Welling 2020, "Estimating gradients for discrete
random variables by sampling without replacement", ICLR), with its built-in baseline.  Unbiased,
first order only.

Per sample, ``S`` is a set of ``k`` distinct joint states drawn *without replacement* from
``q_phi`` by Gumbel-top-k (the ``k`` largest ``log q(s) + G_s``, ``G_s`` standard Gumbel).  With
``p(S)`` the probability of the unordered set, ``p^{D\\A}(S \\ A)`` that of ``S \\ A`` drawn without
replacement from the domain without ``A``, and the leave-one-out ratios

    R(S, s) = p^{D\\{s}}(S \\ {s}) / p(S),     R^{D\\{s}}(S, s') = p^{D\\{s,s'}}(S \\ {s,s'}) / p^{D\\{s}}(S \\ {s})

(``R^{D\\{s}}(S, s) = 1``), the estimates of ``E f`` and of its gradient are

    sum_{s in S} p(s) R(S, s) f(s),
    sum_{s in S} p(s) R(S, s) [grad log q(s) (f(s) - b(S, s)) + grad f(s)],
    b(S, s) = sum_{s' in S} p(s') R^{D\\{s}}(S, s') f(s')                       (the paper's eq. 17-18).

``p(s) R(S, s)`` is the probability that ``s`` came first given the set, so both are the
Rao-Blackwellization over the order of the first draw ``s1`` and the ``k - 1`` draws that follow
(without replacement from ``D \\ {s1}``); ``b(S, s1)`` is ``p(s1) f(s1)`` plus the unordered set
estimate of ``sum_{s' != s1} q(s') f(s')`` from those ``k - 1``, so ``E[b | s1] = E f`` whatever
``s1``: the baseline keeps the estimator **unbiased** for every cost (also a discontinuous one); it
needs ``k >= 2``.  With ``k >=`` the states, ``S`` is the whole support and both are exact (zero variance).

**Inclusion probabilities: exact**, not the paper's numerical integration: ``p(S) = sum over the
k! orders of S of prod_i q(s_i) / (q(D \\ S) + sum_{j >= i} q(s_j))``, by a dynamic programme over
the ``2**k`` subsets of ``S`` (:func:`_log_set`), each ratio's numerator and denominator by the same
formula (they share the outside mass ``q(D \\ S)``, summed over the states outside ``S``, never
``1 - q(S)``), in log space on the host, without gradient (``k <=`` :data:`MAX_K`).  The node is one categorical over its joint support, as in :mod:`.sum_and_sample`
(at most :data:`~.sum_and_sample.MAX_JOINT` states; the Gumbel keys are ``n x states``).

**Surrogate** (:func:`expect`): the scope copied ``k`` times on the sample axis (block ``j`` holds
the ``j``-th element of ``S``), the cost evaluated once on the copies (``k`` evaluations per sample),
``S = sum_j stop(w_j) f_j + stop(w_j (f_j - b_j)) (L_j - stop L_j)`` with ``w_j = p(s_j) R(S, s_j)``
and ``L_j = log q(s_j)``.  **First order only** (``orders = 1``); the node must be the only random
node of its expectation, outside enumerations and ``batch_axes`` runs (:func:`~.copies.alone`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np

from .base import Array, ExpectStep, whole_option
from .copies import alone, cost_on_copies, tiled
from .sum_and_sample import JointSubset, columns, host_log_probs, node_support

if TYPE_CHECKING:
    from ..backend import Backend
    from ..distributions import Distribution, Draw
    from ..planned import NodePlan, PlannedExpect
    from ..program.frame import Frame

#: the largest set: exact inclusion probabilities run over the 2**k subsets of each of ~k**2 / 2 sets
MAX_K = 6


@dataclass(frozen=True)
class UnorderedSet(JointSubset):
    """``k`` distinct states sampled without replacement, with the built-in baseline (unbiased)."""

    name: ClassVar[str] = "unordered_set"
    use: ClassVar[str] = "samples k of the node's joint states without replacement"
    scores: ClassVar[bool] = True
    piloted: ClassVar[bool] = True
    orders: ClassVar[int | None] = 1  # a second derivative is refused by name
    k: int = 4

    def __post_init__(self) -> None:
        what = f"an integer from 2 (its baseline uses the other samples) to {MAX_K} (exact inclusion probabilities over its subsets)"
        whole_option(self, "k", what, low=2, high=MAX_K)

    def describe(self) -> str:
        return f"{self.name} (k={self.k} states without replacement, built-in baseline; exact when k >= the states)"

    def evaluations(self, states: int | None, node: NodePlan | None = None) -> int:
        return self.k if states is None else min(self.k, states)

    def own_surrogate(self, e: PlannedExpect, nodes: Sequence[Any], terms: Sequence[Any]) -> ExpectStep:
        """The surrogate evaluates the cost on ``k`` copies (:func:`expect`)."""
        return lambda fr, env: expect(fr, e, env, nodes[0], list(terms))

    def sample_copies(
        self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]
    ) -> tuple[Array, Array]:
        """The set's ``k`` states as blocks of ``n`` on the sample axis, and packed on one axis: their
        ``log q`` (differentiable, ``k`` blocks), the weights ``w_j`` (``k`` blocks) and the baseline's
        weights ``p(s') R^{D\\{s_j}}(S, s')`` (``k x k`` blocks, row ``j`` first), without gradient."""
        support = node_support(self.name, d, draw, shape)
        states = len(support)
        u = B.to_numpy(B.stop_gradient(draw("uniform", (states,))))
        n = u.shape[0]
        logp, row = host_log_probs(d, B, p, support, n)
        keys = logp[row] - np.log(-np.log(u))  # Gumbel-top-k: k states without replacement
        k = min(self.k, states)
        top = np.argsort(-keys, axis=1, kind="stable")[:, :k]
        w, base = set_weights(logp[row], top)
        values = B.asarray(support[top.T.reshape(-1)])  # block j: element j of every sample's set
        tiled_p = {key: v if B.shape(v)[0] == 1 else B.concat([v] * k) for key, v in p.items()}
        lq = d.log_prob(B, tiled_p, values)
        lq = B.sum(lq, tuple(range(1, len(B.shape(lq))))) if len(B.shape(lq)) > 1 else lq
        host = np.concatenate([w.T.reshape(-1), base.transpose(1, 2, 0).reshape(-1)])
        return values, B.concat([lq, B.asarray(host)])


def _log_set(a: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """``log p(A)`` of the unordered sets with element masses ``a`` ``(n, m)`` drawn without replacement
    from a domain with ``outside`` mass beyond them ``(n,)`` (masses in any common scale): a dynamic
    programme over the ``2**m`` subsets ``T`` of ``A`` (drawn first, in any order),
    ``P(T) = sum_{i in T} P(T \\ {i}) a_i / (outside + a(A \\ T) + a_i)``, in log space; the remaining
    mass is a sum of positive terms (never a difference), and ``P(A)`` is the sum over the ``m!`` orders."""
    n, m = a.shape
    full = (1 << m) - 1
    mass = np.zeros((full + 1, n))  # a(U) for every subset U
    for u in range(1, full + 1):
        low = u & -u
        mass[u] = mass[u ^ low] + a[:, low.bit_length() - 1]
    with np.errstate(divide="ignore"):
        la = np.log(a)
        logp = np.zeros((full + 1, n))
        for t in range(1, full + 1):  # T \ {i} < T: every term is ready
            left = np.log(np.maximum(outside + mass[full ^ t], np.finfo(float).tiny))
            parts = [logp[t ^ (1 << i)] + la[:, i] - np.logaddexp(left, la[:, i]) for i in range(m) if t >> i & 1]
            logp[t] = parts[0] if len(parts) == 1 else np.logaddexp.reduce(parts, axis=0)
    return logp[full]


def set_weights(logp: np.ndarray, top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sets ``top`` ``(n, k)`` of the states with log-probabilities ``logp`` ``(n, states)``: the
    weights ``p(s_j) R(S, s_j)`` ``(n, k)`` and the baseline's ``p(s') R^{D\\{s_j}}(S, s')`` ``(n, k, k)``
    (module docstring)."""
    n, k = top.shape
    lp = np.take_along_axis(logp, top, axis=1)
    shift = np.max(lp, axis=1, keepdims=True)
    a = np.exp(lp - shift)
    rest = np.exp(logp - shift)  # the outside mass, summed over the states outside each set
    np.put_along_axis(rest, top, 0.0, axis=1)
    outside = np.sum(rest, axis=1)
    q = np.exp(lp)
    whole = _log_set(a, outside)
    keep = [[i for i in range(k) if i != j] for j in range(k)]
    without = [_log_set(a[:, keep[j]], outside) for j in range(k)]
    w = np.stack([q[:, j] * np.exp(without[j] - whole) for j in range(k)], axis=1)
    base = np.zeros((n, k, k))
    for j, i in itertools.combinations(range(k), 2):
        pair = _log_set(a[:, [c for c in range(k) if c not in (i, j)]], outside)
        base[:, j, i] = q[:, i] * np.exp(pair - without[j])
        base[:, i, j] = q[:, j] * np.exp(pair - without[i])
    base[:, range(k), range(k)] = q
    return w, base


def expect(fr: Frame, e: PlannedExpect, env: dict[str, Array], node: Any, terms: list[Any]) -> Array:
    """The unordered-set surrogate of an expectation whose one random node uses it (module docstring)."""
    spec, B = cast(UnorderedSet, e.nodes[0].spec), fr.B
    alone(fr, e, spec.name)
    values, packed = node(fr, env)
    n = fr.noise.count
    k = B.shape(values)[0] // n
    scope = tiled(fr, env, k)
    scope[e.nodes[0].var] = values
    f = cost_on_copies(fr, e, scope, terms, k, spec.name)
    part = [columns(B, packed[j * n : (j + 1) * n], f[0]) for j in range(k * (k + 2))]
    L, w, weights = part[:k], part[k : 2 * k], part[2 * k :]
    fixed = [B.stop_gradient(fj) for fj in f]
    total: Array | float = 0.0
    for j in range(k):
        b = sum((weights[j * k + i] * fixed[i] for i in range(1, k)), weights[j * k] * fixed[0])
        total = total + w[j] * f[j] + B.stop_gradient(w[j] * (f[j] - b)) * (L[j] - B.stop_gradient(L[j]))
    return cast(Array, total)
