"""Steps of random nodes: draw a node's value (and log q), or enumerate its joint support.

Built once per node: the node's parameter steps, its :class:`~.checks.DistCheck` and its law are
bound in a closure; at run time a step reads the frame (the noise, the current enumeration
multiplicity) and the scope.  A node with ``k`` draws uses streams ``0 .. k-1`` of its uid; after an
enumeration of multiplicity ``m`` each copy ``r`` draws independent noise (``branch=r``), as
:mod:`stochgrad.noise` documents.  Log q is summed over the logical axes but the leading
``batch_axes`` (a declared plate; without one, the node's inferred plate, :mod:`stochgrad.plates`),
and clipped to ``+-1e30`` for laws whose log density can be infinite at a sample at the edge of
float range (the magic box would be NaN).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from ..distributions import event_ranks, joint_prob, joint_support, lookup
from ..errors import StochgradError
from ..estimators.antithetic import reflect
from ..planned import NodePlan
from .checks import DistCheck
from .frame import Frame

from ..types import Array

Step = Callable[[Frame, dict[str, Array]], Any]
NodeStep = Callable[[Frame, dict[str, Array]], tuple[Array, Array | None]]
_SHAPES = 64  # sets of parameter shapes remembered per node (an estimate's last chunk has its own)
_HUGE = 1e30  # bound on |log q| (finite in float32 too): a larger one is a sample at the edge of range


def parameters_step(
    node: NodePlan, steps: list[Step], check: DistCheck
) -> Callable[..., tuple[dict[str, Array], tuple[int, ...]]]:
    """A step giving the node's parameters (aligned, checked) and the logical shape of one sample."""
    names = [k for k, _ in node.dist.params]
    law = lookup(node.dist.name)
    copies = getattr(node.dist, "count", None)  # iid(K, D): K copies on a new first logical axis
    ranks = event_ranks(law, names)  # None: the parameters broadcast elementwise
    # by the parameters' shapes: whether they align as they are, and the logical shape of one sample
    by_shapes: dict[tuple[tuple[int, ...], ...], tuple[bool, tuple[int, ...]]] = {}

    def parameters(fr: Frame, env: dict[str, Array]) -> tuple[dict[str, Array], tuple[int, ...]]:
        B = fr.B
        values = [fr.array(s(fr, env)) for s in steps]
        shapes = tuple([B.shape(v) for v in values])
        known = by_shapes.get(shapes)
        if known is None:
            aligned = fr.align(*values, ranks=ranks)
            logical = {k: B.shape(v)[1:] for k, v in zip(names, aligned)}
            if len(by_shapes) >= _SHAPES:
                by_shapes.clear()
            known = by_shapes[shapes] = (
                all(a is v for a, v in zip(aligned, values)),
                law.value_shape(logical, node.dist),
            )
        if not known[0]:
            values = fr.align(*values, ranks=ranks)
        p = dict(zip(names, values))
        check(fr, p)
        shape = known[1]
        if copies is None:
            return p, shape
        return {k: B.reshape(v, B.shape(v)[:1] + (1,) + B.shape(v)[1:]) for k, v in p.items()}, (copies,) + shape

    return parameters


def sample_step(node: NodePlan, steps: list[Step], check: DistCheck) -> NodeStep:
    """Draw the node's value; for score nodes also its log q summed over logical axes."""
    parameters = parameters_step(node, steps, check)
    d = lookup(node.dist.name)
    uid, spec, finite, plate = node.uid, node.spec, d.finite_log_prob, node.plate  # plate: inferred (planner)
    reflects = spec.reflects  # antithetic noise (estimators/antithetic.py)
    sampler = getattr(spec, "sample_copies", spec.sample)  # copies: rebar.py

    def sample(fr: Frame, env: dict[str, Array]) -> tuple[Array, Array | None]:
        p, shape = parameters(fr, env)
        streams = itertools.count()  # one noise stream per draw of this node
        noise, mult, B = fr.noise, fr.mult, fr.B

        def drawn(kind: str, x: Array) -> Array:  # antithetic specs: pairs of reflected noise in each copy
            return reflect(B, kind, x, node.var) if reflects else x

        def draw(kind: str, logical: tuple[int, ...], *params: Array) -> Array:
            stream = next(streams)
            if mult == 1:
                x = noise.draw(uid, stream, kind, tuple(logical), *params)
                return reflect(B, kind, x, node.var) if reflects else x
            count = noise.count
            return B.concat(
                [  # independent noise in every enumeration copy
                    drawn(
                        kind,
                        noise.draw(
                            uid,
                            stream,
                            kind,
                            tuple(logical),
                            *(q if B.shape(q)[0] == 1 else q[r * count : (r + 1) * count] for q in params),
                            branch=r,
                        ),
                    )
                    for r in range(mult)
                ]
            )

        draw.node = node  # type: ignore[attr-defined]  # named in errors raised later (stochgrad.gammas)
        z, logq = sampler(d, B, p, draw, shape)
        if logq is None:
            return z, None
        lshape = B.shape(logq)  # sum log q over all axes but the leading batch (plate) axes
        axes = tuple(range(1 + min(fr.batch_axes or plate, len(lshape) - 1), len(lshape)))
        logq = B.sum(logq, axes) if axes else logq
        return z, logq if finite else B.fn["clip"](logq, -_HUGE, _HUGE)

    return sample


def enumerate_step(node: NodePlan, steps: list[Step], check: DistCheck) -> NodeStep:
    """Copy the scope once per joint state (in place); give the node's values and weights ``K q(k)``."""
    parameters = parameters_step(node, steps, check)
    d = lookup(node.dist.name)

    def enumerate_(fr: Frame, scope: dict[str, Array]) -> tuple[Array, Array]:
        p, shape = parameters(fr, scope)
        level = fr.mult * fr.noise.count
        key = ("support", node.uid, shape, level)  # the states, each repeated per sample: made once per memo
        if key not in fr.memo:
            support = joint_support(d, node.dist, shape)
            if support is None:
                raise StochgradError(f"{node.var} ~ {node.dist}: cannot enumerate a support of this size or kind")
            fr.memo[key] = (support.shape[0], fr.B.asarray(np.repeat(support, level, axis=0)))
        k, z = fr.memo[key]
        for var, value in list(scope.items()):
            scope[var] = fr.tile(value, k)
        p = {name: fr.tile(v, k) for name, v in p.items()}
        fr.mult *= k
        return z, k * joint_prob(fr.B, d.prob(fr.B, p, z))  # q(k) itself, differentiable where it is 0

    return enumerate_
