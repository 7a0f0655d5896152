"""``python -m stochgrad``: the command line of :mod:`stochgrad.cli`."""

from stochgrad.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
