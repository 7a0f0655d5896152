"""Command line: ``stochgrad estimate``, ``stochgrad plan`` and ``stochgrad compare`` (also ``python -m stochgrad``).

    stochgrad estimate "E[z**2, z ~ Normal(mu, sigma)]" --at mu=12 --at sigma=42 -n 100000
    stochgrad plan "E[z > 0, z ~ Normal(mu, 1)]" --estimator z=score
    stochgrad plan "E[cos(3 * z), z ~ Normal(mu, 1)]" --policy min_variance --at mu=0.3 --seed 0
    stochgrad estimate "E[y**2, y ~ Bernoulli(p)]" --at p=0.25 --estimator y=relaxed:temperature=0.1

Values after ``--at`` are numbers or JSON arrays (``--at mu=[1,2,3]``); they are
read as data, never evaluated.  ``-n`` takes ``1e5`` and ``100_000``; ``--json`` answers in JSON
always, errors included; warnings are one line each on stderr.  The parser is
:mod:`stochgrad.cli_args`; the printing helpers are
:mod:`stochgrad.cli_output` (JSON, warnings, z-scores) and :mod:`stochgrad.cli_rich` (terminal drawing).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np

from .api import estimate, plan
from .cli_args import _value, _UsageError, _parser
from .cli_output import dumps, error_document, fmt, missing_extra, reported, z_text
from .cli_rich import print_compare, progress_bar
from .distributed import init_from_env
from .errors import StochgradError
from .run import jsonable


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """``--device`` and ``--dtype``, as given, for the backend's constructor."""
    return {k: v for k, v in (("device", args.device), ("dtype", args.dtype)) if v is not None}


def _say(notes: list[str]) -> None:
    for text in notes:
        print(f"stochgrad: warning: {text}", file=sys.stderr)


def _grouped(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """``--estimator VAR=SPEC`` pairs (repeatable per variable) as lists by variable."""
    out: dict[str, list[str]] = {}
    for var, spec in pairs:
        out.setdefault(var, []).append(spec)
    return out


def _compare(args: argparse.Namespace, notes: list[str]) -> int:
    from .compare import compare, plot

    params = {k: _value(k, v) for k, v in args.at}
    repeats = args.repeats if args.repeats is not None else (50 if args.plot else 0)
    with reported(notes):
        c = compare(
            args.expression,
            params,
            n=args.samples,
            backend=args.backend,
            seed=args.seed,
            temperatures=tuple(args.temperature or (0.1, 0.5, 1.0)),
            repeats=repeats,
            backend_options=_options(args),
            estimators=_grouped(args.estimator),
        )
    if args.plot:
        try:
            plot(c, args.plot)
        except ImportError as exc:
            raise StochgradError(f"--plot needs matplotlib: {missing_extra(exc.name or 'matplotlib')}") from exc
    _say(notes)
    if args.json:
        print(dumps({**c.to_json(), "expression": args.expression, "warnings": notes}))
        return 0
    print(f"{args.expression}   (n={c.n} per estimator, backend={c.backend}, seed={c.seed})")
    print_compare(c, print, sys.stdout.isatty())
    if args.plot:
        print(f"plot written to {args.plot}")
    return 0


def _closed_form(text: str, params: dict[str, Any], asked: bool, notes: list[str]) -> Any:
    """The SymPy oracle's answer, or None (nothing found, over 10 s, or no SymPy: said when ``asked``)."""
    try:
        import sympy  # noqa: F401  (optional: the oracle's engine)

        from .testing.oracle import exact
    except ImportError:
        if asked:
            notes.append(f"--exact: no closed form, SymPy is not installed: {missing_extra('sympy')}")
        return None
    try:
        return exact(text, params, timeout=10.0)
    except (ImportError, StochgradError):
        return None


def _plan(args: argparse.Namespace, notes: list[str]) -> int:
    overrides, params = dict(args.estimator), {k: _value(k, v) for k, v in args.at}
    with reported(notes):  # the plan `estimate` runs for these inputs, on this backend
        if args.policy == "min_variance":  # the same pilots: they need every value
            p = plan(
                args.expression,
                params,
                estimators=overrides,
                policy=args.policy,
                seed=args.seed,
                backend=args.backend,
                backend_options=_options(args),
                n=args.samples,
            )
        else:  # values matter only through their shapes
            shapes = {k: np.shape(v) for k, v in params.items()} if params else None
            p = plan(
                args.expression,
                shapes,
                estimators=overrides,
                policy=args.policy,
                n=args.samples,
                backend=args.backend,
                backend_options=_options(args),
            )
    _say(notes)
    if args.json:
        print(
            dumps(
                {
                    "expression": str(p.expr),
                    "policy": p.policy,
                    "notes": list(p.notes),
                    "warnings": notes,
                    "plan": [
                        {
                            "var": nd.var,
                            "estimator": nd.estimator,
                            "described": nd.spec.describe(),
                            "reason": nd.reason,
                            "biased": nd.biased,
                        }
                        for nd in p.nodes
                    ],
                }
            )
        )
    else:
        print(p)
    return 0


def _rank() -> int:
    import torch.distributed as dist

    return int(dist.get_rank())


def _estimate(args: argparse.Namespace, notes: list[str]) -> int:
    params = {k: _value(k, v) for k, v in args.at}
    show = args.progress if args.progress is not None else sys.stderr.isatty() and args.samples > (1 << 20)
    if args.distributed:  # join torchrun's group (stochgrad.distributed)
        init_from_env()
    with reported(notes), progress_bar(sys.stderr) if show else nullcontext() as bar:
        if show and bar is None:
            notes.append(f"--progress draws with rich, which is not installed: {missing_extra('rich')}")
        r = estimate(
            args.expression,
            params,
            n=args.samples,
            backend=args.backend,
            seed=args.seed,
            estimators=dict(args.estimator),
            chunk_size=args.chunk_size,
            policy=args.policy,
            progress=bar,
            wrt=args.wrt,
            backend_options=_options(args),
            distributed=args.distributed,
        )
    if args.distributed and _rank() != 0:  # every rank holds the estimate; rank 0 says it
        return 0
    with reported(notes):
        closed = _closed_form(args.expression, params, args.exact is True, notes) if args.exact is not False else None
    if r.n == 1:  # said plainly, in place of the warning's longer sentence
        notes[:] = [t for t in notes if "undefined at n = 1" not in t or "non-finite results:" in t]
        notes.append("standard error undefined at n = 1 (it needs at least two samples)")
    _say(notes)
    if args.json:
        print(
            dumps(
                {
                    **r.to_json(),
                    "expression": args.expression,
                    "exact": None
                    if closed is None
                    else {
                        "formula": closed.formula,
                        "value": jsonable(closed.value),
                        "grad": {k: jsonable(v) for k, v in closed.grad.items()},
                    },
                    "warnings": notes,
                }
            )
        )
        return 0
    print(f"{args.expression}   (n={r.n}, backend={r.backend}, seed={r.seed})")
    print(r)
    if closed is not None:
        print(f"exact (SymPy): {closed.formula}")
        print(
            "  "
            + "   ".join(
                f"{name} = {fmt(x)} (z = {z_text(est, x, se)})"
                for name, x, est, se in [
                    ("value", closed.value, r.value, r.value_stderr),
                    *((f"d/d{k}", closed.grad[k], r.grad[k], r.stderr[k]) for k in closed.grad if k in r.grad),
                ]
            )
        )
    print("plan:")
    print("  " + str(r.plan).replace("\n", "\n  "))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()  # here, so that a closed pipe is caught below rather than at exit
        return code
    except BrokenPipeError:  # output piped into `head` and closed early: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1


def _main(argv: list[str]) -> int:
    as_json = "--json" in argv  # known before parsing, so that a usage error is answered as JSON too
    notes: list[str] = []
    try:
        args = _parser().parse_args(argv)
        return {"compare": _compare, "plan": _plan, "estimate": _estimate}[args.command](args, notes)
    except _UsageError as exc:
        exc.parser.print_usage(sys.stderr)
        print(f"{exc.parser.prog}: error: {exc}", file=sys.stderr)
        if as_json:
            print(error_document(exc, notes, "UsageError"))
        return 2
    except StochgradError as exc:
        _say(notes)
        print(f"stochgrad: error: {exc}", file=sys.stderr)
        if as_json:
            print(error_document(exc, notes))
        return 2
    except BrokenPipeError:
        raise  # main's: the reader has gone
    except Exception as exc:  # noqa: BLE001 -- a bug: its traceback on stderr, and still a JSON answer
        if not as_json:
            raise
        traceback.print_exc()
        print(error_document(exc, notes))
        return 1


if __name__ == "__main__":
    sys.exit(main())
