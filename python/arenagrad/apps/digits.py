"""`python -m arenagrad train digits`: a softmax MLP on scikit-learn's 8x8 handwritten digits.

The whole pipeline in a page: micrograd's `MLP(64, [32, 10])`, the per-sample loss written
with ordinary Values (`losses.softmax_cross_entropy`), traced once by `arenagrad.compile` and
replayed natively over each minibatch, and `optim.Adam` updating all parameters in one step.

The target is an *input* of the traced function (a one-hot row next to the 64 pixels), so one
trace serves every sample; the backward seed 1/B makes the parameter gradients the batch mean.

A checkpoint (`--save`) records the run with the weights: the held-out split (seed, fraction
and a digest of the held-out indices), the epochs done, the batch-order generator's state and
the options that shape the run. `--load` then evaluates on exactly that held-out split, and
with more epochs continues the same run, batch order included: 15 epochs, save, load, 15 more
give the parameters of 30 epochs in one go. A checkpoint of another split (another --seed),
or one that records none, is refused: its "held-out" samples could be training samples.
"""

from __future__ import annotations

import hashlib
import random
import time
from typing import Any

import numpy as np

N_PIXELS, N_CLASSES = 64, 10
TEST_FRACTION = 0.2
RUN_KEY = "train digits"  # the checkpoint's `extra` entry that records the run


class MissingExtra(RuntimeError):
    """An optional dependency of the demo is not installed."""


def split(seed: int, n_samples: int, test_fraction: float = TEST_FRACTION) -> tuple[Any, Any]:
    """(train indices, held-out indices): a seeded shuffle of range(n_samples)."""
    order = np.random.default_rng(seed).permutation(n_samples)
    n_test = round(n_samples * test_fraction)
    return order[n_test:], order[:n_test]


def split_record(seed: int, n_samples: int, test_fraction: float = TEST_FRACTION) -> dict[str, Any]:
    """What identifies the held-out samples: saved with a checkpoint, compared on load."""
    _, test = split(seed, n_samples, test_fraction)
    digest = hashlib.sha256(np.asarray(test, dtype="<i8").tobytes()).hexdigest()
    return {
        "seed": seed,
        "test_fraction": test_fraction,
        "n_samples": n_samples,
        "test_sha256": digest,
    }


def load_data(seed: int, test_fraction: float = TEST_FRACTION) -> tuple[np.ndarray, ...]:
    """Digits scaled to [0, 1], split into train and held-out parts by a seeded shuffle."""
    try:
        from sklearn.datasets import load_digits  # type: ignore[import-untyped]
    except ImportError:
        raise MissingExtra(
            "train digits needs scikit-learn (its bundled digits data set): "
            "pip install 'arenagrad[demo]'"
        ) from None
    digits = load_digits()
    X = digits.data.astype(np.float64) / 16.0
    y = digits.target.astype(np.int64)
    train, test = split(seed, len(X), test_fraction)
    return X[train], y[train], X[test], y[test]


def _flags(options: dict[str, Any]) -> str:
    """Options as they are written on the command line."""
    shown = (f"--{name.replace('_', '-')} {value}" for name, value in options.items())
    return " ".join(flag for flag in shown if not flag.endswith(" None"))


def _resume(
    meta: dict[str, Any],
    path: str,
    split_now: dict[str, Any],
    options: dict[str, Any],
    training: bool,
) -> tuple[int, dict[str, Any]]:
    """From a checkpoint's metadata: (epochs done, batch-order generator state), after checking
    that it was saved by a run on this split (and, to train on, with these options)."""
    run = (meta.get("extra") or {}).get(RUN_KEY)
    if run is None:
        raise ValueError(
            f"{path} records no train-digits run (no data split): its held-out accuracy could "
            "count training samples; load it with arenagrad.load instead"
        )
    try:
        saved_split, done, rng_state = run["split"], run["epochs_done"], run["batch_rng"]
        saved_options = {name: run["options"][name] for name in options}
        valid = isinstance(done, int) and not isinstance(done, bool) and done >= 0
        valid = valid and isinstance(saved_split, dict) and isinstance(rng_state, dict)
    except (KeyError, TypeError):
        valid = False
    if not valid:
        raise ValueError(f"{path}: its record of the train-digits run is incomplete (corrupt?)")
    if saved_split.get("seed") != split_now["seed"]:
        shown = str(saved_split.get("seed"))[:20]
        raise ValueError(
            f"{path} was trained with --seed {shown}, whose held-out samples differ from "
            f"those of --seed {split_now['seed']}: pass --seed {shown} to evaluate or resume it"
        )
    if saved_split != split_now:
        raise ValueError(
            f"{path} was trained on another split of the digits (data set or held-out fraction "
            "changed): its held-out accuracy here would count training samples"
        )
    if training and saved_options != options:
        raise ValueError(
            f"{path} continues a run with {_flags(saved_options)}, not {_flags(options)}: "
            "pass the same options to resume it (or --epochs 0 to evaluate it)"
        )
    return done, rng_state


def build_model(seed: int) -> Any:
    from ..nn import MLP

    random.seed(seed)  # micrograd's nn draws its initial weights from Python's `random`
    model = MLP(N_PIXELS, [32, N_CLASSES])
    # micrograd's uniform(-1, 1) init is too large for 64 inputs: scale each neuron's weights
    # by 1/sqrt(fan_in) so that the first logits are O(1) (LeCun-style initialisation).
    for layer in model.layers:
        for neuron in layer.neurons:
            for w in neuron.w:
                w.data /= len(neuron.w) ** 0.5
    return model


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    matrix = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def confusion_summary(matrix: np.ndarray) -> str:
    """The confusion matrix (rows: true digit, columns: predicted) and the worst mix-ups."""
    lines = ["confusion matrix (rows: true digit, columns: predicted):"]
    lines.append("      " + " ".join(f"{k:>4d}" for k in range(N_CLASSES)))
    for k, row in enumerate(matrix):
        lines.append(f"  {k:>2d}: " + " ".join(f"{c:>4d}" for c in row))
    off = matrix.copy()
    np.fill_diagonal(off, 0)
    mixups = [(int(off[i, j]), i, j) for i, j in zip(*np.nonzero(off), strict=True)]
    mixups.sort(reverse=True)
    if mixups:
        worst = ", ".join(f"{i} as {j} ({n}x)" for n, i, j in mixups[:3])
        lines.append(f"most frequent mistakes: {worst}")
    return "\n".join(lines)


def train(
    seed: int = 0,
    epochs: int = 30,
    batch_size: int = 32,
    lr: float = 0.01,
    save_path: str | None = None,
    load_path: str | None = None,
    limit: int | None = None,
) -> float:
    """Train (or resume), print progress and a confusion summary; returns held-out accuracy."""
    from .. import checkpoint, losses, optim
    from ..compile import compile
    from .progress import progress

    X_train, y_train, X_test, y_test = load_data(seed)
    this_split = split_record(seed, len(X_train) + len(X_test))
    options = {"batch_size": batch_size, "lr": lr, "limit": limit}
    if limit is not None:
        X_train, y_train = X_train[:limit], y_train[:limit]
    model = build_model(seed)
    opt = optim.Adam(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)  # the batch order
    done = 0
    if load_path is not None:
        meta = checkpoint.load(model, load_path, optimizer=opt)
        done, rng_state = _resume(meta, load_path, this_split, options, training=epochs > 0)
        try:
            rng.bit_generator.state = rng_state
        except (TypeError, ValueError, KeyError, OverflowError):
            raise ValueError(f"{load_path}: its batch-order state is corrupt") from None
        print(f"loaded {load_path} (after epoch {done} of its run)")

    def sample_loss(*row: Any) -> Any:
        pixels, one_hot = row[:N_PIXELS], row[N_PIXELS:]
        return losses.softmax_cross_entropy(model(list(pixels)), list(one_hot))

    def logits(*pixels: Any) -> Any:
        return model(list(pixels))

    loss_step = compile(sample_loss, n_inputs=N_PIXELS + N_CLASSES)
    predict = compile(logits, n_inputs=N_PIXELS)
    rows = np.hstack([X_train, np.eye(N_CLASSES)[y_train]])  # pixels | one-hot target
    print(
        f"model: MLP 64-32-10 ({len(model.parameters())} parameters), Adam lr={opt.lr}, "
        f"batch {batch_size}; train {len(X_train)}, held out {len(X_test)}; "
        f"traced loss: {loss_step.n_nodes} ops per sample"
    )

    start = time.perf_counter()
    bar = progress(range(epochs), total=epochs, desc="epochs")
    for _ in bar:
        order = rng.permutation(len(rows))
        total = 0.0
        for first in range(0, len(rows), batch_size):
            batch = rows[order[first : first + batch_size]]
            sample_losses = loss_step.forward(batch)
            opt.zero_grad()
            loss_step.backward(np.full(len(batch), 1.0 / len(batch)))  # mean over the batch
            opt.step()
            total += float(sample_losses.sum())
        train_acc = float(np.mean(predict.forward(X_train).argmax(axis=1) == y_train))
        bar.set_postfix_str(f"loss {total / len(rows):.4f}, train accuracy {train_acc:.1%}")
    elapsed = time.perf_counter() - start
    if epochs:
        print(f"trained {epochs} epochs in {elapsed:.1f} s")

    if save_path is not None:
        run = {
            "split": this_split,
            "epochs_done": done + epochs,
            "batch_rng": rng.bit_generator.state,
            "options": options,
        }
        checkpoint.save(model, save_path, optimizer=opt, extra={RUN_KEY: run})
        print(f"saved {save_path} (after epoch {done + epochs})")
    predicted = predict.forward(X_test).argmax(axis=1)
    print(confusion_summary(confusion_matrix(y_test, predicted)))
    accuracy = float(np.mean(predicted == y_test))
    print(f"held-out accuracy: {accuracy * 100:.1f}%")
    return accuracy
