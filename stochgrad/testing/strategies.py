"""Hypothesis strategies for stochgrad expressions, DSL text and distribution parameters.

Needs Hypothesis (``pip install 'stochgrad[test]'``).

* :func:`expressions` draws random *well-formed* IR expressions
  (:mod:`stochgrad.ir` nodes) over the given parameter names: constants (small
  integers, finite floats of every magnitude and sign, awkward literals such as
  ``0.1``, ``1e-7`` and ``-0``), parameter names, negation (built with
  :func:`stochgrad.ir.negate`, so never ``Neg(Num)``), every binary operator in
  :data:`stochgrad.ir.PREC` (arithmetic and comparisons), calls of every
  function in :data:`stochgrad.functions.FUNCTIONS` (with their integer
  options, e.g. ``sum(x, axis=-1)``) and expectations
  ``E[body, v ~ Dist(...), ...]`` with one to three bindings over every
  distribution in :data:`stochgrad.distributions.DISTRIBUTIONS`.  Bound
  variables are fresh: they never shadow an enclosing binding or a parameter,
  a binding's distribution uses only parameters, enclosing variables and the
  *earlier* bindings of its own ``E[...]``, so every expression passes
  :func:`stochgrad.analysis.check_scopes`.  Calls and distributions are built
  with :func:`~stochgrad.functions.make_call` and
  :func:`~stochgrad.distributions.make_dist` (the distribution arguments are
  split at random between positional and keyword form), exactly as the parser
  and the embedded form build them.
* :func:`texts` is the same, printed as canonical DSL text with ``str()``.
* :func:`params_for` draws valid numeric parameters (a ``dict`` of floats) for
  one distribution.  Each parameter's values come from its
  :class:`~stochgrad.distributions.Param` constraint (``real`` -> any finite
  value in range, ``positive`` -> ``(0, ...]`` with weight on the edges, e.g.
  a scale from ``1e-6`` to ``1e6``); an unknown constraint falls back to
  filtering by the constraint's own ``holds``.  Constraints that couple
  parameters come from a small table (``Uniform``: ``low < high``, including
  ``high`` one ulp above ``low``), and every draw is finally checked with the
  distribution's own ``extra_check``, so user-registered distributions work too.

The tables are read when a value is drawn, so distributions and functions
registered after import are generated as well.

    >>> import stochgrad as sg
    >>> from hypothesis import given
    >>> from stochgrad.testing.strategies import expressions
    >>> @given(expressions())
    ... def test_round_trip(e):
    ...     assert sg.parse(str(e)) == e
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from .. import continuous as _continuous  # noqa: F401  (registers the built-in distributions)
from .. import discrete, distributions, functions, ir
from .. import gammas as _gammas  # noqa: F401
from .. import mvn as _mvn  # noqa: F401

__all__ = [
    "numbers",
    "expressions",
    "texts",
    "params_for",
    "params_for_expression",
    "BINARY_OPERATORS",
    "BOUND_NAMES",
    "COUPLED",
]

#: every binary operator of the IR (arithmetic and comparisons), in a fixed order
BINARY_OPERATORS: tuple[str, ...] = tuple(op for op in ir.PREC if op != "neg")

#: names tried, in this order, for variables bound by ``E[...]`` (awkward but valid ones included:
#: names that start with ``E``, the name of a function, a lone underscore)
BOUND_NAMES: tuple[str, ...] = (
    "z",
    "x",
    "y",
    "u",
    "w",
    "eps",
    "z1",
    "z_2",
    "t",
    "s",
    "Ez",
    "E_",
    "e",
    "_",
    "exp",
    "Normal",
    "noise",
    "a1",
    "b_",
    "q",
)

#: literal values with a tricky printed form (``repr`` with an exponent, ``-0``, subnormals, huge)
_SPECIAL_FLOATS: tuple[float, ...] = (
    0.0,
    -0.0,
    0.1,
    -0.1,
    0.5,
    1e-7,
    -1e-7,
    1e-3,
    2.5,
    123456.789,
    1e15,
    1e16,
    -1e16,
    1e-300,
    5e-324,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    2.0**53,
    2.0**53 + 2,
)

_LEAF_KINDS = ("num", "name")
_NODE_KINDS = ("neg", "binop", "binop", "call", "expect")


def numbers() -> SearchStrategy[ir.Num]:
    """Constants: small integers, special literals and any finite float (either sign)."""
    return st.one_of(
        st.integers(-10, 10),
        st.sampled_from(_SPECIAL_FLOATS),
        st.floats(allow_nan=False, allow_infinity=False),
    ).map(ir.Num)


def _fresh(taken: frozenset[str], count: int) -> list[str]:
    """Candidate names for new bindings: never a name in ``taken``; at least ``count`` of them."""
    out = [n for n in BOUND_NAMES if n not in taken]
    i = 0
    while len(out) < count:
        if f"v{i}" not in taken:
            out.append(f"v{i}")
        i += 1
    return out


@st.composite
def _expr(draw: Callable, visible: tuple[str, ...], taken: frozenset[str], depth: int) -> ir.Expr:
    """One expression that may use the names in ``visible``.

    ``taken`` holds every name a new binding must avoid: the parameters, the
    enclosing bound variables and the not-yet-bound variables of enclosing
    ``E[...]`` (so that no binding shadows another)."""
    kinds = [k for k in _LEAF_KINDS if k != "name" or visible]
    if depth > 0:
        kinds += _NODE_KINDS
    kind = draw(st.sampled_from(kinds))
    sub = depth - 1
    if kind == "num":
        return draw(numbers())
    if kind == "name":
        return ir.Name(draw(st.sampled_from(visible)))
    if kind == "neg":
        return ir.negate(draw(_expr(visible, taken, sub)))
    if kind == "binop":
        op = draw(st.sampled_from(BINARY_OPERATORS))
        return ir.BinOp(op, draw(_expr(visible, taken, sub)), draw(_expr(visible, taken, sub)))
    if kind == "call":
        fn = functions.FUNCTIONS[draw(st.sampled_from(sorted(functions.FUNCTIONS)))]
        args = tuple(draw(_expr(visible, taken, sub)) for _ in range(fn.arity))
        kwargs = tuple((opt, ir.Num(draw(st.integers(-3, 3)))) for opt in fn.options if draw(st.booleans()))
        return functions.make_call(fn.name, args, kwargs)
    # an expectation with 1-3 fresh bindings; binding i sees only the earlier ones
    count = draw(st.integers(1, 3))
    names = draw(st.lists(st.sampled_from(_fresh(taken, count)), min_size=count, max_size=count, unique=True))
    inner_taken = taken | frozenset(names)
    bindings = []
    for i, var in enumerate(names):
        dist = draw(_dist(visible + tuple(names[:i]), inner_taken, sub))
        bindings.append(ir.Binding(var, dist))
    body = draw(_expr(visible + tuple(names), inner_taken, sub))
    return ir.Expect(body, tuple(bindings))


@st.composite
def _dist(draw: Callable, visible: tuple[str, ...], taken: frozenset[str], depth: int) -> ir.Dist:
    """A distribution node whose parameter expressions use ``visible``."""
    name = draw(st.sampled_from(sorted(distributions.DISTRIBUTIONS)))
    spec = distributions.DISTRIBUTIONS[name]
    forms = spec.forms()
    form = draw(st.sampled_from(forms))
    values = [(p, draw(_expr(visible, taken, depth))) for p in form]
    # the same node however the arguments are written: a positional prefix (first form only),
    # keywords in any order
    n_pos = draw(st.integers(0, len(values))) if form == forms[0] else 0
    kwargs = draw(st.permutations(values[n_pos:]))
    return distributions.make_dist(name, tuple(v for _, v in values[:n_pos]), tuple(kwargs))


def expressions(variables: Iterable[str] = ("mu", "sigma"), max_depth: int = 4) -> SearchStrategy[ir.Expr]:
    """Well-formed expressions over the parameters ``variables``, nested at most ``max_depth`` deep.

    Every result passes :func:`stochgrad.analysis.check_scopes`; its free names
    are a subset of ``variables`` (none at all when ``variables`` is empty)."""
    params = tuple(dict.fromkeys(variables))
    for p in params:
        ir.check_name(p)
    if max_depth < 0:
        raise ValueError(f"max_depth must be >= 0, got {max_depth}")
    return _expr(params, frozenset(params), max_depth)


def texts(variables: Iterable[str] = ("mu", "sigma"), max_depth: int = 4) -> SearchStrategy[str]:
    """Canonical DSL text of :func:`expressions` (``str(expr)``)."""
    return expressions(variables, max_depth).map(str)


# ---------------------------------------------------------------- parameters


def _log_uniform(low: float, high: float) -> SearchStrategy[float]:
    """Positive floats spread evenly over the decades from ``low`` to ``high``."""
    lo, hi = math.log10(low), math.log10(high)
    return st.floats(lo, hi).map(lambda e: min(max(10.0**e, low), high))


def _reals(min_scale: float, max_magnitude: float) -> SearchStrategy[float]:
    edges = [0.0, 1.0, -1.0, min_scale, -min_scale, max_magnitude, -max_magnitude]
    return st.one_of(
        st.sampled_from(edges),
        st.floats(-max_magnitude, max_magnitude, allow_nan=False, allow_infinity=False),
        st.tuples(st.sampled_from([1.0, -1.0]), _log_uniform(min_scale, max_magnitude)).map(lambda t: t[0] * t[1]),
    )


def _positives(min_scale: float, max_magnitude: float) -> SearchStrategy[float]:
    edges = [min_scale, math.nextafter(min_scale, math.inf), 1.0, max_magnitude]
    return st.one_of(
        st.sampled_from(edges),
        _log_uniform(min_scale, max_magnitude),
        st.floats(min_scale, max_magnitude),
    )


def _holds(constraint: distributions.Constraint, x: float) -> bool:
    return bool(np.all(constraint.holds(np.asarray(x, dtype=float))))


def _values(constraint: distributions.Constraint, min_scale: float, max_magnitude: float) -> SearchStrategy[float]:
    if constraint is distributions.positive:
        return _positives(min_scale, max_magnitude)
    if constraint is discrete.unit_interval:
        return st.one_of(st.sampled_from([0.0, 1.0, 1e-7, 1 - 1e-7, 0.5]), st.floats(0.0, 1.0))
    if constraint is discrete.count:
        return st.integers(0, 50).map(float)
    base = _reals(min_scale, max_magnitude)
    if constraint is distributions.real:
        return base
    return base.filter(lambda x: _holds(constraint, x))  # an unknown constraint: keep what it accepts


@st.composite
def _uniform(draw: Callable, min_scale: float, max_magnitude: float) -> dict[str, float]:
    low = draw(_reals(min_scale, max_magnitude))
    high = low + draw(_positives(min_scale, max_magnitude))
    if not high > low:  # the width vanished in rounding: take the next float up
        high = math.nextafter(low, math.inf)
    if draw(st.integers(0, 7)) == 0:  # now and then the narrowest interval there is
        high = math.nextafter(low, math.inf)
    return {"low": low, "high": high}


@st.composite
def _categorical(draw: Callable, min_scale: float, max_magnitude: float) -> dict[str, np.ndarray]:
    k = draw(st.integers(1, 6))
    if draw(st.booleans()):
        logits = draw(st.lists(st.floats(-50.0, 50.0), min_size=k, max_size=k))
        return {"logits": np.array(logits)}
    weights = np.array(draw(st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k))) + 1e-12
    return {"probs": weights / weights.sum()}


@st.composite
def _dirichlet(draw: Callable, min_scale: float, max_magnitude: float) -> dict[str, np.ndarray]:
    k = draw(st.integers(1, 6))
    return {"concentration": np.array(draw(st.lists(_positives(max(min_scale, 1e-3), 1e3), min_size=k, max_size=k)))}


@st.composite
def _multivariate_normal(draw: Callable, min_scale: float, max_magnitude: float) -> dict[str, np.ndarray]:
    """A loc of d = 1..4 coordinates and a lower-triangular ``L`` (diagonal in [0.1, 10]), or ``L L^T``."""
    d = draw(st.integers(1, 4))
    loc = np.array(draw(st.lists(st.floats(-min(max_magnitude, 1e3), min(max_magnitude, 1e3)), min_size=d, max_size=d)))
    off = np.array(draw(st.lists(st.floats(-2.0, 2.0), min_size=d * d, max_size=d * d))).reshape(d, d)
    diag = np.array(draw(st.lists(_positives(0.1, 10.0), min_size=d, max_size=d)))
    tril = np.tril(off, -1) + np.diag(diag)
    if draw(st.booleans()):
        return {"loc": loc, "scale_tril": tril}
    return {"loc": loc, "covariance_matrix": tril @ tril.T}  # symmetric exactly (the same products)


#: distributions whose parameters are coupled or vectors: name -> strategy factory (min_scale, max_magnitude)
COUPLED: dict[str, Callable[[float, float], SearchStrategy[dict[str, Any]]]] = {
    "Uniform": _uniform,
    "Categorical": _categorical,
    "Dirichlet": _dirichlet,
    "MultivariateNormal": _multivariate_normal,
}


def _extra_ok(dist: distributions.Distribution, values: Mapping[str, float]) -> bool:
    return dist.extra_check({k: np.asarray(v, dtype=float) for k, v in values.items()}) is None


def params_for(
    dist_name: str, *, min_scale: float = 1e-6, max_magnitude: float = 1e6
) -> SearchStrategy[dict[str, float]]:
    """Valid parameter values (floats) for the distribution named ``dist_name``.

    Real parameters lie in ``[-max_magnitude, max_magnitude]``; positive ones
    in ``[min_scale, max_magnitude]``, with weight on both edges and spread
    over the decades between them.  Every draw passes the distribution's
    ``validate``.  Raises :class:`~stochgrad.errors.StochgradError` for an
    unknown name (with a suggestion)."""
    if not 0 < min_scale <= 1 <= max_magnitude < math.inf:
        raise ValueError(f"need 0 < min_scale <= 1 <= max_magnitude < inf, got {min_scale}, {max_magnitude}")
    dist = distributions.lookup(dist_name)
    if dist_name in COUPLED:
        strategy = COUPLED[dist_name](min_scale, max_magnitude)
    else:
        specs = {p.name: p for p in dist.params}
        strategy = st.one_of(
            *(
                st.fixed_dictionaries({n: _values(specs[n].constraint, min_scale, max_magnitude) for n in form})
                for form in dist.forms()
            )
        )
    return strategy.filter(lambda values: _extra_ok(dist, values))


def params_for_expression(
    expr: Any, *, min_scale: float = 1e-3, max_magnitude: float = 1e3
) -> SearchStrategy[dict[str, float]]:
    """Scalar parameter dictionaries for an expression (text or IR).

    A parameter passed straight into a distribution gets that parameter's constraint
    (``sigma`` in ``Normal(mu, sigma)`` is positive; ``p`` in ``Bernoulli(p)`` lies in [0, 1]);
    ``low``/``high`` of a Uniform given by two parameters keep ``low < high``; every other
    parameter is a real in ``[-max_magnitude, max_magnitude]``.  Parameters that enter a
    distribution through arithmetic (``Normal(0, exp(s))``) are not constrained here."""
    from ..analysis import parameters
    from ..api import as_expression

    e = as_expression(expr)
    names = parameters(e)
    direct: dict[str, distributions.Constraint] = {}
    uniform_pairs: list[tuple[str, str]] = []
    for node in ir.walk(e):
        if isinstance(node, ir.Expect):
            for b in node.bindings:
                given = dict(b.dist.params)
                spec = {p.name: p for p in distributions.lookup(b.dist.name).params}
                for key, value in given.items():
                    if isinstance(value, ir.Name) and value.id in names:
                        direct.setdefault(value.id, spec[key].constraint)
                if b.dist.name == "Uniform":
                    low, high = given["low"], given["high"]
                    if isinstance(low, ir.Name) and low.id in names and isinstance(high, ir.Name) and high.id in names:
                        uniform_pairs.append((low.id, high.id))
    strategies = {n: _values(direct.get(n, distributions.real), min_scale, max_magnitude) for n in names}
    base = st.fixed_dictionaries(strategies)

    def order(values: dict[str, float]) -> dict[str, float]:
        for low, high in uniform_pairs:
            a, b = sorted((values[low], values[high]))
            values[low], values[high] = a, (b if b > a else math.nextafter(a, math.inf))
        return values

    return base.map(order)
