"""The command line: `python -m arenagrad demo | train digits` (also the `arenagrad` script).

Every error is one line on stderr, `arenagrad: error: ...`, with exit status 2, never a
traceback or a usage dump. Paths are checked while the arguments are read, before any work:
a typo in `--save` must not cost a whole training run.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import NoReturn

from .demo import SEED as DEMO_SEED


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


def output_file(text: str) -> str:
    """A path a file can be written to: its folder exists and is writable, and the path is
    not itself a folder."""
    path = Path(text)
    folder = path.parent
    if not text or path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file name")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"cannot write {text}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"cannot write {text}: permission denied")
    return text


def input_file(text: str) -> str:
    """A file that exists and can be read."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a file")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"cannot read {text}: permission denied")
    return text


def image_file(text: str) -> str:
    """An output file whose extension is an image format matplotlib writes."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise argparse.ArgumentTypeError(
            "needs matplotlib: pip install 'arenagrad[demo]'"
        ) from None
    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = Path(text).suffix.lower().lstrip(".")
    if suffix not in formats:
        known = ", ".join(f".{name}" for name in sorted(formats))
        raise argparse.ArgumentTypeError(
            f"{text}: name the image with one of matplotlib's formats ({known})"
        )
    return output_file(text)


def make_parser() -> Parser:
    parser = Parser(prog="arenagrad", description="arenagrad command line")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="train micrograd's moons MLP and time a step against micrograd"
    )
    demo.add_argument("--steps", type=positive_int, default=100, help="training steps (100)")
    demo.add_argument(
        "--seed", type=non_negative_int, default=DEMO_SEED, help=f"random seed ({DEMO_SEED})"
    )
    demo.add_argument(
        "--no-compare",
        action="store_true",
        help="skip timing against micrograd (or, without it, the pure-Python reference)",
    )
    demo.add_argument(
        "--plot",
        type=image_file,
        metavar="PATH",
        help="save the decision boundary and loss curve, e.g. moons.png (matplotlib)",
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
        "--save",
        type=output_file,
        metavar="PATH",
        help="save model and optimizer state after training",
    )
    digits.add_argument(
        "--load", type=input_file, metavar="PATH", help="resume from a checkpoint saved by --save"
    )
    return parser


def run(args: argparse.Namespace) -> None:
    if args.command == "demo":
        from .demo import run as run_demo

        run_demo(steps=args.steps, seed=args.seed, compare=not args.no_compare, plot_path=args.plot)
    elif args.command == "train":
        from .digits import train

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
    parser = make_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    from .digits import MissingExtra

    try:
        run(args)
    except (ValueError, OSError, MissingExtra) as error:
        parser.exit(2, f"arenagrad: error: {one_line(error)}\n")
    return 0


def one_line(error: BaseException) -> str:
    """The error as one line. Where it wraps a lower-level error and repeats its text (a
    checkpoint that numpy cannot read), only arenagrad's own words: numpy's advice, such as
    loading with `allow_pickle`, is not for someone handed a file that is no checkpoint."""
    message = str(error)
    cause = error.__cause__
    if cause is not None and str(cause) and message.endswith(f": {cause}"):
        message = message[: -len(f": {cause}")]
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())
