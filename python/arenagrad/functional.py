"""Derivatives of derivatives: `grad`, `hessian` and `hvp`.

    (dx,) = arenagrad.grad(y, x)                        # a float; no .grad changes
    (dx,) = arenagrad.grad(y, x, create_graph=True)     # a Value: differentiate it again
    H = arenagrad.hessian(f, [1.0, 2.0])                # list of lists of floats
    Hv = arenagrad.hvp(f, [1.0, 2.0], [0.5, -1.0])      # H @ v, without forming H

`grad` is `torch.autograd.grad` for Values, a native function (cpp/bind_grad.cpp: on a small
graph the call is the cost). Without `create_graph` it is the sweep of `backward()` into a
scratch buffer (cpp/grad_values.hpp). With it, every op's derivative is built from ops of the
table (cpp/grad_graph.hpp, each rule's grad_* functions), so the gradients are nodes of the
graph like any other: they can be differentiated again, to any order, and `arenagrad.compile`
records them. `hessian` and `hvp` are built on it here. docs/higher_order.md explains the
design.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, SupportsFloat, SupportsIndex, TypeAlias, TypeGuard

from ._core import Value, grad

__all__ = ["grad", "hessian", "hvp"]

_Number: TypeAlias = SupportsFloat | SupportsIndex


def _is_sequence(x: object) -> TypeGuard[Sequence[Any]]:
    return isinstance(x, Sequence) and not isinstance(x, (str, bytes))


def _as_number(x: Any, what: str) -> float:
    if type(x) is float:  # the common case, first
        return x
    if isinstance(x, (Value, str, bytes, complex)) or not (
        hasattr(type(x), "__float__") or hasattr(type(x), "__index__")
    ):
        raise TypeError(f"{what} must be a real number, not {type(x).__name__}")
    try:
        return float(x)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{what} must be a real number, not {type(x).__name__}") from error


def _leaves(inputs: Value | _Number | Sequence[Value | _Number]) -> list[Value]:
    """New leaf Values holding the inputs' values (numbers, or Values' data)."""
    items: list[Any] = list(inputs) if _is_sequence(inputs) else [inputs]
    if not items:
        raise ValueError("inputs must not be empty")
    return [
        Value(x.data if isinstance(x, Value) else _as_number(x, f"inputs[{k}]"))
        for k, x in enumerate(items)
    ]


def _scalar(f: Callable[..., Value], xs: list[Value]) -> Value:
    y = f(*xs)
    if not isinstance(y, Value):
        raise TypeError(f"f must return a Value, not {type(y).__name__}")
    return y


def hessian(
    f: Callable[..., Value], inputs: Value | _Number | Sequence[Value | _Number]
) -> list[list[float]]:
    """The matrix of second derivatives of `f(*values)` at `inputs`, as torch's
    `torch.autograd.functional.hessian`: `f` is called on new leaf Values holding the inputs
    (numbers or Values; a Value's own graph is not differentiated through). Returns a list of
    lists of floats, H[i][j] = d2 f / dx_i dx_j (0.0 where f does not depend on an input).
    Costs one gradient graph and one sweep over it per input."""
    xs = _leaves(inputs)
    y = _scalar(f, xs)
    first = grad(y, xs, create_graph=True, allow_unused=True)
    return [list(grad(g, xs, allow_unused=True)) for g in first]


def hvp(
    f: Callable[..., Value],
    inputs: Value | _Number | Sequence[Value | _Number],
    v: _Number | Sequence[_Number],
) -> list[float]:
    """The Hessian of `f` at `inputs` times the vector `v` (a list of floats, one per input),
    without forming the Hessian: the gradient graph once, then one sweep over it seeded with v
    (about the cost of 2-4 gradients, whatever the number of inputs)."""
    xs = _leaves(inputs)
    vector: list[Any] = list(v) if _is_sequence(v) else [v]
    if len(vector) != len(xs):
        raise ValueError(f"v has {len(vector)} item(s) but there are {len(xs)} input(s)")
    seeds = [_as_number(x, f"v[{k}]") for k, x in enumerate(vector)]
    y = _scalar(f, xs)
    first = grad(y, xs, create_graph=True, allow_unused=True)
    return list(grad(list(first), xs, grad_outputs=seeds, allow_unused=True))
