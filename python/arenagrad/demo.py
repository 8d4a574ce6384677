"""`python -m arenagrad demo`: micrograd's moons demo, run on arenagrad.

The training step below is micrograd's demo notebook line for line (SVM max-margin loss, L2
regularisation, SGD with a decaying learning rate). It is written against an `engine`
namespace so the very same code also runs on the pure-Python reference, which is how the demo
measures the speed-up.
"""

from __future__ import annotations

import random
import time
from types import ModuleType
from typing import Any

import numpy as np

from .datasets import make_moons

# Any namespace with `Value`, `MLP` and `sum`: a module, or the benchmark's SimpleNamespace.
Engine = Any


def build_model(engine: Engine, seed: int) -> Any:
    random.seed(seed)  # micrograd's nn draws weights from Python's `random`
    return engine.MLP(2, [16, 16, 1])


def loss(engine: Engine, model: Any, X: np.ndarray, y: np.ndarray) -> tuple[Any, float]:
    Value = engine.Value
    inputs = [list(map(Value, xrow)) for xrow in X.tolist()]
    scores = list(map(model, inputs))
    losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(y.tolist(), scores, strict=True)]
    data_loss = engine.sum(losses) * (1.0 / len(losses))
    alpha = 1e-4
    reg_loss = alpha * engine.sum([p * p for p in model.parameters()])
    total_loss = data_loss + reg_loss
    accuracy = [
        (yi > 0) == (scorei.data > 0) for yi, scorei in zip(y.tolist(), scores, strict=True)
    ]
    return total_loss, sum(accuracy) / len(accuracy)


def train_step(
    engine: Engine, model: Any, X: np.ndarray, y: np.ndarray, k: int, steps: int
) -> tuple[float, float]:
    total_loss, acc = loss(engine, model, X, y)
    model.zero_grad()
    total_loss.backward()
    learning_rate = 1.0 - 0.9 * k / steps
    for p in model.parameters():
        p.data -= learning_rate * p.grad
    return total_loss.data, acc


def time_per_step(engine: Engine, seed: int, X: np.ndarray, y: np.ndarray, steps: int) -> float:
    """Median seconds per training step of a freshly seeded model."""
    model = build_model(engine, seed)
    times = []
    for k in range(steps):
        start = time.perf_counter()
        train_step(engine, model, X, y, k, 100)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def plot(model: Any, X: np.ndarray, y: np.ndarray, losses: list[float], path: str) -> None:
    """Save micrograd's decision-boundary picture, plus the loss curve, to `path`."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    from ._core import Value

    h = 0.05
    xx, yy = np.meshgrid(
        np.arange(X[:, 0].min() - 1, X[:, 0].max() + 1, h),
        np.arange(X[:, 1].min() - 1, X[:, 1].max() + 1, h),
    )
    grid = np.c_[xx.ravel(), yy.ravel()]
    scores = np.array([model([Value(a), Value(b)]).data for a, b in grid.tolist()])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    left.contourf(xx, yy, (scores > 0).reshape(xx.shape), cmap=plt.cm.Spectral, alpha=0.8)
    left.scatter(X[:, 0], X[:, 1], c=y, s=40, cmap=plt.cm.Spectral, edgecolors="k")
    left.set_title("decision boundary")
    right.plot(losses)
    right.set_xlabel("step")
    right.set_ylabel("loss")
    right.set_yscale("log")
    right.set_title("training loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(
    steps: int = 100,
    seed: int = 1337,
    compare: bool = True,
    quiet: bool = False,
    plot_path: str | None = None,
) -> float:
    """Train the moons MLP; returns the final accuracy."""
    from . import nn as native_nn
    from . import sum as native_sum
    from ._core import Value
    from .progress import progress

    engine = ModuleType("arenagrad_native")
    engine.__dict__.update(Value=Value, MLP=native_nn.MLP, sum=native_sum)

    X, y = make_moons(n_samples=100, noise=0.1, seed=seed)
    model = build_model(engine, seed)
    print(f"model: {model}")
    print(f"parameters: {len(model.parameters())}, samples: {len(X)}, steps: {steps}")
    times, losses = [], []
    acc = 0.0
    bar = progress(range(steps), total=steps, desc="training")
    for k in bar:
        start = time.perf_counter()
        loss_value, acc = train_step(engine, model, X, y, k, steps)
        times.append(time.perf_counter() - start)
        losses.append(loss_value)
        if not quiet:
            bar.set_postfix_str(f"loss {loss_value:.4f}, accuracy {acc * 100:.0f}%")
    native = float(np.median(times))
    print(f"final loss {losses[-1]:.6f}, final accuracy: {acc * 100:.1f}%")
    print(f"arenagrad (native): {native * 1e3:.2f} ms per step (median of {steps})")
    if compare:
        from . import reference

        ref = time_per_step(reference, seed, X, y, steps=3)
        print(f"arenagrad.reference (pure Python): {ref * 1e3:.1f} ms per step (median of 3)")
        print(f"speed-up: {ref / native:.0f}x")
    if plot_path is not None:
        plot(model, X, y, losses, plot_path)
        print(f"wrote {plot_path}")
    return acc
