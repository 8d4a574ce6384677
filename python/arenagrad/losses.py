"""Loss functions on Values, written over the public Value API only.

So they build ordinary graphs: they work with native Values, with `arenagrad.reference`
Values, and inside functions traced by `arenagrad.compile`. Each returns one Value, the mean
over the samples given.

Both cross-entropies are numerically stable for any logits (a logit of 1000 gives a finite loss
and gradient), and use no Python branch on a Value's data, so a traced graph stays stable for
the inputs it is replayed on, not just for the one it was traced with.
"""

from __future__ import annotations

import builtins
import sys
from collections.abc import Sequence
from numbers import Real
from typing import Any

from . import _core

__all__ = ["binary_cross_entropy_with_logits", "hinge", "mse", "softmax_cross_entropy"]


def _is_value(x: Any) -> bool:
    return hasattr(x, "backward") and hasattr(x, "grad")


def _as_list(x: Any, what: str) -> list[Any]:
    """One Value/number or a sequence of them, as a list."""
    if _is_value(x) or isinstance(x, Real):
        return [x]
    if isinstance(x, Sequence) and not isinstance(x, (str, bytes)):
        return list(x)
    if hasattr(x, "tolist"):  # numpy arrays of targets
        return _as_list(x.tolist(), what)
    raise TypeError(
        f"{what} must be a Value, a number or a sequence of them, not {type(x).__name__!r}"
    )


def _pairs(pred: Any, target: Any, what: str) -> tuple[list[Any], list[Any]]:
    preds, targets = _as_list(pred, f"{what}: predictions"), _as_list(target, f"{what}: targets")
    if not preds:
        raise ValueError(f"{what}: got no predictions")
    if len(preds) != len(targets):
        raise ValueError(f"{what}: got {len(preds)} predictions but {len(targets)} targets")
    if not any(_is_value(p) for p in preds):
        raise TypeError(f"{what}: predictions must be Values (got only numbers)")
    return preds, targets


def _sum(values: list[Any]) -> Any:
    """One n-ary sum node in the engine the Values come from (`arenagrad.sum` for native
    Values, the oracle's `sum` for reference Values)."""
    first = next(v for v in values if _is_value(v))
    if type(first) is _core.Value:
        return _core.sum(values)
    engine = sys.modules.get(type(first).__module__)
    engine_sum = getattr(engine, "sum", None)
    if engine_sum is not None and engine_sum is not builtins.sum:
        return engine_sum(values)
    return builtins.sum(values[1:], values[0])


def _mean(values: list[Any]) -> Any:
    return values[0] if len(values) == 1 else _sum(values) / len(values)


def _max(values: list[Any]) -> Any:
    """max(values) as a Value: m = m + relu(v - m). Used only as the log-sum-exp shift, whose
    gradient cancels exactly in the math (and to ~1e-16 in floating point)."""
    m = values[0]
    for v in values[1:]:
        m = m + (v - m).relu()
    return m


def mse(pred: Any, target: Any) -> Any:
    """Mean squared error: mean((pred_i - target_i) ** 2)."""
    preds, targets = _pairs(pred, target, "mse()")
    return _mean([(p - t) * (p - t) for p, t in zip(preds, targets, strict=True)])


def hinge(scores: Any, labels: Any) -> Any:
    """micrograd's SVM max-margin loss: mean(relu(1 - y_i * score_i)), labels in {-1, +1}."""
    preds, targets = _pairs(scores, labels, "hinge()")
    for i, y in enumerate(targets):
        if not (isinstance(y, Real) and y in (-1, 1)):
            raise ValueError(f"hinge(): label {i} must be -1 or +1, got {y!r}")
    return _mean([(1 + -y * s).relu() for s, y in zip(preds, targets, strict=True)])


def binary_cross_entropy_with_logits(logits: Any, targets: Any) -> Any:
    """mean(-t log(sigmoid(x)) - (1 - t) log(1 - sigmoid(x))) for targets t in [0, 1].

    Computed as max(x, 0) - x t + log(1 + exp(-|x|)), with max(x, 0) - x t written
    x (1/2 - t) + |x| / 2: no intermediate result overflows, even for the largest finite
    logits (where (x + |x|) / 2 would: x + |x| exceeds the float range from |x| ~ 9e307 on), and
    the gradient at x = 0 is the true one (1/2 - t) rather than relu's subgradient.
    """
    xs, ts = _pairs(logits, targets, "binary_cross_entropy_with_logits()")
    for i, t in enumerate(ts):
        if isinstance(t, Real) and not 0 <= float(t) <= 1:
            raise ValueError(
                f"binary_cross_entropy_with_logits(): target {i} must be in [0, 1], got {t!r}"
            )
    losses = []
    for x, t in zip(xs, ts, strict=True):
        a = abs(x)
        losses.append(x * (0.5 - t) + a * 0.5 + (1 + (-a).exp()).log())
    return _mean(losses)


def _cross_entropy_one(logits: list[Any], target: Any, i: int) -> Any:
    """log(sum_j exp(z_j)) - sum_j p_j z_j for one sample (p one-hot for an index target)."""
    if not logits:
        raise ValueError("softmax_cross_entropy(): got no logits")
    if not any(_is_value(z) for z in logits):
        raise TypeError("softmax_cross_entropy(): logits must be Values (got only numbers)")
    m = _max(logits)  # log-sum-exp trick: every exp() argument is <= 0
    log_sum_exp = m + _sum([(z - m).exp() for z in logits]).log()
    if isinstance(target, bool):
        raise TypeError(f"softmax_cross_entropy(): target of sample {i} must be an int, not bool")
    if hasattr(target, "__index__"):  # a class index (int, numpy integer)
        k = target.__index__()
        if not 0 <= k < len(logits):
            raise ValueError(
                f"softmax_cross_entropy(): target index {k} of sample {i} is out of range "
                f"for {len(logits)} classes"
            )
        return log_sum_exp - logits[k]
    probs = _as_list(target, "softmax_cross_entropy(): target")
    if len(probs) != len(logits):
        raise ValueError(
            f"softmax_cross_entropy(): sample {i} has {len(logits)} logits but "
            f"{len(probs)} target probabilities"
        )
    return log_sum_exp - _sum([p * z for p, z in zip(probs, logits, strict=True)])


def softmax_cross_entropy(logits: Any, target: Any) -> Any:
    """Cross-entropy of softmax(logits) against a class.

    `logits`: one sample's logits (a sequence of Values), or a batch (a sequence of such
    sequences, the result is the mean). `target`: a class index per sample, or per sample a
    sequence of class probabilities (e.g. one-hot Values, which keeps the target an input of a
    traced graph).
    """
    rows = _as_list(logits, "softmax_cross_entropy(): logits")
    if rows and isinstance(rows[0], Sequence):
        targets = _as_list(target, "softmax_cross_entropy(): targets")
        if len(targets) != len(rows):
            raise ValueError(
                f"softmax_cross_entropy(): got {len(rows)} samples but {len(targets)} targets"
            )
        return _mean(
            [
                _cross_entropy_one(list(r), t, i)
                for i, (r, t) in enumerate(zip(rows, targets, strict=True))
            ]
        )
    return _cross_entropy_one(rows, target, 0)
