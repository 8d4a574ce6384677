"""Command line: `python -m arenagrad demo | train digits | bench`."""

from __future__ import annotations

import argparse
import math
import sys
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is reported on one line (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def make_parser() -> Parser:
    parser = Parser(prog="arenagrad", description="arenagrad command line")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="train micrograd's moons MLP and time it")
    demo.add_argument("--steps", type=positive_int, default=100, help="training steps (100)")
    demo.add_argument("--seed", type=non_negative_int, default=1337, help="random seed (1337)")
    demo.add_argument(
        "--no-compare", action="store_true", help="skip timing the pure-Python reference"
    )
    demo.add_argument(
        "--plot", metavar="PATH", help="save the decision boundary and loss curve (matplotlib)"
    )

    train = commands.add_parser("train", help="train a model on a real data set")
    datasets = train.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    digits = datasets.add_parser(
        "digits", help="softmax MLP 64-32-10 on scikit-learn's 8x8 digits, compiled replay"
    )
    digits.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed for split, init, batches (0)"
    )
    digits.add_argument(
        "--epochs", type=non_negative_int, default=30, help="passes over the data (30)"
    )
    digits.add_argument("--batch-size", type=positive_int, default=32, help="minibatch size (32)")
    digits.add_argument("--lr", type=positive_float, default=0.01, help="Adam learning rate (0.01)")
    digits.add_argument("--limit", type=positive_int, help="train on the first N samples only")
    digits.add_argument(
        "--save", metavar="PATH", help="save model and optimizer state after training"
    )
    digits.add_argument("--load", metavar="PATH", help="resume from a checkpoint saved by --save")

    commands.add_parser("bench", help="compare engines' speed (see `bench --help`)")
    return parser


def run(args: argparse.Namespace, parser: Parser) -> None:
    if args.command == "demo":
        if args.plot is not None:
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                parser.exit(
                    1, "arenagrad: error: --plot needs matplotlib: pip install 'arenagrad[demo]'\n"
                )
        from .demo import run as run_demo

        run_demo(steps=args.steps, seed=args.seed, compare=not args.no_compare, plot_path=args.plot)
    elif args.command == "train":
        from .train_digits import train

        train(
            seed=args.seed,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            save_path=args.save,
            load_path=args.load,
            limit=args.limit,
        )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        # The benchmark has its own options: hand it the rest of the command line.
        from .benchmark import main as bench_main

        return int(bench_main(argv[1:]))
    parser = make_parser()
    args = parser.parse_args(argv)
    from .train_digits import MissingExtra

    try:
        run(args, parser)
    except (ValueError, OSError, MissingExtra) as error:
        # Bad files and missing extras: one line, not a traceback.
        message = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
        parser.exit(1, f"arenagrad: error: {message}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
