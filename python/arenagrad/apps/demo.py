"""`python -m arenagrad demo`: micrograd's moons demo, run on arenagrad.

The training step below is micrograd's demo notebook line for line (SVM max-margin loss, L2
regularisation, SGD with a decaying learning rate). It is written against an `engine`, any
namespace with micrograd's `Value` and `MLP` and a `sum`, so the very same code runs on
micrograd itself (or the pure-Python reference), which is how the demo times the speed-up.
This module is the one definition of the demo: bench/ and the tests import it.
"""

from __future__ import annotations

import builtins
import random
import statistics
import time
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..datasets import make_moons

Engine = Any  # a module or namespace with `Value`, `MLP` and `sum`

SEED = 1337  # micrograd's notebook seeds `random` (its initial weights) with it
N_SAMPLES = 100  # moons samples in the batch
NOISE = 0.1  # moons noise
WIDTH = 16  # the model is MLP(2, [WIDTH, WIDTH, 1])
ALPHA = 1e-4  # weight of the L2 term


def native_engine() -> Engine:
    """arenagrad as a demo engine (its n-ary `sum`: one node for the whole loss)."""
    from .. import nn
    from .. import sum as arena_sum
    from .._core import Value

    return SimpleNamespace(Value=Value, MLP=nn.MLP, sum=arena_sum)


def baseline_engine() -> tuple[str, Engine]:
    """Karpathy's micrograd when it is installed (`pip install micrograd`), else
    arenagrad.reference: micrograd's algorithm in pure Python. Returns (name, engine)."""
    try:
        from micrograd import engine, nn
    except ImportError:
        from .. import reference

        return "arenagrad.reference (pure Python)", reference
    return "micrograd", SimpleNamespace(Value=engine.Value, MLP=nn.MLP, sum=builtins.sum)


def moons(seed: int = SEED, n_samples: int = N_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """The demo's data: `X` of shape (n_samples, 2), labels `y` in {-1, 1}."""
    return make_moons(n_samples=n_samples, noise=NOISE, seed=seed)


def build_model(engine: Engine, seed: int = SEED, width: int = WIDTH) -> Any:
    random.seed(seed)  # micrograd's nn draws weights from Python's `random`
    return engine.MLP(2, [width, width, 1])


def learning_rate(k: int, steps: int) -> float:
    """The notebook's schedule: from 1.0 at step 0 down to 0.1 at the last step."""
    return 1.0 - 0.9 * k / steps


def loss(engine: Engine, model: Any, X: np.ndarray, y: np.ndarray) -> tuple[Any, float]:
    """The notebook's loss: mean max-margin loss plus ALPHA * L2; and the accuracy."""
    Value = engine.Value
    inputs = [list(map(Value, xrow)) for xrow in X.tolist()]
    scores = list(map(model, inputs))
    losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(y.tolist(), scores, strict=True)]
    data_loss = engine.sum(losses) * (1.0 / len(losses))
    reg_loss = ALPHA * engine.sum([p * p for p in model.parameters()])
    total_loss = data_loss + reg_loss
    accuracy = [
        (yi > 0) == (scorei.data > 0) for yi, scorei in zip(y.tolist(), scores, strict=True)
    ]
    return total_loss, sum(accuracy) / len(accuracy)


def train_step(
    engine: Engine, model: Any, X: np.ndarray, y: np.ndarray, k: int, steps: int
) -> tuple[float, float]:
    """One step of the notebook's loop; returns the loss and accuracy before the update."""
    total_loss, acc = loss(engine, model, X, y)
    model.zero_grad()
    total_loss.backward()
    lr = learning_rate(k, steps)
    for p in model.parameters():
        p.data -= lr * p.grad
    return total_loss.data, acc


def describe(model: Any) -> str:
    """`MLP 2-16-16-1, 337 parameters`: the model in one line."""
    sizes = [len(model.layers[0].neurons[0].w), *(len(layer.neurons) for layer in model.layers)]
    return f"MLP {'-'.join(map(str, sizes))}, {len(model.parameters())} parameters"


NATIVE_STEPS_PER_ROUND = 5  # arenagrad's steps are ~100x shorter: time several per round


def compare_step_times(
    baseline: Engine,
    X: np.ndarray,
    y: np.ndarray,
    seed: int,
    rounds: int | None = None,
    budget_s: float = 3.0,
) -> tuple[list[float], list[float]]:
    """CPU seconds per training step of arenagrad and of `baseline`, one figure per round.

    CPU time (`time.process_time`), not wall time: on a shared machine other jobs stretch a
    long pure-Python step far more often than a millisecond-long native one, which made
    wall-clock ratios swing by 2x between runs. The engines also take turns: each round
    times one `baseline` step, then the median of NATIVE_STEPS_PER_ROUND arenagrad steps.
    Without `rounds`, a warm-up step of each engine sizes the run to about `budget_s` of
    baseline steps (5 to 25 rounds).
    """
    native = native_engine()
    native_model, baseline_model = build_model(native, seed), build_model(baseline, seed)
    k = 0

    def timed_step(engine: Engine, model: Any) -> float:
        nonlocal k
        start = time.process_time()
        train_step(engine, model, X, y, k % 100, 100)
        k += 1
        return time.process_time() - start

    timed_step(native, native_model)
    warm_up = timed_step(baseline, baseline_model)
    if rounds is None:
        rounds = max(5, min(25, int(budget_s / max(warm_up, 1e-9))))
    native_times, baseline_times = [], []
    for _ in range(rounds):
        baseline_times.append(timed_step(baseline, baseline_model))
        native_times.append(
            statistics.median(
                timed_step(native, native_model) for _ in range(NATIVE_STEPS_PER_ROUND)
            )
        )
    return native_times, baseline_times


def format_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:,.0f} ms" if ms >= 100 else f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"


def report_speed(name: str, native: list[float], baseline: list[float]) -> list[str]:
    """The comparison as printed lines: medians, and the median per-round ratio with the
    middle half of the rounds' ratios (how far the figure can be trusted right now)."""
    ratios = [b / n for n, b in zip(native, baseline, strict=True)]
    low, middle, high = statistics.quantiles(ratios, n=4, method="inclusive")
    width = max(len(name), len("arenagrad"))
    return [
        f"CPU time per training step (forward, backward, update), median of {len(ratios)} "
        "interleaved rounds:",
        f"  {'arenagrad':<{width}}  {format_ms(statistics.median(native)):>9}",
        f"  {name:<{width}}  {format_ms(statistics.median(baseline)):>9}  "
        f"{middle:,.0f}x slower (middle half of the rounds: {low:,.0f}x to {high:,.0f}x)",
    ]


def plot(model: Any, X: np.ndarray, y: np.ndarray, losses: list[float], path: str) -> None:
    """Save micrograd's decision-boundary picture, plus the loss curve, to `path`."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    from .._core import Value

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
    steps: int = 100, seed: int = SEED, compare: bool = True, plot_path: str | None = None
) -> float:
    """Train the moons MLP, printing one line per tenth of the run (so the output reads the
    same in a terminal and in a log file); returns the final accuracy."""
    from .. import __version__

    engine = native_engine()
    X, y = moons(seed)
    model = build_model(engine, seed)
    print(f"arenagrad {__version__}: micrograd's moons demo")
    print(f"model: {describe(model)}")
    print(
        f"data: {len(X)} moons samples (noise {NOISE}, seed {seed}); {steps} SGD steps, "
        "max-margin loss + L2"
    )
    every = max(1, steps // 10)
    digits = len(str(steps))
    losses: list[float] = []
    acc = 0.0
    start = time.perf_counter()
    for k in range(steps):
        loss_value, acc = train_step(engine, model, X, y, k, steps)
        losses.append(loss_value)
        if k == 0 or (k + 1) % every == 0 or k + 1 == steps:
            print(
                f"step {k + 1:>{digits}}/{steps}  loss {loss_value:.4f}  accuracy {acc:.0%}",
                flush=True,
            )
    elapsed = time.perf_counter() - start
    print(f"trained in {elapsed:.2f} s; final accuracy {acc:.0%}")
    if plot_path is not None:
        plot(model, X, y, losses, plot_path)
        print(f"wrote {plot_path}")
    if compare:
        name, baseline = baseline_engine()
        print(f"timing against {name.split()[0]} ...", flush=True)
        native_times, baseline_times = compare_step_times(baseline, X, y, seed)
        for line in report_speed(name, native_times, baseline_times):
            print(line)
        if name != "micrograd":
            print("  (pip install micrograd to time against micrograd itself)")
    return acc
