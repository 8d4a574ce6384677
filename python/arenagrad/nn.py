"""micrograd's `nn` module: Module, Neuron, Layer, MLP, with the same constructors, reprs and
initialisation (Python's `random.uniform(-1, 1)`), so a seeded model starts from the same
weights as micrograd's.

The one change inside: a Neuron computes `b + sum(w_i * x_i)` as a single fused arena node
(`arenagrad.linear`) in micrograd's summation order, so forward values are bit-identical to
micrograd's while the graph holds one node per neuron instead of 2n. Its parameters are labelled
w0, w1, ... and b (micrograd's leave theirs empty), so that a drawing of that one node
(`arenagrad.viz.draw_dot`) tells the weights and the bias from the inputs.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable, Sequence
from numbers import Integral
from typing import Any

from ._core import Value, linear, zero_grad


def _size(value: Any, what: str) -> int:
    """A layer size, checked when the model is built (not at its first call, where a
    negative or zero size would show up as a puzzling input count)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{what} must be an int, not {type(value).__name__!r}")
    if value < 1:
        raise ValueError(f"{what} must be >= 1, got {value}")
    return int(value)


@functools.cache  # one set of label strings for all neurons of a width
def _weight_labels(nin: int) -> tuple[str, ...]:
    return tuple(f"w{i}" for i in range(nin))


class Module:
    def zero_grad(self) -> None:
        zero_grad(self.parameters())  # one native call, not a Python loop

    def parameters(self) -> list[Value]:
        return []


class Neuron(Module):
    def __init__(self, nin: int, nonlin: bool = True) -> None:
        nin = _size(nin, "Neuron(nin): nin")
        self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = Value(0)
        self.nonlin = nonlin
        for w, label in zip(self.w, _weight_labels(nin), strict=True):
            w.label = label
        self.b.label = "b"

    def __call__(self, x: Sequence[Value | float]) -> Value:
        # linear() checks the inputs itself: Python-level checks here cost as much as the
        # native call (bench/: ~40% of a neuron), so only a failure pays for a clearer message.
        try:
            act = linear(self.b, self.w, x)
        except ValueError:
            if isinstance(x, (list, tuple)) and len(x) != len(self.w):
                raise ValueError(f"Neuron expects {len(self.w)} inputs, got {len(x)}") from None
            raise
        return act.relu() if self.nonlin else act

    def parameters(self) -> list[Value]:
        return [*self.w, self.b]

    def __repr__(self) -> str:
        return f"{'ReLU' if self.nonlin else 'Linear'}Neuron({len(self.w)})"


class Layer(Module):
    def __init__(self, nin: int, nout: int, **kwargs: Any) -> None:
        nin = _size(nin, "Layer(nin, nout): nin")
        nout = _size(nout, "Layer(nin, nout): nout")
        self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]

    def __call__(self, x: Sequence[Value | float]) -> Value | list[Value]:
        if not isinstance(x, (list, tuple)):
            x = list(x)
        nin = len(self.neurons[0].w) if self.neurons else 0
        if len(x) != nin:
            raise ValueError(f"Layer expects {nin} inputs, got {len(x)}")
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Value]:
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self) -> str:
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):
    def __init__(self, nin: int, nouts: list[int]) -> None:
        nin = _size(nin, "MLP(nin, nouts): nin")
        if isinstance(nouts, (str, bytes)) or not isinstance(nouts, Iterable):
            raise TypeError(
                f"MLP(nin, nouts): nouts must be a list of layer sizes, "
                f"not {type(nouts).__name__!r}"
            )
        nouts = [_size(n, f"MLP(nin, nouts): nouts[{i}]") for i, n in enumerate(nouts)]
        if not nouts:
            raise ValueError("MLP(nin, nouts): nouts must name at least one layer size")
        sz = [nin, *nouts]
        self.layers = [
            Layer(sz[i], sz[i + 1], nonlin=i != len(nouts) - 1) for i in range(len(nouts))
        ]

    def __call__(self, x: Sequence[Value | float]) -> Any:
        if not isinstance(x, (list, tuple)):
            x = list(x)
        nin = len(self.layers[0].neurons[0].w) if self.layers and self.layers[0].neurons else 0
        if len(x) != nin:
            raise ValueError(f"MLP expects {nin} inputs, got {len(x)}")
        for layer in self.layers:
            x = layer(x)  # type: ignore[assignment]  # a 1-output layer returns a Value
        return x

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self) -> str:
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"
