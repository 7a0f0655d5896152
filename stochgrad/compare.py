"""``compare``: every estimator that applies to each random node, measured side by side.

For each random node and each registered estimator that applies to it
(:func:`stochgrad.estimators.applicable`, those whose ``compared`` fact holds, in each of their
``variants``; the other nodes keep their planned estimators), one run of :func:`stochgrad.estimate` gives the gradient mean,
its standard error, the variance per sample (``stderr**2 * n``), the time per sample,
and -- where an exact gradient is known, from the SymPy oracle or from a plan that is
exact (every node enumerated) -- the bias ``mean - exact`` with its z-score.  This is
the reference text's walk through naive sampling, reparameterization,
straight-through, Gumbel-softmax and REINFORCE, in one call.

With ``repeats=R`` each estimator also runs R times (independent seeds, hashed from ``seed``
and the run's indices, so comparisons with neighbouring seeds share none) at each of a few
small sample sizes: those runs are the *measured* distribution of the gradient estimate at
that size, and their root-mean-square error against the exact gradient (their spread where
none is known) is the measured error against n, which :func:`plot` draws next to the
prediction ``sqrt(bias^2 + variance / n)`` from the single long run.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .api import estimate
from .backend import Backend
from .compare_plot import figure as figure  # re-exported: stochgrad.compare.figure
from .compare_plot import plot as plot  # and stochgrad.compare.plot
from .distributions import joint_states, lookup
from .errors import PlanError, ValidationError
from .estimators import ESTIMATORS, EstimatorSpec, as_spec
from .noise import REPLICATE, check_seed, derive_seed
from .parser import as_expression
from .planner import DEFAULT_BUDGET, Plan, plan
from .reprs import short
from .validation import resolve_backend


@dataclass(frozen=True)
class Row:
    var: str
    estimator: str
    unbiased: bool  # by construction (for this node and cost)
    grad: dict[str, Any]
    stderr: dict[str, Any]
    variance: dict[str, Any]  # per-sample variance of each gradient entry
    bias: dict[str, Any] | None  # mean - exact, where an exact gradient is known
    seconds_per_sample: float
    runs: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)  # n -> name -> (repeats, *shape) gradients

    def measured_error(self, n: int, exact: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
        """Root-mean-square error of the ``runs`` at size ``n`` against ``exact`` (or, with no exact
        gradient, their standard deviation about their own mean)."""
        out = {}
        for k, g in self.runs[n].items():
            centre = np.asarray(exact[k]) if exact is not None else g.mean(axis=0)
            out[k] = np.sqrt(np.mean((g - centre) ** 2, axis=0))
        return out


@dataclass(frozen=True)
class NotRun:
    """A registered estimator :func:`compare` did not run for a node, and why (its own refusal)."""

    var: str
    estimator: str
    reason: str
    #: ``"law"``: it does not apply to the node's law or the backend (or needs a configuration);
    #: ``"expression"``: it refused this node's expectation when run (e.g. not a K-sample bound)
    stage: str = "law"


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` measured: ``print(c)`` or ``c.table()`` shows one row per node and estimator.

    Attributes:
        expr: the expression compared.
        n: samples per estimator run.
        backend: the backend's name.
        exact: the exact gradient by parameter, where known (SymPy oracle or enumeration), else ``None``.
        exact_source: where ``exact`` came from.
        rows: one :class:`Row` per node and estimator: gradient, standard error, variance per sample,
            bias against ``exact``, seconds per sample.
        seed: the seed every estimator ran with.
        not_run: every registered estimator not run for a node, with the reason (it does not apply to
            the node's law, its expectation or the backend, or it needs a configuration).
    """

    expr: Any
    n: int
    backend: str
    exact: dict[str, Any] | None
    exact_source: str | None
    rows: tuple[Row, ...]
    seed: int | None = None  # the seed every estimator ran with (compare(seed=None) draws one)
    not_run: tuple[NotRun, ...] = ()

    def __repr__(self) -> str:  # one line, not every row's arrays
        return (
            f"<Comparison {short(str(self.expr), 60)}: {len(self.rows)} estimator runs, n={self.n}, {self.backend},"
            f" exact from {self.exact_source or 'nowhere'}>"
        )

    def table(self) -> str:
        names = sorted(self.rows[0].grad) if self.rows else []
        w = min(72, max([44, *(len(r.estimator) + 2 for r in self.rows)]))  # longer names are cut (in full: rows)
        head = f"{'node':<6}{'estimator':<{w}}{'unbiased':<10}"
        head += "".join(f"{'d/d' + k:>24}{'var/sample':>12}{'bias (z)':>18}" for k in names) + f"{'s/sample':>11}"
        lines = [head]
        for r in self.rows:
            name = r.estimator if len(r.estimator) < w else r.estimator[: w - 2] + "\u2026"
            line = f"{r.var:<6}{name:<{w}}{'yes' if r.unbiased else 'no':<10}"
            for k in names:
                line += f"{' ' + _num(r.grad[k]) + ' ± ' + _num(r.stderr[k]):>24}{' ' + _num(r.variance[k]):>12}"
                if r.bias is None:
                    line += f"{'-':>18}"
                else:
                    z = _z(r.bias[k], r.stderr[k], r.grad[k])
                    line += f"{' ' + _num(r.bias[k]) + ' (' + z + ')':>18}"
            lines.append(line + f"{r.seconds_per_sample:>11.2e}")
        if self.exact is not None:
            lines.append(
                "exact ("
                + str(self.exact_source)
                + "): "
                + ", ".join(f"d/d{k} = {_num(v)}" for k, v in self.exact.items())
            )
        return "\n".join(lines + self.not_run_lines())

    def not_run_lines(self) -> list[str]:
        """The estimators not run, for the table: those refused by a node's law in one line per node
        (their reasons are in :attr:`not_run`), those refused by the expression one per line, with why."""
        lines = []
        for var in dict.fromkeys(m.var for m in self.not_run):
            law = [m.estimator for m in self.not_run if m.var == var and m.stage == "law"]
            if law:
                lines.append(f"not applicable to {var}: {', '.join(law)} (Comparison.not_run says why)")
            lines += [
                f"not run for {m.var}: {m.estimator}: {m.reason}"
                for m in self.not_run
                if m.var == var and m.stage != "law"
            ]
        return lines

    def to_json(self) -> dict[str, Any]:
        def js(x: Any) -> Any:
            return None if x is None else {k: np.asarray(v).tolist() for k, v in x.items()}

        return {
            "n": self.n,
            "backend": self.backend,
            "seed": self.seed,
            "exact": js(self.exact),
            "exact_source": self.exact_source,
            "rows": [
                {
                    "var": r.var,
                    "estimator": r.estimator,
                    "unbiased": r.unbiased,
                    "grad": js(r.grad),
                    "stderr": js(r.stderr),
                    "variance_per_sample": js(r.variance),
                    "bias": js(r.bias),
                    "seconds_per_sample": r.seconds_per_sample,
                    "runs": {str(m): js(g) for m, g in r.runs.items()},
                    "measured_error": {str(m): js(r.measured_error(m, self.exact)) for m in r.runs},
                }
                for r in self.rows
            ],
            "not_run": [
                {"var": m.var, "estimator": m.estimator, "reason": m.reason, "stage": m.stage} for m in self.not_run
            ],
        }


def _num(x: Any) -> str:
    a = np.asarray(x, dtype=float)
    return f"{float(a):.4g}" if a.ndim == 0 else np.array2string(a, precision=3)


def _z(bias: Any, se: Any, scale: Any = 1.0) -> str:
    """The bias's z-score; at standard error 0, ``exact`` where the bias is rounding (1e-9 of the
    gradient's ``scale``) and ``s.e. 0`` where it is not (a deterministic but biased estimator)."""
    b, s = np.asarray(bias, dtype=float), np.asarray(se, dtype=float)
    if b.ndim or s.ndim:
        return "-"
    if s > 0:
        return f"{b / s:+.1f}"
    if not (np.isfinite(b) and np.isfinite(s)):
        return "undefined"
    return "exact" if abs(b) <= 1e-9 * max(1.0, abs(float(scale))) else "s.e. 0"


def candidates(
    p: Plan, var: str, temperatures: Sequence[float], capabilities: frozenset[str] | None
) -> tuple[list[EstimatorSpec], list[NotRun]]:
    """Node ``var``'s runnable candidates, and the registered estimators it cannot run, with why:
    not applicable to the node's law or the backend (the estimator's own refusal), or not
    ``compared`` by default."""
    node = p.node(var)
    d = lookup(node.dist.name)
    states = joint_states(d, node.dist, node.shape)
    runs: list[EstimatorSpec] = []
    skipped: list[NotRun] = []
    for name, cls in ESTIMATORS.items():
        try:
            spec = cls()
            spec.requires(d, states=states, capabilities=capabilities)
        except PlanError as exc:
            skipped.append(NotRun(var, name, str(exc)))
            continue
        if not spec.compared:
            skipped.append(NotRun(var, name, f"not compared by default: ask for it, estimators={{{var!r}: {name!r}}}"))
            continue
        runs.extend(spec.variants(temperatures=temperatures))
    return runs, skipped


def _extras(var: str, given: Any) -> list[EstimatorSpec]:
    """The configured estimators the caller asked to compare for ``var`` (one, or a list)."""
    items = given if isinstance(given, (list, tuple)) else [given]
    return [as_spec(v, var) for v in items]


def compare(
    expr: Any,
    params: Mapping[str, Any],
    *,
    n: int = 10_000,
    backend: str | Backend | None = None,
    backend_options: Mapping[str, Any] | None = None,
    seed: int | None = None,
    temperatures: Sequence[float] = (0.1, 0.5, 1.0),
    repeats: int = 0,
    repeat_sizes: Sequence[int] = (10, 100, 1000),
    chunk_size: int | None = None,
    enumerate_budget: int = DEFAULT_BUDGET,
    batch_axes: int = 0,
    memory_limit: int | None = None,
    estimators: Mapping[str, Any] | None = None,
    **extra: Any,
) -> Comparison:
    """Run every applicable estimator for every random node; see the module docstring.

    ``repeats`` runs of each estimator at each size in ``repeat_sizes`` (default none) give the
    measured distributions and errors that :func:`plot` draws.  ``seed=None`` (as in
    :func:`stochgrad.estimate`) draws a fresh seed, reported as :attr:`Comparison.seed`;
    ``backend`` and ``backend_options`` are :func:`stochgrad.estimate`'s, and so are ``chunk_size``,
    ``enumerate_budget``, ``batch_axes`` and ``memory_limit``, passed to every run.  A bare backend
    option (``dtype="float32"``) is deprecated; any other unknown keyword is a ``TypeError``.

    Args:
        expr: DSL text or an expression.
        params: parameter values by name.
        n: samples per estimator run.
        backend: a backend name or a configured backend object.
        backend_options: options for the named backend.
        seed: seed shared by every estimator's run (``None``: fresh, reported).
        temperatures: the relaxations' temperatures to run.
        repeats: independent runs per estimator and size for the plots (0: none; else at least 2).
        repeat_sizes: the sample sizes of those repeated runs.
        chunk_size: at most this many samples in memory at once.
        enumerate_budget: the most joint states summed exactly.
        batch_axes: leading axes of independent examples.
        memory_limit: bytes a chunk may take.
        estimators: configured estimators to run beside the registry's defaults, by variable (one or a
            list: ``{"b": sg.Relax(surrogate=net)}``, ``{"z": ["delta", sg.Score(baseline=f)]}``).

    Returns:
        A :class:`Comparison`: one row per estimator and node, printable as a table, and
        :attr:`Comparison.not_run`: each registered estimator not run for a node, with why.

    Raises:
        ValidationError: invalid parameters, ``repeats`` or ``repeat_sizes``.
        TypeError: an unknown keyword (with a did-you-mean)."""
    B = resolve_backend("compare", backend, backend_options, extra, _KEYWORDS)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 0 or repeats == 1:
        raise ValidationError(f"repeats must be 0 (none) or an integer >= 2, got {repeats!r}")
    sizes = tuple(repeat_sizes)
    if any(isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1 for m in sizes):
        raise ValidationError(f"repeat_sizes must be integers >= 1, got {list(sizes)!r}")
    seed = secrets.randbits(63) if seed is None else check_seed(seed, "compare: seed")
    e = as_expression(expr)
    shapes = {k: np.shape(v) for k, v in params.items()}
    base = plan(e, shapes=shapes)
    options: dict[str, Any] = {
        "backend": B,
        "chunk_size": chunk_size,
        "enumerate_budget": enumerate_budget,
        "batch_axes": batch_axes,
        "memory_limit": memory_limit,
    }
    exact, source = _exact(e, params, base, seed, options)
    extras = dict(estimators or {})
    unknown = sorted(set(extras) - {node.var for node in base.nodes})
    if unknown:
        raise ValidationError(
            f"compare: estimators for {unknown[0]!r}, which is not a random variable; random variables:"
            f" {', '.join(node.var for node in base.nodes) or 'none'}"
        )
    rows, not_run = [], []
    for node in base.nodes:
        specs, skipped = candidates(base, node.var, temperatures, B.capabilities)
        not_run += skipped
        for spec in specs + (_extras(node.var, extras[node.var]) if node.var in extras else []):
            try:
                estimate(e, params, n=min(n, 64), seed=seed, estimators={node.var: spec}, **options)
            except PlanError as exc:  # it refuses this node's expectation (e.g. needs to be its only random node)
                not_run.append(NotRun(node.var, spec.describe(), str(exc), "expression"))
                continue
            t0 = time.perf_counter()
            r = estimate(e, params, n=n, seed=seed, estimators={node.var: spec}, **options)
            seconds = (time.perf_counter() - t0) / n
            variance = {k: np.asarray(r.stderr[k]) ** 2 * n for k in r.grad}
            bias = None if exact is None else {k: np.asarray(r.grad[k]) - exact[k] for k in r.grad}
            runs = {}
            for i, m in enumerate(sizes if repeats else ()):  # independent seeds for every run
                found = [
                    estimate(
                        e,
                        params,
                        n=int(m),
                        seed=derive_seed(seed, REPLICATE, i, j),
                        estimators={node.var: spec},
                        **options,
                    ).grad
                    for j in range(repeats)
                ]
                runs[int(m)] = {k: np.array([g[k] for g in found], dtype=float) for k in r.grad}
            rows.append(
                Row(
                    node.var,
                    spec.describe(),
                    not r.plan.node(node.var).biased,
                    dict(r.grad),
                    dict(r.stderr),
                    variance,
                    bias,
                    seconds,
                    runs,
                )
            )
    return Comparison(e, n, B.name, exact, source, tuple(rows), seed, tuple(not_run))


#: compare's own keywords, for the did-you-mean of a misspelt one
_KEYWORDS = (
    "n",
    "backend",
    "backend_options",
    "seed",
    "temperatures",
    "repeats",
    "repeat_sizes",
    "chunk_size",
    "enumerate_budget",
    "batch_axes",
    "memory_limit",
    "estimators",
)


def _exact(
    e: Any, params: Mapping[str, Any], base: Plan, seed: int, options: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, str | None]:
    if base.nodes and all(n.spec.enumerates for n in base.nodes):
        r = estimate(e, params, n=2, seed=seed, **options)
        return dict(r.grad), "enumeration"
    try:
        from .testing.oracle import exact
    except ImportError:
        return None, None
    try:
        found = exact(e, params, timeout=10.0)
    except Exception:  # noqa: BLE001 -- the oracle is optional; any failure means "no exact value"
        return None, None
    return (dict(found.grad), f"SymPy: {found.formula}") if found is not None else (None, None)
