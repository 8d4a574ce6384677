"""The microgpt-style GPT of examples/gpt.py, timed on every engine: ms per training step and
tokens per second (a step is one name: forward, backward and the Adam update).

    python bench/gpt.py [--steps 20] [--repeat 3] [--engines python,arenagrad,idiomatic,compiled]
                        [--batch 64] [--compiled-steps 200] [--pypy] [--floor] [--phases]
                        [--quick]

Engines: `python` (the example's pure-Python Value), `arenagrad` (the same code with arenagrad's
Value), `idiomatic` (arenagrad.linear/sum/max and optim.Adam), `compiled` (arenagrad.compile,
--batch names of one length per step as lanes, over --compiled-steps steps, since each length
is traced the first time it comes: tracing is part of the figure, spread over a run long enough
to see every length several times). With --pypy, the pure-Python engine also runs under pypy3
when it is installed. The ratios are against `python`.

With --floor, the unchanged code also runs on `floor`: bench/floor_value.c, a Value whose ops
compute the number and record nothing (built with the C compiler on the spot). Its step is what
the interpreter spends on the script itself, which any engine called through Python's operators
pays too, so its ratio bounds the `arenagrad` engine's. With --phases, a second table splits
each eager engine's step into the forward pass (the example's document_loss), the update (its
optimizer's step) and the rest (backward() and the loop).

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
import contextlib
import importlib.util
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gpt.py"
FLOOR_SOURCE = Path(__file__).resolve().with_name("floor_value.c")


def load_module(name: str, path: Path) -> ModuleType:
    """The module in the file `path` (the example, or the built floor_value extension)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def c_compiler() -> list[str] | None:
    """The first C compiler found: $CC, the one Python was built with, or cc (None: none)."""
    for candidate in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc"):
        if candidate and shutil.which(shlex.split(candidate)[0]):
            return shlex.split(candidate)
    return None


def can_build_floor_value() -> bool:
    """Whether there is a C compiler and Python's headers to build the floor engine with."""
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    return c_compiler() is not None and headers.is_file()


def build_floor_value(directory: str) -> Path:
    """Compiles bench/floor_value.c into `directory` with c_compiler()."""
    target = Path(directory) / f"floor_value{sysconfig.get_config_var('EXT_SUFFIX')}"
    compiler = c_compiler()
    if compiler is None:
        raise RuntimeError("the floor engine needs a C compiler ($CC or cc) on PATH")
    command = [*compiler, "-O2", "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}"]
    done = subprocess.run(
        [*command, str(FLOOR_SOURCE), "-o", str(target)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"building {FLOOR_SOURCE.name} failed (it needs Python's headers):\n{done.stderr}"
        )
    return target


class Run(NamedTuple):
    seconds_per_step: float
    tokens_per_step: float
    forward: float | None = None  # seconds per step in the forward pass, with --phases
    update: float | None = None  # seconds per step in the optimizer's step, with --phases


def time_engine(
    gpt: ModuleType,
    engine: str,
    steps: int,
    batch: int,
    floor_value: Path | None = None,
    phases: bool = False,
) -> Run:
    """The compiled engine: `steps` steps, tracing included. An eager engine: one step, then
    `steps` steps over the first `steps` names, timed from the end of the first step: building
    the model and warming up are not part of a step. The floor engine is the pure-Python engine
    with floor_value's Value swapped in. With `phases`, an eager engine's forward pass and update
    are timed apart too."""
    if engine == "floor":
        if floor_value is None:
            raise ValueError("the floor engine needs the path of the built floor_value module")
        value_type, make_engine = load_module("floor_value", floor_value).Value, gpt.make_engine

        def make_floor_engine(name: str) -> object:
            namespace = make_engine(name)
            namespace.Value = value_type
            return namespace

        gpt.make_engine = make_floor_engine
        try:
            return time_engine(gpt, "python", steps, batch, phases=phases)
        finally:
            gpt.make_engine = make_engine
    docs = gpt.make_names()
    if engine == "compiled":
        start = time.perf_counter()
        tokens = gpt.train_compiled(steps, batch, docs=docs)[2]
        elapsed = time.perf_counter() - start
        return Run(elapsed / steps, tokens / steps)
    tokenizer = gpt.Tokenizer(docs)
    tokens = sum(
        len(tokenizer.encode(docs[k])[: gpt.BLOCK_SIZE + 1]) - 1 for k in range(1, steps + 1)
    )
    ends: list[float] = []
    spent = {"forward": 0.0, "update": 0.0}

    def log(_: str) -> None:
        ends.append(time.perf_counter())
        if len(ends) == 1:  # the untimed first step
            spent.update(forward=0.0, update=0.0)

    with timed_phases(gpt, spent) if phases else contextlib.nullcontext():
        gpt.train(engine, steps + 1, docs=docs, log=log)
    run = Run((ends[-1] - ends[0]) / steps, tokens / steps)
    if phases:
        return run._replace(forward=spent["forward"] / steps, update=spent["update"] / steps)
    return run


@contextlib.contextmanager
def timed_phases(gpt: ModuleType, spent: dict[str, float]) -> Iterator[None]:
    """While inside, the example's document_loss and its optimizers' step() add the time they
    take to spent["forward"] and spent["update"]."""
    originals = [(gpt, "document_loss", "forward")]
    originals += [(optimizer, "step", "update") for optimizer in (gpt.PythonAdam, gpt.NativeAdam)]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in originals]

    def timing(function: Callable[..., Any], phase: str) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            start = time.perf_counter()
            result = function(*args)
            spent[phase] += time.perf_counter() - start
            return result

        return timed

    for owner, name, phase in originals:
        setattr(owner, name, timing(getattr(owner, name), phase))
    try:
        yield
    finally:
        for owner, name, function in saved:
            setattr(owner, name, function)


def run_alone(python: str, engine: str, args: argparse.Namespace) -> Run:
    """time_engine() in a process of its own, run by the interpreter `python`."""
    command = [python, __file__, "--in-process", "--json", "--engines", engine, "--repeat", "1"]
    command += ["--steps", str(args.steps), "--batch", str(args.batch)]
    command += ["--compiled-steps", str(args.compiled_steps)]
    if args.floor_value is not None:
        command += ["--floor-value", args.floor_value]
    if args.phases:
        command += ["--phases"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{engine} run failed:\n{done.stderr}")
    return Run(**json.loads(done.stdout.splitlines()[-1])[engine])


def pypy_time(args: argparse.Namespace) -> Run | None:
    pypy = shutil.which("pypy3")
    return None if pypy is None else run_alone(pypy, "python", args)


def time_runs(engines: list[str], args: argparse.Namespace) -> dict[str, list[Run]]:
    """Each engine's runs, alternated engine by engine so a busy spell hits every engine alike."""
    runs: dict[str, list[Run]] = {engine: [] for engine in engines}
    gpt = load_module("example_gpt", EXAMPLE) if args.in_process else None
    floor_value = None if args.floor_value is None else Path(args.floor_value)
    for _ in range(args.repeat):
        for engine in engines:
            steps = args.compiled_steps if engine == "compiled" else args.steps
            if gpt is not None:
                run = time_engine(gpt, engine, steps, args.batch, floor_value, args.phases)
                runs[engine].append(run)
            else:
                runs[engine].append(run_alone(sys.executable, engine, args))
    if args.pypy and (figure := pypy_time(args)) is not None:
        runs["python (pypy3)"] = [figure]
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engines", default="python,arenagrad,idiomatic,compiled")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--compiled-steps", type=int, default=200)
    parser.add_argument("--pypy", action="store_true")
    parser.add_argument("--floor", action="store_true", help="also time the floor engine")
    parser.add_argument("--phases", action="store_true", help="split eager steps into phases")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run here, not a process per run (used by each run)",
    )
    parser.add_argument("--floor-value", help=argparse.SUPPRESS)  # the built module, for each run
    args = parser.parse_args(argv)
    engines = args.engines.split(",")
    if args.floor and "floor" not in engines:
        engines.append("floor")
    for engine in engines:
        if engine not in ("python", "arenagrad", "idiomatic", "compiled", "floor"):
            parser.error(f"unknown engine {engine!r}")
    if args.quick:
        args.steps, args.repeat, args.batch, args.compiled_steps = 2, 1, 4, 2
    if args.steps < 1:
        parser.error("--steps must be at least 1")

    if "floor" in engines and args.floor_value is None:  # built once, for every run
        with tempfile.TemporaryDirectory(prefix="arenagrad-bench-") as build:
            args.floor_value = str(build_floor_value(build))
            runs = time_runs(engines, args)
    else:
        runs = time_runs(engines, args)

    figures = {name: median_run(rows) for name, rows in runs.items()}
    if args.json:
        print(json.dumps({name: run._asdict() for name, run in figures.items()}))
        return 0
    print(
        f"GPT of examples/gpt.py: {args.steps} steps ({args.compiled_steps} compiled), "
        f"median of {args.repeat} runs, each in a process of its own"
    )
    print_speeds(figures, args.batch)
    if args.phases:
        print_phases(figures)
    return 0


def median_run(runs: list[Run]) -> Run:
    def median(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if len(known) == len(values) else None

    return Run(
        statistics.median(r.seconds_per_step for r in runs),
        runs[0].tokens_per_step,
        median([r.forward for r in runs]),
        median([r.update for r in runs]),
    )


LABELS = {"floor": "floor (records nothing)"}


def print_speeds(figures: dict[str, Run], batch: int) -> None:
    base = figures.get("python")
    print("| engine | ms per step | tokens per step | tokens per second | vs python (tokens/s) |")
    print("|---|---|---|---|---|")
    for name, run in figures.items():
        per_second = run.tokens_per_step / run.seconds_per_step
        ratio = "-"
        if base is not None:
            ratio = f"{per_second / (base.tokens_per_step / base.seconds_per_step):.0f}x"
        label = f"compiled (B={batch})" if name == "compiled" else LABELS.get(name, name)
        print(
            f"| {label} | {1000 * run.seconds_per_step:.2f} | {run.tokens_per_step:.1f} "
            f"| {per_second:.0f} | {ratio} |"
        )


def print_phases(figures: dict[str, Run]) -> None:
    print("\nms per step, by phase (the rest: backward() and the loop)")
    print("| engine | step | forward | update | rest |")
    print("|---|---|---|---|---|")
    for name, run in figures.items():
        if run.forward is None or run.update is None:
            continue  # the compiled engine's step is one replay
        rest = run.seconds_per_step - run.forward - run.update
        cells = [run.seconds_per_step, run.forward, run.update, rest]
        print(
            f"| {LABELS.get(name, name)} | " + " | ".join(f"{1000 * c:.2f}" for c in cells) + " |"
        )


if __name__ == "__main__":
    sys.exit(main())
