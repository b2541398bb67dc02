"""``python -m medsr`` (and ``torchrun -m medsr``) runs the CLI."""

import sys

from medsr.cli import main

sys.exit(main())
