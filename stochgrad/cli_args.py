"""The command line's arguments: the parser of ``stochgrad estimate | plan | compare`` (every option
with its help), ``--version``, and the readers of ``--at NAME=VALUE`` values (numbers or JSON arrays,
read as data, never evaluated).  :mod:`stochgrad.cli` runs the commands."""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from typing import Any, NoReturn

import numpy as np

from . import __version__
from .backend_registry import available_backends
from .cli_output import sample_count
from .errors import StochgradError
from .estimators import ESTIMATORS
from .planner import POLICIES


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _value(name: str, text: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = _loose_numbers(text)
        if value is None:
            raise StochgradError(
                f"--at {name}={text}: the value must be a number or a JSON array such as [1, 2]"
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float, list)):
        raise StochgradError(f"--at {name}={text}: the value must be a number or a JSON array such as [1, 2]")
    return np.asarray(value, dtype=float) if isinstance(value, list) else float(value)


def _loose_numbers(text: str) -> Any:
    """Numbers JSON rejects but people write: ``.5``, ``[.1, .2]``, ``1.``."""
    inner = text.strip()
    bracketed = inner.startswith("[") and inner.endswith("]")
    parts = inner[1:-1].split(",") if bracketed else [inner]
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        return None
    if any(p.strip().lower() in ("nan", "inf", "-inf", "infinity", "+inf") for p in parts):
        return None
    return numbers if bracketed else numbers[0]


class _UsageError(Exception):
    """An argparse error, raised instead of exiting, so that ``--json`` can answer it as JSON."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(self, message)


def _version() -> str:
    """``stochgrad X`` and the versions of the installed backends' frameworks (read from the installed
    packages' metadata, nothing imported).  stochgrad's own is ``stochgrad.__version__``, the single
    source that pyproject.toml reads too, so it is that of the code running even in a checkout."""
    found = []
    for dist in ("autograd", "scipy", "torch", "jax", "sympy", "rich"):
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return f"stochgrad {__version__} (python {sys.version.split()[0]}; {', '.join(found) or 'no optional packages'})"


class _Version(argparse.Action):
    """``--version``: one unwrapped line (argparse's own action wraps it to the terminal), read when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> NoReturn:
        print(_version())
        parser.exit()


def estimator_option(p: argparse.ArgumentParser, help: str) -> None:
    """``--estimator`` / ``-e VAR=NAME[:KEY=VALUE,...]``, repeatable."""
    p.add_argument("--estimator", "-e", action="append", type=_assignment, default=[], metavar="VAR=NAME", help=help)


def _parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="stochgrad", description="Gradients of expectations, written as a DSL.")
    ap.add_argument("--version", action=_Version, nargs=0, help="print the versions and exit")
    sub = ap.add_subparsers(dest="command", required=True)
    expression = 'DSL text, e.g. "E[z**2, z ~ Normal(mu, sigma)]"'
    at = "parameter value (number or JSON array); repeat for each parameter"
    count = "samples (a whole number: 10000, 100_000, 1e5)"

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("expression", help=expression)
        estimator_option(
            p,
            f"override a random variable's estimator: {', '.join(ESTIMATORS)};"
            " options as NAME:KEY=VALUE, e.g. y=relaxed:temperature=0.1 or z=score:baseline=none",
        )
        p.add_argument(
            "--policy",
            default="unbiased",
            choices=POLICIES,
            help="unbiased (default), low_variance (may relax discrete nodes) or min_variance (pilot runs: needs --at)",
        )
        p.add_argument("--at", action="append", type=_assignment, default=[], metavar="NAME=VALUE", help=at)

    def backend_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default=None, help="torch device, e.g. cuda or cuda:1 (default cpu)")
        p.add_argument(
            "--dtype",
            default=None,
            choices=("float64", "float32"),
            help="floating type of the computation (default float64)",
        )

    backends = f"{', '.join(available_backends())} (default: $STOCHGRAD_BACKEND, else autograd)"
    p_cmp = sub.add_parser("compare", help="run every applicable estimator for each random node, side by side")
    p_cmp.add_argument("expression", help=expression)
    p_cmp.add_argument("--at", action="append", type=_assignment, default=[], metavar="NAME=VALUE", help=at)
    p_cmp.add_argument(
        "-n", "--samples", type=sample_count, default=10_000, help=f"{count} per estimator (default 10000)"
    )
    p_cmp.add_argument("--backend", "-b", default=None, choices=available_backends(), help=backends)
    p_cmp.add_argument("--seed", type=int, default=None, help="random seed (default: fresh; printed)")
    p_cmp.add_argument(
        "--temperature",
        type=float,
        action="append",
        default=None,
        help="temperatures for the relaxed estimator (repeat; default 0.1, 0.5, 1)",
    )
    estimator_option(
        p_cmp,
        "also run this configured estimator for a random variable (repeat), beside every registered one"
        " in its default configuration, e.g. b=relaxed:temperature=0.05 or z=score:baseline=none",
    )
    p_cmp.add_argument("--json", action="store_true", help="print the table as JSON (errors too)")
    p_cmp.add_argument("--plot", metavar="PNG", help="write a plot (needs matplotlib)")
    p_cmp.add_argument(
        "--repeats",
        type=int,
        default=None,
        metavar="R",
        help="runs of each estimator at n = 10, 100, 1000 for measured distributions and errors"
        " (default: 50 with --plot, else 0)",
    )
    backend_options(p_cmp)
    p_plan = sub.add_parser("plan", help="show the estimator chosen for each random node, and why")
    common(p_plan)
    p_plan.add_argument(
        "-n",
        "--samples",
        type=sample_count,
        default=None,
        help="samples of the estimate to show the plan of (n=1 has no leave-one-out baseline)",
    )
    p_plan.add_argument(
        "--backend",
        "-b",
        default=None,
        choices=available_backends(),
        help="the backend of the estimate (its capabilities; min_variance pilots run on it)",
    )
    p_plan.add_argument(
        "--seed",
        type=int,
        default=None,
        help="the seed of the estimate to match (min_variance pilots derive theirs from it)",
    )
    p_plan.add_argument("--json", action="store_true", help="print the plan as JSON (errors too)")
    backend_options(p_plan)
    p_est = sub.add_parser("estimate", help="estimate the expectation and its gradient")
    common(p_est)
    p_est.add_argument("-n", "--samples", type=sample_count, default=10_000, help=f"{count} (default 10000)")
    p_est.add_argument("--backend", "-b", default=None, choices=available_backends(), help=backends)
    p_est.add_argument("--seed", type=int, default=None, help="random seed (default: fresh; printed)")
    p_est.add_argument("--chunk-size", type=sample_count, default=None, help="samples held in memory at once")
    p_est.add_argument(
        "--wrt",
        action="append",
        default=None,
        metavar="NAME",
        help="differentiate only this parameter (repeatable; default: all)",
    )
    p_est.add_argument("--json", action="store_true", help="print the result as JSON (errors too)")
    p_est.add_argument(
        "--distributed",
        action="store_true",
        help="shard the samples over the ranks of torchrun (torchrun --nproc_per_node=2 -m stochgrad"
        " estimate ... --distributed); only rank 0 prints",
    )
    p_est.add_argument(
        "--exact",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also print the closed form (SymPy, when installed and it finds one) and z-scores"
        " (default: yes; --exact asks for it and says when SymPy is missing)",
    )
    p_est.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when n spans several chunks and stderr is a terminal)",
    )
    backend_options(p_est)
    return ap
