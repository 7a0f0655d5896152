"""IndeCateR: the CatLog-derivative trick for factorised categorical nodes (first order only).

De Smet, Sansone & Zuidberg Dos Martires 2023, "Differentiable sampling of categorical
distributions using the CatLog-derivative trick" (NeurIPS).  For a node ``z = (z_1 .. z_D)`` of
``D`` independent elements (any batch shape, flattened), each over ``K`` classes -- a Categorical
over its last axis, or a Bernoulli array (``K = 2``, values 0 and 1) -- with ``q_d(k)`` the
probability that element ``d`` takes class ``k``,

    grad E[f(z)] = sum_d E_{z_-d}[ sum_k grad q_d(k) f(z_-d, z_d := k) ]
                 = E_z[ sum_d sum_k grad q_d(k) f(z with z_d := k) ],

since element ``d``'s sum over its classes is exact given the others (``z_d`` is independent of
``z_-d``), and the other elements are the sample's own.  One sample ``z`` therefore needs the cost
at the ``C = D K`` points ``z with z_d := k``: the surrogate (:func:`expect`) stacks them as ``C``
copies on the sample axis (copy ``c = d K + k``; block ``c`` holds copy ``c`` of every sample), tiles
the rest of the scope and evaluates the cost once on them (:mod:`.copies`), vectorized over
samples and copies.  The node step (:meth:`IndeCateR.sample_copies`) returns the sample ``z`` and
its ``C`` copies, and in place of ``log q`` the probability ``q_{d_c}(k_c)`` of each copy's changed
element, differentiable in the parameters (the law's own ``prob``: a polynomial in the probs, or a
softmax of the logits).  Per sample,

    S = f(z) + sum_c stop(f_c) (q_c - stop(q_c)),

with ``f(z) = sum_k [z_1 = k] f_{(1, k)}`` (the copies of element 1 include the sample itself, so
``f(z)`` costs no extra evaluation and keeps its direct gradient in the parameters): value the Monte
Carlo estimate ``f(z)``, first derivative the estimator plus ``E[grad_phi f]`` for a cost that
depends on the parameters directly.  Gradients for ``logits``, ``probs`` (normalized, as the law
does) and upstream parameters follow by the chain rule through ``q``.

Bias: none, for every cost (also a discontinuous one).  Variance: in element ``d``'s own parameters
the estimate is the score function's term ``f(z) grad log q_d(z_d)`` averaged over ``z_d`` given
``z_-d`` (Rao-Blackwellized), so never more variance there than the score function without a
baseline (a baseline cancels: ``sum_k grad q_d(k) = 0``); a cost that is a sum over the elements
gets the exact gradient (zero variance).  The price is ``D K`` cost evaluations per sample
(:meth:`IndeCateR.evaluations`, which ``min_variance`` weighs variance by, and the plan states): at
equal evaluations score with a leave-one-out baseline can win on a cost coupling the elements.

Derivative orders: the **first** only -- the surrogate's second derivative misses the cross terms
between elements (``orders = 1``: a second derivative is refused by name; use ``score`` or
``enumerate`` for Hessians).
Refused with a clear error: other laws, more than ``budget`` cost evaluations per sample
(``"indecater:budget=4096"`` raises it), a node that is not the only random node of its
expectation, or one inside an enumeration or a ``batch_axes`` run (:func:`.copies.alone`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np

from ..errors import PlanError
from .base import Array, EstimatorSpec, ExpectStep, whole_option
from .copies import alone, cost_on_copies, tiled

if TYPE_CHECKING:
    from ..backend import Backend
    from ..distributions import Distribution, Draw
    from ..planned import NodePlan, PlannedExpect
    from ..program.frame import Frame

#: the laws of independent finite elements it applies to
LAWS = ("Bernoulli", "Categorical")


@dataclass(frozen=True)
class IndeCateR(EstimatorSpec):
    """IndeCateR (CatLog trick): each element's classes summed exactly, ``D K`` cost evaluations per sample."""

    name: ClassVar[str] = "indecater"
    piloted: ClassVar[bool] = True
    orders: ClassVar[int | None] = 1  # a second derivative is refused by name
    #: the most cost evaluations per sample (``D K``) it accepts
    budget: int = 1024

    def __post_init__(self) -> None:
        whole_option(self, "budget", "a whole number >= 1 of cost evaluations per sample")

    def describe(self) -> str:
        return "indecater (CatLog trick: each element's classes summed, D x K cost evaluations per sample; first order only)"

    def requires(self, d: Distribution, *, states: int | None, capabilities: frozenset[str] | None = None) -> None:
        if d.name not in LAWS:
            raise PlanError(
                f"indecater needs a Categorical or Bernoulli node (independent elements over finitely"
                f" many classes); this node is {d.name}"
            )

    def size(self, var: str, law: str, shape: tuple[int, ...]) -> tuple[int, int]:
        """``(D, K)`` of a node of logical ``shape``, refused by name beyond the budget."""
        k = 2 if law == "Bernoulli" else shape[-1]
        elements = math.prod(shape if law == "Bernoulli" else shape[:-1])
        if elements * k > self.budget:
            raise PlanError(
                f"indecater on {var}: {elements} elements x {k} classes = {elements * k} cost evaluations"
                f" per sample exceed its budget of {self.budget}; raise it ('indecater:budget=N') or use"
                " score or disarm"
            )
        return elements, k

    def evaluations(self, states: int | None, node: NodePlan | None = None) -> int:
        """``D K``: the cost at every element set to every class, from the ``node``'s law and shape
        (without them, a single element: ``states``)."""
        if node is None or not isinstance(node.shape, tuple) or node.dist.name not in LAWS:
            return states or 1
        shape = tuple(node.shape)
        k = 2 if node.dist.name == "Bernoulli" else shape[-1]
        return math.prod(shape if node.dist.name == "Bernoulli" else shape[:-1]) * k

    def own_surrogate(self, e: PlannedExpect, nodes: Sequence[Any], terms: Sequence[Any]) -> ExpectStep:
        """The surrogate evaluates the cost on the ``D K`` copies (:func:`expect`)."""
        node = next(n for n in e.nodes if n.spec == self)
        if len(e.nodes) != 1:  # before anything runs, naming this node (copies.alone checks the frame)
            raise PlanError(
                f"indecater: {node.var} must be the only random node of its expectation (it has"
                f" {', '.join(n.var for n in e.nodes)}); use score or disarm"
            )
        if node.shape is not None and node.dist.name in LAWS:
            self.size(node.var, node.dist.name, tuple(node.shape))
        return lambda fr, env: expect(fr, e, env, nodes[0], list(terms))

    def sample(self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]) -> tuple[Array, None]:
        """The sample alone (no score term); the surrogate draws through :meth:`sample_copies`."""
        return d.sample(B, p, draw, shape), None

    def sample_copies(
        self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]
    ) -> tuple[Array, Array]:
        """The sample ``z`` (``n`` rows) followed by its ``C = D K`` copies (``C`` blocks of ``n``), and
        per copy row the probability of its changed element (``C n`` values, differentiable)."""
        var = getattr(getattr(draw, "node", None), "var", "the node")
        if d.name not in LAWS:
            raise PlanError(f"indecater needs a Categorical or Bernoulli node; {var} is {d.name}")
        elements, k = self.size(var, d.name, shape)
        c = elements * k
        z = d.sample(B, p, draw, shape)
        n = B.shape(z)[0]
        cat = d.name == "Categorical"
        which, cls = np.divmod(np.arange(c), k)  # copy c sets element which[c] to class cls[c]
        hit = np.zeros((c, 1, elements))
        hit[np.arange(c), 0, which] = 1.0
        if cat:
            flat = B.reshape(z, (1, n, elements, k))
            put = np.zeros((c, 1, elements, k))
            put[np.arange(c), 0, which, cls] = 1.0
            copies = flat * B.asarray(1.0 - hit[..., None]) + B.asarray(put)
        else:
            flat = B.reshape(z, (1, n, elements))
            copies = flat * B.asarray(1.0 - hit) + B.asarray(hit * cls[:, None, None])
        copies = B.reshape(copies, (c * n,) + tuple(shape))
        rows = {key: B.concat([v] * c) if B.shape(v)[0] != 1 else v for key, v in p.items()}
        q = B.reshape(d.prob(B, rows, B.stop_gradient(copies)), (c, n, elements))  # every element's prob, per copy
        q = B.sum(q * B.asarray(hit), (2,))  # the changed element's: (C, n)
        return B.concat([B.stop_gradient(z), copies]), B.reshape(q, (c * n,))


def expect(fr: Frame, e: PlannedExpect, env: dict[str, Array], node: Any, terms: list[Any]) -> Array:
    """The IndeCateR surrogate of an expectation whose one random node is IndeCateR (module docstring)."""
    B, var = fr.B, e.nodes[0].var
    alone(fr, e, "indecater")
    values, q = node(fr, env)
    n = B.shape(values)[0] - B.shape(q)[0]
    c = B.shape(q)[0] // n
    z, copies = values[:n], values[n:]
    scope = tiled(fr, env, c)
    scope[var] = copies
    f = cost_on_copies(fr, e, scope, terms, c, "indecater")
    rest = tuple(B.shape(f[0])[1:])  # a vector-valued expectation keeps its axes
    costs = B.reshape(B.concat(f), (c, n) + rest)
    ones = (1,) * len(rest)
    probs = B.reshape(q, (c, n) + ones)
    if e.nodes[0].dist.name == "Bernoulli":  # [z_1 = 0], [z_1 = 1]
        first = B.reshape(B.reshape(z, (n, math.prod(B.shape(z)[1:])))[:, 0], (1, n))
        pick = B.asarray(np.array([[1.0], [0.0]])) + first * B.asarray(np.array([[-1.0], [1.0]]))
    else:
        k = B.shape(z)[-1]
        onehot = B.reshape(z, (n, math.prod(B.shape(z)[1:-1]), k))
        pick = B.fn["permute"](onehot[:, 0], (1, 0))  # (K, n): [z_1 = k]
    k = B.shape(pick)[0]
    value = B.sum(B.reshape(pick, (k, n) + ones) * costs[:k], (0,))  # f(z): element 1's copies include z
    grad = B.sum(B.stop_gradient(costs) * (probs - B.stop_gradient(probs)), (0,))
    return cast(Array, value + grad)
