"""The one-lane replay's shortcuts: a `sum` of exactly the run of nodes below it (an L2 term,
`sum([p * p for p in params])`) added up as the run is computed and backpropagated into it in
the same pass; `x * x`'s two gradient additions made in a register; a batch of one lane that
reads a layer's weights in place; and the loops over a compiled function's parameters, which
run over runs of consecutive nodes. Each must give eager evaluation's bits, whatever the graph
around it, for 1 and 2 threads."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

arenagrad = pytest.importorskip("arenagrad")
from arenagrad.nn import MLP  # noqa: E402

Value = arenagrad.Value

SPECIAL = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1e200, -1e-200, 5e-324, 3.0, -2.5]


@pytest.fixture(params=[1, 2])
def threads(request):
    saved = arenagrad.get_num_threads()
    arenagrad.set_num_threads(request.param)
    yield request.param
    arenagrad.set_num_threads(saved)


def bits(values):
    return [
        "nan" if math.isnan(v) else np.float64(v).view(np.int64).item() for v in np.ravel(values)
    ]


def eager(build, params, row, seed=1.0):
    """One lane evaluated eagerly: its output, the inputs' and the parameters' gradients."""
    for p in params:
        p.grad = 0.0
    xs = [Value(float(v)) for v in row]
    out = build(xs)
    (out * seed).backward() if seed != 1.0 else out.backward()
    return out.data, [x.grad for x in xs], [p.grad for p in params]


def replay(f, params, X, seed=None):
    for p in params:
        p.grad = 0.0
    Y = f.forward(X) if f.n_inputs else f.forward()
    G = f.backward(seed) if f.n_inputs else f.backward()
    return Y, G, [p.grad for p in params]


def check_one_lane(build, params, n_inputs, rng):
    """A batch of one lane against eager evaluation, bit for bit."""
    f = arenagrad.compile(lambda *xs: build(list(xs)), n_inputs)
    X = rng.normal(size=(1, n_inputs))
    Y, G, grads = replay(f, params, X)
    out, in_grads, p_grads = eager(build, params, X[0])
    assert bits(Y) == bits([out])
    assert bits(G) == bits(in_grads)
    assert bits(grads) == bits(p_grads)
    return f


@pytest.mark.parametrize("n", [1, 2, 7, 64, 1000])
def test_l2_term_matches_eager(n, threads):
    rng = np.random.default_rng(n)
    values = list(rng.normal(size=n) * 10.0 ** rng.integers(-3, 3, size=n))
    for k, v in enumerate(SPECIAL):  # nan, infinities, -0.0, an overflowing square, ...
        if k < n and n > len(SPECIAL):
            values[k * (n // len(SPECIAL))] = v
    params = [Value(float(v)) for v in values]
    alpha = 1e-4
    f = arenagrad.compile(lambda: alpha * arenagrad.sum([p * p for p in params]), 0)
    Y, _, grads = replay(f, params, None)
    for p in params:
        p.grad = 0.0
    loss = alpha * arenagrad.sum([p * p for p in params])
    loss.backward()
    assert bits(Y) == bits([loss.data])
    assert bits(grads) == bits([p.grad for p in params])


@pytest.mark.parametrize("value", SPECIAL)
def test_l2_term_of_special_values(value, threads):
    params = [Value(1.5), Value(value), Value(-0.5)]
    f = arenagrad.compile(lambda: arenagrad.sum([p * p for p in params]), 0)
    Y, _, grads = replay(f, params, None)
    for p in params:
        p.grad = 0.0
    loss = arenagrad.sum([p * p for p in params])
    loss.backward()
    assert bits(Y) == bits([loss.data])
    assert bits(grads) == bits([p.grad for p in params])


def sum_forms():
    """Sums over runs that may or may not be fused, each (build, n_params, n_inputs)."""

    def products(ps, xs):  # a run reading a lane input: fused
        return arenagrad.sum([xs[0] * p for p in ps])

    def squares_of_inputs(ps, xs):  # x * x in the lane part
        return arenagrad.sum([x * x for x in xs]) + ps[0]

    def chain(ps, xs):  # each node reads the one below it: forward fused, backward not
        t, run = xs[0], []
        for p in ps:
            t = t * p
            run.append(t)
        return arenagrad.sum(run)

    def reversed_order(ps, xs):  # not the run in order
        return arenagrad.sum([xs[0] * p for p in ps][::-1])

    def part_of_a_run(ps, xs):  # the sum reads the run's last half only
        run = [xs[0] * p for p in ps]
        return arenagrad.sum(run[len(run) // 2 :])

    def read_again(ps, xs):  # run nodes read by later nodes too
        run = [xs[1] * p for p in ps]
        s = arenagrad.sum(run)
        return s * run[0] + run[-1].tanh() + s

    def unary_run(ps, xs):
        run = [(p * xs[0]) for p in ps]
        return arenagrad.sum([v.tanh() for v in run])

    def parameters_only(ps, xs):  # fused in the invariant part, then read by lanes
        return arenagrad.sum([p * p for p in ps]) * xs[0] + arenagrad.sum([p.exp() for p in ps])

    def empty_and_single(ps, xs):
        return arenagrad.sum([]) + arenagrad.sum([ps[0] * xs[0]]) + arenagrad.sum([xs[1] * xs[1]])

    return [
        products,
        squares_of_inputs,
        chain,
        reversed_order,
        part_of_a_run,
        read_again,
        unary_run,
        parameters_only,
        empty_and_single,
    ]


@pytest.mark.parametrize("form", sum_forms(), ids=lambda f: f.__name__)
@pytest.mark.parametrize("n", [1, 5, 40])
def test_sums_of_runs_match_eager(form, n, threads):
    rng = np.random.default_rng(n)
    params = [Value(float(v)) for v in rng.normal(size=n) * 0.7]
    check_one_lane(lambda xs: form(params, xs), params, 2, rng)


@pytest.mark.parametrize("form", sum_forms(), ids=lambda f: f.__name__)
def test_sums_of_runs_over_several_lanes(form, threads):
    """Lane by lane the same bits as eager evaluation (the per-lane walk is not fused)."""
    rng = np.random.default_rng(3)
    params = [Value(float(v)) for v in rng.normal(size=9)]
    f = arenagrad.compile(lambda *xs: form(params, list(xs)), 2)
    X = rng.normal(size=(5, 2))
    X[1, 0], X[2, 1], X[3, 0] = math.nan, -0.0, math.inf
    Y, G, _ = replay(f, params, X)
    for b in range(5):
        out, in_grads, _ = eager(lambda xs: form(params, xs), params, X[b])
        assert bits([Y[b]]) == bits([out])
        assert bits(G[b]) == bits(in_grads)


@pytest.mark.parametrize("value", SPECIAL)
def test_squares_of_a_special_input(value, threads):
    params = [Value(0.5)]

    def build(xs):
        return (xs[0] * xs[0]) * params[0] + xs[0] * params[0]

    f = arenagrad.compile(lambda x: build([x]), 1)
    Y, G, grads = replay(f, params, np.array([[value]]))
    out, in_grads, p_grads = eager(build, params, [value])
    assert bits(Y) == bits([out])
    assert bits(G) == bits(in_grads)
    assert bits(grads) == bits(p_grads)


# ---------------------------------------------------------------- layers in a batch of one


def mlp_created_in_order(n_in, widths, order):
    """An MLP whose parameters were created in another order than nn.MLP's: "reversed" (the
    slots of a layer's weights then form no matrix), "columns" (input by input: a matrix only
    for one neuron). The one-lane kernels then read packed weights."""
    model = MLP(n_in, widths)
    params = model.parameters()
    if order == "reversed":
        order_of = list(range(len(params)))[::-1]
    else:  # columns: each layer's k-th weights of every neuron, then its biases
        order_of, at = [], 0
        for layer in model.layers:
            K, N = len(layer.neurons[0].w), len(layer.neurons)
            first = at
            for k in range(K):
                order_of += [first + n * (K + 1) + k for n in range(N)]
            order_of += [first + n * (K + 1) + K for n in range(N)]
            at += N * (K + 1)
    fresh = {i: Value(params[i].data) for i in order_of}
    lookup = {id(p): fresh[i] for i, p in enumerate(params)}
    for layer in model.layers:
        for neuron in layer.neurons:
            neuron.w = [lookup[id(w)] for w in neuron.w]
            neuron.b = lookup[id(neuron.b)]
    return model


@pytest.mark.parametrize("order", ["created", "reversed", "columns"])
@pytest.mark.parametrize(
    ("n_in", "widths"), [(2, [64, 64, 1]), (3, [33, 31, 2]), (70, [9, 1]), (1, [1])]
)
def test_layers_in_a_batch_of_one_lane_match_eager(order, n_in, widths, threads):
    random.seed(n_in * 100 + len(widths))
    model = MLP(n_in, widths) if order == "created" else mlp_created_in_order(n_in, widths, order)
    params = model.parameters()
    rng = np.random.default_rng(n_in)

    def build(xs):
        out = model(xs)
        return out if isinstance(out, Value) else arenagrad.sum(out)

    check_one_lane(build, params, n_in, rng)


def test_non_finite_weights_in_a_batch_of_one_lane(threads):
    random.seed(5)
    model = MLP(3, [40, 17, 1])
    params = model.parameters()
    for k, v in zip(
        (0, 50, 99, 700, 741), (math.nan, math.inf, -0.0, -math.inf, 1e308), strict=True
    ):
        params[k].data = v
    rng = np.random.default_rng(5)
    check_one_lane(lambda xs: model(xs), params, 3, rng)


# ------------------------------------------------------------- parameters on scattered nodes


def scattered_parameters(n, rng):
    """n parameters in runs of 1-6 consecutive nodes, other Values created between the runs,
    kept alive (so the arena keeps them between the parameters)."""
    params, others = [], []
    while len(params) < n:
        for _ in range(int(rng.integers(1, 7))):
            params.append(Value(float(rng.normal())))
        others.append(Value(0.0))
    return params[:n], others


def test_parameter_loops_over_scattered_nodes(threads):
    rng = np.random.default_rng(8)
    params, others = scattered_parameters(50, rng)
    twin = [Value(p.data) for p in params]
    f = arenagrad.compile(lambda x: arenagrad.sum([p * x for p in params]) * params[3], 1)
    g = arenagrad.compile(lambda x: arenagrad.sum([p * x for p in twin]) * twin[3], 1)
    X = rng.normal(size=(7, 1))
    for step in range(4):
        for p in twin:
            p.grad = 0.0
        f.zero_grad()
        assert all(p.grad == 0.0 for p in params)
        f.forward(X)
        f.backward()
        g.forward(X)
        g.backward()
        assert bits([p.grad for p in params]) == bits([p.grad for p in twin])
        f.sgd_step(0.05)
        for p in twin:
            p.data -= 0.05 * p.grad
        assert bits([p.data for p in params]) == bits([p.data for p in twin])
        if step == 1:  # drop the Values between the runs and compact: the nodes move
            others.clear()
            for _ in range(3):
                arenagrad.sum([Value(1.0) * 2.0 for _ in range(1000)]).backward()
    assert all(o.grad == 0.0 for o in others)


@pytest.mark.parametrize("B", [1, 9, 300])
def test_a_bias_that_is_also_a_weight(B, threads, monkeypatch):
    """A layer whose weights' slots form a matrix and whose bias is one of those weights: the
    kernels add its gradients in the generic walk's order (each neuron's bias, then its row),
    so the same bits as without the kernels."""
    rng = np.random.default_rng(B)
    w = [Value(float(v)) for v in rng.normal(size=12)]  # 4 neurons x 3 inputs, consecutive

    def fn(a, b, c):
        h = [arenagrad.linear(w[5], w[3 * n : 3 * n + 3], [a, b, c]).relu() for n in range(4)]
        return arenagrad.sum(h)

    with_kernels = arenagrad.compile(fn, 3)
    monkeypatch.setenv("ARENAGRAD_LAYER_KERNELS", "0")
    generic = arenagrad.compile(fn, 3)
    monkeypatch.delenv("ARENAGRAD_LAYER_KERNELS")
    X = rng.normal(size=(B, 3)) * 1e3
    seed = rng.normal(size=B)
    got = replay(with_kernels, w, X, seed)
    want = replay(generic, w, X, seed)
    for part, (a, b) in enumerate(zip(got, want, strict=True)):
        assert bits(a) == bits(b), part
