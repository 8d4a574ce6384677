"""Newton's method on Rosenbrock's function, from the classic start (-1.2, 1).

Each step solves H(x) d = -grad f(x) with the gradient and the Hessian from arenagrad.grad
(the Hessian is the gradient of the gradient: `create_graph=True`, then `grad` again).
Near the minimum x* = (1, 1) Newton's method converges quadratically: with e_k = x_k - x*,

    e_{k+1} = 1/2 H(x*)^-1 T(x*)[e_k, e_k] + O(|e_k|^3)

where T is the tensor of third derivatives, computed here as a third `grad` at x*. The
table prints each step's error next to that prediction from the previous step's error: once
the iterate is close they agree, the number of correct digits doubles at each step, and the
error passes 1e-10 at the step the prediction says it will.

Run: python examples/newton_rosenbrock.py
"""

from __future__ import annotations

import math

import arenagrad
from arenagrad import Value

Vector = list[float]
Matrix = list[list[float]]


def rosenbrock(x: Value, y: Value) -> Value:
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def gradient_and_hessian(point: Vector) -> tuple[Vector, Matrix]:
    xs = [Value(v) for v in point]
    g = arenagrad.grad(rosenbrock(*xs), xs, create_graph=True)
    return [gi.data for gi in g], [list(arenagrad.grad(gi, xs)) for gi in g]


def third_derivatives(point: Vector) -> list[Matrix]:
    """T[i][j][k] = d3 f / dx_i dx_j dx_k: grad three times (zero where a path ends)."""
    xs = [Value(v) for v in point]
    g = arenagrad.grad(rosenbrock(*xs), xs, create_graph=True)
    rows = [arenagrad.grad(gi, xs, create_graph=True, allow_unused=True) for gi in g]
    return [[list(arenagrad.grad(h, xs, allow_unused=True)) for h in row] for row in rows]


def solve(A: Matrix, b: Vector) -> Vector:
    """A^-1 b for a 2 x 2 matrix."""
    det = A[0][0] * A[1][1] - A[0][1] * A[1][0]
    return [(A[1][1] * b[0] - A[0][1] * b[1]) / det, (A[0][0] * b[1] - A[1][0] * b[0]) / det]


def main() -> None:
    minimum = [1.0, 1.0]
    _, H = gradient_and_hessian(minimum)
    T = third_derivatives(minimum)

    def predicted(e: Vector) -> float:
        # |1/2 H^-1 T[e, e]|, the quadratic term of the error recursion
        Tee = [sum(T[i][j][k] * e[j] * e[k] for j in range(2) for k in range(2)) for i in range(2)]
        return 0.5 * math.hypot(*solve(H, Tee))

    point = [-1.2, 1.0]
    errors: list[float] = []
    predictions: list[float] = []
    print("step          x                   y             |x - x*|   predicted")
    for step in range(1, 9):
        g, Hk = gradient_and_hessian(point)
        d = solve(Hk, g)
        before = [point[0] - minimum[0], point[1] - minimum[1]]
        point = [point[0] - d[0], point[1] - d[1]]
        error = math.hypot(point[0] - minimum[0], point[1] - minimum[1])
        errors.append(error)
        predictions.append(predicted(before))
        print(f"{step:4d}  {point[0]:.15f}  {point[1]:.15f}  {error:.3e}  {predictions[-1]:.3e}")
        if error == 0.0:
            break

    # The claims above, checked: the error passes 1e-10 at step 6, the step the prediction
    # from step 5 gives; there the prediction is within 1% (the O(|e|^3) term), and the
    # errors from step 4 on shrink quadratically (each below the square of the last).
    first = next(k for k, e in enumerate(errors) if e < 1e-10)
    assert first == 5, errors
    assert predictions[first] < 1e-10 and predictions[first - 1] > 1e-10, predictions
    assert abs(predictions[first] - errors[first]) < 0.01 * errors[first]
    assert all(errors[k + 1] < errors[k] ** 2 for k in range(3, first))
    print(f"|x - x*| < 1e-10 after {first + 1} Newton steps, as the quadratic model predicts")


if __name__ == "__main__":
    main()
