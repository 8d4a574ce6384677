"""The CPU replay's layer kernels (cpp/layer_kernels.hpp): dense layers found in a tape run as
blocked matrix products over a tile of lanes. They must give exactly what the node-by-node walk
gives (every output, input gradient and parameter gradient, bit for bit), hence exactly what
eager evaluation gives lane by lane, for any layer shape, lane count and thread count.

ARENAGRAD_LAYER_KERNELS=0, read when a function is compiled, turns the kernels off: the
comparisons below compile the same function both ways."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

arenagrad = pytest.importorskip("arenagrad")
from arenagrad.nn import MLP  # noqa: E402

Value = arenagrad.Value


@pytest.fixture
def threads():
    saved = arenagrad.get_num_threads()
    yield
    arenagrad.set_num_threads(saved)


def compile_both(fn, n_inputs, monkeypatch):
    """fn compiled with the layer kernels and without them."""
    with_kernels = arenagrad.compile(fn, n_inputs)
    monkeypatch.setenv("ARENAGRAD_LAYER_KERNELS", "0")
    without = arenagrad.compile(fn, n_inputs)
    monkeypatch.delenv("ARENAGRAD_LAYER_KERNELS")
    return with_kernels, without


def run(f, params, X, seed):
    for p in params:
        p.grad = 0.0
    Y = f.forward(X)
    G = f.backward(seed)
    return Y, G, [p.grad for p in params]


def assert_same_bits(a, b, what):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, what
    same = (a.view(np.int64) == b.view(np.int64)) | (np.isnan(a) & np.isnan(b))
    assert same.all(), f"{what}: first difference at {np.argwhere(~same)[0]}"


def check_against_generic(fn, params, n_inputs, B, monkeypatch, rng, n_out=1, thread_counts=(1, 2)):
    """The kernels and the generic walk give the same bits, for every thread count."""
    fast, generic = compile_both(fn, n_inputs, monkeypatch)
    X = rng.normal(size=(B, n_inputs))
    seed = rng.normal(size=(B, n_out)) if n_out > 1 else rng.normal(size=B)
    expected = None
    for threads in thread_counts:
        arenagrad.set_num_threads(threads)
        for f in (fast, generic):
            got = run(f, params, X, seed)
            if expected is None:
                expected = got
            for part, (a, b) in enumerate(zip(got, expected, strict=True)):
                assert_same_bits(a, b, f"B={B} threads={threads} part {part}")
    return fast, X, seed, expected


def layer_count(shape):
    return len(shape) - 1


@pytest.mark.parametrize("B", [1, 3, 7, 8, 9, 17, 63, 64, 65, 100, 255, 256, 257, 300, 513])
def test_mlp_same_bits_as_the_generic_walk_for_any_lane_count(B, threads, monkeypatch):
    random.seed(B)
    model = MLP(3, [13, 6, 2])
    fast, _, _, _ = check_against_generic(
        lambda a, b, c: model([a, b, c]),
        model.parameters(),
        3,
        B,
        monkeypatch,
        np.random.default_rng(B),
        n_out=2,
    )
    assert fast.n_lane_nodes == 13 * 2 + 6 * 2 + 2


@pytest.mark.parametrize("case", range(12))
def test_random_layer_shapes(case, threads, monkeypatch):
    """Widths 1..70 (every remainder of the kernels' blocks), with and without relu."""
    rng = np.random.default_rng(100 + case)
    random.seed(case)
    n_in = int(rng.integers(1, 71))
    widths = [int(w) for w in rng.integers(1, 71, size=int(rng.integers(1, 4)))]
    model = MLP(n_in, widths)
    if case % 3 == 1:  # a hidden layer without relu in the middle
        for neuron in model.layers[0].neurons:
            neuron.nonlin = False
    B = int(rng.choice([5, 8, 31, 77, 130, 259]))
    check_against_generic(
        lambda *xs: model(list(xs)),
        model.parameters(),
        n_in,
        B,
        monkeypatch,
        rng,
        n_out=widths[-1],
        thread_counts=(1, 2),
    )


def eager_lane(model_fn, params, row, seed_row):
    """Eager evaluation of one lane: outputs, input gradients and parameter gradients."""
    for p in params:
        p.grad = 0.0
    xs = [Value(float(v)) for v in row]
    outs = model_fn(*xs)
    outs = outs if isinstance(outs, list) else [outs]
    arenagrad.sum([o * float(s) for o, s in zip(outs, seed_row, strict=True)]).backward()
    return [o.data for o in outs], [x.grad for x in xs], [p.grad for p in params]


@pytest.mark.parametrize(("n_in", "widths", "B"), [(2, [16, 16, 1], 100), (5, [9, 70, 3], 37)])
def test_layers_match_eager_evaluation(n_in, widths, B, threads, monkeypatch):
    """Lane by lane, outputs and input gradients are eager evaluation's bits; parameter
    gradients are its per-lane gradients summed (to rounding)."""
    random.seed(7)
    model = MLP(n_in, widths)
    params = model.parameters()
    fn = lambda *xs: model(list(xs))  # noqa: E731
    rng = np.random.default_rng(5)
    _, X, seed, (Y, G, grads) = check_against_generic(
        fn, params, n_in, B, monkeypatch, rng, n_out=widths[-1]
    )
    Y2, seed2 = Y.reshape(B, -1), np.reshape(seed, (B, -1))
    total = [0.0] * len(params)
    magnitude = [0.0] * len(params)
    for b in range(B):
        outs, in_grads, p_grads = eager_lane(fn, params, X[b], seed2[b])
        assert_same_bits(outs, Y2[b], f"lane {b} outputs")
        assert_same_bits(in_grads, G[b], f"lane {b} input gradients")
        total = [t + g for t, g in zip(total, p_grads, strict=True)]
        magnitude = [m + abs(g) for m, g in zip(magnitude, p_grads, strict=True)]
    for i, (got, want, scale) in enumerate(zip(grads, total, magnitude, strict=True)):
        assert abs(got - want) <= 1e-12 * max(scale, 1e-300), (i, got, want)


def test_layer_forms_the_kernels_must_handle(threads, monkeypatch):
    """Linear values read by more than their relu, an input read by other nodes too (its
    gradient is not the layer's alone), outputs inside a layer, constant weights, a weight
    shared by two neurons, the same input twice in a neuron (the generic walk's case), a
    parameters-only weight (p * q: its gradient stays per lane)."""
    rng = np.random.default_rng(3)
    ps = [Value(float(v)) for v in rng.normal(size=40)]

    def fn(a, b, c):
        x = [a, b, c]
        h = [arenagrad.linear(ps[n], ps[4 + 3 * n : 7 + 3 * n], x) for n in range(4)]
        r = [v.relu() for v in h]
        extra = h[1] * a + b.tanh()  # h[1] read by more than its relu; a and b read again
        k = [arenagrad.linear(ps[20 + n], [ps[30], Value(2.0), ps[31]], r[:3]) for n in range(3)]
        shared = [arenagrad.linear(Value(0.5), [ps[32], ps[32]], [k[0], k[1]]) for _ in range(2)]
        twice = arenagrad.linear(ps[33], [ps[34], ps[35]], [k[2], k[2]])
        pq = ps[36] * ps[37]
        product = [arenagrad.linear(ps[38], [pq, ps[39]], [r[3], extra]) for _ in range(2)]
        return [*k, *shared, twice, *product, h[0], extra]

    for B in (1, 9, 64, 300):
        check_against_generic(fn, ps, 3, B, monkeypatch, rng, n_out=10)


def test_non_finite_values_through_layers(threads, monkeypatch):
    """nan, infinities and -0.0 in inputs and weights go through the kernels as through the
    generic walk (relu keeps nan and -0.0; 0 * inf is nan)."""
    random.seed(1)
    model = MLP(4, [11, 5, 1])
    params = model.parameters()
    params[3].data = math.inf
    params[17].data = -0.0
    params[60].data = math.nan
    rng = np.random.default_rng(9)
    fast, generic = compile_both(lambda *xs: model(list(xs)), 4, monkeypatch)
    X = rng.normal(size=(77, 4))
    X[3, 1] = math.nan
    X[10, 0] = -math.inf
    X[11:20, 2] = -0.0
    X[20, :] = 1e308
    seed = rng.normal(size=77)
    seed[30] = math.inf
    for threads in (1, 2):
        arenagrad.set_num_threads(threads)
        a, b = run(fast, params, X, seed), run(generic, params, X, seed)
        for part, (u, v) in enumerate(zip(a, b, strict=True)):
            assert_same_bits(u, v, f"threads={threads} part {part}")
    # batches of one lane (the scalar kernels): a nan, an infinity, -0.0, 1e308, a seed of inf
    for row in (3, 10, 11, 20, 30):
        a = run(fast, params, X[row : row + 1], seed[row : row + 1])
        b = run(generic, params, X[row : row + 1], seed[row : row + 1])
        for part, (u, v) in enumerate(zip(a, b, strict=True)):
            assert_same_bits(u, v, f"one lane, row {row}, part {part}")


def test_a_wide_layer_over_many_tiles(threads, monkeypatch):
    """Several tiles (256 lanes each) with both thread counts: the tiles' sums added in tile
    order, whichever thread ran them."""
    random.seed(2)
    model = MLP(2, [64, 64, 1])
    check_against_generic(
        lambda a, b: model([a, b]),
        model.parameters(),
        2,
        1500,
        monkeypatch,
        np.random.default_rng(4),
        thread_counts=(1, 2, 3),
    )


def oracle_layers(E, params, xs, widths, relu_last=False):
    """Dense layers written with `linear` (nn.Layer's shape) over `params`, in engine E."""
    h, at = list(xs), 0
    for i, width in enumerate(widths):
        out = []
        for _ in range(width):
            b, ws = params[at], params[at + 1 : at + 1 + len(h)]
            at += 1 + len(h)
            v = E.linear(b, ws, h)
            out.append(v.relu() if i < len(widths) - 1 or relu_last else v)
        h = out
    return h


@pytest.mark.parametrize(("n_in", "widths"), [(2, [16, 16, 1]), (3, [13, 7, 2]), (1, [9, 1])])
@pytest.mark.parametrize("B", [1, 9, 100, 259])
def test_layers_match_the_oracle(n_in, widths, B, threads):
    """Against the pure-Python oracle (reference.py), lane by lane: outputs and input gradients
    bit for bit, parameter gradients the lanes' sum (to rounding), with 1 and 2 threads."""
    from arenagrad import reference

    rng = np.random.default_rng(B * 10 + n_in)
    sizes = [n_in, *widths]
    n_params = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
    values = [float(v) for v in rng.normal(size=n_params)]
    params = [Value(v) for v in values]
    f = arenagrad.compile(lambda *xs: oracle_layers(arenagrad, params, xs, widths), n_in)
    X = rng.normal(size=(B, n_in))
    seed = rng.normal(size=(B, widths[-1]))
    results = []
    for count in (1, 2):
        arenagrad.set_num_threads(count)
        results.append(run(f, params, X, seed))
    for part, (a, b) in enumerate(zip(*results, strict=True)):
        assert_same_bits(a, b, f"1 vs 2 threads, part {part}")
    Y, G, grads = results[0]
    Y = np.reshape(Y, (B, -1))
    ps = [reference.Value(v) for v in values]
    total = [0.0] * n_params
    scale = [0.0] * n_params
    for b in range(B):
        xs = [reference.Value(float(v)) for v in X[b]]
        outs = oracle_layers(reference, ps, xs, widths)
        assert_same_bits([o.data for o in outs], Y[b], f"lane {b} outputs")
        for p in ps:
            p.grad = 0.0
        reference.sum([o * float(s) for o, s in zip(outs, seed[b], strict=True)]).backward()
        assert_same_bits([x.grad for x in xs], G[b], f"lane {b} input gradients")
        total = [t + p.grad for t, p in zip(total, ps, strict=True)]
        scale = [s + abs(p.grad) for s, p in zip(scale, ps, strict=True)]
    for i, (got, want, s) in enumerate(zip(grads, total, scale, strict=True)):
        assert abs(got - want) <= 1e-12 * max(s, 1e-300), (i, got, want)
