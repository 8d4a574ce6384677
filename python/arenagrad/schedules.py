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


def _real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


class LRSchedule:
    """Base class: `lr_at(k)` gives the learning rate at step k from `base_lr`."""

    def __init__(self, optimizer: Any) -> None:
        if not hasattr(optimizer, "lr"):
            raise TypeError(f"expected an optimizer with an `lr`, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = float(optimizer.lr)
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
        self.base_lr = float(state["base_lr"])
        self.last_step = int(state["last_step"])
        self.optimizer.lr = self.lr_at(self.last_step)


class StepLR(LRSchedule):
    """lr = base_lr * gamma ** (k // step_size): decay by `gamma` every `step_size` steps."""

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = _positive_int(step_size, "step_size")
        self.gamma = _real(gamma, "gamma")
        super().__init__(optimizer)

    def lr_at(self, k: int) -> float:
        return self.base_lr * self.gamma ** (k // self.step_size)


class ExponentialLR(LRSchedule):
    """lr = base_lr * gamma ** k."""

    def __init__(self, optimizer: Any, gamma: float) -> None:
        self.gamma = _real(gamma, "gamma")
        super().__init__(optimizer)

    def lr_at(self, k: int) -> float:
        return self.base_lr * self.gamma**k


class CosineAnnealingLR(LRSchedule):
    """Half a cosine from base_lr down to eta_min over T_max steps, then eta_min:
    lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * k / T_max)) / 2 (SGDR without restarts).
    Equal to torch's CosineAnnealingLR up to T_max; after it, torch follows the cosine back up,
    this one stays at eta_min.
    """

    def __init__(self, optimizer: Any, T_max: int, eta_min: float = 0.0) -> None:
        self.T_max = _positive_int(T_max, "T_max")
        self.eta_min = _real(eta_min, "eta_min")
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
    base_lr = 1.0 it is exactly `learning_rate = 1.0 - 0.9 * k / 100` from the notebook."""

    def __init__(self, optimizer: Any, total_steps: int) -> None:
        self.total_steps = _positive_int(total_steps, "total_steps")
        super().__init__(optimizer)

    def lr_at(self, k: int) -> float:
        return self.base_lr * (1.0 - 0.9 * k / self.total_steps)
