"""The surrogate of one planned expectation (:class:`~stochgrad.planned.PlannedExpect`).

Per sample, for cost terms ``t`` (see :mod:`stochgrad.estimators`)::

    S = sum_t W * []( sum_{v in score nodes of term t} log q_v ) * term_t
        + sum_{v score, with baseline} W_before(v) * (1 - [](log q_v)) * b_v

whose value is the sum of the cost terms and whose gradient is the planned
estimator.  Without enumeration, a baseline whose node scores a term alone is
folded into that term as ``[](L) (term - b) + b``: the same function, at every
order of differentiation, with fewer operations.  An enumerated node with K
joint states copies every value in scope K times (block k holds state k); ``W``
multiplies the weights ``K q(k)`` of the enumerated nodes, and at the end of the
expectation the copies are averaged back, giving ``sum_k q(k) f(k)`` per sample.  Nodes sampled after an
enumeration draw independent noise in each copy, and each baseline is formed
from costs averaged over the enumerations that follow its node, so no
baseline depends on its own sample.  A nested expectation is estimated with
one inner sample per outer sample, which is unbiased wherever it enters the
outer cost linearly.  A term with an inferred plate (:mod:`stochgrad.plates`) holds one cost per
example, ``t_i``: it is paired with its plated nodes' per-example ``log q_i`` (and per-example
baselines), ``sum_i W [](log q_i + ...) t_i``, and summed over the examples after the pairing; a node
without a plate pairs with the sum.

:func:`build_expect` makes this the step of a program (:mod:`stochgrad.program`): the nodes' and
terms' steps are built once; a run reads the frame (noise, multiplicity, baseline state, options).
An expectation without score terms or enumeration is built as the plain sum of its terms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .estimators import magic_box, score_term
from .estimators.base import EstimatorSpec, first_order_only
from .estimators.copies import check_plate
from .planned import PlannedExpect
from .sampleaxis import add, mul, sub, sum_aligned
from .userfn import check_operands

if TYPE_CHECKING:
    from .program.frame import Frame

from .types import Array

Step = Callable[["Frame", dict[str, Array]], Any]


def build_expect(e: PlannedExpect, nodes: list[Step], terms: list[Step]) -> Step:
    """The step of a planned expectation, given one step per random node (drawing, or enumerating
    in place, see :mod:`stochgrad.program.nodes`) and one per cost term (in the nodes' scope).  With a
    first-order-only estimator (``orders == 1``), a second derivative through it is refused by name."""
    step = _build(e, nodes, terms)
    once = [n for n in e.nodes if n.spec.orders == 1]
    if not once:
        return step
    refusal = (
        f"{once[0].var} ~ {once[0].dist.name}: no second derivative through {once[0].spec.name}, a first-order"
        f" estimator; use 'score' (or 'pathwise' where it applies) for higher-order derivatives"
    )

    def first_order(fr: Frame, env: dict[str, Array]) -> Array:
        out = step(fr, env)
        return out if fr.first_order else first_order_only(fr.B, out, refusal)

    return first_order


def _build(e: PlannedExpect, nodes: list[Step], terms: list[Step]) -> Step:
    enumerates = [node.spec.enumerates for node in e.nodes]
    for node in e.nodes:  # an estimator that assembles the whole surrogate itself (e.g. REBAR)
        own = node.spec.own_surrogate(e, nodes, terms)
        if own is not None:
            return own
    if not any(enumerates) and not any(e.boxes):  # pathwise only: the surrogate is the sum of the terms
        return _plain(e, nodes, terms)
    if not any(enumerates):  # score terms, no enumeration: the pairing decided here, once
        return _unenumerated(e, nodes, terms)

    def step(fr: Frame, env: dict[str, Array]) -> Array:
        return expect(fr, e, env, nodes, terms, enumerates)

    return step


def _plain(e: PlannedExpect, nodes: list[Step], terms: list[Step]) -> Step:
    """The step of an expectation with no score terms and no enumeration: ``S = sum_t term_t``
    (what :func:`expect` computes then, with fewer operations)."""
    variables = [(node.var, step) for node, step in zip(e.nodes, nodes)]
    signed = [(sign == 1.0, t) for (sign, _), t in zip(e.terms, terms)]

    def plain(fr: Frame, env: dict[str, Array]) -> Array:
        scope = dict(env)
        for var, node in variables:
            scope[var] = node(fr, scope)[0]
        total: Array | float = 0.0
        for plus, t in signed:
            value = fr.array(t(fr, scope))
            try:
                total = add(fr, total, value if plus else -value)
            except (ValueError, RuntimeError):  # terms whose shapes a user function made known: name them
                check_operands(fr.B, [total, value], e)
                raise
        return fr.array(total)

    return plain


def _unenumerated(e: PlannedExpect, nodes: list[Step], terms: list[Step]) -> Step:
    """The step of an expectation with score terms and no enumerated node: :func:`expect` with every
    enumeration weight 1 and every multiplicity unchanged, so the same operations in the same
    order, with which node scores which term, the plates and the signs resolved when it is built."""
    plates = e.plates or (None,) * len(e.terms)
    rowwise = {j for j, node in enumerate(e.nodes) if node.plate}  # log q kept per example
    variables = [node.var for node in e.nodes]
    signs = [sign == 1.0 for sign, _ in e.terms]
    scored: dict[int, list[tuple[int, bool]]] = {}  # node -> its terms (index, summed over the examples?)
    for i, (box, plate) in enumerate(zip(e.boxes, plates)):
        for j in box:
            scored.setdefault(j, []).append((i, not (plate is None or j in rowwise)))
    later = {j: variables[j:] for j in range(len(e.nodes))}
    # (node, its terms, learns a baseline from its context, its spec); scoring nodes only
    scorers = [
        (j, scored[j], type(node.spec).learned_baseline is not EstimatorSpec.learned_baseline, node)
        for j, node in enumerate(e.nodes)
        if j in scored and node.spec.scores
    ]
    # per term: (index, its box, the node whose baseline may fold in, summed over the examples before / after)
    paired = [
        (i, box, box[0] if len(box) == 1 else -1, plate is not None and not rowwise.intersection(box), plate)
        for i, (box, plate) in enumerate(zip(e.boxes, plates))
    ]

    def step(low: Frame, env: dict[str, Array]) -> Array:
        B = low.B
        scope = dict(env)
        logq: list[Array | None] = []
        for var, draw in zip(variables, nodes):
            scope[var], lq = draw(low, scope)
            logq.append(lq)
        values = [low.array(t(low, scope)) for t in terms]
        values = [v if plus else -v for plus, v in zip(signs, values)]
        bases: dict[int, Array] = {}
        fits: list[Array] = []
        for j, uses, learns, node in scorers:
            if logq[j] is None:
                continue
            cost = sum_aligned(low, [_examples(low, values[i]) if whole else values[i] for i, whole in uses])
            spec = node.spec
            learned = spec.learned_baseline(B, cost, {**low.params, **scope}, node.var, later[j]) if learns else None
            if learned is not None:
                bases[j] = learned[0]
                fits.append(learned[1])
                continue
            state = low.baselines.node(node) if spec.stateful else None
            base = spec.control_variate(B, cost, low.noise.count, low.loo_block, state)
            if base is not None:
                bases[j] = base
        first = low.first_order  # boxes are then score terms S = L - stop(L) (see Frame)
        box_of = score_term if first else magic_box
        boxes: dict[tuple[int, ...], Array] = {}
        total: Array | float = 0.0
        for i, box, single, whole, plate in paired:
            value = values[i]
            if whole:
                value, plate = _examples(low, value), None
            if box:
                if low.batch_axes:
                    text = e.terms[i][1]
                    check_plate(
                        low,
                        value,
                        [logq[j] for j in box],
                        [e.nodes[j].var for j in box],
                        text if plate is None else plate.source,
                        None if plate is None else 0,
                    )
                if box not in boxes:
                    boxes[box] = box_of(B, sum_aligned(low, [logq[j] for j in box]))
                value = _scored(low, value, boxes[box], bases.pop(single) if single in bases else None)
            if plate is not None:
                value = _examples(low, value)
            try:
                total = add(low, total, value)
            except (ValueError, RuntimeError):  # terms whose shapes a user function made known: name them
                check_operands(low.B, [total, value], e)
                raise
        for j, base in bases.items():  # baselines not folded into a term above: (1 - []L) b, or -S b
            own = boxes[(j,)] if (j,) in boxes else box_of(B, logq[j])
            term = mul(low, own, -base) if first else mul(low, 1.0 - own, base)
            total = add(low, total, _examples(low, term) if j in rowwise else term)
        for fit in fits:
            total = add(low, total, fit)
        return low.array(total)

    return step


def expect(
    low: Frame, e: PlannedExpect, env: dict[str, Array], nodes: list[Step], terms: list[Step], enumerates: list[bool]
) -> Array:
    """The per-sample surrogate of a planned expectation (see the module docstring), folded back
    to the multiplicity of ``env``."""
    B = low.B
    outer_mult = low.mult
    scope = dict(env)
    logq: list[Array | None] = []
    level: list[int] = []  # multiplicity at which each node was sampled
    weights: list[tuple[int, Array]] = []  # (node index, K q(k)) of each enumerated node
    for j, node in enumerate(e.nodes):
        if enumerates[j]:
            scope[node.var], w = nodes[j](low, scope)
            weights.append((j, w))
            logq.append(None)
        else:
            scope[node.var], lq = nodes[j](low, scope)
            logq.append(lq)
        level.append(low.mult)
    final = low.mult
    up = {j: final // level[j] for j in range(len(e.nodes))}
    plates = e.plates or (None,) * len(e.terms)  # a term with a plate holds one cost per example
    rowwise = {j for j, node in enumerate(e.nodes) if node.plate}  # log q kept per example
    values = [low.array(t(low, scope)) for t in terms]
    values = [v if sign == 1.0 else -v for (sign, _), v in zip(e.terms, values)]

    def weight(select: Any, at: int) -> Array | float:
        """Product of the selected enumeration weights, copied up to multiplicity ``at``."""
        out: Array | float = 1.0
        for j, w in weights:
            if select(j):
                out = mul(low, out, low.tile(w, at // level[j]))
        return out

    bases: dict[int, Array] = {}  # baseline of each score node that has one
    scored: dict[int, list[Array]] = {}  # node index -> the cost terms its score multiplies
    fits: list[Array] = []  # training terms of learned baselines (value 0)
    for v, box, plate in zip(values, e.boxes, plates):
        for j in box:  # a node without a plate pairs with the whole sum of a plated term
            scored.setdefault(j, []).append(v if plate is None or j in rowwise else _examples(low, v))
    for j, node in enumerate(e.nodes):
        terms = scored.get(j, [])
        if logq[j] is None or not terms or not node.spec.scores:
            continue
        cost = low.fold(mul(low, weight(lambda i, j=j: i > j, final), sum_aligned(low, terms)), up[j])
        learned = node.spec.learned_baseline(
            low.B, cost, {**low.params, **scope}, node.var, [m.var for m in e.nodes[j:]] if not weights else None
        )
        if learned is not None:  # a baseline of the node's context, and its value-zero training term
            bases[j] = learned[0]
            fits.append(low.tile(learned[1], up[j]))
            continue
        state = low.baselines.node(node) if node.spec.stateful else None
        base = node.spec.control_variate(low.B, cost, low.noise.count, low.loo_block, state)
        if base is not None:
            bases[j] = base
    W = weight(lambda j: True, final)
    total: Array | float = 0.0
    first = low.first_order  # boxes are then score terms S = L - stop(L) (see Frame)
    box_of = score_term if first else magic_box
    boxes: dict[tuple[int, ...], Array] = {}  # boxes at the final multiplicity, by score nodes
    for value, box, (_, text), plate in zip(values, e.boxes, e.terms, plates):
        if plate is not None and not rowwise.intersection(box):
            value, plate = _examples(low, value), None
        if box:
            if low.batch_axes:  # a term with an inferred plate is a sum over the examples as written
                check_plate(
                    low,
                    value,
                    [logq[j] for j in box],
                    [e.nodes[j].var for j in box],
                    text if plate is None else plate.source,
                    None if plate is None else 0,
                )
            if box not in boxes:
                boxes[box] = box_of(B, sum_aligned(low, [low.tile(logq[j], up[j]) for j in box]))
            j = box[0]
            folded = not weights and len(box) == 1 and j in bases  # []L v + (1 - []L) b = []L (v - b) + b
            value = _scored(low, value, boxes[box], bases.pop(j) if folded else None)
        if plate is not None:  # the examples' scored costs, summed
            value = _examples(low, value)
        try:
            total = add(low, total, mul(low, W, value))
        except (ValueError, RuntimeError):  # terms whose shapes a user function made known: name them
            check_operands(low.B, [total, value], e)
            raise
    for j, base in bases.items():  # baselines not folded into a term above: (1 - []L) b, or -S b
        own = boxes[(j,)] if up[j] == 1 and (j,) in boxes else box_of(B, logq[j])
        term = mul(
            low, weight(lambda i, j=j: i < j, level[j]), mul(low, own, -base) if first else mul(low, 1.0 - own, base)
        )
        total = add(low, total, low.tile(_examples(low, term) if j in rowwise else term, up[j]))
    for fit in fits:
        total = add(low, total, fit)
    low.mult = outer_mult
    return low.array(low.fold(total, final // outer_mult))


def _scored(low: Frame, value: Array, box: Array, base: Array | None) -> Array:
    """A cost term times its box, with a baseline folded in: ``[]L (v - b) + b`` (DiCE), or in
    first-order form, where ``box`` is ``S = L - stop(L)``, ``v + stop(v - b) S``."""
    if low.first_order:
        return add(low, value, mul(low, box, low.stop(value if base is None else sub(low, value, base))))
    if base is None:
        return mul(low, box, value)
    return add(low, mul(low, box, sub(low, value, base)), base)


def _examples(low: Frame, value: Array | float) -> Array | float:
    """The sum over the examples (logical axis 0) of a per-example value (an inferred plate)."""
    if isinstance(value, float) or len(low.B.shape(value)) < 2:
        return value
    return low.B.sum(value, (1,))
