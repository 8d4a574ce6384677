"""Learning-rate schedules: set `optimizer.lr` from the step count.

    opt = arenagrad.optim.SGD(model.parameters(), lr=1.0)
    schedule = arenagrad.schedules.MicrogradLR(opt, total_steps=100)
    for k in range(100):
        ...  # forward, zero_grad, backward
        opt.step()
        schedule.step()

Each schedule is a closed-form function of the step count `k` (`lr_at(k)`), applied to the
optimizer's learning rate when it is created (k = 0) and after every `step()`. The formulas and
argument names follow torch.optim.lr_scheduler where PyTorch has the same schedule.
"""

from __future__ import annotations

import math
import sys
from numbers import Real
from typing import Any

__all__ = [
    "CosineAnnealingLR",
    "ExponentialLR",
    "LRSchedule",
    "LinearWarmup",
    "MicrogradLR",
    "StepLR",
]


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _real(value: Any, name: str, low: float = -math.inf) -> float:
    """A finite float >= low. Huge ints are refused too (float() of them overflows)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    if number < low:
        raise ValueError(f"{name} must be >= {low:g}, got {value!r}")
    return number


def _learning_rate(value: Any, name: str) -> float:
    # A negative rate climbs the loss and an infinite one destroys every parameter: neither
    # can ever be what a schedule is meant to produce.
    return _real(value, name, low=0.0)


def _times_power(base: float, gamma: float, k: int) -> float:
    """base * gamma**k, with no intermediate overflow or underflow: gamma**k alone may leave
    the float range (1e200**2) while the product does not (1e-300 * 1e200**2). The result is
    inf only when the product itself is beyond the float range.

    The plain formula when gamma**k is a normal float (then it is exactly what torch and the
    textbook compute); otherwise mantissas and binary exponents are multiplied separately
    (exponents as Python ints, which cannot overflow), by binary exponentiation.
    """
    try:
        power = gamma**k
    except OverflowError:
        power = math.inf
    if sys.float_info.min <= power < math.inf:
        return base * power
    mantissa, exponent = math.frexp(base)
    square, square_exponent = math.frexp(gamma)  # gamma ** (2 ** i), as mantissa and exponent
    while k:
        if k & 1:
            mantissa, shift = math.frexp(mantissa * square)
            exponent += shift + square_exponent
        k >>= 1
        if k:
            square, shift = math.frexp(square * square)
            square_exponent = 2 * square_exponent + shift
    if mantissa == 0.0:
        return 0.0
    try:
        return math.ldexp(mantissa, exponent)  # rounds once, to a subnormal or 0 if need be
    except OverflowError:
        return math.inf


class LRSchedule:
    """Base class: `lr_at(k)` gives the learning rate at step k from `base_lr`."""

    def __init__(self, optimizer: Any) -> None:
        if not hasattr(optimizer, "lr"):
            raise TypeError(f"expected an optimizer with an `lr`, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = _learning_rate(optimizer.lr, "the optimizer's lr")
        self.last_step = 0
        optimizer.lr = self.lr_at(0)

    def lr_at(self, k: int) -> float:
        raise NotImplementedError

    def step(self) -> float:
        """Advance one step and set the optimizer's lr; returns the new lr."""
        self.last_step += 1
        lr = self.lr_at(self.last_step)
        self.optimizer.lr = lr
        return lr

    def state_dict(self) -> dict[str, Any]:
        return {"base_lr": self.base_lr, "last_step": self.last_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict()` returned (checked first; nothing changes on error)."""
        if not isinstance(state, dict) or not {"base_lr", "last_step"} <= state.keys():
            raise TypeError(f"{type(self).__name__}.load_state_dict() expects a state_dict()")
        base_lr = _learning_rate(state["base_lr"], "base_lr")
        last_step = state["last_step"]
        if isinstance(last_step, bool) or not isinstance(last_step, int) or last_step < 0:
            raise ValueError(f"last_step must be an integer >= 0, got {last_step!r}")
        self.base_lr, self.last_step = base_lr, last_step
        self.optimizer.lr = self.lr_at(self.last_step)


class StepLR(LRSchedule):
    """lr = base_lr * gamma ** (k // step_size): decay by `gamma` every `step_size` steps."""

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = _positive_int(step_size, "step_size")
        self.gamma = _real(gamma, "gamma", low=0.0)  # gamma < 0 flips the rate's sign
        super().__init__(optimizer)

    def lr_at(self, k: int) -> float:
        return _times_power(self.base_lr, self.gamma, k // self.step_size)


class ExponentialLR(LRSchedule):
    """lr = base_lr * gamma ** k."""

    def __init__(self, optimizer: Any, gamma: float) -> None:
        self.gamma = _real(gamma, "gamma", low=0.0)  # gamma < 0 flips the rate's sign
        super().__init__(optimizer)

    def lr_at(self, k: int) -> float:
        return _times_power(self.base_lr, self.gamma, k)


class CosineAnnealingLR(LRSchedule):
    """Half a cosine from base_lr down to eta_min over T_max steps, then eta_min:
    lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * k / T_max)) / 2 (SGDR without restarts).
    Equal to torch's CosineAnnealingLR up to T_max; after it, torch follows the cosine back up,
    this one stays at eta_min.
    """

    def __init__(self, optimizer: Any, T_max: int, eta_min: float = 0.0) -> None:
        self.T_max = _positive_int(T_max, "T_max")
        self.eta_min = _learning_rate(eta_min, "eta_min")
        super().__init__(optimizer)

    def lr_at(self, k: int) -> float:
        k = min(k, self.T_max)
        return (
            self.eta_min
            + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * k / self.T_max)) / 2
        )


class LinearWarmup(LRSchedule):
    """Ramp linearly from start_factor * base_lr to base_lr over `warmup_steps`, then hold
    (torch's LinearLR with end_factor=1 and total_iters=warmup_steps)."""

    def __init__(self, optimizer: Any, warmup_steps: int, start_factor: float = 0.1) -> None:
        self.warmup_steps = _positive_int(warmup_steps, "warmup_steps")
        self.start_factor = _real(start_factor, "start_factor")
        if not 0 < self.start_factor <= 1:
            raise ValueError(f"start_factor must be in (0, 1], got {start_factor!r}")
        super().__init__(optimizer)

    def lr_at(self, k: int) -> float:
        progress = min(k, self.warmup_steps) / self.warmup_steps
        return self.base_lr * (self.start_factor + (1 - self.start_factor) * progress)


class MicrogradLR(LRSchedule):
    """micrograd's demo schedule: lr = base_lr * (1.0 - 0.9 * k / total_steps), so with
    base_lr = 1.0 it is exactly `learning_rate = 1.0 - 0.9 * k / 100` from the notebook.
    After total_steps it holds at base_lr / 10 (the formula would go on down, below zero)."""

    def __init__(self, optimizer: Any, total_steps: int) -> None:
        self.total_steps = _positive_int(total_steps, "total_steps")
        super().__init__(optimizer)

    def lr_at(self, k: int) -> float:
        k = min(k, self.total_steps)
        return self.base_lr * (1.0 - 0.9 * k / self.total_steps)
