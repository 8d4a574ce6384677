"""Train a small MLP on the moons dataset, micrograd style: build the loss from Values,
backward, step by hand.

Run: python examples/train_moons.py [--steps 50]
"""

from __future__ import annotations

import argparse
import random

import arenagrad
from arenagrad import Value
from arenagrad.datasets import make_moons
from arenagrad.nn import MLP


def hinge_loss(model: MLP, X: list[list[float]], y: list[float]) -> tuple[Value, float]:
    """micrograd's demo loss: mean max-margin loss plus L2, and the accuracy."""
    scores: list[Value] = [model(x) for x in X]
    losses = [(1 + -yi * si).relu() for yi, si in zip(y, scores, strict=True)]
    data_loss = arenagrad.sum(losses) * (1.0 / len(losses))
    reg_loss = 1e-4 * arenagrad.sum(p * p for p in model.parameters())
    hits = [(yi > 0) == (si.data > 0) for yi, si in zip(y, scores, strict=True)]
    return data_loss + reg_loss, sum(hits) / len(hits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()

    random.seed(1337)  # nn draws its initial weights from Python's `random`, like micrograd
    X_np, y_np = make_moons(n_samples=100, noise=0.1, seed=1337)
    X, y = X_np.tolist(), y_np.tolist()
    model = MLP(2, [16, 16, 1])
    print(model)

    acc = 0.0
    for k in range(args.steps):
        loss, acc = hinge_loss(model, X, y)
        model.zero_grad()
        loss.backward()
        learning_rate = 1.0 - 0.9 * k / args.steps
        for p in model.parameters():
            p.data -= learning_rate * p.grad
        if k % 10 == 0 or k == args.steps - 1:
            print(f"step {k} loss {loss.data:.4f}, accuracy {acc * 100:.0f}%")
    print(f"final accuracy {acc * 100:.0f}%")


if __name__ == "__main__":
    main()
