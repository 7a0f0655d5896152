"""RELAX (Grathwohl, Choi, Wu, Roeder & Duvenaud 2018, "Backpropagation through the void"), and
REBAR's learnable temperature and scale (Tucker et al. 2017): unbiased, for Bernoulli and
Categorical nodes.

With ``b``, ``z`` and ``z~`` drawn as in REBAR (:func:`.rebar.relaxed_pair`: ``b = H(z)``, ``z~``
the relaxed logit conditioned on ``b``) and a control variate ``c_phi``::

    g = [f(b) - c_phi(z~)] grad log p(b) + grad c_phi(z) - grad c_phi(z~)

(``grad`` with respect to the node's logits, ``z`` and ``z~`` reparameterized through them).
``E[c_phi(z)] = E[c_phi(z~)]`` (``z~`` given ``b`` has ``z``'s law), so ``g`` is **unbiased for every**
``c_phi``, whatever its parameters ``phi``; it needs ``c_phi`` differentiable in ``z``.  Here:

* ``sg.Relax(surrogate=net)``: ``c_phi(z) = eta f(s(z)) + net(z)``, ``s(z) = sigmoid(z / lambda)``
  (Categorical: ``softmax(z / lambda)`` over the classes, ``z`` and ``z~`` the Gumbel-max pair of
  :mod:`.rebar`) --
  the paper's discrete RELAX (the REBAR term plus a network); ``cost_term=False`` drops the REBAR
  term (``c_phi = net``: the cost is then evaluated once, at ``b``, not three times);
* ``sg.Rebar(learn=True)``: ``c_phi(z) = eta f(s(z))`` with ``phi = (log lambda, eta)``.

**The surrogate's contract.**  ``net`` is a backend-native callable: given the relaxed logits ``z``
(real, not squashed; sample axis first, then the node's shape, in the backend's dtype -- float64 by
default, so ``net.double()``), it returns one value per sample (shape ``(n,)`` or ``(n, 1)``).  For
torch an ``nn.Module`` (its ``parameters()`` are trained) or any differentiable function; for the
autograd backend a function of ``autograd.numpy`` arrays.  The cost must be one value per sample.

**Learning ``phi`` by the variance gradient** (both papers): ``E[g]`` does not depend on ``phi``, so
``d/dphi E[|g|^2] = d/dphi Var[g]``.  In a torch ``sg.compile`` objective (``learn=True``, the default
for Relax) each call takes the node's logits as a detached leaf ``l``, forms the per-sample ``g``
above explicitly with ``create_graph`` (``(f(b) - c(z~)) dlog p/dl + d(c(z) - c(z~))/dl``: the score
coefficient keeps its dependence on ``phi``, which the estimate's surrogate stops), computes
``h = d/dphi mean_i |g_i|^2``, and returns ``f(b) + sum(stop(g) (l* - stop l*))`` (``l*`` the logits
with their gradient path): value ``f(b)``, gradient ``J^T g`` to the model's parameters behind the
logits (a parameter the cost uses directly gets the plain pathwise ``df(b)``), and ``h`` to ``phi``
-- from the user's ordinary ``loss.backward()``, *whatever the objective is scaled or signed by* (a
value-zero term whose backward gives ``h`` and ignores the incoming slope: ``loss = -f(...)`` still
lowers the variance).  The tensors to optimize: ``spec.control_parameters()`` (``[log_temperature,
scale]``, float64 leaves, and for Relax the net's parameters), or all of an objective's:
``f.control_parameters()``.  ``sg.estimate`` (and every first-order run) uses the current values,
fixed, on either backend; a compiled objective on the autograd backend with ``learn=True`` is refused
by name (use ``learn=False``: fixed values), and so is ``fuse=True`` (the spec is ``stateful``;
torch.compile has no double backward).

**First order only** (``orders = 1``: a second derivative is refused by name); the node must be the
only random node of its expectation.  **Under** ``batch_axes`` (a declared plate of independent
examples) the cost keeps one value per sample and example, each example's ``f_i(b)`` and ``c_i`` are
paired with its own ``log p(b_i)`` (:func:`.copies.paired_logq`), and the net returns one value per
sample and example (shape ``(n, N)``) computed from that example's row ``z[:, i]`` alone (row-wise:
a ``c_i`` that read another example's ``z~_j`` would bias the per-example pairing).
For a Categorical node the net gets the relaxed logits with the classes axis last, ``(n, ..., K)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import PlanError, StochgradError
from .base import Array, EstimatorSpec, ExpectStep
from .copies import alone, cost_on_copies, paired_logq, tiled
from .learnable import LearnedControl, Scalars, check_control
from .rebar import KINDS, combine, law, log_mass, raw_copies, relaxed_pair, soften

if TYPE_CHECKING:
    from ..backend import Backend
    from ..distributions import Distribution, Draw
    from ..planned import NodePlan, PlannedExpect
    from ..program.frame import Frame

RAW = 4  # b, u, v and the logits on the sample axis (rebar.raw_copies)


@dataclass(frozen=True)
class Relax(LearnedControl, EstimatorSpec):
    """RELAX with the control variate ``eta f(s(z)) + surrogate(z)`` (unbiased; module docstring)."""

    name: ClassVar[str] = "relax"
    scores: ClassVar[bool] = True
    through_sample: ClassVar[bool] = True
    copies_cost: ClassVar[int] = 3  # b, s(z), s(z~) (one with cost_term=False: evaluations())
    relaxes_cost: ClassVar[bool] = True  # the planner refuses a cost not differentiable in the node
    orders: ClassVar[int | None] = 1  # a second derivative is refused by name
    surrogate: Callable[[Any], Any] | None = None
    temperature: float = 0.5
    scale: float = 1.0
    learn: bool = True
    cost_term: bool = True
    scalars: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        t, s = self.temperature, self.scale
        check_control(self.name, t, s)
        for key in ("learn", "cost_term"):
            if not isinstance(getattr(self, key), bool):
                raise PlanError(
                    f"relax: {key} must be True or False, got {getattr(self, key)!r}"
                    " (pass sg.Relax(surrogate=net, ...) as an object)"
                )
        if self.surrogate is not None and not callable(self.surrogate):
            raise PlanError(f"relax: surrogate must be a callable (e.g. a torch.nn.Module), got {self.surrogate!r}")
        if self.learn and self.cost_term and self.surrogate is not None:  # (the registry's default has no net)
            object.__setattr__(self, "scalars", Scalars("relax", t, s))

    def control_parameters(self) -> list[Any]:
        """The tensors a training loop's optimizer updates: the learned ``[log_temperature, scale]``
        (with ``cost_term``) and the surrogate's ``parameters()`` that require a gradient."""
        own = self.scalars.tensors() if self.scalars is not None else []
        net = getattr(self.surrogate, "parameters", None)
        return own + ([q for q in net() if getattr(q, "requires_grad", False)] if callable(net) else [])

    def describe(self) -> str:
        t, s = self.current()
        net = type(self.surrogate).__name__ if self.surrogate is not None else "none"
        term = f"{s:g} f(s(z / {t:g})) + " if self.cost_term else ""
        return f"relax ({'learned ' if self.learn else ''}control variate {term}{net}(z))"

    def requires(self, d: Distribution, *, states: int | None, capabilities: frozenset[str] | None = None) -> None:
        law(d, "relax")
        if self.surrogate is None:
            raise PlanError(
                "relax needs a surrogate network: estimators={var: sg.Relax(surrogate=net)}, net mapping"
                " the relaxed logits (samples first) to one value per sample"
            )

    def evaluations(self, states: int | None, node: NodePlan | None = None) -> int:
        return 3 if self.cost_term else 1

    def own_surrogate(self, e: PlannedExpect, nodes: Sequence[Any], terms: Sequence[Any]) -> ExpectStep:
        return lambda fr, env: expect(fr, e, env, nodes[0], list(terms), self)

    def sample(self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]) -> tuple[Array, Array]:
        """The discrete sample ``b`` and its ``log p(b)`` (the surrogate draws :meth:`sample_copies`)."""
        values, logq = self.sample_copies(d, B, p, draw, shape)
        return values[: B.shape(logq)[0]], logq

    def sample_copies(
        self, d: Distribution, B: Backend, p: Any, draw: Draw, shape: tuple[int, ...]
    ) -> tuple[Array, Array]:
        """:func:`.rebar.raw_copies`: ``b``, ``u``, ``v`` and the logits, for :func:`expect`."""
        logits, kind = d.relaxation(B, p)  # type: ignore[attr-defined]  # requires() checked the law
        return raw_copies(B, logits, draw("uniform", shape), draw("uniform", shape), kind)


def _learning(fr: Frame, spec: Any) -> bool:
    """Whether this run trains ``spec``'s control variate (a torch objective with gradients on)."""
    if not spec.learn or fr.first_order:  # estimate and the other first-order runs: fixed values
        return False
    if fr.B.name != "torch":
        raise PlanError(
            f"{spec.name}: learn=True trains the control variate with torch (create_graph); on the"
            f" {fr.B.name} backend use learn=False (fixed values) or backend='torch'"
        )
    import torch

    return torch.is_grad_enabled()


def _net(B: Backend, net: Callable[[Any], Any], z: Array, rows: tuple[int, ...]) -> Array:
    """``net(z)``, one value per sample (per sample and example under ``batch_axes``: ``rows``)."""
    out = net(z)
    shape = tuple(B.shape(out)) if hasattr(out, "shape") else ()
    if shape not in (rows, rows + (1,)):
        raise StochgradError(
            f"relax: the surrogate must return one value per sample{' and example' * (len(rows) > 1)}"
            f", shape {rows}; it returned shape {shape} for relaxed logits of shape {tuple(B.shape(z))}"
        )
    return B.reshape(out, rows) if shape != rows else out


def expect(fr: Frame, e: PlannedExpect, env: dict[str, Array], node: Any, terms: list[Any], spec: Any) -> Array:
    """The surrogate of an expectation whose one random node is ``spec`` (Relax, or Rebar with
    ``learn``): the fixed-parameter surrogate, or in a torch objective the learning one (module
    docstring)."""
    B, name, var = fr.B, spec.name, e.nodes[0].var
    alone(fr, e, name, batched=True)  # under batch_axes: per example (module docstring)
    raw, _ = node(fr, env)
    n = B.shape(raw)[0] // RAW
    b, u, v, logits = (raw[k * n : (k + 1) * n] for k in range(RAW))
    learning = _learning(fr, spec)
    leaf = logits.detach().requires_grad_() if learning else logits
    if learning and spec.scalars is not None:
        lam, eta = (x.to(leaf) for x in (spec.scalars.log_temperature.exp(), spec.scalars.scale))
    else:
        lam, eta = spec.current()
    kind = KINDS[e.nodes[0].dist.name]
    _, z, zt = relaxed_pair(B, leaf, u, v, kind)
    with_cost, net = getattr(spec, "cost_term", True), getattr(spec, "surrogate", None)
    copies = 3 if with_cost else 1
    scope = tiled(fr, env, copies)
    scope[var] = B.concat([b, soften(B, z, lam, kind), soften(B, zt, lam, kind)]) if with_cost else b
    costs = cost_on_copies(fr, e, scope, terms, copies, name, keep=bool(fr.batch_axes))
    fb = costs[0]
    rows = (n,) + tuple(B.shape(b))[
        1 : 1 + fr.batch_axes
    ]  # (a Categorical's classes axis is last, never a batch axis)  # one value per sample (and example)
    if (net is not None or learning) and tuple(B.shape(fb)) != rows:
        raise StochgradError(
            f"{name}: {'learning' if learning else 'the surrogate'} needs the cost of {var}'s"
            f" expectation to be one value per sample{' and example' if fr.batch_axes else ''};"
            f" it has shape {tuple(B.shape(fb))[1:]} per sample (sum it inside the expectation)"
        )
    cz: Array | float = eta * costs[1] if with_cost else 0.0
    ct: Array | float = eta * costs[2] if with_cost else 0.0
    if net is not None:
        cz, ct = cz + _net(B, net, z, rows), ct + _net(B, net, zt, rows)
    lq = paired_logq(fr, log_mass(B, leaf, b, kind), fb, var, name)
    if not learning:
        return combine(B, fb, lq, cz, ct)
    return _trained(fb, lq, cz, ct, leaf, logits, spec.control_parameters(), rows)


def _trained(
    fb: Array, lq: Array, cz: Array, ct: Array, leaf: Array, logits: Array, phi: list[Any], rows: tuple[int, ...]
) -> Array:
    """``f(b) + sum(stop(g) (logits - stop logits))`` plus a value-zero term that gives ``phi`` the
    variance gradient ``d/dphi mean |g|^2`` (torch; module docstring).  ``g`` is formed explicitly,
    ``(f(b) - c(z~)) dL/dl + d(c(z) - c(z~))/dl``, so that it keeps its dependence on ``phi`` through
    the score term's coefficient too (the surrogate's stop would cut it)."""
    import torch

    (dlq,) = torch.autograd.grad(lq.sum(), leaf, retain_graph=True)
    (dc,) = torch.autograd.grad((cz - ct).sum(), leaf, create_graph=True, retain_graph=True, allow_unused=True)
    coef = fb - ct
    g = coef.reshape(coef.shape + (1,) * (leaf.dim() - coef.dim())) * dlq + (0.0 if dc is None else dc)
    n = rows[0]
    second = (g * g).sum() / n
    if phi and second.requires_grad:
        grads = torch.autograd.grad(second, phi, allow_unused=True, retain_graph=True)  # fb shares the graph
        h = tuple(torch.zeros_like(q) if d is None else d.detach() for q, d in zip(phi, grads))
    else:
        h = tuple(torch.zeros_like(q) for q in phi)
    jtg = g.detach() * (logits - logits.detach())
    model = jtg.reshape(rows + (-1,)).sum(-1) if jtg.dim() > len(rows) else jtg  # per sample (and example)
    out = fb + model
    return out + _variance_gradient().apply(h, out.dtype, out.device, *phi) if phi else out


_FN: list[Any] = []


def _variance_gradient() -> Any:
    """A torch Function of ``phi`` with value 0 whose backward gives ``phi`` the saved gradients
    ``h``, whatever slope reaches it (made once, on first use: torch is imported lazily)."""
    if not _FN:
        import torch

        class VarianceGradient(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, h: tuple[Any, ...], dtype: Any, device: Any, *phi: Any) -> Any:
                ctx.h = h
                return torch.zeros((), dtype=dtype, device=device)

            @staticmethod
            def backward(ctx: Any, slope: Any) -> tuple[Any, ...]:
                return (None, None, None, *ctx.h)

        _FN.append(VarianceGradient)
    return _FN[0]
