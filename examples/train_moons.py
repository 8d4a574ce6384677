"""micrograd's moons notebook with arenagrad's training kit: the same model, loss and learning
rate schedule as the demo (`python -m arenagrad demo`, which writes the loop out by hand),
here with `losses.hinge`, `optim.SGD` and `schedules.MicrogradLR`.

Run: python examples/train_moons.py [--steps 100]
"""

from __future__ import annotations

import argparse
import random

import arenagrad
from arenagrad import losses, optim, schedules
from arenagrad.datasets import make_moons
from arenagrad.nn import MLP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()

    random.seed(1337)  # nn draws its initial weights from Python's `random`, like micrograd
    X, y = make_moons(n_samples=100, noise=0.1, seed=1337)
    model = MLP(2, [16, 16, 1])
    opt = optim.SGD(model.parameters(), lr=1.0)
    schedule = schedules.MicrogradLR(opt, total_steps=args.steps)  # 1.0 - 0.9 * k / steps

    for k in range(args.steps):
        scores = [model(x) for x in X.tolist()]
        l2 = arenagrad.sum(p * p for p in model.parameters())
        loss = losses.hinge(scores, y) + 1e-4 * l2  # micrograd's max-margin loss + L2
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        hits = sum((s.data > 0) == (label > 0) for s, label in zip(scores, y, strict=True))
        if k % 10 == 0 or k == args.steps - 1:
            print(f"step {k + 1} loss {loss.data:.4f}, accuracy {hits / len(y):.0%}")


if __name__ == "__main__":
    main()
