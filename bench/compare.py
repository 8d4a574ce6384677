"""Speed of arenagrad next to micrograd, PyTorch and the pure-Python reference.

    python bench/compare.py              # the full table (several minutes)
    python bench/compare.py --quick      # a smoke run
    python bench/compare.py --help

The harness lives in the package (arenagrad/benchmark.py) so `python -m arenagrad bench`
runs the same thing from an installed wheel.
"""

import sys

from arenagrad.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
