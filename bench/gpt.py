"""The microgpt-style GPT of examples/gpt.py, timed on every engine: ms per training step and
tokens per second (a step is one name: forward, backward and the Adam update).

    python bench/gpt.py [--steps 20] [--repeat 3] [--engines python,arenagrad,idiomatic,compiled]
                        [--batch 64] [--compiled-steps 200] [--pypy] [--quick]

Engines: `python` (the example's pure-Python Value), `arenagrad` (the same code with arenagrad's
Value), `idiomatic` (arenagrad.linear/sum/max and optim.Adam), `compiled` (arenagrad.compile,
--batch names of one length per step as lanes, over --compiled-steps steps, since each length
is traced the first time it comes: tracing is part of the figure, spread over a run long enough
to see every length several times). With --pypy, the pure-Python engine also runs under pypy3
when it is installed. The ratios are against `python`.

Each run is a process of its own, as a user's script is: a run in the process where another
engine ran before inherits its heap and its garbage collector's state (arenagrad's step was
~5% slower after a pure-Python run). Runs alternate engine by engine, --repeat times, and each
figure is the median. The eager engines time the same --steps names, one step each, after one
untimed step: building the model and warming up are not part of a step. Pure Python's step
varies 2-3x from step to step (its garbage collector's full passes over the graphs' objects
take about half of its time), so it is timed over all of them too.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gpt.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_gpt", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def time_engine(gpt: ModuleType, engine: str, steps: int, batch: int) -> tuple[float, float]:
    """(seconds per step, tokens per step). The compiled engine: `steps` steps, tracing included.
    An eager engine: one step, then `steps` steps over the first `steps` names, timed from the
    end of the first step: building the model and warming up are not part of a step."""
    docs = gpt.make_names()
    if engine == "compiled":
        start = time.perf_counter()
        tokens = gpt.train_compiled(steps, batch, docs=docs)[2]
        elapsed = time.perf_counter() - start
        return elapsed / steps, tokens / steps
    tokenizer = gpt.Tokenizer(docs)
    tokens = sum(
        len(tokenizer.encode(docs[k])[: gpt.BLOCK_SIZE + 1]) - 1 for k in range(1, steps + 1)
    )
    ends: list[float] = []
    gpt.train(engine, steps + 1, docs=docs, log=lambda _: ends.append(time.perf_counter()))
    return (ends[-1] - ends[0]) / steps, tokens / steps


def run_alone(python: str, engine: str, args: argparse.Namespace) -> tuple[float, float]:
    """time_engine() in a process of its own, run by the interpreter `python`."""
    command = [python, __file__, "--in-process", "--json", "--engines", engine, "--repeat", "1"]
    command += ["--steps", str(args.steps), "--batch", str(args.batch)]
    command += ["--compiled-steps", str(args.compiled_steps)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{engine} run failed:\n{done.stderr}")
    figures = json.loads(done.stdout.splitlines()[-1])[engine]
    return figures["seconds_per_step"], figures["tokens_per_step"]


def pypy_time(args: argparse.Namespace) -> tuple[float, float] | None:
    pypy = shutil.which("pypy3")
    return None if pypy is None else run_alone(pypy, "python", args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engines", default="python,arenagrad,idiomatic,compiled")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--compiled-steps", type=int, default=200)
    parser.add_argument("--pypy", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run here, not a process per run (used by each run)",
    )
    args = parser.parse_args(argv)
    engines = args.engines.split(",")
    for engine in engines:
        if engine not in ("python", "arenagrad", "idiomatic", "compiled"):
            parser.error(f"unknown engine {engine!r}")
    if args.quick:
        args.steps, args.repeat, args.batch, args.compiled_steps = 2, 1, 4, 2
    if args.steps < 1:
        parser.error("--steps must be at least 1")

    runs: dict[str, list[tuple[float, float]]] = {engine: [] for engine in engines}
    gpt = load_example() if args.in_process else None
    for _ in range(args.repeat):
        for engine in engines:  # alternated, so a busy spell hits every engine alike
            steps = args.compiled_steps if engine == "compiled" else args.steps
            if gpt is not None:
                runs[engine].append(time_engine(gpt, engine, steps, args.batch))
            else:
                runs[engine].append(run_alone(sys.executable, engine, args))
    if args.pypy and (figure := pypy_time(args)) is not None:
        runs["python (pypy3)"] = [figure]

    figures = {
        name: {
            "seconds_per_step": statistics.median(r[0] for r in rows),
            "tokens_per_step": rows[0][1],
        }
        for name, rows in runs.items()
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    base = figures.get("python")
    print(
        f"GPT of examples/gpt.py: {args.steps} steps ({args.compiled_steps} compiled), "
        f"median of {args.repeat} runs, each in a process of its own"
    )
    print("| engine | ms per step | tokens per step | tokens per second | vs python (tokens/s) |")
    print("|---|---|---|---|---|")
    for name, f in figures.items():
        per_second = f["tokens_per_step"] / f["seconds_per_step"]
        ratio = "-"
        if base is not None:
            ratio = f"{per_second / (base['tokens_per_step'] / base['seconds_per_step']):.0f}x"
        label = f"{name} (B={args.batch})" if name == "compiled" else name
        print(
            f"| {label} | {1000 * f['seconds_per_step']:.2f} | {f['tokens_per_step']:.1f} "
            f"| {per_second:.0f} | {ratio} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
