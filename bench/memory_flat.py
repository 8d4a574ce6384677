"""Does a long training loop run in flat memory?

Trains micrograd's demo model (MLP 2-16-16-1, 100 moons samples, max-margin loss, SGD) for
N steps the way micrograd's notebook does -- the previous step's loss stays alive while the
next graph is built -- and prints the process's peak RSS and the arena's size after step 100,
1000 and N. Flat memory means the peak after step N equals the peak after step 100.

    python bench/memory_flat.py 5000
"""

from __future__ import annotations

import resource
import sys
import time

import arenagrad
from arenagrad.apps import demo


def main(steps: int) -> None:
    engine = demo.native_engine()
    X, y = demo.moons(seed=0)
    model = demo.build_model(engine, seed=1)
    start = time.perf_counter()
    for k in range(steps):
        # Assigned only once the next graph is built: the old loss keeps its graph alive
        # meanwhile, so the arena has to compact rather than just truncate.
        total_loss, _ = demo.loss(engine, model, X, y)
        model.zero_grad()
        total_loss.backward()
        lr = demo.learning_rate(k, steps)
        for p in model.parameters():
            p.data -= lr * p.grad
        if k + 1 in (100, 1000, steps):
            peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            stats = arenagrad.arena_stats()
            per_step = (time.perf_counter() - start) / (k + 1) * 1e3
            print(
                f"after step {k + 1:5d}: peak RSS {peak_kib} KiB, arena nodes {stats['nodes']}, "
                f"compactions {stats['compactions']}, {per_step:.2f} ms/step"
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
