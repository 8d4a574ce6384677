"""Replay benchmarks (arenagrad.compile), side by side in one run.

    python bench/replay.py            # prints markdown tables
    python bench/replay.py --quick    # fewer repeats

Measures, on micrograd's demo model (MLP 2-16-16-1, moons data, max-margin loss):
  * replay throughput, ns per node-lane, for B in 1, 64, 1024, 16384 and 1 or 2 threads;
  * forward+backward of the batch (B=100) against idiomatic PyTorch (float64, nn.Linear,
    the same weights), when torch is installed;
  * the whole training step (forward, backward, SGD update of every parameter) against
    Karpathy's micrograd (`pip install micrograd`; else the pure-Python arenagrad.reference,
    the same algorithm), and against arenagrad's own eager engine.

Every function returns numbers, so other scripts (bench/compare.py) can reuse them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import arenagrad
import numpy as np
from arenagrad.apps import demo
from arenagrad.nn import MLP


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


def demo_data(n: int = demo.N_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter timings")
    args = parser.parse_args(argv)
    min_time = 0.05 if args.quick else 0.3

    arenagrad.show_config()
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
