"""`python -m arenagrad`: the command line (arenagrad/apps/cli.py)."""

import sys

from .apps.cli import main

if __name__ == "__main__":
    sys.exit(main())
