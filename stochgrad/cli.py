"""Command line: ``stochgrad estimate`` and ``stochgrad plan``.

    stochgrad estimate "E[z**2, z ~ Normal(mu, sigma)]" --at mu=12 --at sigma=42 -n 100000
    stochgrad plan "E[z > 0, z ~ Normal(mu, 1)]" --estimator z=score

Values after ``--at`` are numbers or JSON arrays (``--at mu=[1,2,3]``); they are
read as data, never evaluated.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from .api import estimate
from .backend import available_backends
from .errors import StochgradError
from .planner import plan


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _value(name: str, text: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise StochgradError(f"--at {name}={text}: the value must be a number or a JSON array such as [1, 2]") from None
    if isinstance(value, bool) or not isinstance(value, (int, float, list)):
        raise StochgradError(f"--at {name}={text}: the value must be a number or a JSON array such as [1, 2]")
    return np.asarray(value, dtype=float) if isinstance(value, list) else float(value)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="stochgrad", description="Gradients of expectations, written as a DSL.")
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("expression", help='DSL text, e.g. "E[z**2, z ~ Normal(mu, sigma)]"')
        p.add_argument("--estimator", "-e", action="append", type=_assignment, default=[], metavar="VAR=NAME",
                       help="override the estimator of a random variable (pathwise, score)")

    p_plan = sub.add_parser("plan", help="show the estimator chosen for each random node, and why")
    common(p_plan)
    p_est = sub.add_parser("estimate", help="estimate the expectation and its gradient")
    common(p_est)
    p_est.add_argument("--at", action="append", type=_assignment, default=[], metavar="NAME=VALUE",
                       help="parameter value (number or JSON array); repeat for each parameter")
    p_est.add_argument("-n", "--samples", type=int, default=10_000, help="number of samples (default 10000)")
    p_est.add_argument("--backend", "-b", default=None, choices=available_backends(),
                       help="autograd or torch (default: $STOCHGRAD_BACKEND, else autograd)")
    p_est.add_argument("--seed", type=int, default=None, help="random seed (default: fresh; printed)")
    p_est.add_argument("--chunk-size", type=int, default=None, help="samples held in memory at once")
    p_est.add_argument("--json", action="store_true", help="print the result as JSON")
    return ap


def _jsonable(x: Any) -> Any:
    return np.asarray(x).tolist()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = dict(args.estimator)
    try:
        if args.command == "plan":
            print(plan(args.expression, overrides))
            return 0
        params = {k: _value(k, v) for k, v in args.at}
        r = estimate(args.expression, params, n=args.samples, backend=args.backend, seed=args.seed,
                     estimators=overrides, chunk_size=args.chunk_size)
    except StochgradError as exc:
        print(f"stochgrad: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({
            "expression": args.expression, "n": r.n, "backend": r.backend, "seed": r.seed,
            "value": _jsonable(r.value), "value_stderr": _jsonable(r.value_stderr),
            "grad": {k: _jsonable(v) for k, v in r.grad.items()},
            "stderr": {k: _jsonable(v) for k, v in r.stderr.items()},
            "plan": [{"var": nd.var, "estimator": nd.estimator, "reason": nd.reason, "biased": nd.biased}
                     for nd in r.plan.nodes],
        }, indent=2))
        return 0
    print(f"{args.expression}   (n={r.n}, backend={r.backend}, seed={r.seed})")
    print(r)
    print("plan:")
    print("  " + str(r.plan).replace("\n", "\n  "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
