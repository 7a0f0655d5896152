"""Short ``repr`` for the objects people look at in a REPL: expressions, plans and estimates.

The dataclasses' generated ``repr`` prints the whole tree (a plan of a one-line expression runs to
some 1,500 characters); these print one line instead, and leave ``str`` alone (an expression's
``str`` is its DSL text, ``parse(str(e)) == e``; a plan's and an estimate's ``str`` are their
readable forms).  Equality and hashing are untouched: only ``__repr__`` is replaced.

    >>> sg.parse("E[z**2, z ~ Normal(mu, sigma)]")
    Expr('E[z ** 2, z ~ Normal(mu, sigma)]')
    >>> sg.estimate(...)
    <Estimate value=1908 ± 8.5, grad mu=23.97 ± 0.27, sigma=84.01 ± 0.38, n=100000, autograd>
    >>> sg.plan(...)
    <Plan E[z ** 2, z ~ Normal(mu, sigma)]: z=pathwise; policy unbiased, backend autograd>
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: the longest expression text shown whole in a repr; longer ones are cut with an ellipsis
LIMIT = 100
#: gradients named in an estimate's repr (the others counted)
SHOWN = 4


def short(text: str, limit: int = LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def clipped(e: Any, limit: int = 60) -> str:
    """An expression's text for a plan line or a reason: whole up to ``limit`` characters, else cut with "..."."""
    text = str(e)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def expr_repr(e: Any) -> str:
    """``Expr('<DSL text>')`` (cut at :data:`LIMIT` characters)."""
    return f"Expr({short(str(e))!r})"


def binding_repr(b: Any) -> str:
    return f"Binding({short(str(b))!r})"


def _number(x: float, digits: int) -> str:
    return f"{x:.{digits}g}"


def with_error(value: Any, se: Any, n: int) -> str:
    """``1908 ± 8.5`` (a scalar), ``1 (exact)`` (standard error 0), small arrays in full, larger ones by shape."""
    v, s = np.asarray(value, dtype=float), np.asarray(se, dtype=float)
    if v.ndim and n == 1:
        return f"{np.array2string(v, precision=4)} ± undefined" if v.size <= 3 else f"<array {v.shape}>"
    if v.ndim:
        if v.size > 3:
            return f"<array {v.shape}>"
        return f"{np.array2string(v, precision=4)} ± {np.array2string(s, precision=2)}"
    if n == 1 or not np.isfinite(s):
        return f"{_number(float(v), 4)} ± undefined"
    if s == 0:
        return f"{_number(float(v), 6)} (exact)"
    return f"{_number(float(v), 4)} ± {_number(float(s), 2)}"


def estimate_repr(r: Any) -> str:
    names = list(r.grad)
    grads = ", ".join(f"{k}={with_error(r.grad[k], r.stderr[k], r.n)}" for k in names[:SHOWN])
    if len(names) > SHOWN:
        grads += f", \u2026 ({len(names) - SHOWN} more)"
    grad = f", grad {grads}" if names else ""
    return f"<Estimate value={with_error(r.value, r.value_stderr, r.n)}{grad}, n={r.n}, {r.backend}>"


def plan_repr(p: Any) -> str:
    nodes = ", ".join(f"{n.var}={n.estimator}" for n in p.nodes) or "no random nodes"
    extra = []
    if getattr(p, "policy", None) is not None:
        extra.append(f"policy {p.policy}")
    backend = getattr(p, "backend", None)
    if backend is not None:
        extra.append(f"backend {backend.name}")
    tail = f"; {', '.join(extra)}" if extra else ""
    return f"<Plan {short(str(p.expr), 60)}: {nodes}{tail}>"
