"""Measure-valued derivatives ("mvd"; Pflug 1989; Mohamed, Rosca, Figurnov & Mnih 2020, "Monte Carlo
gradient estimation in machine learning", JMLR 21(132), section 6): unbiased, first order only.

A density's derivative in a parameter is a scaled difference of two densities (a *weak derivative*):
``d/dtheta p(x; theta) = c_theta (p+(x) - p-(x))``, so

    d/dtheta E_p[f] = c_theta (E_p+[f] - E_p-[f])

with no derivative of ``f``: the cost may be discontinuous (a step function, where pathwise is
biased) or not differentiable at all, and the estimator stays **unbiased** (for any ``f``
integrable under ``p+`` and ``p-``).  The per-law decompositions (Normal, Exponential, Gamma's rate,
Poisson, Bernoulli, Binomial's probs, Geometric) and their couplings (common random numbers between ``p+`` and ``p-``, or with the
node's own sample) are stated in :mod:`.mvd_laws`.

Elementwise parameters: a node ``z`` of ``D`` coordinates with independent coordinates has
``d/dtheta_d E[f(z)] = c_d (E[f(z with z_d ~ p+_d)] - E[f(z with z_d ~ p-_d)])``: coordinate ``d``
needs its own cost evaluations with **only** coordinate ``d`` replaced (the cost couples them).  Per
sample the surrogate evaluates the cost at ``z`` and at every perturbed copy, all at once (the copies
stacked on the sample axis, :mod:`.copies`: no loop over samples): ``1 + D x sum_theta k_theta``
evaluations, where ``k_theta`` is 2 for Normal's ``loc`` and ``scale`` and 1 where one point is ``z``
itself (the rates and the discrete laws' probs).  Parameters that are constants of the expression are not
perturbed.  The plan states the count; beyond ``budget`` (1024 by default, ``"mvd:budget=4096"``)
evaluations per sample the node is refused by name.

The surrogate, per sample: ``S = f(z) + sum_copies stop(f(copy)) L_copy`` where copy ``(theta, d,
+-)``'s ``L = +- c_d (theta_d - stop theta_d)`` (value 0), and the ``z`` block carries the parts whose
point is ``z``.  Its value is the Monte Carlo estimate ``f(z)``; its gradient is
``sum_d c_d (f+_d - f-_d) grad theta_d`` (upstream parameters by the chain rule through ``theta``; for
Bernoulli logits through ``sigmoid``) plus the cost's direct dependence on the parameters (``f`` at
the gradient-free ``z`` keeps its other gradients).

Derivative orders: the **first** only (``c`` and the points are held fixed: the second derivative of
``S`` is not that of ``E[f]``; ``orders = 1``: it is refused by name).  Refused by name: laws without a
decomposition (naming those with one), Gamma's concentration unless it is a constant, a node that
is not the only random node of its expectation, enumerations and ``batch_axes`` runs (:func:`alone`),
and more than ``budget`` evaluations per sample.  The static rules never pick it; as an unbiased
estimator it is ``piloted`` (``min_variance`` prices it at its evaluations per sample) and ``compared``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

import numpy as np

from .. import ir
from ..errors import PlanError
from .base import Array, EstimatorSpec, ExpectStep, whole_option
from .copies import alone, cost_on_copies, tiled
from .mvd_laws import LAWS, Law, Part, listing, live_params, points

if TYPE_CHECKING:
    from ..backend import Backend
    from ..distributions import Distribution, Draw
    from ..planned import NodePlan, PlannedExpect
    from ..program.frame import Frame

BUDGET = 1024  # default most cost evaluations per sample


def _constant(expr: ir.Expr) -> bool:
    """No name in it: a number of the expression, with no gradient to estimate."""
    return not any(isinstance(x, ir.Name) for x in ir.walk(expr))


@dataclass(frozen=True)
class MeasureValued(EstimatorSpec):
    """Measure-valued derivatives with coupled positive and negative parts (unbiased, first order)."""

    name: ClassVar[str] = "mvd"
    piloted: ClassVar[bool] = True  # unbiased for every (integrable) cost where it applies
    orders: ClassVar[int | None] = 1  # a second derivative is refused by name
    budget: int = BUDGET

    def __post_init__(self) -> None:
        whole_option(self, "budget", "a whole number >= 1 of cost evaluations per sample")

    def describe(self) -> str:
        return "mvd (measure-valued derivatives; first order only)"

    def requires(self, d: Distribution, *, states: int | None, capabilities: frozenset[str] | None = None) -> None:
        if d.name not in LAWS:
            raise PlanError(f"mvd has no measure-valued decomposition for {d.name}; it has one for {listing()}")

    def live(self, var: str, dist: ir.Dist, *, check: bool = True) -> tuple[Law, frozenset[str]]:
        """The node's law and the parameters to perturb; with ``check``, a refused parameter that is
        not a constant is a PlanError naming it."""
        if dist.name not in LAWS:
            raise PlanError(f"mvd has no measure-valued decomposition for {dist.name}; it has one for {listing()}")
        law = LAWS[dist.name]
        live, refused = live_params(law, dict(dist.params), _constant)
        if refused and check:
            key = refused[0]
            raise PlanError(
                f"mvd: {var} ~ {dist}: no measure-valued decomposition of {dist.name}'s {key} ("
                f"{law.refused[key]}); it decomposes {dist.name}'s {', '.join(law.given)}: make {key} a"
                f" constant, or use estimators={{{var!r}: 'score'}} (or 'pathwise')"
            )
        return law, live

    def count(self, var: str, dist: ir.Dist, shape: tuple[int, ...] | None, *, check: bool = True) -> int:
        """Cost evaluations per sample (``shape`` None: unknown, counted as one coordinate); with
        ``check``, refusals (a refused parameter, over budget) are PlanErrors."""
        law, live = self.live(var, dist, check=check)
        total = 1 + (math.prod(shape) if shape is not None else 1) * points(law, live)
        if check and total > self.budget:
            raise PlanError(
                f"mvd: {var} ~ {dist} needs {total} cost evaluations per sample"
                f" ({_formula(law, live, shape)}), over its budget of {self.budget}: use 'score', or"
                f" raise it (estimators={{{var!r}: 'mvd:budget={total}'}})"
            )
        return total

    def evaluations(self, states: int | None, node: NodePlan | None = None) -> int:
        """``1 + D x points``, from the ``node``'s law and shape (without them: one coordinate's pair)."""
        if node is None:
            return 3
        return self.count("the node", node.dist, node.shape if isinstance(node.shape, tuple) else None, check=False)

    def plan_note(self, node: NodePlan, states: int | None) -> str:
        var, dist, shape = node.var, node.dist, node.shape if isinstance(node.shape, tuple) else None
        law, live = self.live(var, dist, check=False)
        _, refused = live_params(law, dict(dist.params), _constant)
        total = f"{self.count(var, dist, shape, check=False)} " if shape is not None else ""
        note = f"{total}cost evaluations per sample ({_formula(law, live, shape)})"
        if refused:
            note += f"; refused when run: {dist.name}'s {refused[0]} has no measure-valued decomposition"
        elif shape is not None and self.count(var, dist, shape, check=False) > self.budget:
            note += f"; refused when run: over its budget of {self.budget}"
        return note

    def sample(self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]) -> tuple[Array, None]:
        """The node's plain sample (no gradient path); the surrogate draws :meth:`sample_copies`."""
        if d.name not in LAWS:
            raise PlanError(f"mvd has no measure-valued decomposition for {d.name}; it has one for {listing()}")
        return LAWS[d.name].draw(B, d, p, draw, shape, frozenset())[0], None

    def sample_copies(
        self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]
    ) -> tuple[Array, Array]:
        """``z`` and its perturbed copies stacked on the sample axis (``C`` blocks of ``n``), and per
        block the pseudo log q ``L`` (value 0) at the coordinates each copy perturbs."""
        node = getattr(draw, "node", None)
        if node is None:
            raise PlanError("mvd: sample_copies needs the lowering's draw (with its node)")
        self.count(node.var, node.dist, shape)
        _, live = self.live(node.var, node.dist)
        z, parts = LAWS[d.name].draw(B, d, p, draw, shape, live)
        return _stack(B, z, parts, shape)

    def own_surrogate(self, e: PlannedExpect, nodes: Sequence[Any], terms: Sequence[Any]) -> ExpectStep:
        """The surrogate of the module docstring, on the copies (:func:`expect`)."""
        mine = next(n for n in e.nodes if n.spec == self)
        if len(e.nodes) != 1:
            raise PlanError(
                f"mvd: {mine.var} must be the only random node of its expectation (it has"
                f" {', '.join(n.var for n in e.nodes)}): the copies would share the other nodes' draws"
            )
        self.count(mine.var, mine.dist, mine.shape)  # refusals at build time where the shape is known
        return lambda fr, env: expect(fr, e, env, nodes[0], list(terms))


def _formula(law: Law, live: frozenset[str], shape: tuple[int, ...] | None) -> str:
    per = " + ".join(f"{k} {name}" for name, k in law.params.items() if name in live)
    size = math.prod(shape) if shape is not None else "D"
    unit = "coordinate" if size == 1 else "coordinates"
    return f"1 + ({per}) x {size} {unit}" if per else "1: no parameter to perturb"


def _stack(B: Backend, z: Array, parts: list[Part], shape: tuple[int, ...]) -> tuple[Array, Array]:
    stop = B.stop_gradient
    z = stop(z)
    ones = z * 0.0 + 1.0
    D = math.prod(shape)
    mask = B.asarray(np.eye(D).reshape((D, 1) + shape))  # copy d perturbs coordinate d only
    rows = B.shape(z)[0]
    lift = (1,) + B.shape(z)
    zd = B.reshape(z, lift)
    values, logq = [z], [ones * 0.0]
    for part in parts:
        c = part.c if isinstance(part.c, float) else stop(part.c)
        t = ones * (c * (part.theta - stop(part.theta)))  # value 0, gradient c
        for point, sign in ((part.plus, 1.0), (part.minus, -1.0)):
            if point is None:  # the point is z itself: its block is block 0
                logq[0] = logq[0] + sign * t
                continue
            x = B.reshape(stop(point) * ones, lift)
            values.append(B.reshape(zd * (1.0 - mask) + x * mask, (D * rows,) + shape))
            logq.append(B.reshape(B.reshape(sign * t, lift) * mask, (D * rows,) + shape))
    return B.concat(values), B.concat(logq)


def expect(fr: Frame, e: PlannedExpect, env: dict[str, Array], node: Any, terms: list[Any]) -> Array:
    """The measure-valued surrogate of an expectation whose one random node is mvd (module docstring)."""
    B = fr.B
    alone(fr, e, cast(MeasureValued, e.nodes[0].spec).name)
    values, logq = node(fr, env)
    n = fr.noise.count
    copies = B.shape(values)[0] // n
    scope = tiled(fr, env, copies)
    scope[e.nodes[0].var] = values
    fs = cost_on_copies(fr, e, scope, terms, copies, "mvd")
    f = B.concat(fs) if copies > 1 else fs[0]
    lq = B.sum(logq, tuple(range(1, len(B.shape(logq))))) if len(B.shape(logq)) > 1 else logq
    while len(B.shape(lq)) < len(B.shape(f)):
        lq = B.reshape(lq, B.shape(lq) + (1,))
    pseudo = B.stop_gradient(f) * lq
    pseudo = B.sum(B.reshape(pseudo, (copies, n) + tuple(B.shape(pseudo)[1:])), (0,))
    return fs[0] + pseudo
