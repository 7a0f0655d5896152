"""mkdocs hook: the docs' reference tables, generated from stochgrad's own tables so they cannot drift.

A page writes a marker on a line of its own and the hook replaces it at build time:

* ``<!-- sg:functions -->``: the DSL's function table (:data:`stochgrad.functions.FUNCTIONS`);
* ``<!-- sg:distributions -->``: the distribution registry (:data:`stochgrad.distributions.DISTRIBUTIONS`);
* ``<!-- sg:estimators -->`` and ``<!-- sg:estimator-details -->``: the estimator registry
  (:data:`stochgrad.estimators.ESTIMATORS`), its facts and each estimator module's docstring;
* ``<!-- sg:rules -->``: the planner's rule table (:data:`stochgrad.planner.RULES`);
* ``<!-- sg:kl-pairs -->``: the closed-form KL pairs (:data:`stochgrad.kl.KL_FORMULAS`);
* ``<!-- sg:primitives -->``: the primitives a backend supplies (:data:`stochgrad.backend.PRIMITIVES`);
* ``<!-- sg:grammar -->``: the lark grammar the parser reads (``stochgrad/grammar.lark``);
* ``<!-- sg:include PATH -->``: a file of the repository (the changelog), verbatim.

It also drops the reStructuredText role prefixes (``:func:``) that docstrings carry from the API pages.

An unknown marker fails the build, as does a registry that cannot be imported.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^<!-- sg:([a-z-]+)(?: ([^ ]+))? -->$", re.M)


def _stochgrad() -> Any:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("stochgrad")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def rst_to_md(text: str) -> str:
    """A module docstring's reStructuredText roles and literals as Markdown."""
    text = re.sub(r":(?:mod|func|class|data|attr|meth):`~?([^`]+)`", lambda m: f"`{m.group(1).lstrip('.')}`", text)
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    return text


def functions() -> str:
    from stochgrad.functions import FUNCTIONS

    rows = ["| function | arguments | differentiable in | options | what it computes |", "|---|---|---|---|---|"]
    for f in FUNCTIONS.values():
        diff = [p for p, d in zip(f.params, f.differentiable_in) if d]
        rows.append(f"| `{f.name}` | `{', '.join(f.params)}` | {', '.join(f'`{p}`' for p in diff) or '— (not differentiable)'}"
                    f" | {', '.join(f'`{o}=`' for o in f.options) or ''} | {_cell(f.doc)} |")
    return "\n".join(rows)


def distributions() -> str:
    from stochgrad.distributions import DISTRIBUTIONS

    rows = ["| distribution | parameterizations | constraints | gradient route | description |", "|---|---|---|---|---|"]
    for name, d in DISTRIBUTIONS.items():
        forms = " or ".join(f"`{name}({', '.join(f)})`" for f in d.forms())
        cons = "; ".join(f"`{p.name}`: {_cell(p.constraint.text)}" for p in d.params)
        if d.reparameterized:
            route = "pathwise" + (f" (needs backend capability {', '.join(f'`{c}`' for c in sorted(d.needs))})"
                                  if d.needs else "")
        else:
            route = "discrete: score function, enumeration" + (", relaxations" if d.relaxable else "")
        rows.append(f"| `{name}` | {forms} | {cons} | {route} | {_cell(d.doc)} |")
    return "\n".join(rows)


def _facts(cls: Any) -> str:
    facts = [f for f in ("scores", "through_sample", "pathwise", "enumerates", "piloted", "paired", "stateful")
             if getattr(cls, f, False)]
    return ", ".join(f"`{f}`" for f in facts)


def _first_sentence(doc: str | None) -> str:
    doc = " ".join((doc or "").split())
    m = re.match(r"(.+?[.:])(\s|$)", doc)
    return rst_to_md(m.group(1) if m else doc)


def estimators() -> str:
    from stochgrad.estimators import ESTIMATORS

    rows = ["| name | class | bias | derivative orders | facts | options | what it does |", "|---|---|---|---|---|---|---|"]
    for name, cls in ESTIMATORS.items():
        bias = "**biased**" if cls.biased_by_construction else "unbiased"
        orders = "first only" if getattr(cls, "orders", None) == 1 else "every order"
        opts = ", ".join(f"`{f.name}`" for f in dataclasses.fields(cls))
        rows.append(f"| [`{name}`](estimators.md#estimator-{name}) | `sg.estimators.{cls.__name__}` | {bias} | {orders} | {_facts(cls)}"
                    f" | {opts} | {_cell(_first_sentence(cls.__doc__))} |")
    return "\n".join(rows)


def estimator_details() -> str:
    from stochgrad.estimators import ESTIMATORS

    out = []
    seen: set[str] = set()
    for name, cls in ESTIMATORS.items():
        module = sys.modules[cls.__module__]
        out.append(f"### `{name}` {{ #estimator-{name} }}\n")
        out.append(f"Class `{cls.__module__}.{cls.__name__}`; options {', '.join(f'`{f.name}`' for f in dataclasses.fields(cls)) or 'none'}.\n")
        if cls.__doc__:
            out.append(rst_to_md(" ".join(cls.__doc__.split())) + "\n")
        if cls.__module__ in seen:
            out.append(f"(Same module as above: `{cls.__module__}`.)\n")
        elif module.__doc__:
            seen.add(cls.__module__)
            out.append(f"From the module `{cls.__module__}`:\n")
            out.append("\n".join("> " + line if line.strip() else ">" for line in rst_to_md(module.__doc__.strip()).splitlines()) + "\n")
    return "\n".join(out)


def rules() -> str:
    from stochgrad.planner import RULES

    rows = ["| rule | estimator | reason the plan prints |", "|---|---|---|"]
    for i, r in enumerate(RULES, 1):
        rows.append(f"| {i} | `{r.spec.name}` | `{_cell(r.reason)}` |")  # code: attr_list would eat a final {var}
    return "\n".join(rows)


def kl_pairs() -> str:
    from stochgrad.kl import KL_FORMULAS

    return ", ".join(f"`KL({p} || {q})`" for p, q in KL_FORMULAS)


def primitives() -> str:
    from stochgrad.backend import PRIMITIVES

    return ", ".join(f"`{p}`" for p in sorted(PRIMITIVES))


def grammar() -> str:
    return "```\n" + (ROOT / "stochgrad" / "grammar.lark").read_text() + "```"


def include(path: str) -> str:
    return (ROOT / path).read_text()


GENERATORS = {"functions": functions, "distributions": distributions, "estimators": estimators,
              "estimator-details": estimator_details, "rules": rules, "kl-pairs": kl_pairs,
              "primitives": primitives, "grammar": grammar}


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if "<!-- sg:" not in markdown:
        return markdown
    _stochgrad()

    def replace(m: re.Match[str]) -> str:
        kind, arg = m.group(1), m.group(2)
        if kind == "include" and arg:
            return include(arg)
        if kind not in GENERATORS or arg:
            raise ValueError(f"{page.file.src_path}: unknown stochgrad docs marker {m.group(0)!r}")
        return GENERATORS[kind]()

    return MARKER.sub(replace, markdown)


ROLE = re.compile(r":(?:func|class|mod|data|attr|meth|exc|obj):(<code>)~?")


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Docstrings use reStructuredText roles (``:func:`x```); mkdocstrings renders them as a literal
    ``:func:`` before the code, which this drops (with the ``~`` of a shortened path)."""
    return ROLE.sub(r"\1", html)
