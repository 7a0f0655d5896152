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
from .distributions import joint_states, lookup
from .errors import PlanError, ValidationError
from .estimators import EstimatorSpec, applicable
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
    """

    expr: Any
    n: int
    backend: str
    exact: dict[str, Any] | None
    exact_source: str | None
    rows: tuple[Row, ...]
    seed: int | None = None  # the seed every estimator ran with (compare(seed=None) draws one)

    def __repr__(self) -> str:  # one line, not every row's arrays
        return (
            f"<Comparison {short(str(self.expr), 60)}: {len(self.rows)} estimator runs, n={self.n}, {self.backend},"
            f" exact from {self.exact_source or 'nowhere'}>"
        )

    def table(self) -> str:
        names = sorted(self.rows[0].grad) if self.rows else []
        head = f"{'node':<6}{'estimator':<44}{'unbiased':<10}"
        head += "".join(f"{'d/d' + k:>24}{'var/sample':>12}{'bias (z)':>18}" for k in names) + f"{'s/sample':>11}"
        lines = [head]
        for r in self.rows:
            line = f"{r.var:<6}{r.estimator:<44}{'yes' if r.unbiased else 'no':<10}"
            for k in names:
                line += f"{_num(r.grad[k]) + ' ± ' + _num(r.stderr[k]):>24}{_num(r.variance[k]):>12}"
                if r.bias is None:
                    line += f"{'-':>18}"
                else:
                    z = _z(r.bias[k], r.stderr[k], r.grad[k])
                    line += f"{_num(r.bias[k]) + ' (' + z + ')':>18}"
            lines.append(line + f"{r.seconds_per_sample:>11.2e}")
        if self.exact is not None:
            lines.append(
                "exact ("
                + str(self.exact_source)
                + "): "
                + ", ".join(f"d/d{k} = {_num(v)}" for k, v in self.exact.items())
            )
        return "\n".join(lines)

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
    p: Plan, var: str, temperatures: Sequence[float], capabilities: frozenset[str] | None = None
) -> list[EstimatorSpec]:
    """Every registered estimator that applies to node ``var`` of plan ``p`` and is ``compared``,
    in each of its variants (``temperatures`` for the relaxation), in registry order."""
    node = p.node(var)
    d = lookup(node.dist.name)
    found = applicable(d, states=joint_states(d, node.dist, node.shape), capabilities=capabilities)
    return [v for spec in found if spec.compared for v in spec.variants(temperatures=temperatures)]


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

    Returns:
        A :class:`Comparison`: one row per estimator and node, printable as a table.

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
    rows = []
    for node in base.nodes:
        for spec in candidates(base, node.var, temperatures):
            try:
                estimate(e, params, n=min(n, 64), seed=seed, estimators={node.var: spec}, **options)
            except PlanError:  # it refuses this node's expectation (e.g. needs to be its only random node)
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
    return Comparison(e, n, B.name, exact, source, tuple(rows), seed)


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


def plot(c: Comparison, path: str) -> None:
    """Write a PNG, one column per scalar parameter (:func:`figure`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = figure(c)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def figure(c: Comparison) -> Any:
    """The comparison's matplotlib figure, one column per scalar parameter.  Top: each estimator's
    gradient -- the distribution of the repeated runs at the largest repeated size (violins; a bar
    where they all agree) when there are any, and the long run's mean ± 2 standard errors.  Bottom:
    root-mean-square error against n, predicted as sqrt(bias^2 + variance / n) from the long run (an
    exact estimator has no line: its error is 0), and measured from the repeated runs (dots).  Every
    panel has both axis labels; one legend for the whole figure sits below the panels, outside
    them (constrained layout makes room), so it covers no data."""
    import matplotlib.pyplot as plt

    names = [k for k in sorted(c.rows[0].grad) if np.ndim(c.rows[0].grad[k]) == 0]
    cols = max(1, len(names))
    labels = [f"{r.var}: {r.estimator}" for r in c.rows]  # in full in the legend, cut on the axis
    ticks = [label if len(label) <= 40 else label[:39] + "\u2026" for label in labels]
    fig, axes = plt.subplots(2, cols, figsize=(8.5 * cols, 9 + 0.16 * len(c.rows)), squeeze=False, layout="constrained")
    sizes = sorted(c.rows[0].runs)
    ns = np.logspace(1, 7, 50)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, k in enumerate(names):
        ax = axes[0][j]
        title = f"d/d{k}: n = {c.n} run, mean ± 2 s.e."
        if sizes:
            at = sizes[-1]
            runs = [r.runs[at][k] for r in c.rows]
            spread = [i for i, g in enumerate(runs) if np.ptp(g) > 1e-12 * max(1.0, np.abs(g).max())]
            if spread:
                ax.violinplot([runs[i] for i in spread], positions=spread, orientation="horizontal", showextrema=False)
            flat = [i for i in range(len(runs)) if i not in spread]
            ax.plot([runs[i][0] for i in flat], flat, "|", markersize=14, color="C0")
            title = f"d/d{k}: {len(runs[0])} runs of n = {at} (violins)\nn = {c.n} run: mean ± 2 s.e."
        ax.errorbar(
            [float(r.grad[k]) for r in c.rows],
            range(len(c.rows)),
            xerr=[2 * float(r.stderr[k]) for r in c.rows],
            fmt="o",
            color="k",
            label=f"n = {c.n} run: mean ± 2 s.e.",
        )
        if c.exact is not None:
            ax.axvline(float(c.exact[k]), color="k", linestyle="--", label=f"exact ({str(c.exact_source)[:40]})")
        ax.set_yticks(range(len(c.rows)), ticks, fontsize=8)
        ax.set_xlabel(f"gradient estimate d/d{k}")
        ax.set_ylabel("estimator")
        ax.set_title(title, fontsize=9)
        ax = axes[1][j]
        for i, (r, label) in enumerate(zip(c.rows, labels)):
            colour = colours[i % len(colours)]
            bias = 0.0 if r.bias is None or r.unbiased else float(r.bias[k])
            if bias == 0.0 and float(r.variance[k]) == 0.0:  # exact: no point on a log scale, so say so
                label += " (exact: error 0, not drawn)"
            ax.loglog(ns, np.sqrt(bias**2 + float(r.variance[k]) / ns), label=label, color=colour)
            if sizes:
                measured = [float(r.measured_error(m, c.exact)[k]) for m in sizes]
                ax.loglog(sizes, measured, "o", color=colour, markersize=4)
        ax.set_xlabel("n (samples)")
        ax.set_ylabel(f"d/d{k}: " + ("RMS error" if c.exact is not None else "standard error (bias unknown)"))
        ax.set_title(
            "lines: predicted from the long run" + ("\ndots: measured from the repeated runs" if sizes else ""),
            fontsize=9,
        )
    handles: dict[str, Any] = {}
    for ax in (axes[0][0], axes[1][0]):  # every column has the same entries
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=cols, fontsize=7)
    return fig
