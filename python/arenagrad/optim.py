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
    try:
        number = float(value)
    except OverflowError:  # an int beyond the float range
        raise ValueError(f"invalid {name}: an integer of {int(value).bit_length()} bits") from None
    if not number >= low:  # also rejects nan
        raise ValueError(f"invalid {name}: {number} (must be >= {low})")
    return number


def _flag(value: Any, name: str) -> bool:
    """A boolean hyperparameter: bool, numpy bool, or the ints 0 and 1."""
    if isinstance(value, (bool, np.bool_)) or (
        isinstance(value, (int, np.integer)) and value in (0, 1)
    ):
        return bool(value)
    raise TypeError(f"{name} must be True or False, not {value!r}")


def _step_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"step must be an int, not {type(value).__name__!r}")
    if not 0 <= value < 2**63:
        shown = value if abs(value) < 2**64 else f"an integer of {int(value).bit_length()} bits"
        raise ValueError(f"invalid step: {shown} (must be >= 0 and < 2**63)")
    return int(value)


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
    implement `update(data, grad) -> new data`. A subclass that checks its hyperparameters
    does it in `check_hyperparameters`, which its constructor and `load_state_dict` both call,
    so a saved state is held to exactly the constructor's rules.
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

    def check_hyperparameters(self, values: dict[str, Any]) -> dict[str, Any]:
        """The hyperparameters `values` (one entry per name in `hyperparameters`), checked and
        normalised (TypeError or ValueError, as the constructor raises). Reads nothing from
        `self`: it judges the values alone."""
        return dict(values)

    def check_state(self, state: dict[str, Any]) -> None:
        """Optimizer-specific checks of a state about to be loaded (its arrays already have
        the right shape and dtype); raises ValueError."""

    def _set_hyperparameters(self, checked: dict[str, Any]) -> None:
        for name, value in checked.items():
            setattr(self, name, value)

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
        """Restore what `state_dict()` returned.

        All or nothing: everything is checked first (the hyperparameters by the constructor's
        own `check_hyperparameters`, the step, every state array's type and shape), and the
        optimizer changes only if all of it passes (TypeError or ValueError otherwise).
        """
        name = type(self).__name__
        if not isinstance(state_dict, dict) or not {"optimizer", "state"} <= state_dict.keys():
            raise TypeError(f"{name}.load_state_dict() expects a dict from state_dict()")
        if state_dict["optimizer"] != name:
            saved_name = str(state_dict["optimizer"])[:60]
            raise ValueError(f"state is from a {saved_name} optimizer, not a {name}")
        saved = state_dict["state"]
        if not isinstance(saved, dict):
            raise TypeError(f"{name} state must be a dict, not {type(saved).__name__!r}")
        if set(saved) != set(self.state):
            raise ValueError(
                f"{name} state has entries {sorted(self.state)}, got {sorted(map(str, saved))}"
            )
        state: dict[str, Any] = {"step": _step_count(saved["step"])}
        for key, value in saved.items():
            if key != "step":
                state[key] = None if value is None else self._state_array(key, value)
        self.check_state(state)
        hyperparameters = state_dict.get("hyperparameters", {})
        if not isinstance(hyperparameters, dict):
            raise TypeError(f"{name} hyperparameters must be a dict")
        unknown = sorted(map(str, set(hyperparameters) - set(self.hyperparameters)))
        if unknown:
            raise ValueError(f"{name} has no hyperparameter {unknown[0]!r}")
        values = {key: getattr(self, key) for key in self.hyperparameters}
        checked = self.check_hyperparameters({**values, **hyperparameters})
        # Every check passed: only now does anything change.
        self._set_hyperparameters(checked)
        self.state = state

    def _state_array(self, key: str, value: Any) -> np.ndarray:
        """One per-parameter state array from a saved state, as a fresh float64 vector."""
        name = type(self).__name__
        array = np.asarray(value)
        if array.dtype.kind not in "iuf":
            raise TypeError(
                f"{name} state {key!r} must hold real numbers, not {array.dtype} values"
            )
        if array.shape != (len(self.params),):
            raise ValueError(
                f"{name} state {key!r} has shape {array.shape}, expected "
                f"({len(self.params)},): saved for a different set of parameters?"
            )
        return np.array(array, dtype=np.float64)

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
    lr: float
    momentum: float
    dampening: float
    weight_decay: float
    nesterov: bool

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
        values = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
        }
        self._set_hyperparameters(self.check_hyperparameters(values))
        self.state["momentum_buffer"] = None

    def check_hyperparameters(self, values: dict[str, Any]) -> dict[str, Any]:
        checked = {
            "lr": _number(values["lr"], "lr"),
            "momentum": _number(values["momentum"], "momentum"),
            "dampening": _number(values["dampening"], "dampening"),
            "weight_decay": _number(values["weight_decay"], "weight_decay"),
            "nesterov": _flag(values["nesterov"], "nesterov"),
        }
        if checked["nesterov"] and (checked["momentum"] <= 0 or checked["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum > 0 and zero dampening")
        return checked

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
    lr: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float
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
        values = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        self._set_hyperparameters(self.check_hyperparameters(values))
        n = len(self.params)
        self.state["exp_avg"] = np.zeros(n)
        self.state["exp_avg_sq"] = np.zeros(n)

    def check_hyperparameters(self, values: dict[str, Any]) -> dict[str, Any]:
        betas = values["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of numbers, got {str(betas)[:60]}")
        checked_betas = (_number(betas[0], "betas[0]"), _number(betas[1], "betas[1]"))
        if not (checked_betas[0] < 1 and checked_betas[1] < 1):
            raise ValueError(f"invalid betas: {checked_betas} (each must be in [0, 1))")
        return {
            "lr": _number(values["lr"], "lr"),
            "betas": checked_betas,
            "eps": _number(values["eps"], "eps"),
            "weight_decay": _number(values["weight_decay"], "weight_decay"),
        }

    def check_state(self, state: dict[str, Any]) -> None:
        for key in ("exp_avg", "exp_avg_sq"):
            if state[key] is None:
                raise ValueError(f"{type(self).__name__} state {key!r} is missing")
        if np.any(state["exp_avg_sq"] < 0):  # a mean of squares: sqrt() of it would be nan
            raise ValueError(f"{type(self).__name__} state 'exp_avg_sq' has negative entries")

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
