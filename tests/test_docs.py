"""The documentation site builds with ``mkdocs build --strict`` and its generated reference is complete.

The build (mkdocs-material, mkdocstrings, markdown-exec; the ``docs`` and ``test`` extras) runs once
per session into a temporary directory; a warning (a broken link, a page missing from the nav, a
docstring mkdocstrings cannot render) fails it, and the test shows the build's output.  The
reference pages are generated from the code's registries by ``docs/hooks/stochgrad_tables.py``, so
the second test checks that every registered function, distribution and estimator appears in the
built pages: a hook that silently dropped rows would fail it.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "markdown_exec")


def _missing() -> list[str]:
    out = []
    for name in NEEDED:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            out.append(name)
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = _missing()
    if missing:
        message = f"the docs extra is not installed ({', '.join(missing)}): pip install -e '.[docs]'"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs the test extra, which includes it
        pytest.skip(message)
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               NO_MKDOCS_2_WARNING="1")
    try:  # no -q: mkdocs counts strict-mode warnings only as they are logged, and -q silences them
        proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"mkdocs build --strict did not finish in {e.timeout} s:\n{e.stdout or ''}{e.stderr or ''}")
    if proc.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return out


def _text(page: Path) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.read_text())))


def test_docs_build_strict(site: Path) -> None:
    for page in ("index.html", "getting-started/index.html", "dsl-reference/index.html", "estimators/index.html",
                 "api/index.html", "performance/index.html", "comparison/index.html"):
        assert (site / page).is_file(), f"{page} was not built"


def test_generated_reference_lists_every_registered_name(site: Path) -> None:
    from stochgrad.distributions import DISTRIBUTIONS
    from stochgrad.estimators import ESTIMATORS
    from stochgrad.functions import FUNCTIONS
    from stochgrad.planner import RULES

    reference = _text(site / "dsl-reference" / "index.html")
    for kind, names in (("function", FUNCTIONS), ("distribution", DISTRIBUTIONS), ("estimator", ESTIMATORS)):
        absent = [n for n in names if not re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", reference)]
        assert not absent, f"the DSL reference lacks the {kind}(s) {absent}"
    for rule in RULES:
        assert " ".join(rule.reason.split()) in reference, f"planner rule {rule.reason!r} missing from the reference"
    api = _text(site / "api" / "index.html")
    for name in ("estimate", "plan", "compile", "compare", "Estimate", "Plan", "Score", "Relax", "Rebar",
                 "assert_estimate", "StochgradError"):
        assert re.search(rf"(?<![\w]){name}(?![\w])", api), f"the API reference lacks {name}"
