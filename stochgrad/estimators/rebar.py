"""REBAR (Tucker, Mnih, Maddison, Lawson & Sohl-Dickstein 2017): unbiased, for Bernoulli and
Categorical nodes.

For ``L(theta) = E_{b ~ Bernoulli(p_theta)}[f(b)]`` (elementwise), with ``u, v ~ U(0, 1)``::

    z   = log p - log(1 - p) + log u - log(1 - u)          b = H(z)   (an exact Bernoulli(p) sample)
    z~  = log p - log(1 - p) + log u~ - log(1 - u~),  u~ = (1 - p) + v p  if b = 1,  v (1 - p)  if b = 0
    g   = [f(b) - eta f(s(z~))] grad log p(b) + eta grad f(s(z)) - eta grad f(s(z~)),  s(x) = sigmoid(x / lambda)

For a **Categorical** node (``K`` classes on the last axis, ``b`` one-hot as the score function draws
it) the Gumbel-max construction (Tucker et al. 2017, appendix; Grathwohl et al. 2018, section 3.3),
with ``log p`` the normalized log-probabilities and ``u, v ~ U(0, 1)^K``::

    z   = log p - log(-log u)                        b = onehot(argmax z)   (an exact Categorical(p) sample)
    z~_b = -log(-log v_b),   z~_i = -log(-log v_i / p_i - log v_b)  (i != b)          s(x) = softmax(x / lambda)

(``z~_b`` is the max, a standard Gumbel since ``sum p = 1``; the others are Gumbel(log p_i) truncated
below it: ``z~ ~ p(z | b)``), and the same ``g``.  ``z~`` is the relaxed logit conditioned on ``b``
(reparameterized through ``p``).  The control
variate ``eta f(s(.))`` has the same expectation on both sides, so ``g`` is **unbiased** for
every ``eta`` and temperature ``lambda > 0`` (no bias), and its variance falls when the relaxed cost
tracks ``f(b)``.  It needs ``f`` evaluated (and differentiable) at relaxed values in (0, 1).

The surrogate (:func:`expect`): the expectation's scope is copied three times on the sample axis
(block 0 holds ``b``, block 1 ``s(z)``, block 2 ``s(z~)``), the cost is evaluated once on the copies,
and the blocks are combined as ``S = f(b) + stop(f(b) - eta f~) (L - stop L) + eta (f_z - stop f_z)
- eta (f~ - stop f~)``: value the Monte Carlo estimate ``f(b)``, first derivative ``g``.  **First
order only** (the stops make the second derivative wrong: it is refused by name, ``orders = 1``); the node must be the only random node
of its expectation, and a term kept per example (an inferred plate) pairs with
the whole ``log p(b)`` (unbiased, without the per-example pairing); under ``batch_axes`` (a declared
plate) the cost keeps one value per example and each is paired with its own example's ``log p(b_i)``
(:func:`.copies.paired_logq`), the three copies stacked on the sample axis.  ``temperature`` and ``scale``
(``lambda``, ``eta``) are fixed options (``"rebar:temperature=0.5,scale=1.0"``), or, with
``sg.Rebar(learn=True)`` in a torch ``sg.compile`` objective, learnable parameters trained by the
variance gradient (the paper's): ``spec.control_parameters()`` gives ``[log_temperature, scale]`` for
the optimizer; see :mod:`.relax`, which assembles that surrogate and RELAX's from the pieces here
(:func:`relaxed_pair`, :func:`soften`, :func:`log_mass`, :func:`combine`: one piece of code per step
serving both laws).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, cast

from ..errors import PlanError
from .base import Array, EstimatorSpec, ExpectStep
from .learnable import LearnedControl, Scalars, check_control
from .copies import alone, cost_on_copies, paired_logq, tiled

if TYPE_CHECKING:
    from ..backend import Backend
    from ..distributions import Distribution, Draw
    from ..planned import PlannedExpect
    from ..program.frame import Frame

COPIES = 3  # b, s(z), s(z~) on the sample axis
KINDS = {"Bernoulli": "binary", "Categorical": "categorical"}  # the laws relaxed, and how


@dataclass(frozen=True)
class Rebar(LearnedControl, EstimatorSpec):
    """REBAR's relaxation control variate at a fixed ``temperature`` and ``scale`` (unbiased)."""

    name: ClassVar[str] = "rebar"
    scores: ClassVar[bool] = True
    through_sample: ClassVar[bool] = True
    copies_cost: ClassVar[int] = COPIES  # the surrogate evaluates the cost on this many copies
    relaxes_cost: ClassVar[bool] = True  # the planner refuses a cost not differentiable in the node
    orders: ClassVar[int | None] = 1  # a second derivative is refused by name
    temperature: float = 0.5
    scale: float = 1.0
    #: learn the temperature and scale by the variance gradient in a torch objective (:mod:`.relax`)
    learn: bool = False
    #: the learned (log-)temperature and scale when ``learn`` (compared by identity: each spec its own)
    scalars: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        t, s = self.temperature, self.scale
        check_control(self.name, t, s)
        if not isinstance(self.learn, bool):
            raise PlanError(
                f"{self.name}: learn must be True or False, got {self.learn!r} (learnable parameters are"
                f" made with the spec: pass sg.{type(self).__name__}(learn=True) as an object)"
            )
        if self.learn:
            object.__setattr__(self, "scalars", Scalars(self.name, t, s))

    def control_parameters(self) -> list[Any]:
        """The tensors a training loop's optimizer updates (``learn``): ``[log_temperature, scale]``."""
        return self.scalars.tensors() if self.scalars is not None else []

    def describe(self) -> str:
        t, s = self.current()
        return f"{self.name} ({'learned ' if self.learn else ''}temperature {t:g}, scale {s:g})"

    def requires(self, d: Distribution, *, states: int | None, capabilities: frozenset[str] | None = None) -> None:
        law(d, self.name)

    def own_surrogate(self, e: PlannedExpect, nodes: Sequence[Any], terms: Sequence[Any]) -> ExpectStep:
        """REBAR's surrogate evaluates the cost on three copies (:func:`expect`; with ``learn``,
        :func:`stochgrad.estimators.relax.expect`)."""
        if self.learn:
            from .relax import expect as learned

            return lambda fr, env: learned(fr, e, env, nodes[0], list(terms), self)
        return lambda fr, env: expect(fr, e, env, nodes[0], list(terms))

    def sample(self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]) -> tuple[Array, Array]:
        """The discrete sample ``b`` and its ``log p(b)`` alone (as the score function draws it); the
        surrogate draws through :meth:`sample_copies`, which the node step prefers."""
        values, logq = self.sample_copies(d, B, p, draw, shape)
        return values[: B.shape(logq)[0]], logq

    def sample_copies(
        self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]
    ) -> tuple[Array, Array]:
        """``b``, ``s(z)`` and ``s(z~)`` concatenated on the sample axis (3 blocks), and ``log p(b)``;
        with ``learn``, :func:`raw_copies` (the relaxation is then built by :mod:`.relax`)."""
        logits, kind = d.relaxation(B, p)  # type: ignore[attr-defined]  # requires() checked the law
        u, v = draw("uniform", shape), draw("uniform", shape)
        if self.learn:
            return raw_copies(B, logits, u, v, kind)
        b, z, zt = relaxed_pair(B, logits, u, v, kind)
        temperature = self.current()[0]
        soft = [soften(B, x, temperature, kind) for x in (z, zt)]
        return B.concat([b, *soft]), log_mass(B, logits, b, kind)


def law(d: Any, name: str) -> str:
    """The relaxation kind of node law ``d`` (``"binary"`` for Bernoulli, ``"categorical"`` for
    Categorical), or a PlanError naming estimator ``name``."""
    kind = KINDS.get(getattr(d, "name", None))  # type: ignore[arg-type]
    if kind is None:
        raise PlanError(
            f"{name} needs a Bernoulli or Categorical node (its control variate relaxes b), not {getattr(d, 'name', d)}"
        )
    return kind


def relaxed_pair(B: Backend, logits: Array, u: Array, v: Array, kind: str = "binary") -> tuple[Array, Array, Array]:
    """REBAR's reparameterization (module docstring): ``b`` (gradient stopped), the relaxed logit
    ``z`` from ``u`` and ``z~`` conditioned on ``b`` from ``v``, for either law; REBAR and RELAX share it."""
    if kind == "categorical":
        return _gumbel_pair(B, logits, u, v)
    prob = B.fn["sigmoid"](logits)
    z = logits + B.fn["log"](u) - B.fn["log1p"](-u)
    b = B.stop_gradient(B.fn["gt"](z, 0.0) * 1.0)
    ut = b * (1.0 - prob + v * prob) + (1.0 - b) * (v * (1.0 - prob))
    zt = logits + B.fn["log"](ut) - B.fn["log1p"](-ut)
    return b, z, zt


def _gumbel_pair(B: Backend, logits: Array, u: Array, v: Array) -> tuple[Array, Array, Array]:
    """The Gumbel-max pair (module docstring), classes on the last axis: ``z = log p - log(-log u)``,
    ``b = onehot(argmax z)``; ``z~_b = -log(-log v_b)``, ``z~_i = -log(-log v_i / p_i - log v_b)``."""
    log, last = B.fn["log"], len(B.shape(u)) - 1
    logp = B.log_softmax(logits, len(B.shape(logits)) - 1)
    z = logp - log(-log(u))
    b = B.stop_gradient(B.one_hot_argmax(z))
    vb = B.sum(b * v, (last,))
    vb = B.reshape(vb, tuple(B.shape(vb)) + (1,))
    zt = b * -log(-log(vb)) + (1.0 - b) * -log(-log(v) * B.fn["exp"](-logp) - log(vb))
    return b, z, zt


def soften(B: Backend, x: Array, temperature: Any, kind: str) -> Array:
    """The relaxation ``s(x)``: ``sigmoid(x / lambda)`` elementwise, or ``softmax(x / lambda)`` over classes."""
    if kind == "categorical":
        return B.softmax(x / temperature, len(B.shape(x)) - 1)
    return B.fn["sigmoid"](x / temperature)


def log_mass(B: Backend, logits: Array, b: Array, kind: str = "binary") -> Array:
    """``log p(b)`` per element (for Categorical, summed over the classes axis of one-hot ``b``)."""
    if kind == "categorical":
        y = b * B.log_softmax(logits, len(B.shape(logits)) - 1)
        return B.sum(y, (len(B.shape(y)) - 1,))
    prob = B.fn["sigmoid"](logits)
    return b * B.fn["log"](prob) + (1.0 - b) * B.fn["log1p"](-prob)


def raw_copies(B: Backend, logits: Array, u: Array, v: Array, kind: str = "binary") -> tuple[Array, Array]:
    """The ingredients of the relaxation as 4 blocks on the sample axis -- ``b``, ``u``, ``v`` and the
    logits (with their gradient path, copied to every sample) -- and ``log p(b)``: for the surrogates
    of :mod:`.relax`, which rebuild ``z`` and ``z~`` from the logits themselves."""
    b, _, _ = relaxed_pair(B, logits, u, v, kind)
    full = logits + 0.0 * u  # one row of logits per sample
    return B.concat([b, u, v, full]), log_mass(B, logits, b, kind)


def combine(B: Backend, fb: Array, lq: Array, cz: Array | float, ct: Array | float) -> Array:
    """``f(b) + stop(f(b) - c(z~)) (L - stop L) + (c(z) - stop c(z)) - (c(z~) - stop c(z~))``: value
    ``f(b)``, first derivative ``[f(b) - c(z~)] grad L + grad c(z) - grad c(z~)`` (REBAR, RELAX)."""

    def box(x: Array | float) -> Array | float:  # value 0, gradient that of x (a number has none)
        return 0.0 if isinstance(x, float) else x - B.stop_gradient(x)

    return fb + B.stop_gradient(fb - ct) * box(lq) + box(cz) - box(ct)


def expect(fr: Frame, e: PlannedExpect, env: dict[str, Array], node: Any, terms: list[Any]) -> Array:
    """The REBAR surrogate of an expectation whose one random node is REBAR (module docstring)."""
    spec, B = cast(Rebar, e.nodes[0].spec), fr.B
    var = e.nodes[0].var
    alone(fr, e, "rebar", batched=True)  # under batch_axes: each example's cost with its own log p
    scope = tiled(fr, env, COPIES)
    values, logq = node(fr, scope)
    scope[var] = values
    fb, fz, ft = cost_on_copies(fr, e, scope, terms, COPIES, "rebar", keep=bool(fr.batch_axes))
    eta = spec.current()[1]
    return combine(B, fb, paired_logq(fr, logq, fb, var, "rebar"), eta * fz, eta * ft)
