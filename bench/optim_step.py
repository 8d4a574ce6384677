"""How long one optimizer step takes: arenagrad.optim (native gather/scatter + numpy) against
the Python loop a micrograd user writes, on the digits model's 2410 parameters.

    python bench/optim_step.py [--params N] [--repeat R]
"""

from __future__ import annotations

import argparse
import math
import timeit

import arenagrad
from arenagrad import optim


def python_sgd(params, lr):
    for p in params:
        p.data -= lr * p.grad


def python_adam(params, state, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    state["t"] += 1
    t = state["t"]
    m, v = state["m"], state["v"]
    for i, p in enumerate(params):
        g = p.grad
        m[i] = b1 * m[i] + (1 - b1) * g
        v[i] = b2 * v[i] + (1 - b2) * g * g
        p.data -= lr / (1 - b1**t) * m[i] / (math.sqrt(v[i]) / math.sqrt(1 - b2**t) + eps)


def python_zero_grad(params):
    for p in params:
        p.grad = 0.0


def best(fn, repeat):
    number = 200
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=2410)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    params = [arenagrad.Value(0.01 * i) for i in range(args.params)]
    for p in params:
        p.grad = 0.001
    sgd, adam = optim.SGD(params, lr=1e-6), optim.Adam(params, lr=1e-6)
    state = {"t": 0, "m": [0.0] * len(params), "v": [0.0] * len(params)}
    rows = [
        ("SGD step", lambda: python_sgd(params, 1e-6), sgd.step),
        ("Adam step", lambda: python_adam(params, state, 1e-6), adam.step),
        ("zero_grad", lambda: python_zero_grad(params), sgd.zero_grad),
    ]
    print(f"{args.params} parameters, best of {args.repeat} x 200 calls")
    print(f"{'':12s}{'Python loop':>14s}{'arenagrad.optim':>18s}{'speed-up':>10s}")
    for name, loop, native in rows:
        a, b = best(loop, args.repeat), best(native, args.repeat)
        print(f"{name:12s}{a * 1e6:11.1f} us{b * 1e6:15.1f} us{a / b:9.1f}x")


if __name__ == "__main__":
    main()
