"""Replay benchmarks (arenagrad.compile), side by side in one run.

    python bench/replay.py                    # every section, as markdown tables
    python bench/replay.py --quick            # fewer repeats
    python bench/replay.py --section steps    # one section (throughput, demo, steps, single)

Sections:
  * throughput: replay of micrograd's demo model (MLP 2-16-16-1, moons data, max-margin loss),
    ns per node-lane, for B in 1, 64, 1024, 16384 and 1 or 2 threads;
  * demo: forward+backward of the batch (B=100) against idiomatic PyTorch (float64, nn.Linear,
    the same weights), when torch is installed; the whole training step (forward, backward,
    SGD update of every parameter) against Karpathy's micrograd (`pip install micrograd`; else
    the pure-Python arenagrad.reference, the same algorithm), and arenagrad's own eager engine;
  * steps: the whole training step (MLP 2-H-H-1, moons, hinge loss + 1e-4 L2, SGD) for H = 16
    and 64 at B = 1, 100, 1,024, 16,384, arenagrad replay against JAX (`jax.jit` of
    `value_and_grad` and the update, float64) and PyTorch eager (float64) when installed, from
    the same initial weights (losses checked equal to 1e-12), engines interleaved round by
    round, one child process per thread count (1: every engine pinned to one CPU; 2);
  * single: a traced graph replayed on one lane (n_inputs=0) against eager `backward()` on
    the same graph: the demo's whole-batch loss and a deep chain.

Every function returns numbers, so other scripts (bench/compare.py) can reuse them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import arenagrad
import numpy as np
from arenagrad.datasets import make_moons
from arenagrad.nn import MLP

try:
    from arenagrad.apps import demo
except ImportError:  # an older arenagrad, for before/after runs of the steps/single sections
    demo = None  # type: ignore[assignment]


def seconds_per_call(fn: Callable[[], Any], min_time: float = 0.2, repeats: int = 5) -> float:
    """Median over `repeats` runs of the mean time of enough calls to fill `min_time`."""
    fn()  # warm up
    number, start = 1, time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    number = max(1, int(min_time / repeats / once))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return float(np.median(times))


# ---------------------------------------------------------------------------- the demo


def hinge(model: Any, x0: Any, x1: Any, y: Any) -> Any:
    """The demo's per-sample max-margin loss."""
    return (1 + -y * model([x0, x1])).relu()


def demo_data(n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    return demo.moons(demo.SEED, n)


def demo_model() -> MLP:
    return demo.build_model(demo.native_engine())


class CompiledDemo:
    """The demo's loss as two replays: the per-sample hinge loss over a batch (one lane per
    sample) and the L2 term (no inputs, one lane)."""

    def __init__(self, model: MLP) -> None:
        self.model = model
        self.params = model.parameters()
        self.per_sample = arenagrad.compile(lambda x0, x1, y: hinge(model, x0, x1, y), 3)
        self.reg = arenagrad.compile(
            lambda: demo.ALPHA * arenagrad.sum([p * p for p in self.params]), 0
        )

    def forward_backward(self, Xy: np.ndarray) -> float:
        """Data loss (mean hinge) and its gradients, accumulated into the parameters."""
        losses = self.per_sample.forward(Xy)
        self.per_sample.backward(np.full(len(Xy), 1.0 / len(Xy)))
        return float(np.mean(losses))

    def train_step(self, Xy: np.ndarray, learning_rate: float) -> float:
        """micrograd's loop as written: zero_grad, forward, backward, update in Python."""
        self.model.zero_grad()
        loss = self.forward_backward(Xy) + float(self.reg.forward()[0])
        self.reg.backward()
        for p in self.params:
            p.data -= learning_rate * p.grad
        return loss

    def fast_train_step(self, Xy: np.ndarray, learning_rate: float) -> float:
        """The same step with the parameter loops as native calls (Compiled.zero_grad and
        Compiled.sgd_step): the per-sample tape's parameters are all of the model's."""
        self.per_sample.zero_grad()
        loss = self.forward_backward(Xy) + float(self.reg.forward()[0])
        self.reg.backward()
        self.per_sample.sgd_step(learning_rate)
        return loss


def torch_demo(model: MLP) -> Any:
    """Idiomatic PyTorch: nn.Linear layers in float64 holding the same weights."""
    import torch
    from torch import nn

    layers: list[nn.Module] = []
    for i, layer in enumerate(model.layers):
        linear = nn.Linear(len(layer.neurons[0].w), len(layer.neurons), dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(
                torch.tensor([[w.data for w in n.w] for n in layer.neurons], dtype=torch.float64)
            )
            linear.bias.copy_(torch.tensor([n.b.data for n in layer.neurons], dtype=torch.float64))
        layers.append(linear)
        if i != len(model.layers) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def time_demo_forward_backward(B: int = 100) -> dict[str, float]:
    """Seconds per forward+backward of the mean hinge loss over B samples."""
    X, y = demo_data(B)
    Xy = np.column_stack([X, y])
    model = demo_model()
    compiled = CompiledDemo(model)

    def replay() -> None:
        compiled.per_sample.zero_grad()  # all of the model's parameters, in one native call
        compiled.forward_backward(Xy)

    result = {"arenagrad replay": seconds_per_call(replay)}
    try:
        import torch
    except ImportError:
        return result
    net = torch_demo(model)
    Xt, yt = torch.tensor(X), torch.tensor(y)

    def torch_step() -> torch.Tensor:
        net.zero_grad()
        loss = torch.relu(1 - yt * net(Xt).squeeze(1)).mean()
        loss.backward()
        return loss

    model.zero_grad()
    ours = compiled.forward_backward(Xy)
    theirs = float(torch_step().detach())
    assert abs(ours - theirs) <= 1e-12 * max(1.0, abs(ours)), (ours, theirs)
    threads = torch.get_num_threads()
    result[f"PyTorch {torch.__version__} (float64, {threads} threads)"] = seconds_per_call(
        torch_step
    )
    if threads > 1:
        torch.set_num_threads(1)
        try:
            result[f"PyTorch {torch.__version__} (float64, 1 thread)"] = seconds_per_call(
                torch_step
            )
        finally:
            torch.set_num_threads(threads)
    return result


def time_demo_train_step(B: int = 100, slow_repeats: int = 3) -> dict[str, float]:
    """Seconds per whole training step (forward, backward, SGD update)."""
    X, y = demo_data(B)
    Xy = np.column_stack([X, y])
    compiled = CompiledDemo(demo_model())
    result = {
        "arenagrad replay (zero_grad/sgd_step native)": seconds_per_call(
            lambda: compiled.fast_train_step(Xy, 0.5)
        ),
        "arenagrad replay (update loop in Python)": seconds_per_call(
            lambda: compiled.train_step(Xy, 0.5)
        ),
    }

    result["arenagrad single-lane replay (whole batch, n_inputs=0)"] = seconds_per_call(
        whole_batch_step(X, y)
    )
    result["arenagrad eager"] = eager_step_time(demo.native_engine(), X, y, steps=20)
    name, baseline = demo.baseline_engine()
    result[name] = eager_step_time(baseline, X, y, steps=slow_repeats)
    return result


def eager_step_time(engine: Any, X: np.ndarray, y: np.ndarray, steps: int) -> float:
    """Median seconds per step of the eager demo on `engine`, from a freshly seeded model."""
    model = demo.build_model(engine)
    times = []
    for k in range(steps):
        start = time.perf_counter()
        demo.train_step(engine, model, X, y, k, 100)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def whole_batch_step(X: np.ndarray, y: np.ndarray) -> Callable[[], None]:
    """The eager demo's loss traced once as one graph (no inputs: the data are constants) and
    replayed on one lane with the current parameters."""
    model = demo_model()
    f = arenagrad.compile(lambda: demo.loss(demo.native_engine(), model, X, y)[0], 0)
    params = model.parameters()

    def step() -> None:
        model.zero_grad()
        f.forward()
        f.backward()
        for p in params:
            p.data -= 0.5 * p.grad

    return step


# ---------------------------------------------------------------------------- throughput


def ns_per_node_lane(
    B: int, thread_counts: tuple[int, ...] = (1, 2), min_time: float = 0.2, repeats: int = 15
) -> dict[int, dict[str, float]]:
    """Replay of the demo's per-sample loss over B random lanes: ns per (lane node x lane)
    for forward alone and for forward+backward, for each thread count.

    The thread counts take turns within every repeat (medians over the repeats): on a shared
    2-core machine the load drifts over seconds, and timing all of one count before the other
    turned that drift into a speedup or slowdown of its own."""
    model = demo_model()
    f = CompiledDemo(model).per_sample
    rng = np.random.default_rng(0)
    Xy = np.column_stack([rng.normal(size=(B, 2)), rng.choice([-1.0, 1.0], size=B)])
    seed = np.ones(B)

    def forward() -> None:
        f.forward(Xy)

    def both() -> None:
        f.forward(Xy)
        f.backward(seed)

    saved = arenagrad.get_num_threads()
    times: dict[tuple[int, str], list[float]] = {}
    try:
        calls = {}  # per sweep kind: calls filling min_time / repeats with one thread
        for kind, fn in (("forward", forward), ("forward+backward", both)):
            arenagrad.set_num_threads(1)
            fn()
            start = time.perf_counter()
            fn()
            calls[kind] = max(1, int(min_time / repeats / max(time.perf_counter() - start, 1e-7)))
        for _ in range(repeats):
            for threads in thread_counts:
                arenagrad.set_num_threads(threads)
                for kind, fn in (("forward", forward), ("forward+backward", both)):
                    fn()  # warm: threads started, buffers sized
                    start = time.perf_counter()
                    for _ in range(calls[kind]):
                        fn()
                    elapsed = (time.perf_counter() - start) / calls[kind]
                    times.setdefault((threads, kind), []).append(elapsed)
    finally:
        arenagrad.set_num_threads(saved)
    scale = 1e9 / (f.n_lane_nodes * B)
    unfused = 1e9 / (micrograd_ops_per_lane(model) * B)
    result = {}
    for threads in thread_counts:
        fwd = float(np.median(times[threads, "forward"]))
        fb = float(np.median(times[threads, "forward+backward"]))
        result[threads] = {
            "forward": fwd * scale,
            "forward+backward": fb * scale,
            "forward+backward per micrograd op": fb * unfused,
        }
    return result


def micrograd_ops_per_lane(model: MLP) -> int:
    """Ops micrograd's own graph has per sample for the same loss: a fused linear node of n
    terms is n multiplications and n additions there; plus ReLUs and the loss's 4 ops."""
    ops = 4  # -y, * score, 1 + ..., relu
    for layer in model.layers:
        for neuron in layer.neurons:
            ops += 2 * len(neuron.w) + (1 if neuron.nonlin else 0)
    return ops


# ---------------------------------------------------------------------------- training steps

STEP_WIDTHS = (16, 64)
STEP_BATCHES = (1, 100, 1024, 16384)
STEP_LEARNING_RATE = 0.05


def weights_of(model: MLP) -> list[tuple[np.ndarray, np.ndarray]]:
    """The model's layers as (W, b) with W of shape (inputs, neurons): h = x @ W + b."""
    return [
        (
            np.array([[w.data for w in n.w] for n in layer.neurons]).T.copy(),
            np.array([n.b.data for n in layer.neurons]),
        )
        for layer in model.layers
    ]


def step_flops(width: int) -> int:
    """Nominal floating-point operations of one step per sample: 2 per weight forward, 4
    backward (input and weight gradients), as for a GEMM; activations and loss left out."""
    weights = 2 * width + width * width + width
    return 6 * weights


# The steps and single sections use only arenagrad's stable API (compile, sum, nn.MLP,
# datasets), so they also run against an older build for before/after figures.
ALPHA = 1e-4  # the demo's L2 weight
SEED = 1337  # the demo's seed (weights and data)


def moons_batch(B: int) -> tuple[np.ndarray, np.ndarray]:
    """B moons samples (noise 0.1): X of shape (B, 2), labels y in {-1, 1}."""
    X, y = make_moons(n_samples=max(B, 2), noise=0.1, seed=SEED)  # it draws both moons
    return X[:B], y[:B]


def seeded_mlp(width: int) -> MLP:
    """MLP(2, [width, width, 1]) with micrograd's initialisation seeded as in the demo."""
    random.seed(SEED)
    return MLP(2, [width, width, 1])


def per_sample_hinge(model: MLP) -> Any:
    return lambda x0, x1, y: (1 + -y * model([x0, x1])).relu()


class ArenagradStep:
    """The step as two replays: the per-sample hinge loss over the batch, seeded with 1/B
    (the mean), and the L2 term (no inputs, one lane); native zero_grad and sgd_step."""

    name = "arenagrad replay"

    def __init__(self, model: MLP, X: np.ndarray, y: np.ndarray) -> None:
        params = model.parameters()
        self.per_sample = arenagrad.compile(per_sample_hinge(model), 3)
        self.reg = arenagrad.compile(lambda: ALPHA * arenagrad.sum([p * p for p in params]), 0)
        self.Xy = np.column_stack([X, y])
        self.seed = np.full(len(y), 1.0 / len(y))

    def step(self, learning_rate: float) -> float:
        self.per_sample.zero_grad()
        losses = self.per_sample.forward(self.Xy)
        self.per_sample.backward(self.seed)
        loss = float(np.mean(losses)) + float(self.reg.forward()[0])
        self.reg.backward()
        self.per_sample.sgd_step(learning_rate)
        return loss


class JaxStep:
    """`jax.jit` of value_and_grad of the same loss plus the SGD update, float64."""

    def __init__(self, weights: list[tuple[np.ndarray, np.ndarray]], X: np.ndarray, y: np.ndarray):
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        self.name = f"JAX {jax.__version__} jit"
        alpha = ALPHA

        def loss_fn(params: Any, X: Any, y: Any) -> Any:
            h = X
            for i, (W, b) in enumerate(params):
                h = h @ W + b
                if i < len(params) - 1:
                    h = jax.nn.relu(h)
            data = jnp.mean(jax.nn.relu(1 - y * h[:, 0]))
            reg = sum(jnp.sum(W * W) + jnp.sum(b * b) for W, b in params)
            return data + alpha * reg

        def step(params: Any, X: Any, y: Any, learning_rate: Any) -> Any:
            loss, grads = jax.value_and_grad(loss_fn)(params, X, y)
            new = jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)
            return loss, new

        self._step = jax.jit(step, donate_argnums=0)
        self.params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in weights]
        self.X, self.y = jnp.asarray(X), jnp.asarray(y)

    def step(self, learning_rate: float) -> float:
        loss, self.params = self._step(self.params, self.X, self.y, learning_rate)
        return float(loss)


class TorchStep:
    """Idiomatic PyTorch: nn.Linear layers in float64, torch.optim.SGD."""

    def __init__(self, weights: list[tuple[np.ndarray, np.ndarray]], X: np.ndarray, y: np.ndarray):
        import torch
        from torch import nn

        self.name = f"PyTorch {torch.__version__}"
        layers: list[nn.Module] = []
        for i, (W, b) in enumerate(weights):
            linear = nn.Linear(W.shape[0], W.shape[1], dtype=torch.float64)
            with torch.no_grad():
                linear.weight.copy_(torch.tensor(W.T))
                linear.bias.copy_(torch.tensor(b))
            layers.append(linear)
            if i < len(weights) - 1:
                layers.append(nn.ReLU())
        self.torch = torch
        self.net = nn.Sequential(*layers)
        self.params = list(self.net.parameters())
        self.X, self.y = torch.tensor(X), torch.tensor(y)
        self.optimizer = torch.optim.SGD(self.params, lr=STEP_LEARNING_RATE)

    def step(self, learning_rate: float) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        scores = self.net(self.X).squeeze(1)
        data = self.torch.relu(1 - self.y * scores).mean()
        reg = sum((p * p).sum() for p in self.params)
        total = data + ALPHA * reg
        self.optimizer.zero_grad()
        total.backward()
        self.optimizer.step()
        return float(total.detach())


def step_engines(width: int, B: int, only_arenagrad: bool = False) -> list[Any]:
    """Every installed engine for one (width, batch), from the same initial weights."""
    X, y = moons_batch(B)
    model = seeded_mlp(width)
    weights = weights_of(model)
    engines: list[Any] = [ArenagradStep(model, X, y)]
    for make in () if only_arenagrad else (JaxStep, TorchStep):
        with contextlib.suppress(ImportError):
            engines.append(make(weights, X, y))
    return engines


def check_same_losses(engines: list[Any], steps: int = 3) -> None:
    """The engines' first steps from the same weights give the same losses (1e-12)."""
    for k in range(steps):
        losses = [engine.step(STEP_LEARNING_RATE) for engine in engines]
        for engine, loss in zip(engines[1:], losses[1:], strict=True):
            if abs(loss - losses[0]) > 1e-12 * max(1.0, abs(losses[0])):
                raise AssertionError(f"step {k}: {engine.name} loss {loss!r} != {losses[0]!r}")


def time_steps(
    width: int, B: int, rounds: int, min_time: float, only_arenagrad: bool = False
) -> tuple[list[str], dict[str, list[float]]]:
    """Seconds per training step of every engine, one list per engine (one entry per round):
    in each round every engine runs enough steps to fill min_time / rounds, in turn."""
    engines = step_engines(width, B, only_arenagrad)
    check_same_losses(engines)
    calls = {}
    for engine in engines:
        engine.step(STEP_LEARNING_RATE)
        start = time.perf_counter()
        engine.step(STEP_LEARNING_RATE)
        once = max(time.perf_counter() - start, 1e-7)
        calls[engine.name] = max(1, int(min_time / rounds / once))
    times: dict[str, list[float]] = {engine.name: [] for engine in engines}
    for _ in range(rounds):
        for engine in engines:
            n = calls[engine.name]
            start = time.perf_counter()
            for _ in range(n):
                engine.step(STEP_LEARNING_RATE)
            times[engine.name].append((time.perf_counter() - start) / n)
    return [engine.name for engine in engines], times


def step_child(
    threads: int, rounds: int, min_time: float, only_arenagrad: bool = False
) -> dict[str, Any]:
    """One thread count's whole table, in this process (run by step_table in a child)."""
    arenagrad.set_num_threads(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    results = []
    for width in STEP_WIDTHS:
        for B in STEP_BATCHES:
            names, times = time_steps(width, B, rounds, min_time, only_arenagrad)
            results.append({"width": width, "batch": B, "engines": names, "times": times})
    return {"threads": threads, "results": results}


def run_step_child(
    python: str, threads: int, rounds: int, min_time: float, only_arenagrad: bool
) -> dict[str, Any]:
    env = dict(os.environ)
    # Not OMP_PROC_BIND=true: OpenMP then binds the main thread to one CPU when arenagrad is
    # imported, and every thread started after it inherits that CPU (XLA's and PyTorch's
    # pools included), so the other engines would run their threads on one CPU.
    # PyTorch's OpenMP threads otherwise spin for a while after each of its ops, taking the
    # CPU from the engine timed next in the same process (arenagrad's 2-thread steps measured
    # up to 3x slower, JAX's not at all).
    env.setdefault("OMP_WAIT_POLICY", "passive")
    if threads == 1:
        flags = env.get("XLA_FLAGS", "")
        env["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false".strip()
    argv = [python, __file__, "--step-child", str(threads)]
    argv += ["--rounds", str(rounds), "--min-time", str(min_time)]
    argv += ["--only-arenagrad"] if only_arenagrad else []
    child = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if child.returncode != 0:
        raise RuntimeError(f"step child ({python}, {threads} threads) failed:\n{child.stderr}")
    table: dict[str, Any] = json.loads(child.stdout.splitlines()[-1])
    return table


def step_table(
    thread_counts: tuple[int, ...],
    rounds: int,
    min_time: float,
    before: str | None = None,
    repeats: int = 1,
) -> list[dict[str, Any]]:
    """Runs step_child in fresh processes, `repeats` per thread count, each timing `rounds`
    rounds; their times are pooled. With 1 thread every engine is pinned to one CPU (XLA and
    PyTorch keep helper threads otherwise) and XLA's Eigen pool is single-threaded;
    OMP_WAIT_POLICY=passive unless set. `before`: another Python
    whose arenagrad (an older build) is timed too, in children alternating with this one's,
    as the engine "before"."""
    tables = []
    for threads in thread_counts:
        pooled: dict[tuple[int, int], dict[str, Any]] = {}
        for _ in range(repeats):
            runs = [(sys.executable, False, "")]
            if before is not None:
                runs.append((before, True, "before: "))
            for python, only_arenagrad, prefix in runs:
                table = run_step_child(python, threads, rounds, min_time, only_arenagrad)
                for r in table["results"]:
                    into = pooled.setdefault(
                        (r["width"], r["batch"]),
                        {"width": r["width"], "batch": r["batch"], "engines": [], "times": {}},
                    )
                    for name in r["engines"]:
                        label = prefix + name
                        if label not in into["times"]:
                            into["engines"].append(label)
                            into["times"][label] = []
                        into["times"][label].extend(r["times"][name])
        tables.append({"threads": threads, "results": list(pooled.values())})
    return tables


def print_step_tables(tables: list[dict[str, Any]]) -> None:
    for table in tables:
        threads = table["threads"]
        names = table["results"][0]["engines"]
        print(f"\n{threads} thread{'s' if threads > 1 else ''}: µs per training step (median)\n")
        header = " | ".join(names[:1] + [f"{n} | vs replay" for n in names[1:]])
        print(f"| model | B | {header} | replay GFLOP/s |")
        print("|---|---:|" + "---:|" * (2 * len(names) - 1) + "---:|")
        for r in table["results"]:
            medians = {name: float(np.median(r["times"][name])) for name in r["engines"]}
            ours = medians[r["engines"][0]]
            cells = [f"{ours * 1e6:,.0f}"]
            for name in r["engines"][1:]:
                cells.append(f"{medians[name] * 1e6:,.0f} | {medians[name] / ours:.2f}x")
            gflops = step_flops(r["width"]) * r["batch"] / ours / 1e9
            model = f"2-{r['width']}-{r['width']}-1"
            print(f"| {model} | {r['batch']:,} | {' | '.join(cells)} | {gflops:.1f} |")


# ---------------------------------------------------------------------------- single lane


def deep_chain(links: int) -> Callable[[], Any]:
    """A chain y = tanh(y * w + x_i) of 3 ops per link over one parameter w."""
    w = arenagrad.Value(0.5)

    def build() -> Any:
        y = arenagrad.Value(0.1)
        for i in range(links):
            y = (y * w + (i % 7) * 0.1).tanh()
        return y

    return build


def single_lane_vs_eager(min_time: float) -> dict[str, dict[str, float]]:
    """Backward of one graph: eager `backward()` against a single-lane replay (the graph
    traced with n_inputs=0 and replayed on one lane), and the replay's forward, in ns per
    node. Both accumulate into the same parameters' .grad."""
    X, y = moons_batch(100)
    model = seeded_mlp(16)
    params = model.parameters()

    def demo_loss() -> Any:  # the demo's whole-batch loss: mean hinge + L2
        scores = [model([arenagrad.Value(a), arenagrad.Value(b)]) for a, b in X.tolist()]
        losses = [(1 + -yi * s).relu() for yi, s in zip(y.tolist(), scores, strict=True)]
        data = arenagrad.sum(losses) * (1.0 / len(losses))
        return data + ALPHA * arenagrad.sum([p * p for p in params])

    graphs = {
        "demo loss (B=100)": demo_loss,
        "deep chain (30,000 links)": deep_chain(30_000),
    }
    result = {}
    for name, build in graphs.items():
        eager = build()
        f = arenagrad.compile(build, 0)
        f.forward()
        nodes = f.n_nodes
        result[name] = {
            "nodes": nodes,
            "eager backward": seconds_per_call(eager.backward, min_time) / nodes * 1e9,
            "replay backward": seconds_per_call(f.backward, min_time) / nodes * 1e9,
            "replay forward": seconds_per_call(f.forward, min_time) / nodes * 1e9,
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter timings")
    parser.add_argument(
        "--section", choices=SECTIONS, action="append", help="run only this section (repeatable)"
    )
    parser.add_argument("--threads", default="1,2", help="thread counts of the steps section")
    parser.add_argument("--step-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=7, help="rounds of the steps section")
    parser.add_argument(
        "--before",
        metavar="PYTHON",
        help="steps section: also time the arenagrad that this Python imports (an older build), "
        "in child processes alternating with this one's",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        help="steps section: child processes per thread count (default 1, 3 with --before)",
    )
    parser.add_argument("--only-arenagrad", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--min-time", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    min_time = args.min_time or (0.05 if args.quick else 0.3)
    if args.step_child is not None:
        if args.step_child == 1 and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        print(json.dumps(step_child(args.step_child, args.rounds, min_time, args.only_arenagrad)))
        return 0

    arenagrad.show_config()
    for section in args.section or SECTIONS:
        SECTIONS[section](args, min_time)
    return 0


def throughput_section(args: argparse.Namespace, min_time: float) -> None:
    f = CompiledDemo(demo_model()).per_sample
    print(
        f"\ndemo per-sample tape: {f.n_lane_nodes} lane nodes, {f.n_invariant_nodes} invariant, "
        f"{len(f.parameters)} parameters\n"
    )
    print(f"(micrograd's graph has {micrograd_ops_per_lane(demo_model())} ops per sample)\n")
    print("| B | threads | forward ns/node-lane | fwd+bwd ns/node-lane | fwd+bwd ns/micrograd-op |")
    print("|---:|---:|---:|---:|---:|")
    speedups = {}
    for B in (1, 64, 1024, 16384):
        per_thread = {}
        for threads, r in ns_per_node_lane(B, (1, 2), min_time).items():
            per_thread[threads] = r["forward+backward"]
            print(
                f"| {B} | {threads} | {r['forward']:.3f} | {r['forward+backward']:.3f} "
                f"| {r['forward+backward per micrograd op']:.3f} |"
            )
        speedups[B] = per_thread[1] / per_thread[2]
    print(
        "\n2 threads vs 1 (fwd+bwd): " + ", ".join(f"B={B}: {s:.2f}x" for B, s in speedups.items())
    )


def demo_section(args: argparse.Namespace, min_time: float) -> None:
    print("\n| demo forward+backward, B=100 | µs | vs arenagrad |")
    print("|---|---:|---:|")
    fb = time_demo_forward_backward()
    ours = fb["arenagrad replay"]
    for name, t in fb.items():
        print(f"| {name} | {t * 1e6:.1f} | {t / ours:.1f}x |")

    print("\n| demo training step, B=100 | µs | vs arenagrad replay |")
    print("|---|---:|---:|")
    ts = time_demo_train_step(slow_repeats=2 if args.quick else 3)
    ours = next(iter(ts.values()))
    for name, t in ts.items():
        print(f"| {name} | {t * 1e6:.1f} | {t / ours:.0f}x |")


def steps_section(args: argparse.Namespace, min_time: float) -> None:
    threads = tuple(int(n) for n in args.threads.split(","))
    rounds = 3 if args.quick else args.rounds
    repeats = args.repeats or (3 if args.before else 1)
    print_step_tables(step_table(threads, rounds, min_time, args.before, repeats))


def single_section(args: argparse.Namespace, min_time: float) -> None:
    print("\n| one graph, one lane | nodes | eager backward | replay backward | replay forward |")
    print("|---|---:|---:|---:|---:|")
    for name, r in single_lane_vs_eager(min_time).items():
        print(
            f"| {name} | {r['nodes']:,} | {r['eager backward']:.2f} | {r['replay backward']:.2f} "
            f"| {r['replay forward']:.2f} |"
        )


SECTIONS: dict[str, Callable[[argparse.Namespace, float], None]] = {
    "throughput": throughput_section,
    "demo": demo_section,
    "steps": steps_section,
    "single": single_section,
}


if __name__ == "__main__":
    raise SystemExit(main())
