"""Parameters as numpy vectors: one native call to read every `.grad` or write every `.data`.

Optimizers, gradient clipping and checkpoints work on whole vectors. For native Values the
gather/scatter is a single C++ loop (cpp/bind_params.cpp); any other Value-like object with
`.data`/`.grad` (e.g. `arenagrad.reference.Value`) takes a plain Python loop, so the same
training code runs on both engines.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from . import _core


def param_list(params: Any, what: str) -> list[Any]:
    """A module's `.parameters()`, or the given iterable of Values, as a list (checked)."""
    if hasattr(params, "parameters") and callable(params.parameters):
        params = params.parameters()
    if isinstance(params, (str, bytes)) or not isinstance(params, Iterable):
        raise TypeError(
            f"{what} expects a Module or an iterable of Values, not {type(params).__name__!r}"
        )
    items: list[Any] = list(params)
    for i, p in enumerate(items):
        if not (hasattr(p, "data") and hasattr(p, "grad") and hasattr(p, "backward")):
            raise TypeError(f"{what}: parameter {i} must be a Value, not {type(p).__name__!r}")
    return items


class ParamVector:
    """A fixed list of parameters viewed as one float64 vector.

    Whether the fast native path applies is decided once, here, not on every step.
    """

    def __init__(self, params: list[Any]) -> None:
        self.params = params
        self.native = all(type(p) is _core.Value for p in params)

    def __len__(self) -> int:
        return len(self.params)

    def data(self) -> np.ndarray:
        if self.native:
            return _core.get_data(self.params)
        return np.array([p.data for p in self.params], dtype=np.float64)

    def grad(self) -> np.ndarray:
        if self.native:
            return _core.get_grad(self.params)
        return np.array([p.grad for p in self.params], dtype=np.float64)

    def set_data(self, values: np.ndarray) -> None:
        if self.native:
            _core.set_data(self.params, values)
            return
        for p, v in zip(self.params, np.asarray(values, dtype=np.float64).tolist(), strict=True):
            p.data = v

    def set_grad(self, values: np.ndarray) -> None:
        if self.native:
            _core.set_grad(self.params, values)
            return
        for p, v in zip(self.params, np.asarray(values, dtype=np.float64).tolist(), strict=True):
            p.grad = v

    def zero_grad(self) -> None:
        if self.native:
            _core.zero_grad(self.params)
            return
        for p in self.params:
            p.grad = 0.0
