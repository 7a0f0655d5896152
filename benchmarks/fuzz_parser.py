"""A long parser fuzz run (the test suite runs a bounded one).

Random text, random token soups and single-character mutations of generated valid texts must
either parse (and then print and re-parse to the same expression) or raise ``ParseError`` --
never another exception, never a hang.  Each input also runs under a wall-clock limit.

    python benchmarks/fuzz_parser.py [--examples 20000] [--seconds-per-input 2]
"""

from __future__ import annotations

import argparse
import signal
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stochgrad as sg
from stochgrad.testing import strategies as sgst

TOKENS = ["E", "[", "]", "(", ")", ",", "~", "+", "-", "*", "/", "**", "<", ">", "<=", ">=", "=", "mu", "z", "x",
          "1", "0.5", "1e-3", "1e999", "Normal", "Bernoulli", "logits", "exp", "sum", "axis", "#", "\n", " ", "((", "))"]


def check(text: str, limit: float) -> None:
    def timeout(*_: object) -> None:
        raise TimeoutError(f"parse took longer than {limit} s on {text[:80]!r}")

    signal.signal(signal.SIGALRM, timeout)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        e = sg.parse(text)
    except sg.ParseError:
        return
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    assert sg.parse(str(e)) == e, text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=20_000)
    ap.add_argument("--seconds-per-input", type=float, default=2.0)
    args = ap.parse_args()
    opts = settings(max_examples=args.examples, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))
    limit = args.seconds_per_input

    @opts
    @given(st.text(max_size=200))
    def random_text(text: str) -> None:
        check(text, limit)

    @opts
    @given(st.lists(st.sampled_from(TOKENS), max_size=60), st.sampled_from(["", " "]))
    def token_soup(tokens: list[str], sep: str) -> None:
        check(sep.join(tokens), limit)

    @opts
    @given(sgst.texts(max_depth=4), st.integers(0), st.characters())
    def mutation(text: str, where: int, char: str) -> None:
        i = where % (len(text) + 1)
        check(text[:i] + char + text[i + 1:], limit)
        check(text[:i] + char + text[i:], limit)

    for fuzz in (random_text, token_soup, mutation):
        t0 = time.perf_counter()
        fuzz()
        print(f"{fuzz.__name__}: {args.examples} examples, no failure ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
