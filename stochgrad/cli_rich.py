"""The command line's terminal drawing, through `rich <https://rich.readthedocs.io>`_.

:func:`progress_bar` is the ``--progress`` bar of ``stochgrad estimate`` (a :class:`rich.progress.Progress`
fed by :func:`stochgrad.estimate`'s ``progress(done, total)`` callback); :func:`compare_table` draws
``stochgrad compare``'s table when standard output is a terminal (piped output keeps the plain
columns of :meth:`stochgrad.compare.Comparison.table`, which scripts and ``grep`` read).

rich is a core dependency (pure Python).  Without it (an install with ``--no-deps``) both degrade:
no bar (:func:`progress_bar` yields None) and the plain table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


def have_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def progress_bar(stream: Any) -> Iterator[Callable[[int, int], None] | None]:
    """A ``progress(done, total)`` callback drawing a bar on ``stream``, stopped on leaving the block
    (also when the run fails); None without rich."""
    if not have_rich():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("sampling"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TextColumn("samples"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(file=stream),
        refresh_per_second=10,
    )
    task: list[Any] = []

    def update(done: int, total: int) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task("sampling", total=total))
        bar.update(task[0], completed=done, total=total)

    try:
        yield update
    finally:
        if task:
            bar.refresh()
            bar.stop()


def _num(x: Any) -> str:
    a = np.asarray(x, dtype=float)
    return f"{float(a):.4g}" if a.ndim == 0 else np.array2string(a, precision=3)


def compare_table(c: Any) -> Any:
    """``stochgrad compare``'s table as a :class:`rich.table.Table` (the columns of ``Comparison.table``)."""
    from rich.table import Table

    from .compare import _z

    names = sorted(c.rows[0].grad) if c.rows else []
    t = Table(title=None, show_lines=False, header_style="bold")
    t.add_column("node")
    t.add_column("estimator", overflow="fold")
    t.add_column("unbiased")
    for k in names:
        t.add_column(f"d/d{k}", justify="right")
        t.add_column("var/sample", justify="right")
        t.add_column("bias (z)", justify="right")
    t.add_column("s/sample", justify="right")
    for r in c.rows:
        cells = [r.var, r.estimator, "yes" if r.unbiased else "[red]no[/red]"]
        for k in names:
            bias = "-" if r.bias is None else f"{_num(r.bias[k])} ({_z(r.bias[k], r.stderr[k], r.grad[k])})"
            cells += [f"{_num(r.grad[k])} ± {_num(r.stderr[k])}", _num(r.variance[k]), bias]
        t.add_row(*cells, f"{r.seconds_per_sample:.2e}")
    caption = []
    if c.exact is not None:
        caption.append(f"exact ({c.exact_source}): " + ", ".join(f"d/d{k} = {_num(v)}" for k, v in c.exact.items()))
    caption += c.not_run_lines()
    if caption:
        t.caption = "\n".join(caption)
        t.caption_justify = "left"
    return t


def print_compare(c: Any, plain: Callable[[str], Any], terminal: bool) -> None:
    """The table: drawn by rich on a terminal, else (or without rich) as plain columns."""
    if terminal and have_rich():
        from rich.console import Console

        Console().print(compare_table(c))
    else:
        plain(c.table())
