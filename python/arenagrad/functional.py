"""Derivatives of derivatives: `grad`, `hessian` and `hvp`.

    (dx,) = arenagrad.grad(y, x)                        # a float; no .grad changes
    (dx,) = arenagrad.grad(y, x, create_graph=True)     # a Value: differentiate it again
    H = arenagrad.hessian(f, [1.0, 2.0])                # list of lists of floats
    Hv = arenagrad.hvp(f, [1.0, 2.0], [0.5, -1.0])      # H @ v, without forming H

`grad` is `torch.autograd.grad` for Values. Without `create_graph` it is the sweep of
`backward()` into a scratch buffer (cpp/grad_values.hpp). With it, every op's derivative is
built from ops of the table (cpp/grad_graph.hpp, each rule's grad_* functions), so the
gradients are nodes of the graph like any other: they can be differentiated again, to any
order, and `arenagrad.compile` records them. docs/higher_order.md explains the design.

This module checks every argument, with messages meant for users; `_core._grad` checks only
what keeps memory safe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, SupportsFloat, SupportsIndex, TypeAlias, TypeGuard, overload

from . import _core
from ._core import Value

__all__ = ["grad", "hessian", "hvp"]

_Number: TypeAlias = SupportsFloat | SupportsIndex


def _is_sequence(x: object) -> TypeGuard[Sequence[Any]]:
    return isinstance(x, Sequence) and not isinstance(x, (str, bytes))


def _as_values(items: Value | Sequence[Value], what: str) -> list[Value]:
    if isinstance(items, Value):
        return [items]
    if not _is_sequence(items):
        raise TypeError(
            f"{what} must be a Value or a sequence of Values, not {type(items).__name__}"
        )
    values = list(items)
    for k, item in enumerate(values):
        if not isinstance(item, Value):
            raise TypeError(f"{what}[{k}] must be a Value, not {type(item).__name__}")
    if not values:
        raise ValueError(f"{what} must not be empty")
    return values


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


def _seeds(grad_outputs: Any, n_outputs: int, create_graph: bool) -> list[Value | float]:
    """One seed per output: a float, or (with create_graph) a Value or a float."""
    if grad_outputs is None:
        return [1.0] * n_outputs
    given = list(grad_outputs) if _is_sequence(grad_outputs) else [grad_outputs]
    if len(given) != n_outputs:
        raise ValueError(
            f"grad_outputs has {len(given)} item(s) but there are {n_outputs} output(s)"
        )
    seeds: list[Value | float] = []
    for k, seed in enumerate(given):
        if isinstance(seed, Value):
            # Without create_graph nothing is differentiated through the seed: its value will do.
            seeds.append(seed if create_graph else seed.data)
        else:
            seeds.append(_as_number(seed, f"grad_outputs[{k}]"))
    return seeds


@overload
def grad(
    outputs: Value | Sequence[Value],
    inputs: Value | Sequence[Value],
    grad_outputs: Value | _Number | Sequence[Value | _Number] | None = None,
    create_graph: Literal[False] = False,
    allow_unused: bool = False,
) -> tuple[float, ...]: ...
@overload
def grad(
    outputs: Value | Sequence[Value],
    inputs: Value | Sequence[Value],
    grad_outputs: Value | _Number | Sequence[Value | _Number] | None,
    create_graph: Literal[True],
    allow_unused: bool = False,
) -> tuple[Value, ...]: ...
@overload
def grad(
    outputs: Value | Sequence[Value],
    inputs: Value | Sequence[Value],
    grad_outputs: Value | _Number | Sequence[Value | _Number] | None = None,
    *,
    create_graph: Literal[True],
    allow_unused: bool = False,
) -> tuple[Value, ...]: ...
@overload
def grad(
    outputs: Value | Sequence[Value],
    inputs: Value | Sequence[Value],
    grad_outputs: Value | _Number | Sequence[Value | _Number] | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
) -> tuple[float, ...] | tuple[Value, ...]: ...


def grad(
    outputs: Value | Sequence[Value],
    inputs: Value | Sequence[Value],
    grad_outputs: Value | _Number | Sequence[Value | _Number] | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
) -> tuple[float, ...] | tuple[Value, ...]:
    """The gradients of `outputs` with respect to each of `inputs`, as torch.autograd.grad.

    outputs: a Value or a sequence of Values; inputs: a Value or a sequence of Values (any
    Values, not only leaves). grad_outputs: the seed of each output (default 1.0 each): numbers,
    or Values. The result is sum_k seed_k * d(outputs[k])/d(input), one per input, as a tuple.

    No `.grad` attribute changes. Without create_graph the gradients are floats, computed by the
    sweep of `backward()`. With create_graph=True they are new Values, nodes of the graph built
    from the op table's ops: differentiate them again with `grad` or `backward()`, or return
    them from a function given to `arenagrad.compile`. Their `.data` equals the float result.

    An input that no output depends on raises ValueError; with allow_unused=True its gradient
    is 0.0 (a new leaf Value(0.0) with create_graph).
    """
    outs = _as_values(outputs, "outputs")
    ins = _as_values(inputs, "inputs")
    if not isinstance(create_graph, bool):
        raise TypeError(f"create_graph must be a bool, not {type(create_graph).__name__}")
    if not isinstance(allow_unused, bool):
        raise TypeError(f"allow_unused must be a bool, not {type(allow_unused).__name__}")
    seeds = _seeds(grad_outputs, len(outs), create_graph)
    grads = _core._grad(outs, seeds, ins, create_graph)
    for k, g in enumerate(grads):
        if g is None:
            if not allow_unused:
                raise ValueError(
                    f"inputs[{k}] does not influence the outputs (no output depends on it); "
                    "pass allow_unused=True to get 0.0 for it"
                )
            grads[k] = Value(0.0) if create_graph else 0.0
    return tuple(grads)


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
