"""Speed of arenagrad next to micrograd, PyTorch and the pure-Python reference.

    python bench/compare.py              # the full table (several minutes)
    python bench/compare.py --quick      # a smoke run
    python bench/compare.py --help

Every (engine, workload) pair runs in a fresh subprocess, so garbage-collector state, memory
and crashes of one engine never touch another; the garbage collector stays on, as users run
it. Each child warms up once, then repeats the workload until a time budget is spent (at least
`min_repeats` times) and reports every repeat; the table shows medians and, in brackets, the
ratio `arenagrad.reference / engine` (how many times faster, or smaller, than the pure-Python
reference; higher is better).

Adding an engine is one loader function in ENGINES; adding a workload is one function in
WORKLOADS. Engines are micrograd-compatible namespaces: `Value`, `MLP`, `sum`, plus optional
hooks (`backward`) where an engine needs a different call.
"""

from __future__ import annotations

import argparse
import builtins
import datetime
import gc
import importlib
import importlib.util
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from arenagrad.apps import demo
from arenagrad.apps.cli import Parser, image_file, non_negative_int, output_file, positive_float

# ------------------------------------------------------------------------------ sizes


@dataclass(frozen=True)
class Sizes:
    """How big each workload is, how long each child may measure, and the seed of the demo
    workloads' data and initial weights."""

    samples: int = 100  # moons samples per demo step
    wide_samples: int = 100  # the same for the width-64 model
    graph_nodes: int = 1_000_000  # workloads 4 and 6
    chain_ops: int = 100_000  # workload 5
    expr_batch: int = 200  # README expressions per timed repeat
    op_loops: int = 100_000  # statements per timed repeat of a per-op measurement
    budget_s: float = 5.0  # measuring time per child, after the warm-up
    min_repeats: int = 3
    max_repeats: int = 25
    child_timeout_s: float = 600.0
    seed: int = demo.SEED


FULL = Sizes()
QUICK = Sizes(
    samples=10,
    wide_samples=2,
    graph_nodes=20_000,
    chain_ops=2_000,
    expr_batch=20,
    op_loops=2_000,
    budget_s=0.2,
    min_repeats=2,
    max_repeats=3,
    child_timeout_s=120.0,
)


def repeat(run: Callable[[], float], sizes: Sizes, max_repeats: int | None = None) -> list[float]:
    """One warm-up, then `run()` (which returns its own measurement) until the budget is spent
    and at least `min_repeats` runs are done. An engine whose first run alone outlasts the
    budget (pure Python on the width-64 model: about a minute a step) is measured once, with
    that first run as the figure, so the default benchmark stays within minutes."""
    start = time.perf_counter()
    first = run()
    if time.perf_counter() - start > sizes.budget_s:
        return [first]
    results: list[float] = []
    limit = max_repeats or sizes.max_repeats
    start = time.perf_counter()
    while len(results) < sizes.min_repeats or (
        len(results) < limit and time.perf_counter() - start < sizes.budget_s
    ):
        results.append(run())
    return results


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ------------------------------------------------------------------------------ engines
# Loaders run inside the child process; each returns a micrograd-like namespace.


def micrograd_like(path: str) -> SimpleNamespace:
    """A package laid out like micrograd (`path.engine.Value`, `path.nn.MLP`), or one module
    with `Value` and `MLP`. Its own `sum` is used when it has one (arenagrad's n-ary node),
    else Python's, as in micrograd's demo."""
    package = importlib.import_module(path)
    parts = {}
    for sub in ("engine", "nn"):
        try:
            parts[sub] = importlib.import_module(f"{path}.{sub}")
        except ImportError:
            parts[sub] = package
    return SimpleNamespace(
        Value=parts["engine"].Value,
        MLP=parts["nn"].MLP,
        sum=getattr(package, "sum", builtins.sum),
    )


def torch_scalar() -> SimpleNamespace:
    """PyTorch used like micrograd: one float64 0-d tensor (requiring grad) per Value."""
    import torch

    def Value(x: float) -> Any:
        return torch.tensor(float(x), dtype=torch.float64, requires_grad=True)

    class Neuron:
        def __init__(self, nin: int, nonlin: bool = True) -> None:
            self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
            self.b = Value(0.0)
            self.nonlin = nonlin

        def __call__(self, x: Sequence[Any]) -> Any:
            act = builtins.sum((wi * xi for wi, xi in zip(self.w, x, strict=True)), self.b)
            return act.relu() if self.nonlin else act

        def parameters(self) -> list[Any]:
            return [*self.w, self.b]

    class MLP:
        def __init__(self, nin: int, nouts: list[int]) -> None:
            sz = [nin, *nouts]
            self.layers = [
                [Neuron(sz[i], nonlin=i != len(nouts) - 1) for _ in range(sz[i + 1])]
                for i in range(len(nouts))
            ]

        def __call__(self, x: Sequence[Any]) -> Any:
            for layer in self.layers:
                x = [n(x) for n in layer]
            return x[0] if len(x) == 1 else x

        def parameters(self) -> list[Any]:
            return [p for layer in self.layers for n in layer for p in n.parameters()]

        def zero_grad(self) -> None:
            for p in self.parameters():
                p.grad = None

    return SimpleNamespace(
        Value=Value,
        MLP=MLP,
        sum=builtins.sum,
        backward=lambda root: root.backward(retain_graph=True),
    )


def torch_tensors() -> SimpleNamespace:
    """PyTorch used idiomatically (nn.Linear, float64 tensors): the model workloads only."""
    import torch

    return SimpleNamespace(torch=torch, demo_step=torch_demo_step)


def replay() -> SimpleNamespace:
    """arenagrad.compile: the demo's loss traced once and replayed over the batch."""
    return SimpleNamespace(demo_step=replay_demo_step)


@dataclass(frozen=True)
class Engine:
    key: str  # command-line name
    title: str  # column title
    module: str  # what must be importable for the engine to run
    load: Callable[[], SimpleNamespace]
    workloads: tuple[str, ...] | None = None  # None: every workload


ENGINES = [
    Engine("arenagrad", "arenagrad", "arenagrad._core", lambda: micrograd_like("arenagrad")),
    Engine(
        "reference",
        "arenagrad.reference",
        "arenagrad.reference",
        lambda: micrograd_like("arenagrad.reference"),
    ),
    Engine("micrograd", "micrograd", "micrograd.engine", lambda: micrograd_like("micrograd")),
    Engine("torch-scalar", "PyTorch, scalar-style", "torch", torch_scalar),
    Engine("torch", "PyTorch, tensors", "torch", torch_tensors, ("demo16", "demo64")),
    Engine("replay", "arenagrad.compile", "arenagrad._core", replay, ("demo16", "demo64")),
]


def custom_engine(path: str) -> Engine:
    return Engine(path, path, path, lambda: micrograd_like(path))


def available(engine: Engine) -> bool:
    try:
        return importlib.util.find_spec(engine.module) is not None
    except (ImportError, ValueError):
        return False


def find_engine(key: str) -> Engine:
    """A known engine by its key, else a micrograd-compatible package by its module path
    (as --engine adds them)."""
    for engine in ENGINES:
        if engine.key == key:
            return engine
    return custom_engine(key)


# ------------------------------------------------------------------------------ workloads
# Each takes (engine namespace, sizes) and returns {"values": [...], ...} in its unit.


def readme_expression(Value: Callable[[float], Any]) -> Any:
    """The expression from micrograd's README (written without `+=`, which mutates tensors)."""
    a = Value(-4.0)
    b = Value(2.0)
    c = a + b
    d = a * b + b**3
    c = c + c + 1
    c = c + 1 + c + (-a)
    d = d + d * 2 + (b + a).relu()
    d = d + 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g = g + 10.0 / f
    return g, a, b


def backward(engine: SimpleNamespace, root: Any) -> None:
    hook = getattr(engine, "backward", None)
    if hook is not None:
        hook(root)
    else:
        root.backward()


def workload_expr(engine: SimpleNamespace, sizes: Sizes) -> dict[str, Any]:
    g, a, _ = readme_expression(engine.Value)
    backward(engine, g)
    check = {"g": float(g.data), "a.grad": float(a.grad)}  # 24.7041, 138.8338 in micrograd

    def batch() -> float:
        start = time.perf_counter()
        for _ in range(sizes.expr_batch):
            g, _, _ = readme_expression(engine.Value)
            backward(engine, g)
        return (time.perf_counter() - start) / sizes.expr_batch * 1e6

    return {"values": repeat(batch, sizes), "check": check}


def demo_data(sizes: Sizes, width: int) -> tuple[Any, Any]:
    return demo.moons(sizes.seed, sizes.samples if width <= 16 else sizes.wide_samples)


def scalar_demo_step(engine: SimpleNamespace, width: int, sizes: Sizes) -> dict[str, Any]:
    """micrograd's demo training step: the code of `arenagrad.apps.demo.train_step`, run on
    any micrograd-like engine."""
    X, y = demo_data(sizes, width)
    model = demo.build_model(engine, sizes.seed, width)
    k = 0

    def step() -> float:
        nonlocal k
        start = time.perf_counter()
        loss, _ = demo.train_step(engine, model, X, y, k, 100)
        elapsed = time.perf_counter() - start
        k += 1
        if not math.isfinite(float(loss)):
            raise FloatingPointError(f"loss is {float(loss)}")
        return elapsed * 1e3

    return {"values": repeat(step, sizes)}


def torch_demo_step(ns: SimpleNamespace, width: int, sizes: Sizes) -> dict[str, Any]:
    torch = ns.torch
    X, y = demo_data(sizes, width)
    torch.manual_seed(sizes.seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(2, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, 1),
    ).double()
    Xt, yt = torch.tensor(X), torch.tensor(y)
    params = list(model.parameters())
    k = 0

    def step() -> float:
        nonlocal k
        start = time.perf_counter()
        scores = model(Xt).squeeze(1)
        data_loss = torch.relu(1 - yt * scores).mean()
        reg_loss = demo.ALPHA * builtins.sum((p * p).sum() for p in params)
        total = data_loss + reg_loss
        float(((yt > 0) == (scores > 0)).double().mean())  # accuracy, as the demo computes it
        model.zero_grad()
        total.backward()
        learning_rate = demo.learning_rate(k, 100)
        with torch.no_grad():
            for p in params:
                p -= learning_rate * p.grad
        elapsed = time.perf_counter() - start
        k += 1
        return elapsed * 1e3

    return {"values": repeat(step, sizes), "threads": torch.get_num_threads()}


def replay_demo_step(ns: SimpleNamespace, width: int, sizes: Sizes) -> dict[str, Any]:
    """The demo step with the loss compiled once (arenagrad.compile) and replayed per step,
    the parameter update written as micrograd's loop (bench/replay.py's CompiledDemo)."""
    import numpy as np
    from replay import CompiledDemo

    X, y = demo_data(sizes, width)
    Xy = np.column_stack([X, y])
    compiled = CompiledDemo(demo.build_model(demo.native_engine(), sizes.seed, width))
    k = 0

    def step() -> float:
        nonlocal k
        start = time.perf_counter()
        compiled.train_step(Xy, demo.learning_rate(k, 100))
        elapsed = time.perf_counter() - start
        k += 1
        return elapsed * 1e3

    return {"values": repeat(step, sizes)}


def demo_workload(width: int) -> Callable[[SimpleNamespace, Sizes], dict[str, Any]]:
    def run(engine: SimpleNamespace, sizes: Sizes) -> dict[str, Any]:
        if hasattr(engine, "demo_step"):
            return engine.demo_step(engine, width, sizes)  # type: ignore[no-any-return]
        return scalar_demo_step(engine, width, sizes)

    return run


def wide_graph(Value: Callable[[float], Any], nodes: int) -> tuple[Any, int]:
    """A graph of about `nodes` micrograd nodes, shallow enough for recursive engines:
    terms relu(x_i * w + b) (4 nodes each) summed as a balanced binary tree (1 node each).
    Only O(log n) partial sums are alive while it is built. Returns (root, node count)."""
    terms = max(1, (nodes - 2) // 5)
    w, b = Value(0.5), Value(-0.1)
    root = balanced_sum((Value((i % 97) / 48.0 - 1.0) * w + b).relu() for i in range(terms))
    return root, 5 * terms + 1


def balanced_sum(terms: Iterable[Any]) -> Any:
    """The terms (at least one) summed as a balanced binary tree, in the order they come,
    keeping only O(log n) partial sums alive (a deep chain would defeat recursive engines)."""
    stack: list[tuple[int, Any]] = []
    for t in terms:
        level = 0
        while stack and stack[-1][0] == level:
            t = stack.pop()[1] + t
            level += 1
        stack.append((level, t))
    root = stack.pop()[1]
    while stack:
        root = stack.pop()[1] + root
    return root


def current_rss() -> int | None:
    """Resident memory of this process in bytes (Linux), else None."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss() -> int | None:
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def workload_graph(engine: SimpleNamespace, sizes: Sizes) -> dict[str, Any]:
    """Workloads 4 and 6 share one build: backward ns per node, then peak memory per node."""
    gc.collect()
    before = current_rss()
    start = time.perf_counter()
    root, nodes = wide_graph(engine.Value, sizes.graph_nodes)
    build_s = time.perf_counter() - start
    backward_ns = repeat(lambda: timed(lambda: backward(engine, root)) / nodes * 1e9, sizes)
    peak = peak_rss()
    result: dict[str, Any] = {"values": backward_ns, "nodes": nodes, "build_s": build_s}
    if before is not None and peak is not None:
        result["bytes_per_node"] = (peak - before) / nodes
    stats = getattr(sys.modules.get("arenagrad._core"), "arena_stats", None)
    if stats is not None and engine.Value is sys.modules["arenagrad._core"].Value:
        result["arena_bytes_reserved_per_node"] = stats()["bytes_reserved"] / nodes
    return result


def workload_chain(engine: SimpleNamespace, sizes: Sizes) -> dict[str, Any]:
    """A chain y = y * 0.5 + x, two ops per link, built and backpropagated."""

    def run() -> float:
        start = time.perf_counter()
        x = engine.Value(0.25)
        y = engine.Value(1.0)
        for _ in range(sizes.chain_ops // 2):
            y = y * 0.5 + x
        backward(engine, y)
        elapsed = time.perf_counter() - start
        del y  # freeing a deep graph can recurse too: count it as part of the workload
        return elapsed * 1e3

    return {"values": repeat(run, sizes, max_repeats=5)}


OPS = {"add": "a + b", "mul_float": "a * 2.0", "rmul_float": "2.0 * a"}


def per_op(statement: str) -> Callable[[SimpleNamespace, Sizes], dict[str, Any]]:
    """ns per Python statement (timeit loops; the median of the repeats)."""

    def run(engine: SimpleNamespace, sizes: Sizes) -> dict[str, Any]:
        scope = {"a": engine.Value(1.5), "b": engine.Value(2.5)}
        timer = timeit.Timer(statement, globals=scope)
        values = repeat(lambda: timer.timeit(sizes.op_loops) / sizes.op_loops * 1e9, sizes, 7)
        floats = timeit.Timer(statement, globals={"a": 1.5, "b": 2.5})
        floor = [floats.timeit(sizes.op_loops) / sizes.op_loops * 1e9 for _ in range(7)]
        return {"values": values, "float_ns": statistics.median(floor)}

    return run


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    unit: str
    run: Callable[[SimpleNamespace, Sizes], dict[str, Any]]
    figure: str = "values"  # which result field the table shows ("bytes_per_node": memory)
    child: str = ""  # key of the workload whose child run produces this figure


WORKLOADS = [
    Workload("expr", "1. README expression, forward + backward", "µs", workload_expr),
    Workload("demo16", "2. demo training step, MLP(2, [16, 16, 1])", "ms", demo_workload(16)),
    Workload("demo64", "3. demo training step, MLP(2, [64, 64, 1])", "ms", demo_workload(64)),
    Workload("backward", "4. backward over a prebuilt graph", "ns/node", workload_graph),
    Workload("chain", "5. deep chain, built + backward", "ms", workload_chain),
    Workload(
        "memory",
        "6. peak memory of that graph",
        "B/node",
        workload_graph,
        "bytes_per_node",
        "backward",
    ),
    *(Workload(key, f"`{stmt}` from Python", "ns", per_op(stmt)) for key, stmt in OPS.items()),
]


def find_workload(key: str) -> Workload:
    for workload in WORKLOADS:
        if workload.key == key:
            return workload
    raise KeyError(key)


# ------------------------------------------------------------------------------ the child


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs one workload on one engine (in a fresh process); never raises."""
    sizes = Sizes(**spec["sizes"])
    try:
        engine = find_engine(spec["engine"]).load()
        result = find_workload(spec["workload"]).run(engine, sizes)
    except BaseException as error:  # RecursionError, MemoryError, ...: report, don't crash
        message = str(error).splitlines()[0][:120] if str(error) else ""
        return {"error": type(error).__name__, "message": message}
    return result


def run_child(engine: Engine, workload: Workload, sizes: Sizes) -> dict[str, Any]:
    spec = {"engine": engine.key, "workload": workload.key, "sizes": sizes.__dict__}
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=sizes.child_timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": "timeout", "message": f"over {sizes.child_timeout_s:.0f} s"}
    if done.returncode != 0:
        why = f"signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
        tail = done.stderr.strip().splitlines()[-1:] or [""]
        return {"error": f"crashed, {why}", "message": tail[0][:120]}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
    except (json.JSONDecodeError, IndexError):
        return {"error": "no result", "message": done.stdout[-120:]}


# ------------------------------------------------------------------------------ the table


def figure(result: dict[str, Any] | None, workload: Workload) -> float | None:
    if result is None or "error" in result:
        return None
    value = result.get(workload.figure)
    if isinstance(value, list):
        return statistics.median(value) if value else None
    return float(value) if value is not None else None


def format_number(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if x >= 0.1 else f"{x:.3g}"


def format_ratio(r: float) -> str:
    return f"{r:,.0f}" if r >= 10 else f"{r:.1f}" if r >= 0.95 else f"{r:.2g}"


def format_cell(result: dict[str, Any] | None, workload: Workload, baseline: float | None) -> str:
    if result is None:
        return "—"
    if "error" in result:
        return f"fails ({result['error']})"
    value = figure(result, workload)
    if value is None:
        return "n/a"
    cell = format_number(value)
    if len(result.get("values", ())) == 1:
        cell += "*"  # measured once: see describe()
    if baseline is not None and value > 0:
        cell += f" (×{format_ratio(baseline / value)})"
    return cell


def machine_info() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for name in ("arenagrad", "numpy", "torch", "micrograd"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            continue
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "versions": versions,
        "load_average": [round(x, 2) for x in os.getloadavg()]
        if hasattr(os, "getloadavg")
        else None,
        "gc": "on (Python's default)",
    }


def render(
    results: dict[str, dict[str, Any]], engines: list[Engine], workloads: list[Workload]
) -> str:
    header = ["workload", "unit", *(e.title for e in engines)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for workload in workloads:
        row = results[workload.key]
        baseline = figure(row.get("reference"), workload)
        title = workload.title
        if workload.key in OPS:
            floors = [r["float_ns"] for r in row.values() if r and "float_ns" in r]
            if floors:
                title += f"; plain floats: {format_number(statistics.median(floors))} ns"
        if workload.key == "backward":
            nodes = next((r["nodes"] for r in row.values() if r and "nodes" in r), None)
            if nodes:
                title += f" of {nodes:,} nodes"
        cells = [format_cell(row.get(e.key), workload, baseline) for e in engines]
        lines.append("| " + " | ".join([title, workload.unit, *cells]) + " |")
    return "\n".join(lines)


def describe(info: dict[str, Any], sizes: Sizes, command: str) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    return (
        f"`{command}` on {info['date']}: {info['cpu']}, {info['cores']} cores, "
        f"Python {info['python']}, {info['system']}; {versions}; garbage collector on; "
        f"load average at start {info['load_average']}.\n"
        f"Medians of {sizes.min_repeats}-{sizes.max_repeats} repeats after a warm-up, each "
        f"engine and workload in its own process; (×N) = arenagrad.reference ÷ engine, so "
        f"higher is faster (or smaller); — = not applicable; * = one run, no warm-up "
        f"(its first run alone took longer than the {sizes.budget_s:g} s budget)."
    )


def plot(
    path: str, results: dict[str, Any], engines: list[Engine], workloads: list[Workload]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.8 / max(1, len(engines))
    for i, engine in enumerate(engines):
        ratios = []
        for workload in workloads:
            base = figure(results[workload.key].get("reference"), workload)
            value = figure(results[workload.key].get(engine.key), workload)
            ratios.append(base / value if base and value else 0.0)
        xs = [j + i * width for j in range(len(workloads))]
        ax.bar(xs, ratios, width, label=engine.title)
    ax.set_yscale("log")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(workloads))])
    ax.set_xticklabels([w.key for w in workloads], rotation=20)
    ax.set_ylabel("× arenagrad.reference (higher is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ------------------------------------------------------------------------------ main


def comma_list(text: str) -> list[str]:
    keys = list(dict.fromkeys(key.strip() for key in text.split(",") if key.strip()))
    if not keys:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return keys


def make_parser() -> Parser:
    parser = Parser(
        prog="bench/compare.py", description="Compare arenagrad's speed with its peers."
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few repeats (smoke run)")
    parser.add_argument(
        "--engine",
        action="append",
        default=[],
        metavar="MODULE.PATH",
        help="also run this micrograd-compatible package (repeatable)",
    )
    parser.add_argument(
        "--engines",
        type=comma_list,
        help="comma-separated engines to run (default: every importable one); known: "
        + ", ".join(e.key for e in ENGINES),
    )
    parser.add_argument(
        "--workloads",
        type=comma_list,
        help="comma-separated workloads (default: all): " + ", ".join(w.key for w in WORKLOADS),
    )
    parser.add_argument("--json", type=output_file, metavar="FILE", help="write the raw figures")
    parser.add_argument(
        "--plot", type=image_file, metavar="FILE.png", help="draw the ratios (needs matplotlib)"
    )
    parser.add_argument(
        "--budget", type=positive_float, help="seconds of measuring per engine and workload"
    )
    parser.add_argument(
        "--seed",
        type=non_negative_int,
        default=demo.SEED,
        help=f"seed of the demo data and weights ({demo.SEED})",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser


def choose(parser: Parser, args: argparse.Namespace) -> tuple[list[Engine], list[Workload]]:
    """The engines and workloads to run. A name that is unknown, or an engine asked for by
    name that cannot be imported, is a usage error (exit 2) before anything runs."""
    workloads = {workload.key: workload for workload in WORKLOADS}
    for key in args.workloads or ():
        if key not in workloads:
            parser.error(f"unknown workload {key!r} (known: {', '.join(workloads)})")
    known = {engine.key: engine for engine in ENGINES}
    for key in args.engines or ():
        if key not in known:
            parser.error(
                f"unknown engine {key!r} (known: {', '.join(known)}; "
                "--engine MODULE.PATH adds another micrograd-compatible package)"
            )
    asked = [known[key] for key in args.engines or ()]
    asked += [custom_engine(path) for path in args.engine if path not in known]
    for engine in asked:
        if not available(engine):
            parser.error(f"engine {engine.key!r} needs {engine.module}, which is not importable")
    if not args.engines:  # every known engine that this environment can import
        skipped = [engine.key for engine in ENGINES if not available(engine)]
        if skipped:
            print(f"not importable, skipped: {', '.join(skipped)}", file=sys.stderr)
        asked = [engine for engine in ENGINES if available(engine)] + asked
    return asked, [workloads[key] for key in args.workloads or workloads]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    engines, workloads = choose(parser, args)
    sizes = QUICK if args.quick else FULL
    if args.budget is not None:
        sizes = Sizes(**{**sizes.__dict__, "budget_s": args.budget})
    sizes = Sizes(**{**sizes.__dict__, "seed": args.seed})

    info = machine_info()
    results: dict[str, dict[str, Any]] = {w.key: {} for w in workloads}
    children: dict[tuple[str, str], dict[str, Any]] = {}
    for workload in workloads:
        source = workload.child or workload.key  # memory comes from the backward child
        for engine in engines:
            if engine.workloads is not None and source not in engine.workloads:
                continue
            if (engine.key, source) not in children:
                print(f"  {engine.key}: {source} ...", file=sys.stderr, flush=True)
                children[engine.key, source] = run_child(engine, find_workload(source), sizes)
            results[workload.key][engine.key] = children[engine.key, source]
    info["load_average_end"] = (
        [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    )

    command = "python bench/compare.py" + (" " + " ".join(argv) if argv else "")
    print(describe(info, sizes, command.strip()))
    print()
    print(render(results, engines, workloads))
    errors = sorted(
        {
            f"{e.title}: {r['error']}: {r.get('message', '')}"
            for e in engines
            for row in results.values()
            if (r := row.get(e.key)) and "error" in r
        }
    )
    if errors:
        print("\nFailures:\n" + "\n".join(f"- {line}" for line in errors))
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": info, "sizes": sizes.__dict__, "results": results}, out, indent=1)
    if args.plot:
        plot(args.plot, results, engines, workloads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
