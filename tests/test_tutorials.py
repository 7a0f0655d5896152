"""The tutorial pages in docs/tutorials/ run: every executed code block, in order, per session.

The docs site builds these pages with the markdown-exec plugin, which runs each fenced block
marked ``exec="on"`` and puts its output in the page; blocks sharing a ``session`` share one
namespace, a block without one gets a fresh namespace.  This test does the same without mkdocs,
so a page whose code breaks (an API change, a number that drifted out of an ``assert``) fails the
test suite.  The code run is the project's own documentation source, never user input.
"""

from __future__ import annotations

import contextlib
import io
import re
import textwrap
from pathlib import Path

import pytest

PAGES = sorted((Path(__file__).resolve().parent.parent / "docs" / "tutorials").glob("[0-9][0-9]-*.md"))
FENCE = re.compile(r"^(?P<indent>[ \t]*)```+python[ \t]+(?P<attrs>[^\n]*)$")
TRUE = {"on", "1", "true", "yes"}


def executed_blocks(path: Path) -> list[tuple[int, str | None, str]]:
    """(line number, session or None, code) of each ``python exec="on"`` block of a page, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        attrs = dict(re.findall(r'(\w+)="([^"]*)"', m["attrs"]))
        start, body = i + 1, []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        i += 1
        if attrs.get("exec", "").lower() in TRUE:
            blocks.append((start, attrs.get("session"), textwrap.dedent("\n".join(body))))
    return blocks


def test_every_page_is_found() -> None:
    names = [p.name for p in PAGES]
    assert names == ["01-naive-vs-reparameterization.md", "02-vae-elbo.md", "03-straight-through-bias.md",
                     "04-gumbel-softmax.md", "05-reinforce-variance.md"]
    assert all(executed_blocks(p) for p in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_page_executes(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPLBACKEND", "Agg")
    torch = pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    threads = torch.get_num_threads()  # pages set one thread for their tiny models: the suite must not inherit it
    try:
        _run_page(page)
    finally:
        torch.set_num_threads(threads)


def _run_page(page: Path) -> None:
    sessions: dict[str | None, dict] = {}
    for line, session, code in executed_blocks(page):
        namespace = sessions.setdefault(session, {"__name__": "__main__"}) if session else {"__name__": "__main__"}
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"{page.name}:{line}", "exec"), namespace)  # the page's own code
        except Exception as e:  # pragma: no cover - the message is the point
            raise AssertionError(f"{page.name}, block at line {line} failed: {e!r}\noutput so far:\n{out.getvalue()}") from e
        assert out.getvalue().strip(), f"{page.name}, block at line {line} printed nothing: the page would show no output"
