"""The cost of arenagrad.grad, against backward(), and of a Hessian-vector product.

    python bench/higher_order.py            # the figures quoted in docs/higher_order.md
    python bench/higher_order.py --quick    # small sizes, few repeats (a smoke run)

1. grad() without create_graph against backward(), on the benchmark's wide graph (terms
   relu(x_i * w + b) summed as a balanced tree, bench/compare.py's workload 4): both sweep
   every node; grad() also zeroes a scratch buffer and reads the inputs' gradients out.
2. A Hessian-vector product (arenagrad.hvp: the gradient graph, then one sweep over it seeded
   with v) against one gradient (forward + grad), on the extended Rosenbrock function of n
   variables and on micrograd's demo loss (MLP 2-16-16-1 on 100 moons samples, with respect
   to its 337 parameters). Theory (Pearlmutter 1994): a small constant, about 2-4.

Each measurement alternates the two things compared, sample after sample (each sample the
mean of enough calls to last ~50 ms), so that a slower moment of a shared machine hits both
alike; the tables show the medians, in milliseconds per call.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import arenagrad
from arenagrad import Value
from arenagrad.apps import demo
from compare import balanced_sum


def wide_graph(nodes: int) -> tuple[Value, list[Value], int]:
    """bench/compare.py's wide graph, keeping its two shared inputs w and b."""
    terms = max(1, (nodes - 2) // 5)
    w, b = Value(0.5), Value(-0.1)
    root = balanced_sum((Value((i % 97) / 48.0 - 1.0) * w + b).relu() for i in range(terms))
    return root, [w, b], 5 * terms + 1


def interleaved(
    fns: Sequence[Callable[[], Any]], repeats: int, sample: float = 0.05
) -> list[float]:
    """Median seconds per call of each function: `repeats` samples each, taken in turn (so a
    slow moment of the machine hits all alike), each sample the mean of enough calls to last
    about `sample` seconds."""
    counts = []
    for fn in fns:  # warm up, and calibrate
        start = time.perf_counter()
        fn()
        counts.append(max(1, int(sample / max(time.perf_counter() - start, 1e-6))))
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            gc.collect()
            start = time.perf_counter()
            for _ in range(counts[k]):
                fn()
            times[k].append((time.perf_counter() - start) / counts[k])
    return [statistics.median(t) for t in times]


def sweep_figures(nodes: int, repeats: int) -> None:
    root, inputs, n = wide_graph(nodes)
    backward, grad = interleaved(
        [root.backward, lambda: arenagrad.grad(root, inputs)], repeats
    )
    print(f"\n### grad() against backward(): {n:,} nodes, median of {repeats}\n")
    print("| sweep | ms | ns/node |")
    print("|---|---|---|")
    for name, seconds in [("backward()", backward), ("grad(root, [w, b])", grad)]:
        print(f"| {name} | {seconds * 1e3:.2f} | {seconds / n * 1e9:.2f} |")
    print(f"\ngrad / backward: {grad / backward:.2f}")


def rosenbrock(*x: Value) -> Value:
    return arenagrad.sum(
        100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1)
    )


def relu_network(ps: Sequence[Value], x: list[float]) -> Value:
    """nn.MLP(2, [16, 16, 1]) with the parameters ps (its parameters() order)."""
    sizes = [2, 16, 16, 1]
    at, h = 0, list(x)
    for layer, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        out = []
        for _ in range(n_out):
            act = arenagrad.linear(ps[at + n_in], list(ps[at : at + n_in]), h)
            at += n_in + 1
            out.append(act.relu() if layer < len(sizes) - 2 else act)
        h = out
    return h[0]


def demo_loss() -> tuple[Callable[..., Value], list[float]]:
    """micrograd's demo loss (its max-margin sum) as a function of the model's parameters,
    and the demo's initial parameters."""
    X, y = demo.moons(demo.SEED, demo.N_SAMPLES)
    params = [p.data for p in demo.build_model(demo.native_engine()).parameters()]

    def loss(*ps: Value) -> Value:
        scores = [relu_network(ps, x) for x in X.tolist()]
        return arenagrad.sum((1 + -label * s).relu() for label, s in zip(y, scores, strict=True))

    return loss, params


def hvp_figures(n: int, repeats: int) -> None:
    print(f"\n### Hessian-vector product against one gradient, median of {repeats}\n")
    print("| function | inputs | forward + grad, ms | hvp, ms | hvp / gradient |")
    print("|---|---|---|---|---|")
    point = [0.5 + 0.001 * i for i in range(n)]
    cases: list[tuple[str, Callable[..., Value], list[float]]] = [
        ("extended Rosenbrock", rosenbrock, point),
    ]
    loss, params = demo_loss()
    cases.append(("demo loss (MLP 2-16-16-1, 100 samples)", loss, params))
    for name, f, at in cases:
        v = [1.0] * len(at)

        def gradient(f: Callable[..., Value] = f, at: list[float] = at) -> None:
            xs = [Value(x) for x in at]
            arenagrad.grad(f(*xs), xs)

        def product(f: Callable[..., Value] = f, at: list[float] = at, v: list[float] = v) -> None:
            arenagrad.hvp(f, at, v)

        g, h = interleaved([gradient, product], repeats)
        print(f"| {name} | {len(at)} | {g * 1e3:.2f} | {h * 1e3:.2f} | {h / g:.2f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    args = parser.parse_args(argv)
    nodes, n, repeats = (20_000, 50, 3) if args.quick else (1_000_000, 1000, 21)
    sweep_figures(nodes, repeats)
    hvp_figures(n, repeats)


if __name__ == "__main__":
    main()
