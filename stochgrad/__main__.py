"""``python -m stochgrad`` (and ``torchrun -m stochgrad``): the command line, :func:`stochgrad.cli.main`."""

import sys

from .cli import main

sys.exit(main())
