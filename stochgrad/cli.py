"""Command line: ``stochgrad estimate`` and ``stochgrad plan``.

    stochgrad estimate "E[z**2, z ~ Normal(mu, sigma)]" --at mu=12 --at sigma=42 -n 100000
    stochgrad plan "E[z > 0, z ~ Normal(mu, 1)]" --estimator z=score
    stochgrad plan "E[cos(3 * z), z ~ Normal(mu, 1)]" --policy min_variance --at mu=0.3 --seed 0
    stochgrad estimate "E[y**2, y ~ Bernoulli(p)]" --at p=0.25 --estimator y=relaxed:temperature=0.1

Values after ``--at`` are numbers or JSON arrays (``--at mu=[1,2,3]``); they are
read as data, never evaluated.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from .api import estimate, plan
from .backend import available_backends
from .distributed import init_from_env
from .errors import HeavyTailWarning, NonFiniteWarning, StochgradError
from .estimators import ESTIMATORS
from .planner import POLICIES
from .run import json_safe, jsonable


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
            raise StochgradError(f"--at {name}={text}: the value must be a number or a JSON array such as [1, 2]") from None
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


class ProgressBar:
    """A one-line text progress bar: ``[#####.....]  52%  52,428,800/100,000,000 samples  3.1 s``."""

    def __init__(self, stream: Any, width: int = 30, every: float = 0.1) -> None:
        self.stream, self.width, self.start = stream, width, time.perf_counter()
        self.every, self._shown = every, -every  # redraw at most every ``every`` seconds, and at the end

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - self._shown < self.every:
            return
        self._shown = now
        filled = int(self.width * done / total)
        bar = "#" * filled + "." * (self.width - filled)
        elapsed = time.perf_counter() - self.start
        end = "\n" if done >= total else ""
        self.stream.write(f"\r[{bar}] {100 * done / total:3.0f}%  {done:,}/{total:,} samples  {elapsed:.1f} s{end}")
        self.stream.flush()


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="stochgrad", description="Gradients of expectations, written as a DSL.")
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("expression", help='DSL text, e.g. "E[z**2, z ~ Normal(mu, sigma)]"')
        p.add_argument("--estimator", "-e", action="append", type=_assignment, default=[], metavar="VAR=NAME",
                       help=f"override a random variable's estimator: {', '.join(ESTIMATORS)};"
                            " options as NAME:KEY=VALUE, e.g. y=relaxed:temperature=0.1 or z=score:baseline=none")
        p.add_argument("--policy", default="unbiased", choices=POLICIES,
                       help="unbiased (default), low_variance (may relax discrete nodes)"
                            " or min_variance (pilot runs: needs --at)")
        p.add_argument("--at", action="append", type=_assignment, default=[], metavar="NAME=VALUE",
                       help="parameter value (number or JSON array); repeat for each parameter")

    def backend_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default=None, help="torch device, e.g. cuda or cuda:1 (default cpu)")
        p.add_argument("--dtype", default=None, choices=("float64", "float32"),
                       help="floating type of the computation (default float64)")

    p_cmp = sub.add_parser("compare", help="run every applicable estimator for each random node, side by side")
    p_cmp.add_argument("expression")
    p_cmp.add_argument("--at", action="append", type=_assignment, default=[], metavar="NAME=VALUE")
    p_cmp.add_argument("-n", "--samples", type=int, default=10_000)
    p_cmp.add_argument("--backend", "-b", default=None, choices=available_backends())
    p_cmp.add_argument("--seed", type=int, default=None, help="random seed (default: fresh; printed)")
    p_cmp.add_argument("--temperature", type=float, action="append", default=None,
                       help="temperatures for the relaxed estimator (repeat; default 0.1, 0.5, 1)")
    p_cmp.add_argument("--json", action="store_true", help="print the table as JSON")
    p_cmp.add_argument("--plot", metavar="PNG", help="write a plot (needs matplotlib)")
    p_cmp.add_argument("--repeats", type=int, default=None, metavar="R",
                       help="runs of each estimator at n = 10, 100, 1000 for measured distributions and errors"
                            " (default: 50 with --plot, else 0)")
    backend_options(p_cmp)
    p_plan = sub.add_parser("plan", help="show the estimator chosen for each random node, and why")
    common(p_plan)
    p_plan.add_argument("-n", "--samples", type=int, default=None,
                        help="samples of the estimate to show the plan of (n=1 has no leave-one-out baseline)")
    p_plan.add_argument("--backend", "-b", default=None, choices=available_backends(),
                        help="the backend of the estimate (its capabilities; min_variance pilots run on it)")
    p_plan.add_argument("--seed", type=int, default=None,
                        help="the seed of the estimate to match (min_variance pilots derive theirs from it)")
    backend_options(p_plan)
    p_est = sub.add_parser("estimate", help="estimate the expectation and its gradient")
    common(p_est)
    p_est.add_argument("-n", "--samples", type=int, default=10_000, help="number of samples (default 10000)")
    p_est.add_argument("--backend", "-b", default=None, choices=available_backends(),
                       help="autograd or torch (default: $STOCHGRAD_BACKEND, else autograd)")
    p_est.add_argument("--seed", type=int, default=None, help="random seed (default: fresh; printed)")
    p_est.add_argument("--chunk-size", type=int, default=None, help="samples held in memory at once")
    p_est.add_argument("--wrt", action="append", default=None, metavar="NAME",
                       help="differentiate only this parameter (repeatable; default: all)")
    p_est.add_argument("--json", action="store_true", help="print the result as JSON")
    p_est.add_argument("--distributed", action="store_true",
                       help="shard the samples over the ranks of torchrun (torchrun --nproc_per_node=2 -m stochgrad"
                            " estimate ... --distributed); only rank 0 prints")
    p_est.add_argument("--exact", action=argparse.BooleanOptionalAction, default=True,
                       help="also print the closed form (SymPy, when installed and it finds one) and z-scores")
    p_est.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bar on stderr (default: when n spans several chunks and stderr is a terminal)")
    backend_options(p_est)
    return ap


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """``--device`` and ``--dtype``, as given, for the backend's constructor."""
    return {k: v for k, v in (("device", args.device), ("dtype", args.dtype)) if v is not None}


def _json(obj: Any) -> str:
    return json.dumps(json_safe(obj), indent=2, allow_nan=False)


@contextmanager
def _reported(notes: list[str]) -> Iterator[None]:
    """Run with NonFiniteWarning and HeavyTailWarning turned into sentences in ``notes`` (said
    by the caller, not as Python warnings with a source path); other warnings pass as usual."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        if issubclass(w.category, (NonFiniteWarning, HeavyTailWarning)):
            text = str(w.message)
            if text not in notes:
                notes.append(text)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _say(notes: list[str], write: Callable[[str], Any] = lambda t: print(t, file=sys.stderr)) -> None:
    for text in notes:
        write(f"stochgrad: warning: {text}")


def _compare(args: argparse.Namespace) -> int:
    from .compare import compare, plot

    try:
        params = {k: _value(k, v) for k, v in args.at}
        repeats = args.repeats if args.repeats is not None else (50 if args.plot else 0)
        notes: list[str] = []
        with _reported(notes):
            c = compare(args.expression, params, n=args.samples, backend=args.backend, seed=args.seed,
                        temperatures=tuple(args.temperature or (0.1, 0.5, 1.0)), repeats=repeats,
                        backend_options=_options(args))
    except StochgradError as exc:
        print(f"stochgrad: error: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        try:
            plot(c, args.plot)
        except ImportError:
            print("stochgrad: error: --plot needs matplotlib: pip install matplotlib", file=sys.stderr)
            return 2
    _say(notes)
    if args.json:
        print(_json(c.to_json()))
    else:
        print(f"{args.expression}   (n={c.n} per estimator, backend={c.backend}, seed={c.seed})")
        print(c.table())
        if args.plot:
            print(f"plot written to {args.plot}")
    return 0


def _closed_form(text: str, params: dict[str, Any]) -> Any:
    """The SymPy oracle's answer, or None (no SymPy, nothing found, or over 10 s)."""
    try:
        from .testing.oracle import exact
    except ImportError:
        return None
    try:
        return exact(text, params, timeout=10.0)
    except (ImportError, StochgradError):
        return None


def _z(estimate: Any, exact: Any, stderr: Any) -> Any:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.asarray(stderr) > 0, (np.asarray(estimate) - exact) / np.asarray(stderr), np.nan)


def _fmt(x: Any) -> str:
    a = np.asarray(x, dtype=float)
    return f"{float(a):.6g}" if a.ndim == 0 else np.array2string(a, precision=4)


def _rank() -> int:
    import torch.distributed as dist

    return int(dist.get_rank())


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, so that a closed pipe is caught below rather than at exit
        return code
    except BrokenPipeError:  # output piped into `head` and closed early: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "compare":
        return _compare(args)
    overrides = dict(args.estimator)
    try:
        params = {k: _value(k, v) for k, v in args.at}
        if args.command == "plan":  # the plan `estimate` runs for these inputs, on this backend
            if args.policy == "min_variance":  # the same pilots: they need every value
                print(plan(args.expression, params, estimators=overrides, policy=args.policy, seed=args.seed,
                           backend=args.backend, backend_options=_options(args), n=args.samples))
            else:  # values matter only through their shapes
                shapes = {k: np.shape(v) for k, v in params.items()} if params else None
                print(plan(args.expression, shapes, estimators=overrides, policy=args.policy, n=args.samples,
                           backend=args.backend, backend_options=_options(args)))
            return 0
        show = args.progress if args.progress is not None else sys.stderr.isatty() and args.samples > (1 << 20)
        notes: list[str] = []
        if args.distributed:  # join torchrun's group (stochgrad.distributed)
            init_from_env()
        with _reported(notes):
            r = estimate(args.expression, params, n=args.samples, backend=args.backend, seed=args.seed,
                         estimators=overrides, chunk_size=args.chunk_size, policy=args.policy,
                         progress=ProgressBar(sys.stderr) if show else None, wrt=args.wrt,
                         backend_options=_options(args), distributed=args.distributed)
    except StochgradError as exc:
        print(f"stochgrad: error: {exc}", file=sys.stderr)
        return 2
    if args.distributed and _rank() != 0:  # every rank holds the estimate; rank 0 says it
        return 0
    closed = _closed_form(args.expression, params) if args.exact else None
    if r.n == 1:  # said plainly, in place of the warning's longer sentence
        notes = [t for t in notes if "undefined at n = 1" not in t or "non-finite results:" in t]
        notes.append("standard error undefined at n = 1 (it needs at least two samples)")
    _say(notes)
    if args.json:
        print(_json({**r.to_json(), "expression": args.expression, "exact": None if closed is None else {
            "formula": closed.formula, "value": jsonable(closed.value),
            "grad": {k: jsonable(v) for k, v in closed.grad.items()},
        }, "warnings": notes}))
        return 0
    print(f"{args.expression}   (n={r.n}, backend={r.backend}, seed={r.seed})")
    print(r)
    if closed is not None:
        print(f"exact (SymPy): {closed.formula}")
        print("  " + "   ".join(f"{name} = {_fmt(x)} (z = {_fmt(_z(est, x, se))})" for name, x, est, se in [
            ("value", closed.value, r.value, r.value_stderr),
            *((f"d/d{k}", closed.grad[k], r.grad[k], r.stderr[k]) for k in closed.grad if k in r.grad),
        ]))
    print("plan:")
    print("  " + str(r.plan).replace("\n", "\n  "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
