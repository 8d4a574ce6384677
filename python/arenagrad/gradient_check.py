"""`arenagrad.gradcheck`: compare backward() against central finite differences.

    def f(a, b):
        return (a * b).tanh() + a.exp()

    worst = arenagrad.gradcheck(f, [0.3, -1.2])   # raises GradcheckError if wrong

For each input x_i the numerical derivative is (f(x + h e_i) - f(x - h e_i)) / 2h with
h = eps * max(1, |x_i|); its error against the backward() gradient is measured as
|got - expected| / max(1, |got|, |expected|): relative for large derivatives, absolute for small
ones (where a relative error would only measure finite-difference noise).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from numbers import Real
from typing import Any

__all__ = ["GradcheckError", "gradcheck"]


class GradcheckError(AssertionError):
    """backward() disagrees with finite differences; the message lists the inputs."""


def _error(got: float, expected: float) -> float:
    if got == expected:  # also equal infinities
        return 0.0
    if not (math.isfinite(got) and math.isfinite(expected)):
        return math.inf
    return abs(got - expected) / max(1.0, abs(got), abs(expected))


def gradcheck(
    fn: Callable[..., Any],
    inputs: Sequence[Any],
    *,
    eps: float = 1e-6,
    tol: float = 1e-5,
    value_type: type | None = None,
) -> float:
    """Check fn's gradient at `inputs` (numbers or Values; only their `.data` is used).

    `fn` receives one fresh Value per input and must return a Value. Values are of
    `value_type`, else the type of the first Value in `inputs`, else `arenagrad.Value`.
    Returns the worst error; raises GradcheckError listing every input past `tol`.
    """
    if not callable(fn):
        raise TypeError(f"gradcheck() needs a callable, not {type(fn).__name__!r}")
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
        raise TypeError("gradcheck(): inputs must be a sequence of numbers or Values")
    if not inputs:
        raise ValueError("gradcheck(): got no inputs")
    if not (eps > 0 and tol >= 0):
        raise ValueError(f"gradcheck(): need eps > 0 and tol >= 0, got eps={eps}, tol={tol}")
    point = []
    for i, x in enumerate(inputs):
        data = x.data if hasattr(x, "backward") else x
        if isinstance(data, bool) or not isinstance(data, Real):
            raise TypeError(
                f"gradcheck(): input {i} must be a number or a Value, not {type(x).__name__!r}"
            )
        point.append(float(data))
    if value_type is None:
        value_type = next((type(x) for x in inputs if hasattr(x, "backward")), None)
    if value_type is None:
        from ._core import Value

        value_type = Value
    make: type = value_type

    def evaluate(xs: list[float]) -> Any:
        out = fn(*[make(x) for x in xs])
        if not hasattr(out, "backward"):
            raise TypeError(f"gradcheck(): fn must return a Value, got {type(out).__name__!r}")
        return out

    # Analytic gradient: one backward pass.
    leaves = [make(x) for x in point]
    out = fn(*leaves)
    if not hasattr(out, "backward"):
        raise TypeError(f"gradcheck(): fn must return a Value, got {type(out).__name__!r}")
    out.backward()
    got = [leaf.grad for leaf in leaves]

    worst, failures = 0.0, []
    for i, x in enumerate(point):
        h = eps * max(1.0, abs(x))
        plus, minus = list(point), list(point)
        plus[i], minus[i] = x + h, x - h
        expected = (evaluate(plus).data - evaluate(minus).data) / (plus[i] - minus[i])
        error = _error(got[i], expected)
        worst = max(worst, error)
        if not error <= tol:
            failures.append(
                f"  input {i} (x = {x!r}): expected {expected:.8g} (finite differences), "
                f"got {got[i]:.8g} (backward), error {error:.3g}"
            )
    if failures:
        raise GradcheckError(
            f"gradcheck failed: {len(failures)} of {len(point)} inputs past tol={tol:g} "
            f"(f = {out.data!r})\n" + "\n".join(failures)
        )
    return worst
