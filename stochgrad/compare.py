"""``compare``: every estimator that applies to each random node, measured side by side.

For each random node and each estimator that applies to it (the others keep their
planned estimators), one run of :func:`stochgrad.estimate` gives the gradient mean,
its standard error, the variance per sample (``stderr**2 * n``), the time per sample,
and -- where an exact gradient is known, from the SymPy oracle or from a plan that is
exact (every node enumerated) -- the bias ``mean - exact`` with its z-score.  This is
the reference text's walk through naive sampling, reparameterization,
straight-through, Gumbel-softmax and REINFORCE, in one call.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .api import as_expression, estimate
from .backend import get_backend
from .distributions import joint_states, lookup
from .estimators import (
    Detached, Enumerate, EstimatorSpec, Pathwise, Relaxed, Score, StraightThrough, StraightThroughGumbel,
)
from .planner import Plan, plan


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


@dataclass(frozen=True)
class Comparison:
    expr: Any
    n: int
    backend: str
    exact: dict[str, Any] | None
    exact_source: str | None
    rows: tuple[Row, ...]

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
                    z = _z(r.bias[k], r.stderr[k])
                    line += f"{_num(r.bias[k]) + ' (' + z + ')':>18}"
            lines.append(line + f"{r.seconds_per_sample:>11.2e}")
        if self.exact is not None:
            lines.append("exact (" + str(self.exact_source) + "): "
                         + ", ".join(f"d/d{k} = {_num(v)}" for k, v in self.exact.items()))
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        def js(x: Any) -> Any:
            return None if x is None else {k: np.asarray(v).tolist() for k, v in x.items()}

        return {"n": self.n, "backend": self.backend, "exact": js(self.exact), "exact_source": self.exact_source,
                "rows": [{"var": r.var, "estimator": r.estimator, "unbiased": r.unbiased, "grad": js(r.grad),
                          "stderr": js(r.stderr), "variance_per_sample": js(r.variance), "bias": js(r.bias),
                          "seconds_per_sample": r.seconds_per_sample} for r in self.rows]}


def _num(x: Any) -> str:
    a = np.asarray(x, dtype=float)
    return f"{float(a):.4g}" if a.ndim == 0 else np.array2string(a, precision=3)


def _z(bias: Any, se: Any) -> str:
    b, s = np.asarray(bias, dtype=float), np.asarray(se, dtype=float)
    if b.ndim or s.ndim:
        return "-"
    return "exact" if s == 0 and b == 0 else (f"{b / s:+.1f}" if s > 0 else "inf")


def candidates(p: Plan, var: str, temperatures: Sequence[float]) -> list[EstimatorSpec]:
    """Every estimator that applies to node ``var`` of plan ``p``."""
    node = p.node(var)
    d = lookup(node.dist.name)
    out: list[EstimatorSpec] = [Detached()]
    if d.reparameterized:
        out.append(Pathwise())
    out += [Score(), Score(baseline=None)]
    if joint_states(d, node.dist, node.shape) is not None:
        out.append(Enumerate())
    if d.relaxable:
        out += [Relaxed(temperature=t) for t in temperatures]
        out += [StraightThrough(), StraightThroughGumbel()]
    return out


def compare(
    expr: Any,
    params: Mapping[str, Any],
    *,
    n: int = 10_000,
    backend: Any = None,
    seed: int = 0,
    temperatures: Sequence[float] = (0.1, 0.5, 1.0),
    **options: Any,
) -> Comparison:
    """Run every applicable estimator for every random node; see the module docstring."""
    e = as_expression(expr)
    shapes = {k: np.shape(v) for k, v in params.items()}
    base = plan(e, shapes=shapes)
    exact, source = _exact(e, params, base, backend, seed, **options)
    rows = []
    for node in base.nodes:
        for spec in candidates(base, node.var, temperatures):
            estimate(e, params, n=min(n, 64), backend=backend, seed=seed, estimators={node.var: spec}, **options)
            t0 = time.perf_counter()
            r = estimate(e, params, n=n, backend=backend, seed=seed, estimators={node.var: spec}, **options)
            seconds = (time.perf_counter() - t0) / n
            variance = {k: np.asarray(r.stderr[k]) ** 2 * n for k in r.grad}
            bias = None if exact is None else {k: np.asarray(r.grad[k]) - exact[k] for k in r.grad}
            rows.append(Row(node.var, spec.describe(), not r.plan.node(node.var).biased, dict(r.grad),
                            dict(r.stderr), variance, bias, seconds))
    name = get_backend(backend, **{k: v for k, v in options.items() if k in ("device", "dtype")}).name
    return Comparison(e, n, name, exact, source, tuple(rows))


def _exact(e: Any, params: Mapping[str, Any], base: Plan, backend: Any, seed: int,
           **options: Any) -> tuple[dict[str, Any] | None, str | None]:
    if base.nodes and all(n.spec.enumerates for n in base.nodes):
        r = estimate(e, params, n=2, backend=backend, seed=seed, **options)
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
    """Write a PNG: each estimator's gradient (mean ± 2 standard errors) per parameter, and its
    root-mean-square error against n, sqrt(bias^2 + variance / n), from the measured variance and,
    for the biased estimators, the measured bias (an exact estimator has no line: its error is 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in sorted(c.rows[0].grad) if np.ndim(c.rows[0].grad[k]) == 0]
    fig, axes = plt.subplots(2, max(1, len(names)), figsize=(6 * max(1, len(names)), 9), squeeze=False)
    labels = [f"{r.var}: {r.estimator}" for r in c.rows]
    ns = np.logspace(1, 7, 50)
    for j, k in enumerate(names):
        ax = axes[0][j]
        means = [float(r.grad[k]) for r in c.rows]
        errs = [2 * float(r.stderr[k]) for r in c.rows]
        ax.errorbar(means, range(len(c.rows)), xerr=errs, fmt="o")
        if c.exact is not None:
            ax.axvline(float(c.exact[k]), color="k", linestyle="--", label="exact")
            ax.legend()
        ax.set_yticks(range(len(c.rows)), labels, fontsize=8)
        ax.set_title(f"d/d{k}: mean ± 2 s.e. (n = {c.n})")
        ax = axes[1][j]
        for r, label in zip(c.rows, labels):
            bias = 0.0 if r.bias is None or r.unbiased else float(r.bias[k])
            ax.loglog(ns, np.sqrt(bias**2 + float(r.variance[k]) / ns), label=label)
        ax.set_xlabel("n (samples)")
        ax.set_ylabel("RMS error" if c.exact is not None else "standard error (bias unknown)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
