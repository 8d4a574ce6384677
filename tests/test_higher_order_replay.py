"""compile() over functions that call arenagrad.grad(create_graph=True), and memory.

The derivative nodes grad() pushes while the function is traced are ordinary table ops, so
the tape records them like any other: per-lane gradients become outputs of the replay, and
backward() through them gives second-order gradients (per lane for inputs, summed over lanes
for parameters). Each lane must be bit-identical to evaluating the function eagerly on its
row; lane-summed gradients equal the eager sums up to their order of addition.
"""

from __future__ import annotations

import gc
import itertools
import math

import numpy as np
import pytest
from _support import OP_TABLE
from test_op_table import ANY, POSITIVE, identical, patterns

arenagrad = pytest.importorskip("arenagrad")
from arenagrad import grad  # noqa: E402


def check_replay_against_eager(traced, n_inputs, params, X, terms_scale=0.0):
    """Compile `traced(xs, ps)` over Values made from `params`, replay it on X, and compare
    every lane (outputs, input gradients) and the parameters' lane-summed gradients with
    eager evaluation row by row. The lane sums are added in another order: they agree to
    1e-12 of the size of the terms, at least the lanes' gradients, or `terms_scale` where a
    lane's gradient is itself a sum of terms that cancel."""
    ps = [arenagrad.Value(p) for p in params]
    f = arenagrad.compile(lambda *xs: traced(xs, ps), n_inputs=n_inputs)
    Y = f.forward(X)
    if Y.ndim == 1:
        Y = Y[:, None]
    G = f.backward()
    replay_param_grads = [p.grad for p in ps]

    lane_param_grads = []
    for lane, row in enumerate(X):
        qs = [arenagrad.Value(p) for p in params]
        xs = [arenagrad.Value(float(v)) for v in row]
        outs = traced(xs, qs)
        outs = outs if isinstance(outs, list) else [outs]
        arenagrad.sum(outs).backward()  # each output's gradient 1, as the replay's seed
        for j, out in enumerate(outs):
            assert identical(out.data, Y[lane, j]), (lane, j, out.data, Y[lane, j])
        for i, x in enumerate(xs):
            assert identical(x.grad, G[lane, i]), (lane, i, x.grad, G[lane, i])
        lane_param_grads.append([q.grad for q in qs])
    for i, got in enumerate(replay_param_grads):
        want, scale = 0.0, terms_scale
        for lane_grads in lane_param_grads:
            want += lane_grads[i]
            scale += abs(lane_grads[i])
        if math.isfinite(want):
            assert abs(got - want) <= 1e-12 * scale, (i, got, want)
        else:
            assert identical(got, want), (i, got, want)
    return Y, G


# The user-defined ops cannot be replayed (compile() refuses them; test_user_ops.py).
OP_CASES = [
    (name, arity) for name, _, arity in OP_TABLE if name not in ("local_grads", "py_backward")
]


@pytest.mark.parametrize("grid", ["positive", "any"])
@pytest.mark.parametrize(("name", "arity"), OP_CASES, ids=[name for name, _ in OP_CASES])
def test_every_derivative_graph_replays_like_eager(name, arity, grid):
    # Outputs: y and its gradient with respect to the lane inputs and the parameters; the
    # replay's backward differentiates those gradients again.
    build = patterns(name, arity)

    def traced(xs, ps):
        y = arenagrad.sum(build(xs, ps))
        return [y, *grad(y, [*xs, *ps], create_graph=True, allow_unused=True)]

    rng = np.random.default_rng(len(name) + 13)
    X = rng.choice(POSITIVE if grid == "positive" else ANY, size=(70, 2))  # 64 lanes + 6
    check_replay_against_eager(traced, 2, [0.75, 1.5], X)


def network(sizes, ps, xs):
    """A tanh network (linear last layer) of layer `sizes`, whose weights and biases are the
    Values ps, neuron after neuron: [w..., b] each."""
    at, h = 0, list(xs)
    for layer, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        out = []
        for _ in range(n_out):
            act = arenagrad.linear(ps[at + n_in], ps[at : at + n_in], h)
            at += n_in + 1
            out.append(act.tanh() if layer < len(sizes) - 2 else act)
        h = out
    return h[0]


def test_gradient_penalty_replays_like_eager():
    # WGAN-GP's penalty, per sample: (|d critic / dx| - 1) ** 2, next to the critic's value.
    def traced(xs, ps):
        score = network([2, 6, 6, 1], ps, xs)
        dx = grad(score, list(xs), create_graph=True)
        norm = arenagrad.sum([d * d for d in dx]).sqrt()
        return [score, (norm - 1) ** 2]

    X = np.random.default_rng(3).uniform(-1.5, 1.5, size=(90, 2))
    params = list(np.random.default_rng(4).uniform(-1, 1, size=18 + 42 + 7))
    check_replay_against_eager(traced, 2, params, X)


def test_per_sample_parameter_gradients_replay_like_eager():
    # The gradient of each sample's loss with respect to every parameter, as outputs: per
    # sample gradients (their norms for clipping), and backward through their squared norm.
    def traced(xs, ps):
        x, target = xs
        loss = (ps[0] * x.tanh() + ps[1] * x * x - target) ** 2
        g = grad(loss, ps, create_graph=True)
        return [loss, *g, arenagrad.sum([gi * gi for gi in g])]

    rng = np.random.default_rng(5)
    X = rng.uniform(-2, 2, size=(70, 2))
    check_replay_against_eager(traced, 2, [0.5, -0.25], X)


def test_a_newton_step_per_lane():
    # argmin_x of (x - c) ** 4 / 4 + a x ** 2 / 2 for each lane's c, one Newton step from
    # x = c: each lane's step and the derivative of the step in c and a.
    def traced(xs, ps):
        (c,) = xs
        x = c * 1.0
        f = (x - c) ** 4 / 4 + ps[0] * x * x / 2
        (g,) = grad(f, [x], create_graph=True)
        (h,) = grad(g, [x], create_graph=True)
        return x - g / h

    rng = np.random.default_rng(6)
    X = rng.uniform(0.5, 3, size=(64, 1))
    # d step / da = (a c - a c) / a ** 2 in each lane: terms of size c / a that cancel
    Y, _ = check_replay_against_eager(traced, 1, [0.7], X, terms_scale=float(np.sum(X)) / 0.7)
    # (x - c) ** 4 vanishes to the third order at x = c: the step is c - (a c) / a, 0 but
    # for the rounding of a c / a
    assert np.all(np.abs(Y[:, 0]) <= 1e-15 * X[:, 0])


# ----------------------------------------------------------------------------- memory


def test_memory_stays_flat_taking_second_derivatives():
    # A training-like loop: each step builds a loss, its gradient graph and some of the
    # Hessian's rows, and keeps the gradient Values alive until the next step has been built,
    # so dead nodes pile up under live ones and the arena must compact them.
    rng = np.random.default_rng(7)
    sizes = [2, 16, 16, 1]
    n = sum((n_in + 1) * n_out for n_in, n_out in itertools.pairwise(sizes))
    ps = [arenagrad.Value(float(v)) for v in rng.uniform(-0.5, 0.5, size=n)]
    nodes, kept = [], None
    gc.collect()
    base = arenagrad.arena_stats()
    for _ in range(400):
        x = [arenagrad.Value(float(v)) for v in rng.uniform(-1, 1, size=2)]
        loss = (network(sizes, ps, x) - 0.5) ** 2
        g = grad(loss, ps, create_graph=True)
        rows = [grad(g[k], ps, allow_unused=True) for k in range(0, n, 60)]
        for k, p in enumerate(ps):
            p.data -= 0.01 * g[k].data / (1.0 + abs(rows[0][k]))
        kept = g  # alive while the next step builds
        nodes.append(arenagrad.arena_stats()["nodes"])
    del kept, g, rows, loss, x
    gc.collect()
    after = arenagrad.arena_stats()
    assert after["compactions"] >= base["compactions"] + 3, (base, after)
    assert max(nodes[200:]) <= max(nodes[:200]), "the arena kept growing"
    assert after["live_values"] == base["live_values"]
    assert after["nodes"] == base["nodes"]
