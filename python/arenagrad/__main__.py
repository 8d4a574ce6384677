"""Command line: `python -m arenagrad demo | bench`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        # The benchmark has its own options: hand it the rest of the command line.
        from .benchmark import main as bench_main

        return bench_main(argv[1:])
    parser = argparse.ArgumentParser(prog="arenagrad", description="arenagrad command line")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train micrograd's moons MLP and time it")
    demo.add_argument("--steps", type=int, default=100, help="training steps (default 100)")
    demo.add_argument("--seed", type=int, default=1337, help="random seed (default 1337)")
    demo.add_argument(
        "--no-compare", action="store_true", help="skip timing the pure-Python reference"
    )
    commands.add_parser("bench", help="compare engines' speed (see `bench --help`)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.steps < 1:
            parser.error(f"--steps must be >= 1, got {args.steps}")
        from .demo import run

        run(steps=args.steps, seed=args.seed, compare=not args.no_compare)
    return 0


if __name__ == "__main__":
    sys.exit(main())
