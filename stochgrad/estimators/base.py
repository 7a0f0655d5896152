"""The estimator seam: :class:`EstimatorSpec`, its facts, and the surrogate's two pieces.

For ``L(phi) = E_{z ~ q_phi}[f(z)]`` each estimator contributes to a surrogate ``S`` whose
*value* is the Monte Carlo estimate of ``L`` and whose *gradient* is the estimator (Schulman
et al. 2015; Foerster et al. 2018, DiCE).  An estimator is one module (one spec class) that

* draws the node's :class:`Site`: the value the cost sees (with or without a gradient path)
  and, when it *scores* the node, ``L = log q_phi(z)``;
* declares its *facts* (class attributes), which the planner, the lowering, ``compare``, the
  ``min_variance`` pilots and the CLI read instead of its name;
* says where it applies (:meth:`EstimatorSpec.requires`) and, for a score term, which
  control variate it subtracts (:meth:`EstimatorSpec.control_variate`).

The lowering assembles the surrogate in one place (:mod:`stochgrad.surrogate`) from the sites:
every cost term that depends on a scored node is multiplied by the *magic box*
``[]L = exp(L - stop(L))`` -- value 1, gradient ``grad L``, so ``grad([]L f) = f grad L + grad f``
at every order (DiCE) -- and a baseline ``b`` enters as ``(1 - []L) b`` (value 0, gradient
``-b grad L``).  A run that differentiates once uses the first-order form ``f + stop(f) (L - stop(L))``
and ``-b (L - stop(L))`` (:func:`score_term`): the same value and gradient without the exp.

Everything here is backend-neutral: arithmetic, ``exp``, ``sum`` and ``stop_gradient`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from ..errors import PlanError
from ..types import Array

if TYPE_CHECKING:
    from .. import ir
    from ..backend import Backend
    from ..distributions import Distribution, Draw
    from ..planned import NodePlan, PlannedExpect
    from ..program.frame import Frame

#: rebuilds an IR node with new children (the planner's, for :meth:`EstimatorSpec.rewrite_cost`)
Rebuild = Callable[["ir.Expr", "list[ir.Expr]"], "ir.Expr"]
#: the step of one planned expectation: ``(frame, env) -> per-sample surrogate``
ExpectStep = Callable[["Frame", "dict[str, Array]"], Array]


class Rewrite(NamedTuple):
    """What :meth:`EstimatorSpec.rewrite_cost` did to an expectation's cost: the new ``body``, a
    note for the plan (or ""), and why the node is biased by the rewrite (or "": not biased)."""

    body: ir.Expr
    note: str = ""
    biased: str = ""


class Site(NamedTuple):
    """One random node's part of the surrogate, as its estimator draws it (pyro's ``score_parts``):
    the value the cost sees (with or without a gradient path), and ``log q(z)`` when the estimator
    scores the node (its magic box multiplies every cost term that depends on the node)."""

    value: Array
    logq: Array | None = None


@dataclass(frozen=True)
class EstimatorSpec:
    """Base of the per-node estimator choices a user can request (a frozen configuration).

    Class-level *facts*, read by the planner, the lowering and the tools (never the name):

    * ``scores``: the node's ``log q`` enters a score term (:meth:`sample` returns it);
    * ``through_sample``: gradients flow through the sampled value (pathwise, relaxations);
    * ``pathwise``: the distribution's own reparameterized sampler;
    * ``enumerates``: an exact sum over the finite support (the lowering copies the samples);
    * ``biased_by_construction``: biased whatever the cost;
    * ``piloted``: unbiased for *every* cost wherever it applies, so ``min_variance`` pilots
      measure it against the static choice (pathwise is unbiased only for differentiable costs,
      where the planner picks it already);
    * ``compared``: :func:`stochgrad.compare` runs it (in each of its :meth:`variants`) wherever it
      applies; every built-in one is, and one that is not is listed in ``Comparison.not_run``;

    and per instance :attr:`stateful` (a running state owned by the run or objective), :attr:`paired`
    and :attr:`reflects` (antithetic pairs on the sample axis)."""

    name: ClassVar[str] = ""
    biased_by_construction: ClassVar[bool] = False
    enumerates: ClassVar[bool] = False
    scores: ClassVar[bool] = False
    through_sample: ClassVar[bool] = False
    pathwise: ClassVar[bool] = False
    piloted: ClassVar[bool] = False
    compared: ClassVar[bool] = True
    #: the surrogate evaluates the cost on this many copies of the samples (0: the shared assembly)
    copies_cost: ClassVar[int] = 0
    #: the estimator differentiates the cost at relaxed values: a non-differentiable cost is refused
    relaxes_cost: ClassVar[bool] = False
    #: the derivative orders the surrogate gets right (None: every order, as DiCE); with 1, a second
    #: derivative through the expectation is refused by name (:func:`first_order_only`)
    orders: ClassVar[int | None] = None
    #: the form of cost the estimator needs, where it needs one ("": any cost); its ``rewrite_cost``
    #: refuses other costs by name, so planning may refuse where :meth:`requires` accepts the law
    cost_form: ClassVar[str] = ""
    #: the planner analyses the node's plate as for a scored node (per-example terms), though it does
    #: not score it (enumerate_examples)
    needs_plates: ClassVar[bool] = False

    @property
    def paired(self) -> bool:
        """The sample axis holds antithetic pairs ``(i, i + n // 2)``: standard errors count pairs (a
        fact per instance: ARM/DisARM declare it as a class attribute, antithetic options per spec)."""
        return False

    @property
    def reflects(self) -> bool:
        """The node's step reflects its base noise into antithetic pairs (:mod:`.antithetic`: the
        second half of the sample axis takes ``-eps`` / ``1 - u`` of the first); per instance."""
        return False

    @property
    def stateful(self) -> bool:
        """Whether the estimator keeps a running state between batches (owned by the run or the
        objective, :class:`stochgrad.baselines.BaselineState`), which a fused call cannot carry."""
        return False

    def describe(self) -> str:
        return self.name

    def control_variate(
        self, B: Backend, cost: Array, count: int, block: int | None, state: Any = None
    ) -> Array | None:
        """The baseline subtracted from the per-sample ``cost`` of this node's score terms
        (``None``: none); ``state`` is the node's running state when :attr:`stateful`."""
        return None

    def learned_baseline(
        self, B: Backend, cost: Array, scope: dict[str, Array], var: str, later: Sequence[str] | None
    ) -> tuple[Array, Array] | None:
        """``(stop(b), fit)`` for a baseline computed from the node's context ``scope`` (a
        value-zero training term ``fit`` per sample, see :mod:`.learned`), or None; ``later``: the
        node's own variable and those sampled after it."""
        return None

    def requires(self, d: Distribution, *, states: int | None, capabilities: frozenset[str] | None = None) -> None:
        """Raise :class:`PlanError` if this estimator cannot apply to distribution ``d`` whose finite
        joint support has ``states`` states (None: infinite or unknown), on a backend with these
        ``capabilities`` (None: not checked)."""

    def sample(
        self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]
    ) -> tuple[Array, Array | None]:
        """The node's value, and its log-probability if the estimator needs a score term."""
        raise PlanError(f"{self.name} does not sample")

    def rewrite_cost(
        self, body: ir.Expr, var: str, dist: ir.Dist, rebuild: Rebuild, shapes: Mapping[str, Any] | None = None
    ) -> Rewrite | None:
        """The cost ``body`` of node ``var ~ dist``'s expectation rewritten for this estimator (e.g.
        sticking the landing stops the node's own law inside ``log_prob``), or None to leave it;
        ``shapes``: the logical shapes of the parameters and nodes in scope (None: unknown), for a
        rewrite that depends on them (vimco's per-example pairing).  The planner calls it once per
        node, after every node of the expectation is decided."""
        return None

    def own_surrogate(self, e: PlannedExpect, nodes: Sequence[Any], terms: Sequence[Any]) -> ExpectStep | None:
        """The step of expectation ``e`` when this estimator assembles the whole surrogate itself (it
        evaluates the cost on copies of the samples, e.g. REBAR), given the node and term steps; None:
        the shared assembly of :mod:`stochgrad.surrogate`."""
        return None

    def evaluations(self, states: int | None, node: NodePlan | None = None) -> int:
        """Cost evaluations per sample on a node with ``states`` joint states (None: infinite or
        unknown), and its plan ``node`` (law and shape) where known: the deterministic price
        ``min_variance`` pilots weigh variance by (one; an estimator that evaluates the cost at
        several points per sample says how many, e.g. one per element and class; by default its
        ``copies_cost``).  Above one the plan states it."""
        return self.copies_cost or 1

    def plan_note(self, node: NodePlan, states: int | None) -> str:
        """A note the plan appends to ``node``'s reason, or "": by default how many cost evaluations
        per sample it takes, when more than one (an enumeration's states are said already)."""
        count = 1 if self.enumerates else self.evaluations(states, node)
        return f"{count:,} cost evaluations per sample" if count > 1 else ""

    def control_parameters(self) -> list[Any]:
        """The native tensors of a learned control variate that a training loop's optimizer updates
        (``sg.Rebar(learn=True)``, ``sg.Relax``); none by default."""
        return []

    def variants(self, *, temperatures: Sequence[float]) -> tuple[EstimatorSpec, ...]:
        """The configurations :func:`stochgrad.compare` runs, from this default one."""
        return (self,)

    def at_one_sample(self) -> EstimatorSpec:
        """The spec a run with a single sample (no enumeration copies) executes: itself, unless it
        needs a second sample (leave-one-out)."""
        return self


def option_text(v: Any) -> str:
    """An option value as the user wrote it (``as_spec`` reads ``k=9`` as 9.0)."""
    return f"{v:g}" if isinstance(v, float) else repr(v)


def whole_option(spec: EstimatorSpec, key: str, what: str, low: int = 1, high: int | None = None) -> None:
    """Check a frozen spec's option ``key``: a whole number from ``low`` to ``high`` (``True`` is not 1; a
    float such as ``as_spec``'s 9.0 is accepted and stored as an int); otherwise a :class:`PlanError`
    saying ``what`` it must be."""
    v = getattr(spec, key)
    whole = not isinstance(v, bool) and isinstance(v, (int, float)) and float(v).is_integer()
    if not whole or v < low or (high is not None and v > high):
        raise PlanError(f"{spec.name}: {key} must be {what}, got {option_text(v)}")
    object.__setattr__(spec, key, int(v))


def magic_box(B: Backend, logq: Array) -> Array:
    """DiCE's ``exp(L - stop(L))``: value exactly 1, gradient ``grad L``, at every order."""
    return B.fn["exp"](logq - B.stop_gradient(logq))


def score_term(B: Backend, logq: Array) -> Array:
    """``L - stop(L)``: value exactly 0, gradient ``grad L``.  ``v + stop(v) (L - stop(L))`` has
    the first derivative of DiCE's ``[](L) v`` (Schulman et al. 2015's surrogate), without the exp
    and with a cheaper reverse pass; for runs that differentiate once (``estimate``)."""
    return logq - B.stop_gradient(logq)


def first_order_only(B: Backend, surrogate: Array, refusal: str) -> Array:
    """``surrogate`` unchanged in value and first derivative, with a second derivative through it
    refused by ``PlanError(refusal)`` (``Backend.implicit_grad`` with unit slope): for the expectations
    of estimators whose :attr:`EstimatorSpec.orders` is 1.  A backend without implicit gradients
    returns it as is."""
    if "implicit_reparam" not in B.capabilities:
        return surrogate
    return B.implicit_grad(surrogate, B.stop_gradient(surrogate), B.stop_gradient(surrogate) * 0.0 + 1.0, refusal)
