"""ns per node of `backward()` over the benchmark's prebuilt ~1M-node graph (workload 4).

python bench/sweep_time.py [nodes]
"""

from __future__ import annotations

import statistics
import sys
import time

import arenagrad
from compare import wide_graph


def main(nodes: int) -> None:
    root, n = wide_graph(arenagrad.Value, nodes)
    times = []
    for _ in range(9):
        start = time.perf_counter()
        root.backward()
        times.append(time.perf_counter() - start)
    print(
        f"{n} nodes: median {statistics.median(times) / n * 1e9:.2f} ns/node, "
        f"best {min(times) / n * 1e9:.2f} ns/node"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
