"""Optimizers and gradient clipping, with PyTorch's argument names and update rules.

    opt = arenagrad.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(steps):
        loss = ...
        opt.zero_grad()
        loss.backward()
        opt.step()

Each step reads every parameter's grad in one native call, applies the update rule as numpy
vector arithmetic (the formulas below are PyTorch's, written out), and writes every `.data` back
in one native call: no Python loop over parameters. Values of the pure-Python
`arenagrad.reference` engine work too (through a plain loop).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ._vectors import ParamVector, param_list

__all__ = ["SGD", "Adam", "AdamW", "Optimizer", "clip_grad_norm_", "clip_grad_value_"]


def _number(value: Any, name: str, low: float = 0.0) -> float:
    """A hyperparameter as a float, checked: TypeError for non-numbers, ValueError if < low."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, not {type(value).__name__!r}")
    number = float(value)
    if not number >= low:  # also rejects nan
        raise ValueError(f"invalid {name}: {number} (must be >= {low})")
    return number


def _warn_nonfinite(where: str, what: str, values: np.ndarray) -> bool:
    """Warns (naming the parameter indices) if any value is nan or infinite."""
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        shown = ", ".join(str(i) for i in bad[:10]) + (", ..." if len(bad) > 10 else "")
        warnings.warn(
            f"{where}: non-finite {what} in {len(bad)} parameter(s): {shown}",
            RuntimeWarning,
            stacklevel=3,
        )
    return bool(len(bad))


class Optimizer:
    """Base class: holds the parameters as one vector and the per-parameter state arrays.

    Subclasses set their hyperparameters as attributes (listed in `hyperparameters`), keep
    their state in `self.state` (numpy arrays of one entry per parameter, plus `step`), and
    implement `update(data, grad) -> new data`.
    """

    hyperparameters: tuple[str, ...] = ("lr",)

    def __init__(self, params: Any) -> None:
        self.params = ParamVector(param_list(params, f"{type(self).__name__}()"))
        if len(self.params) == 0:
            raise ValueError(f"{type(self).__name__}() got an empty parameter list")
        self.state: dict[str, Any] = {"step": 0}

    def zero_grad(self) -> None:
        """Set every parameter's grad to 0 (one native call)."""
        self.params.zero_grad()

    def step(self) -> None:
        """Apply one update to every parameter from its current `.grad`.

        Non-finite values are applied as they are (as torch.optim does: nan/inf grads make
        nan/inf parameters), but never silently: a RuntimeWarning names the parameters whose
        grad, or whose updated value, is nan or infinite.
        """
        self.state["step"] += 1
        grad = self.params.grad()
        with np.errstate(all="ignore"):  # reported below, once and by parameter
            data = self.update(self.params.data(), grad)
        self.params.set_data(data)
        where = f"{type(self).__name__}.step()"
        if not _warn_nonfinite(where, "gradients", grad):
            _warn_nonfinite(where, "updated values", data)  # e.g. an overflow

    def update(self, data: np.ndarray, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # ---- checkpoints -----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: hyperparameters and state (copies)."""
        return {
            "optimizer": type(self).__name__,
            "hyperparameters": {name: getattr(self, name) for name in self.hyperparameters},
            "state": {
                k: v.copy() if isinstance(v, np.ndarray) else v for k, v in self.state.items()
            },
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what `state_dict()` returned (checked against this optimizer)."""
        name = type(self).__name__
        if not isinstance(state_dict, dict) or not {"optimizer", "state"} <= state_dict.keys():
            raise TypeError(f"{name}.load_state_dict() expects a dict from state_dict()")
        if state_dict["optimizer"] != name:
            raise ValueError(f"state is from a {state_dict['optimizer']} optimizer, not a {name}")
        state = dict(state_dict["state"])
        if set(state) != set(self.state):
            raise ValueError(f"{name} state has entries {sorted(self.state)}, got {sorted(state)}")
        for key, value in state.items():
            if value is None or key == "step":
                continue
            value = np.array(value, dtype=np.float64)
            if value.shape != (len(self.params),):
                raise ValueError(
                    f"{name} state {key!r} has shape {value.shape}, expected "
                    f"({len(self.params)},): saved for a different set of parameters?"
                )
            state[key] = value
        state["step"] = int(state["step"])
        for key, value in state_dict.get("hyperparameters", {}).items():
            if key not in self.hyperparameters:
                raise ValueError(f"{name} has no hyperparameter {key!r}")
            setattr(self, key, tuple(value) if isinstance(value, (list, np.ndarray)) else value)
        self.state = state

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.hyperparameters)
        return f"{type(self).__name__}({len(self.params)} parameters, {hyper})"


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum and L2 weight decay.

    torch.optim.SGD's rule: g = grad + weight_decay * p; with momentum,
    buf = g on the first step, then buf = momentum * buf + (1 - dampening) * g, and
    g = g + momentum * buf (Nesterov) or g = buf; finally p = p - lr * g.
    """

    hyperparameters = ("lr", "momentum", "dampening", "weight_decay", "nesterov")

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(params)
        self.lr = _number(lr, "lr")
        self.momentum = _number(momentum, "momentum")
        self.dampening = _number(dampening, "dampening")
        self.weight_decay = _number(weight_decay, "weight_decay")
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum > 0 and zero dampening")
        self.state["momentum_buffer"] = None

    def update(self, data: np.ndarray, grad: np.ndarray) -> np.ndarray:
        g = grad
        if self.weight_decay != 0:
            g = g + self.weight_decay * data
        if self.momentum != 0:
            buf = self.state["momentum_buffer"]
            buf = g.copy() if buf is None else self.momentum * buf + (1 - self.dampening) * g
            self.state["momentum_buffer"] = buf
            g = g + self.momentum * buf if self.nesterov else buf
        return data - self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba), with torch.optim.Adam's bias correction and L2 weight decay.

    g = grad + weight_decay * p
    m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g * g
    p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
    """

    hyperparameters = ("lr", "betas", "eps", "weight_decay")
    decoupled_weight_decay = False

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params)
        self.lr = _number(lr, "lr")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of numbers, got {betas!r}")
        self.betas = (_number(betas[0], "betas[0]"), _number(betas[1], "betas[1]"))
        if not (self.betas[0] < 1 and self.betas[1] < 1):
            raise ValueError(f"invalid betas: {self.betas} (each must be in [0, 1))")
        self.eps = _number(eps, "eps")
        self.weight_decay = _number(weight_decay, "weight_decay")
        n = len(self.params)
        self.state["exp_avg"] = np.zeros(n)
        self.state["exp_avg_sq"] = np.zeros(n)

    def update(self, data: np.ndarray, grad: np.ndarray) -> np.ndarray:
        beta1, beta2 = self.betas
        t = self.state["step"]
        if self.weight_decay != 0:
            if self.decoupled_weight_decay:  # AdamW: shrink the weights, not the gradient
                data = data * (1 - self.lr * self.weight_decay)
            else:
                grad = grad + self.weight_decay * data
        m = self.state["exp_avg"] = beta1 * self.state["exp_avg"] + (1 - beta1) * grad
        v = self.state["exp_avg_sq"] = beta2 * self.state["exp_avg_sq"] + (1 - beta2) * grad * grad
        step_size = self.lr / (1 - beta1**t)
        denom = np.sqrt(v) / math.sqrt(1 - beta2**t) + self.eps
        new_data: np.ndarray = data - step_size * (m / denom)
        return new_data


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), torch.optim.AdamW's rule:
    p = p * (1 - lr * weight_decay), then the Adam step without weight decay in the gradient.
    """

    decoupled_weight_decay = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


# ---- gradient clipping ---------------------------------------------------------------------


def clip_grad_norm_(
    params: Any, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = True
) -> float:
    """Scale all grads together so that their total norm is at most `max_norm`.

    Returns the total norm before clipping (torch.nn.utils.clip_grad_norm_'s rule:
    grads *= min(1, max_norm / (norm + 1e-6))). A nan or infinite norm is never used to
    scale: it raises FloatingPointError naming the offending parameters, or, with
    `error_if_nonfinite=False`, warns (RuntimeWarning) and leaves the grads untouched.
    """
    vector = ParamVector(param_list(params, "clip_grad_norm_()"))
    max_norm = _number(max_norm, "max_norm")
    norm_type = _number(norm_type, "norm_type")
    if norm_type == 0:
        raise ValueError("norm_type must be > 0")
    grad = vector.grad()
    if len(grad) == 0:
        return 0.0
    if norm_type == math.inf:
        total = float(np.max(np.abs(grad)))
    else:
        total = float(np.sum(np.abs(grad) ** norm_type) ** (1.0 / norm_type))
    if not math.isfinite(total):
        bad = np.flatnonzero(~np.isfinite(grad))
        shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
        message = (
            f"clip_grad_norm_: the total gradient norm is {total}"
            + (f"; non-finite grads in parameters {shown}" if len(bad) else "")
            + " (grads left unchanged)"
        )
        if error_if_nonfinite:
            raise FloatingPointError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        return total
    scale = min(1.0, max_norm / (total + 1e-6))
    if scale < 1.0:
        vector.set_grad(grad * scale)
    return total


def clip_grad_value_(params: Any, clip_value: float) -> None:
    """Clamp every grad into [-clip_value, clip_value] (nan grads stay nan)."""
    vector = ParamVector(param_list(params, "clip_grad_value_()"))
    clip_value = _number(clip_value, "clip_value")
    vector.set_grad(np.clip(vector.grad(), -clip_value, clip_value))
