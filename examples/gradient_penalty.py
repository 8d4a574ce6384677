"""A gradient penalty, compiled: learn the distance to the unit circle, f(x) = |x| - 1.

A distance function has a gradient of norm 1 everywhere (the eikonal equation), so the loss
of each sample x is a fit term plus a penalty on its input gradient, as in WGAN-GP:

    loss(x) = (f(x) - (|x| - 1)) ** 2 + 0.1 * (|d f / d x| - 1) ** 2

The input gradient comes from arenagrad.grad(..., create_graph=True) inside the function
given to arenagrad.compile: it is recorded into the tape like any other node, so the replay
computes it for every sample (lane), and backward() through the penalty gives the second-
order gradient of the loss with respect to the weights, summed over the batch.

Run: python examples/gradient_penalty.py [--steps 200]
"""

from __future__ import annotations

import argparse
import itertools
import math

import arenagrad
import numpy as np
from arenagrad import Value, optim

SIZES = [2, 16, 16, 1]
PENALTY = 0.1


def network(params: list[Value], xs: list[Value]) -> Value:
    """A tanh network with a linear last layer; params holds [w..., b] for each neuron."""
    at, h = 0, xs
    for layer, (n_in, n_out) in enumerate(itertools.pairwise(SIZES)):
        out = []
        for _ in range(n_out):
            act = arenagrad.linear(params[at + n_in], params[at : at + n_in], h)
            at += n_in + 1
            out.append(act.tanh() if layer < len(SIZES) - 2 else act)
        h = out
    return h[0]


def per_sample(params: list[Value], x1: Value, x2: Value, target: Value) -> list[Value]:
    """[fit term, gradient penalty] of one sample."""
    f = network(params, [x1, x2])
    df_dx1, df_dx2 = arenagrad.grad(f, [x1, x2], create_graph=True)
    norm = (df_dx1 * df_dx1 + df_dx2 * df_dx2).sqrt()
    return [(f - target) ** 2, (norm - 1) ** 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    n_params = sum((n_in + 1) * n_out for n_in, n_out in itertools.pairwise(SIZES))
    params = [Value(w) for w in rng.normal(0.0, 0.5, size=n_params)]
    points = rng.uniform(-2.0, 2.0, size=(256, 2))
    X = np.column_stack([points, np.hypot(points[:, 0], points[:, 1]) - 1.0])
    # backward's seed: d(mean fit + PENALTY * mean penalty) / d(each sample's two outputs)
    seed = np.tile([1.0 / len(X), PENALTY / len(X)], (len(X), 1))

    f = arenagrad.compile(lambda x1, x2, t: per_sample(params, x1, x2, t), n_inputs=3)
    print(f)
    opt = optim.Adam(params, lr=0.01)
    history = []
    for step in range(args.steps):
        Y = f.forward(X)
        fit, penalty = Y.mean(axis=0)
        history.append((fit, penalty))
        opt.zero_grad()
        f.backward(seed)
        opt.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step:3d}  fit {fit:.5f}  penalty {penalty:.5f}")

    # The replay's penalty is the one computed eagerly on each sample, bit for bit.
    for row, replayed in zip(X[:5], f.forward(X[:5]), strict=True):
        eager = per_sample(params, *(Value(float(v)) for v in row))
        assert [v.data for v in eager] == list(replayed), (eager, replayed)
    # Both terms went down several times over.
    assert fit < history[0][0] / 4 and penalty < history[0][1] / 4, history[0]
    print(f"|grad f| at (0.6, -0.8): {math.hypot(*gradient_at(params, 0.6, -0.8)):.3f} (ideal: 1)")


def gradient_at(params: list[Value], x1: float, x2: float) -> tuple[float, ...]:
    """The learned function's gradient at (x1, x2), eagerly."""
    xs = [Value(x1), Value(x2)]
    return arenagrad.grad(network(params, xs), xs)


if __name__ == "__main__":
    main()
