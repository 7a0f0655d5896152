"""Planning cost against expression size: parse, plan, and lower (one estimate at n=16).

Four families, each at 10, 100, 1,000 and 10,000 nodes (terms or bindings):

* ``chain``: ``E[z0 + ... + z{k-1}, z0 ~ Normal(mu, 1), z1 ~ Normal(z0, 1), ...]``
* ``independent``: the same body, every ``zi ~ Normal(mu, 1)``
* ``flat sum``: ``E[z*z + z*z + ... , z ~ Normal(mu, 1)]``
* ``long text``: ``x + x + ... + x`` (parse only; 10,000 terms is 40,000 characters), then the
  longest text accepted (``parser.MAX_LENGTH`` characters, 25,000 terms)

The first three are built in Python (``sg.E``, ``functools.reduce``: stage ``build``), since the
text of 10,000 bindings is longer than the parser accepts; ``long text`` times the parser.

Prints seconds per stage and the ratio to the previous size (10x the nodes: a ratio near
10 is linear, near 100 quadratic).  The machine's load is logged first (``uptime``).

    python benchmarks/bench_planning.py [--max 10000]
"""

from __future__ import annotations

import argparse
import functools
import operator
import subprocess
import time
from collections.abc import Callable
from typing import Any

import stochgrad as sg
from stochgrad import parser


def chain(k: int) -> sg.Expr:
    mu, zs = sg.symbols("mu"), [sg.symbols(f"z{i}") for i in range(k)]
    binds = {"z0": sg.Normal(mu, 1), **{f"z{i}": sg.Normal(zs[i - 1], 1) for i in range(1, k)}}
    return sg.E(functools.reduce(operator.add, zs), **binds)


def independent(k: int) -> sg.Expr:
    mu, zs = sg.symbols("mu"), [sg.symbols(f"z{i}") for i in range(k)]
    return sg.E(functools.reduce(operator.add, zs), **{f"z{i}": sg.Normal(mu, 1) for i in range(k)})


def flat_sum(k: int) -> sg.Expr:
    mu, z = sg.symbols("mu z")
    return sg.E(functools.reduce(operator.add, [z * z] * k), z=sg.Normal(mu, 1))


BUILD = {"chain": chain, "independent": independent, "flat sum": flat_sum}


def timed(f: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


def run(family: str, k: int) -> dict[str, float]:
    parser._parse.cache_clear()
    sg.planner._plan_cached.cache_clear()
    if family == "long text":
        t, _ = timed(lambda: sg.parse(" + ".join(["x"] * k)))
        return {"parse": t}
    t, e = timed(lambda: BUILD[family](k))
    out = {"build": t}
    out["plan"], _ = timed(lambda: sg.plan(e))
    out["estimate"], _ = timed(lambda: sg.estimate(e, {"mu": 0.5}, n=16, seed=0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max", type=int, default=10_000)
    args = ap.parse_args()
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    sg.estimate("E[z, z ~ Normal(mu, 1)]", {"mu": 0.0}, n=16, seed=0)  # imports and caches, untimed
    sizes = [k for k in (10, 100, 1_000, 10_000) if k <= args.max]
    print(f"{'family':<12} {'nodes':>6} {'stage':<9} {'seconds':>9} {'ratio':>7}")
    for family in ("chain", "independent", "flat sum", "long text"):
        previous: dict[str, float] = {}
        for k in sizes:
            for stage, t in run(family, k).items():
                ratio = f"{t / previous[stage]:7.1f}" if stage in previous and previous[stage] > 0 else "       "
                print(f"{family:<12} {k:>6} {stage:<9} {t:9.4f} {ratio}", flush=True)
                previous[stage] = t
    text = " + ".join(["x"] * (parser.MAX_LENGTH // 4 + 1))[: parser.MAX_LENGTH].rstrip(" +")
    t, _ = timed(lambda: sg.parse(text))
    print(f"{'longest':<12} {len(text):>6} {'parse':<9} {t:9.4f}   ({len(text)} characters)")


if __name__ == "__main__":
    main()
