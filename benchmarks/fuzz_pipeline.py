"""Adversarial fuzz of the whole pipeline: parse -> plan -> estimate on generated texts.

Each input is a random well-formed expression (``stochgrad.testing.strategies.texts``), random
parameter values (valid ones with weight on the edges, and sometimes arrays, huge or invalid
values), a random estimator override, sample count, backend and dtype.  Every input runs under a
wall-clock limit and the whole run under an address-space limit, and its outcome is one of:

* ``finite``: a finite estimate;
* ``nonfinite reported``: a non-finite entry, reported by ``sg.NonFiniteWarning``;
* ``named error``: a ``stochgrad`` error (``sg.StochgradError``, a ``ValueError``) or a
  ``TypeError`` raised by stochgrad's own checks;
* ``silent nonfinite`` (a defect): a NaN or inf returned with no warning;
* ``crash`` (a defect): any other exception, e.g. one from inside a backend;
* ``hang`` (a defect): over the time limit; ``memory`` (a defect): a ``MemoryError``.

    python benchmarks/fuzz_pipeline.py [--examples 2000] [--seconds-per-input 20] [--memory-gb 12] [--seed 0]

It prints one line per defect found (the first few of each kind) and a table of outcomes.
"""

from __future__ import annotations

import argparse
import collections
import os
import resource
import signal
import time
import traceback
import warnings

import numpy as np
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import stochgrad as sg
from stochgrad.testing import strategies as sgst

ESTIMATORS = [None, "pathwise", "score", "score:baseline=none", "enumerate", "relaxed:temperature=0.5",
              "straight_through", "straight_through_gumbel", "detached"]
DEFECTS = ("silent nonfinite", "crash", "hang", "memory")


class Hang(Exception):
    pass


def _nonfinite(r: sg.Estimate) -> bool:
    parts = [r.value, r.value_stderr, *r.grad.values(), *r.stderr.values()]
    return not all(np.isfinite(np.asarray(x, dtype=float)).all() for x in parts)


def run_one(text: str, params: dict, override: str | None, n: int, backend: str, dtype: str | None,
            limit: float) -> tuple[str, str]:
    """One input's outcome and a short description of it."""
    def timeout(*_: object) -> None:
        raise Hang

    options = {} if dtype is None else {"dtype": dtype}
    estimators = None
    signal.signal(signal.SIGALRM, timeout)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            e = sg.parse(text)
            if override is not None:
                nodes = sg.plan(e).nodes
                if nodes:
                    estimators = {nodes[len(nodes) // 2].var: override}
            r = sg.estimate(e, params, n=n, backend=backend, seed=0, estimators=estimators, backend_options=options)
        reported = any(type(w.message).__name__ == "NonFiniteWarning" for w in caught)
        if _nonfinite(r):
            return ("nonfinite reported" if reported else "silent nonfinite"), ""
        return "finite", ""
    except Hang:
        return "hang", ""
    except MemoryError:
        return "memory", ""
    except (sg.StochgradError, TypeError) as exc:
        if isinstance(exc, TypeError) and "stochgrad" not in "".join(traceback.format_tb(exc.__traceback__)[-1:]):
            return "crash", f"{type(exc).__name__}: {exc}"
        return "named error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:70]}"
    except Exception as exc:  # noqa: BLE001 -- the point is to classify every failure
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return "crash", f"{type(exc).__name__}: {str(exc)[:160]} ({os.path.basename(where.filename)}:{where.lineno})"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _perturb(draw, params: dict) -> dict:
    """Sometimes replace a value by an array, an extreme or an invalid one."""
    out = dict(params)
    for k in list(out):
        kind = draw(st.sampled_from(["keep"] * 6 + ["array", "huge", "tiny", "zero", "negative", "nan"]))
        v = out[k]
        if kind == "array":
            out[k] = np.full(draw(st.sampled_from([(2,), (3,), (2, 3)])), v)
        elif kind == "huge":
            out[k] = 1e300
        elif kind == "tiny":
            out[k] = 5e-324
        elif kind == "zero":
            out[k] = 0.0
        elif kind == "negative":
            out[k] = -abs(v) - 1.0
        elif kind == "nan":
            out[k] = float("nan")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--seconds-per-input", type=float, default=20.0)
    ap.add_argument("--memory-gb", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backends", default="autograd,torch")
    args = ap.parse_args()
    backends = args.backends.split(",")
    for b in backends:  # import and warm up before the address-space limit
        sg.estimate("E[z, z ~ Normal(mu, 1)]", {"mu": 0.0}, n=4, backend=b, seed=0)
    limit = int(args.memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    outcomes: collections.Counter[str] = collections.Counter()
    shown: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    t0 = time.perf_counter()

    @seed(args.seed)
    @settings(max_examples=args.examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        text = data.draw(st.one_of(sgst.texts(max_depth=3).filter(lambda t: "~" in t), sgst.texts(max_depth=3)))
        params = data.draw(sgst.params_for_expression(text))
        params = _perturb(data.draw, params)
        override = data.draw(st.sampled_from(ESTIMATORS))
        n = data.draw(st.sampled_from([1000, 17, 2, 1]))
        backend = data.draw(st.sampled_from(backends))
        dtype = data.draw(st.sampled_from([None, "float32"])) if backend == "torch" else None
        outcome, detail = run_one(text, params, override, n, backend, dtype, args.seconds_per_input)
        outcomes[outcome] += 1
        if outcome == "named error":
            errors[detail.split(" got ")[0].split(" (given")[0]] += 1
        if outcome in DEFECTS and shown[outcome] < 8:
            shown[outcome] += 1
            print(f"[{outcome}] {text}  params={params} estimator={override} n={n} {backend} {dtype or ''}  {detail}",
                  flush=True)

    fuzz()
    total = sum(outcomes.values())
    print(f"\n{total} inputs in {time.perf_counter() - t0:.0f} s (seed {args.seed}, backends {args.backends}); "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")
    print("| outcome | inputs |\n|---|---|")
    for name in ("finite", "nonfinite reported", "named error") + DEFECTS:
        print(f"| {name} | {outcomes.get(name, 0)} |")
    print("\nmost common named errors:")
    for message, count in errors.most_common(12):
        print(f"  {count:5d}  {message}")


if __name__ == "__main__":
    main()
