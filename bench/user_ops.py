"""The cost of user-defined ops in backward(): a graph with 10% of its nodes user ops against
the same graph all native.

    python bench/user_ops.py            # the figures quoted in docs/api.md
    python bench/user_ops.py --quick    # small sizes, few repeats (a smoke run)

The graph is bench/compare.py's wide graph (terms relu(x_i * w + b), 5 nodes each with the
balanced sum tree over them), with the relu of every other term made by the user: so one node
in ten. Three variants of that relu:
  native     Value.relu(), the op table's
  microgpt   Value(data, (x,), (local_grad,)): a native node whose local gradient is given
  micrograd  Value(data, (x,), 'ReLU') with a Python `_backward` closure, called by the sweep

backward() is timed over the prebuilt graph, the variants alternating sample after sample so
that a slower moment of a shared machine hits them alike; the table shows the medians, in ns
per node, and each variant's time against the all-native graph. The last column spreads the
difference over the user-defined nodes alone: what one such node costs in the sweep.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from arenagrad import Value
from compare import balanced_sum


def native_relu(x: Value) -> Value:
    return x.relu()


def microgpt_relu(x: Value) -> Value:
    return Value(x.data if x.data > 0 else 0.0, (x,), (1.0 if x.data > 0 else 0.0,))


def micrograd_relu(x: Value) -> Value:
    out = Value(x.data if x.data > 0 else 0.0, (x,), "ReLU")

    def _backward() -> None:
        x.grad += (out.data > 0) * out.grad

    out._backward = _backward
    return out


VARIANTS: dict[str, Callable[[Value], Value]] = {
    "native": native_relu,
    "microgpt": microgpt_relu,
    "micrograd": micrograd_relu,
}


def graph(nodes: int, user_relu: Callable[[Value], Value]) -> tuple[Value, int, int]:
    """The wide graph, every other term's relu made by `user_relu`. Returns (root, node
    count, user-made node count)."""
    terms = max(2, (nodes - 2) // 5)
    w, b = Value(0.5), Value(-0.1)

    def term(i: int) -> Value:
        pre = Value((i % 97) / 48.0 - 1.0) * w + b
        return user_relu(pre) if i % 2 else pre.relu()

    return balanced_sum(term(i) for i in range(terms)), 5 * terms + 1, terms // 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200_000)
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="2,000 nodes, 3 samples")
    args = parser.parse_args()
    nodes, samples = (2_000, 3) if args.quick else (args.nodes, args.samples)

    graphs = {name: graph(nodes, relu) for name, relu in VARIANTS.items()}
    for root, _, _ in graphs.values():
        root.backward()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in graphs}
    for _ in range(samples):
        for name, (root, n, _) in graphs.items():
            start = time.perf_counter()
            root.backward()
            times[name].append((time.perf_counter() - start) / n * 1e9)

    base = statistics.median(times["native"])
    n, user = graphs["native"][1], graphs["native"][2]
    print(f"backward() over {n:,} nodes, {user:,} of them ({user / n:.0%}) user-defined:")
    print(f"{'variant':10s} {'ns/node':>9s} {'vs native':>10s} {'per user node':>14s}")
    for name in graphs:
        t = statistics.median(times[name])
        extra = (t - base) * n / user
        print(f"{name:10s} {t:9.2f} {t / base:9.1f}x {extra:11.0f} ns")


if __name__ == "__main__":
    main()
