"""The figure of a :class:`stochgrad.compare.Comparison`: gradients side by side and error against n.

Top row: each estimator's gradient (the repeated runs' distribution as violins, the long run's mean
± 2 standard errors).  Bottom row: root-mean-square error against n, predicted from the long run as
``sqrt(bias^2 + variance / n)`` (Mohamed et al. 2020, section 3: an estimator's mean squared error is
its squared bias plus its variance over n) and measured from the repeated runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .compare import Comparison


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
