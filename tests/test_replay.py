"""arenagrad.compile: a traced function replayed over a batch must give, lane by lane, what
evaluating the function eagerly on that lane gives (native engine and the pure-Python
oracle), and parameter gradients that are the sum over lanes."""

from __future__ import annotations

import math
import os
import random
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

arenagrad = pytest.importorskip("arenagrad")
from arenagrad import reference  # noqa: E402
from arenagrad.apps.demo import build_model  # noqa: E402
from arenagrad.datasets import make_moons  # noqa: E402
from arenagrad.nn import MLP  # noqa: E402

# The native engine as a namespace like `reference` (Value, sum, linear, MLP).
native = SimpleNamespace(
    __name__="native", Value=arenagrad.Value, sum=arenagrad.sum, linear=arenagrad.linear, MLP=MLP
)

REL = 1e-12


# Below this, differences are underflow: a gradient through a parameter-only term is summed
# over lanes before the chain rule multiplies it (c * sum(g) instead of sum(c * g)), and
# subnormal products do not distribute.
TINY = 1e-300


def close(x: float, y: float, rel: float = REL, scale: float = 0.0) -> bool:
    """Both nan, the same infinity, or |x - y| <= rel * max(|x|, |y|, scale) (or <= TINY)."""
    x, y = float(x), float(y)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    return abs(x - y) <= max(rel * max(abs(x), abs(y), scale), TINY)


def assert_close(x, y, what, rel=REL, scale=0.0):
    assert close(x, y, rel, scale), f"{what}: {x!r} != {y!r}"


def as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def check_replay(build, params, X, seed=None, engines=(native, reference)):
    """Compile `build(engine, params, xs)` with native parameters `params` (a list of floats),
    replay it on X, and compare with eager evaluation lane by lane on every engine."""
    X = np.asarray(X, dtype=np.float64)
    B, k = X.shape
    ps = [native.Value(v) for v in params]
    f = arenagrad.compile(lambda *xs: build(native, ps, xs), n_inputs=k)
    Y = f.forward(X)
    single = Y.ndim == 1
    Y2 = Y.reshape(B, -1)
    m = Y2.shape[1]
    seeds = np.ones((B, m)) if seed is None else np.asarray(seed).reshape(B, m)
    G = f.backward(seed)
    assert G.shape == (B, k)
    replay_pgrads = [p.grad for p in ps]

    for engine in engines:
        eps = [engine.Value(v) for v in params]
        lane_grads = []  # per lane: the parameters' gradients
        for b in range(B):
            xs = [engine.Value(float(x)) for x in X[b]]
            outs = as_list(build(engine, eps, xs))
            assert len(outs) == m
            for j, out in enumerate(outs):
                if engine is native:  # same op table, same order: bit-identical
                    assert out.data == Y2[b, j] or (math.isnan(out.data) and math.isnan(Y2[b, j]))
                assert_close(out.data, Y2[b, j], f"{engine.__name__} lane {b} output {j}")
            for p in eps:
                p.grad = 0.0
            if single and seed is None:
                outs[0].backward()
            else:
                engine.sum([o * float(s) for o, s in zip(outs, seeds[b], strict=True)]).backward()
            for i, x in enumerate(xs):
                assert_close(x.grad, G[b, i], f"{engine.__name__} lane {b} d/dx{i}")
            lane_grads.append([p.grad for p in eps])
        for i in range(len(params)):
            column = [g[i] for g in lane_grads]
            scale = float(np.sum(np.abs(column))) if column else 0.0
            expected = 0.0
            for g in column:
                expected += g
            assert_close(replay_pgrads[i], expected, f"{engine.__name__} d/dp{i}", scale=scale)
    return f, Y, G


# ---------------------------------------------------------------------------- every op

rng = np.random.default_rng(7)
POSITIVE = rng.uniform(0.2, 3.0, size=(70, 2))
ANY = rng.uniform(-3.0, 3.0, size=(70, 2))

OPS = {
    "add": (lambda E, p, x: x[0] + x[1], ANY),
    "sub": (lambda E, p, x: x[0] - x[1], ANY),
    "mul": (lambda E, p, x: x[0] * x[1], ANY),
    "div": (lambda E, p, x: x[0] / x[1], POSITIVE),
    "neg": (lambda E, p, x: -x[0], ANY),
    "pow_int": (lambda E, p, x: x[0] ** 3, ANY),
    "pow_float": (lambda E, p, x: x[0] ** 1.5, POSITIVE),
    "pow_value": (lambda E, p, x: x[0] ** x[1], POSITIVE),
    "rpow": (lambda E, p, x: 2 ** x[0], ANY),
    "relu": (lambda E, p, x: x[0].relu(), ANY),
    "tanh": (lambda E, p, x: x[0].tanh(), ANY),
    "exp": (lambda E, p, x: x[0].exp(), ANY),
    "log": (lambda E, p, x: x[0].log(), POSITIVE),
    "sigmoid": (lambda E, p, x: x[0].sigmoid(), ANY),
    "abs": (lambda E, p, x: x[0].abs(), ANY),
    "sqrt": (lambda E, p, x: x[0].sqrt(), POSITIVE),
    "linear": (lambda E, p, x: E.linear(p[0], [p[1], p[2]], [x[0], x[1]]), ANY),
    "linear_lane_weights": (lambda E, p, x: E.linear(x[0], [x[1], p[1]], [p[2], x[0]]), ANY),
    "sum": (lambda E, p, x: E.sum([x[0], p[0], x[1], 2.5, x[0]]), ANY),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_on_inputs(name):
    build, X = OPS[name]
    check_replay(build, [0.3, -1.2, 0.7], X)


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_mixed_with_parameters(name):
    # the same op with one operand a parameter: its gradient is summed over lanes
    build, X = OPS[name]

    def mixed(E, p, x):
        return build(E, p, [x[0] * p[0] + p[1], x[1]])

    params = (
        [0.8, 0.25, 0.5]
        if name not in ("div", "log", "sqrt", "pow_float", "pow_value")
        else [0.9, 0.1, 0.5]
    )
    check_replay(mixed, params, X)


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_on_parameters_only_is_computed_once(name):
    # operands that are all parameters make lane-invariant nodes, recomputed at each forward
    build, _ = OPS[name]

    def invariant(E, p, x):
        return build(E, p, [p[0], p[1]]) * x[0]

    f, _, _ = check_replay(invariant, [0.6, 1.3, -0.4], ANY[:9])
    assert f.n_invariant_nodes >= 1
    assert f.n_lane_nodes == 1  # only the final `* x`


# ------------------------------------------------- gradients through parameters-only nodes
# Eager evaluation differentiates each lane on its own, so a parameters-only node's local
# derivative multiplies each lane's gradient before the lanes are summed. The replay must too:
# summing first can overflow (or cancel) where the per-lane products do not.


def eager_lane_sum(build, params, X, seed=None):
    """Each parameter's gradient from eager evaluation lane by lane, then summed in lane order
    (the native engine; seed: one per lane for a one-output build, else ones)."""
    ps = [native.Value(v) for v in params]
    total = [0.0] * len(params)
    for b, row in enumerate(np.asarray(X, dtype=np.float64)):
        for p in ps:
            p.grad = 0.0
        out = build(native, ps, [native.Value(float(v)) for v in row])
        (out if seed is None else out * float(seed[b])).backward()
        total = [t + p.grad for t, p in zip(total, ps, strict=True)]
    return total


def replay_grads(build, params, X, seed=None):
    ps = [native.Value(v) for v in params]
    f = arenagrad.compile(lambda *xs: build(native, ps, xs), n_inputs=np.shape(X)[1])
    f.forward(np.asarray(X, dtype=np.float64))
    f.backward(seed)
    return f, [p.grad for p in ps]


def same(x: float, y: float) -> bool:
    return (math.isnan(x) and math.isnan(y)) or x == y


@pytest.mark.parametrize(
    ("name", "build", "params", "X", "expected"),
    [
        # d/dp = q * x per lane: 5e307 + 5e307, finite; q * (x + x) overflows
        ("overflow", lambda E, p, x: (p[0] * p[1]) * x[0], [0.5, 0.5], [[1e308], [1e308]], None),
        # 10 * 1e308 overflows in each lane (inf - inf); summed first it cancels to 0
        ("cancel", lambda E, p, x: (p[0] * p[1]) * x[0], [3.0, 10.0], [[1e308], [-1e308]], None),
        # d log(p) = 1/0 = inf: inf * 1 + inf * 0 is nan; inf * (1 + 0) is inf
        ("inf_derivative", lambda E, p, x: p[0].log() * x[0], [0.0], [[1.0], [0.0]], None),
        # a chain of parameters-only ops, then several lane ops reading it
        (
            "chain",
            lambda E, p, x: ((p[0] * p[1]).tanh() * 1e300) * x[0] + (p[0] * p[1]) * x[1],
            [0.5, 4.0],
            [[1e10, 1e308], [-1e10, 1e308], [3e10, -1e308]],
            None,
        ),
    ],
)
def test_parameters_only_nodes_are_differentiated_lane_by_lane(name, build, params, X, expected):
    _, got = replay_grads(build, params, X)
    want = eager_lane_sum(build, params, X)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert same(g, w) or (math.isfinite(w) and abs(g - w) <= 1e-12 * abs(w)), (name, i, g, w)
    assert not all(map(math.isfinite, want)) or all(map(math.isfinite, got)), name


def test_parameters_only_output_gets_each_lanes_seed_separately():
    # the output itself is parameters-only: each lane's seed times q, then summed
    p, q = native.Value(0.5), native.Value(0.25)
    f = arenagrad.compile(lambda x: [p * q, x * 2.0], 1)
    f.forward(np.zeros((3, 1)))
    f.backward(np.array([[1e308, 0.0], [1e308, 0.0], [-1e308, 1.0]]))
    assert p.grad == 0.25 * 1e308  # 2.5e307 + 2.5e307 - 2.5e307 in some order: finite
    assert q.grad == 0.5 * 1e308


def test_parameters_only_nodes_in_a_batch_of_one_lane():
    # one lane: a parameter's gradient is eager evaluation's, bit for bit (the one-lane batch
    # sends the invariant gradients straight into one array and runs that part as one lane)
    def build(E, p, x):
        s = p[0] * p[1] + p[2]
        t = (s * p[0]).tanh()
        return E.linear(s, [t, s], [x[0], x[1]]) * s + (t * x[1]).relu() + (p[0] * p[1]) * x[0]

    rng = np.random.default_rng(12)
    for scale in (1.0, 1e300):
        params = list(rng.normal(size=3))
        X = rng.normal(size=(1, 2)) * scale
        _, got = replay_grads(build, params, X)
        want = eager_lane_sum(build, params, X)
        assert all(same(g, w) for g, w in zip(got, want, strict=True)), (scale, got, want)


def test_parameters_only_nodes_per_lane_match_eager_on_random_values():
    rng = np.random.default_rng(11)

    def build(E, p, x):
        s = p[0] * p[1] + p[2]  # parameters only
        t = (s * p[0]).tanh()
        u = E.linear(s, [t, s], [x[0], x[1]])
        return u * s + (t * x[1]).relu()

    for scale in (1.0, 1e150, 1e300):
        X = rng.normal(size=(37, 2)) * scale
        params = list(rng.normal(size=3))
        f, _, _ = check_replay(build, params, X, engines=(native,))
        assert f.n_invariant_nodes >= 3


# ---------------------------------------------------------------------------- random graphs

UNARY = ["neg", "tanh", "relu", "sigmoid", "abs", "square"]
BINARY = ["add", "sub", "mul"]


def apply(E, op, operands, const):
    a = operands[0]
    if op == "neg":
        return -a
    if op == "tanh":
        return a.tanh()
    if op == "relu":
        return a.relu()
    if op == "sigmoid":
        return a.sigmoid()
    if op == "abs":
        return a.abs()
    if op == "square":
        return a**2
    b = operands[1]
    if op == "add":
        return a + b
    if op == "sub":
        return a - const if b is None else a - b
    if op == "mul":
        return a * const if b is None else a * b
    if op == "sum":
        return E.sum([*operands, const])
    if op == "linear":
        return E.linear(operands[0], operands[1::2][:2], operands[2::2][:2])
    raise AssertionError(op)


@st.composite
def programs(draw):
    n_inputs = draw(st.integers(1, 3))
    n_params = draw(st.integers(0, 3))
    steps = []
    pool = n_inputs + n_params
    for _ in range(draw(st.integers(1, 14))):
        op = draw(st.sampled_from([*UNARY, *BINARY, "sum", "linear"]))
        arity = 5 if op == "linear" else 3 if op == "sum" else 2
        operands = [draw(st.integers(0, pool - 1)) for _ in range(arity)]
        if op in ("sub", "mul") and draw(st.booleans()):
            operands[1] = None  # a number mixed in (a tape constant)
        const = draw(st.floats(-2, 2, allow_nan=False))
        steps.append((op, operands, const))
        pool += 1
    n_outputs = draw(st.integers(1, 3))
    outputs = [draw(st.integers(0, pool - 1)) for _ in range(n_outputs)]
    params = [draw(st.floats(-1.5, 1.5, allow_nan=False)) for _ in range(n_params)]
    B = draw(st.integers(1, 9))
    X = [[draw(st.floats(-2, 2, allow_nan=False)) for _ in range(n_inputs)] for _ in range(B)]
    return n_inputs, params, steps, outputs, X


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_random_graphs(program):
    _, params, steps, outputs, X = program

    def build(E, p, xs):
        pool = [*xs, *p]
        for op, operands, const in steps:
            pool.append(apply(E, op, [None if i is None else pool[i] for i in operands], const))
        return [pool[i] for i in outputs]

    seed = np.linspace(-1.0, 2.0, len(X) * len(outputs)).reshape(len(X), len(outputs))
    check_replay(build, params, X, seed=seed)


# ---------------------------------------------------------------------------- outputs


def test_several_outputs_with_seed():
    def build(E, p, x):
        h = (x[0] * p[0] + x[1]).tanh()
        return [h, h * x[1] + p[1], (x[0] - p[1]).relu()]

    X = ANY[:20]
    seed = rng.normal(size=(20, 3))
    f, Y, _ = check_replay(build, [0.7, -0.3], X, seed=seed)
    assert Y.shape == (20, 3)
    assert f.n_outputs == 3


def test_outputs_that_are_inputs_parameters_or_constants():
    def build(E, p, x):
        return [x[1], p[0], E.Value(4.0), x[0] * p[0], x[1]]  # x[1] twice: seeds add up

    _, Y, _ = check_replay(build, [1.5], ANY[:5], seed=np.arange(25.0).reshape(5, 5))
    np.testing.assert_array_equal(Y[:, 2], 4.0)
    np.testing.assert_array_equal(Y[:, 1], 1.5)


def test_single_output_returns_a_vector_and_one_element_list_a_matrix():
    p = native.Value(2.0)
    f = arenagrad.compile(lambda x: x * p, 1)
    g = arenagrad.compile(lambda x: [x * p], 1)
    X = ANY[:4, :1]
    assert f.forward(X).shape == (4,)
    assert g.forward(X).shape == (4, 1)
    np.testing.assert_array_equal(f.backward(np.full(4, 3.0)), np.full((4, 1), 6.0))
    np.testing.assert_array_equal(g.backward(np.full((4, 1), 3.0)), np.full((4, 1), 6.0))


# ---------------------------------------------------------------------------- parameters


def test_parameters_are_read_at_every_forward_without_retracing():
    p, q = native.Value(0.5), native.Value(-1.0)
    calls = []

    def fn(x):
        calls.append(1)
        return (x * p + q * q).tanh()  # q*q depends only on parameters: recomputed each time

    f = arenagrad.compile(fn, 1)
    assert f.parameters == [p, q]
    X = ANY[:8, :1]
    for step in range(4):
        p.data = 0.5 + step
        q.data = -1.0 - 0.25 * step
        expected = np.tanh(X[:, 0] * p.data + q.data * q.data)
        np.testing.assert_allclose(f.forward(X), expected, rtol=1e-14)
    assert len(calls) == 1


def test_backward_uses_the_parameters_of_its_forward():
    p = native.Value(2.0)
    f = arenagrad.compile(lambda x: x * p * p, 1)
    f.forward(np.array([[3.0]]))
    p.data = 100.0  # an SGD update before backward must not change this step's gradients
    assert f.backward()[0, 0] == 4.0
    assert p.grad == 12.0  # 2 * p * x at p = 2


@pytest.mark.skipif(
    bool(os.environ.get("ARENAGRAD_SANITIZED")),
    reason="AddressSanitizer aborts on an allocation this large instead of failing it",
)
def test_a_forward_that_fails_leaves_the_last_one_to_go_back_through():
    # The result cannot be allocated (2**50 lanes): the forward before it stands, with the
    # parameters it read, instead of its lane values against the new parameters.
    p, q = native.Value(2.0), native.Value(3.0)
    f = arenagrad.compile(lambda: p * q, 0)
    assert f.forward()[0] == 6.0
    q.data = 5.0
    with pytest.raises((MemoryError, ValueError)):
        f.forward(np.empty((2**50, 0)))
    f.backward()
    assert (p.grad, q.grad) == (3.0, 2.0)


def test_grads_accumulate_like_micrograd():
    p = native.Value(1.0)
    f = arenagrad.compile(lambda x: x * p, 1)
    f.forward(np.array([[2.0], [3.0]]))
    f.backward()
    f.backward()
    assert p.grad == 10.0
    p.grad = 0.0
    f.forward(np.array([[1.0]]))
    f.backward()
    assert p.grad == 1.0


def test_parameters_survive_compaction_and_arena_does_not_grow():
    keep = []
    params = [native.Value(0.1 * i) for i in range(5)]
    for i in range(3000):  # live Values interleaved with garbage: compaction renumbers ids
        v = native.Value(float(i)) * 2
        if i % 50 == 0:
            keep.append(v)
    before = arenagrad.arena_stats()["nodes"]
    f = arenagrad.compile(lambda x: arenagrad.linear(params[0], params[1:3], [x, x * x]), 1)
    assert arenagrad.arena_stats()["nodes"] == before  # the traced graph was dropped
    X = ANY[:6, :1]
    Y0 = f.forward(X)
    del keep[::2]
    arenagrad._core.compact()
    garbage = [native.Value(1.0) + 1 for _ in range(100)]
    del garbage
    params[1].data = 5.0
    Y1 = f.forward(X)
    x = X[:, 0]
    np.testing.assert_array_equal(Y0, 0.0 + 0.1 * x + 0.2 * (x * x))
    np.testing.assert_array_equal(Y1, 0.0 + 5.0 * x + 0.2 * (x * x))
    f.backward()
    assert params[1].grad == pytest.approx(float(np.sum(x)), rel=1e-14)


# ---------------------------------------------------------------------------- threads


@pytest.fixture
def threads():
    saved = arenagrad.get_num_threads()
    yield
    arenagrad.set_num_threads(saved)


def test_bit_identical_for_any_thread_count(threads):
    random.seed(3)
    model = MLP(3, [8, 8, 2])
    f = arenagrad.compile(lambda a, b, c: model([a, b, c]), 3)
    X = np.random.default_rng(1).normal(size=(1000, 3))  # 16 tiles
    seed = np.random.default_rng(2).normal(size=(1000, 2))
    results = []
    for n in (1, 2, 3):
        arenagrad.set_num_threads(n)
        model.zero_grad()
        Y = f.forward(X)
        G = f.backward(seed)
        results.append((Y, G, [p.grad for p in model.parameters()]))
    for Y, G, grads in results[1:]:
        np.testing.assert_array_equal(Y, results[0][0])
        np.testing.assert_array_equal(G, results[0][1])
        assert grads == results[0][2]


# ---------------------------------------------------------------------------- the demo


def hinge(model, x0, x1, y):
    """micrograd demo's per-sample max-margin loss."""
    return (1 + -y * model([x0, x1])).relu()


def test_demo_mlp_per_sample_loss_matches_eager():
    model = build_model(native, seed=1337)
    ref_model = build_model(reference, seed=1337)
    for p, q in zip(model.parameters(), ref_model.parameters(), strict=True):
        assert p.data == q.data
    X, y = make_moons(n_samples=30, noise=0.1, seed=1)
    Xy = np.column_stack([X, y])
    f = arenagrad.compile(lambda x0, x1, yi: hinge(model, x0, x1, yi), 3)
    losses = f.forward(Xy)
    seed = np.full(len(Xy), 1.0 / len(Xy))
    model.zero_grad()
    f.backward(seed)
    for engine, m in ((native, build_model(native, seed=1337)), (reference, ref_model)):
        total = engine.sum([hinge(m, *map(engine.Value, row)) for row in Xy.tolist()]) * (
            1.0 / len(Xy)
        )
        assert_close(total.data, float(np.sum(losses)) / len(Xy), engine.__name__)
        total.backward()
        for i, (p, q) in enumerate(zip(model.parameters(), m.parameters(), strict=True)):
            assert_close(p.grad, q.grad, f"{engine.__name__} param {i}", rel=1e-11, scale=1e-3)


def test_demo_training_loop_matches_eager_demo():
    """Five SGD steps of micrograd's demo (hinge loss + L2) with compiled replay give the
    same parameters as the eager demo's train_step."""
    from arenagrad.apps import demo

    X, y = make_moons(n_samples=40, noise=0.1, seed=5)
    eager = build_model(native, seed=11)
    model = build_model(native, seed=11)
    engine = native
    Xy = np.column_stack([X, y])
    per_sample = arenagrad.compile(lambda x0, x1, yi: hinge(model, x0, x1, yi), 3)
    alpha = 1e-4
    reg = arenagrad.compile(lambda: alpha * arenagrad.sum([p * p for p in model.parameters()]), 0)
    steps = 5
    for k in range(steps):
        demo.train_step(engine, eager, X, y, k, steps)
        model.zero_grad()
        per_sample.forward(Xy)
        per_sample.backward(np.full(len(Xy), 1.0 / len(Xy)))
        reg.forward()
        reg.backward()
        lr = 1.0 - 0.9 * k / steps
        for p in model.parameters():
            p.data -= lr * p.grad
    for p, q in zip(model.parameters(), eager.parameters(), strict=True):
        assert_close(p.data, q.data, "parameter after training", rel=1e-10, scale=1e-3)


def test_single_lane_replay_of_a_whole_batch():
    """n_inputs=0: the whole batch loss traced once (the data are constants) and replayed
    with new parameter values."""
    X, y = make_moons(n_samples=20, noise=0.1, seed=2)
    model = build_model(native, seed=4)

    def batch_loss():
        losses = [
            hinge(model, *map(native.Value, row), yi)
            for row, yi in zip(X.tolist(), y.tolist(), strict=True)
        ]
        return native.sum(losses) * (1.0 / len(losses))

    f = arenagrad.compile(batch_loss, 0)
    assert f.n_lane_nodes == 0 and f.n_invariant_nodes > 100
    for step in range(3):
        for p in model.parameters():
            p.data += 0.01 * step
        model.zero_grad()
        loss = f.forward()
        f.backward()
        replay_grads = [p.grad for p in model.parameters()]
        model.zero_grad()
        eager = batch_loss()
        eager.backward()
        assert loss.shape == (1,)
        assert loss[0] == eager.data
        for a, b in zip(replay_grads, [p.grad for p in model.parameters()], strict=True):
            assert_close(a, b, "grad", scale=1e-6)


def test_zero_grad_and_sgd_step_match_the_python_loop():
    model = build_model(native, seed=9)
    twin = build_model(native, seed=9)
    f = arenagrad.compile(lambda a, b: model([a, b]), 2)
    g = arenagrad.compile(lambda a, b: twin([a, b]), 2)
    X = ANY[:10]
    for step in range(3):
        f.zero_grad()
        twin.zero_grad()
        f.forward(X)
        f.backward()
        g.forward(X)
        g.backward()
        assert any(p.grad != 0 for p in model.parameters())
        f.sgd_step(0.1 * (step + 1))
        for p in twin.parameters():
            p.data -= 0.1 * (step + 1) * p.grad
        assert [p.data for p in model.parameters()] == [p.data for p in twin.parameters()]
    f.zero_grad()
    assert all(p.grad == 0.0 for p in model.parameters())


def test_closed_over_intermediate_is_a_leaf_of_the_tape():
    p = native.Value(3.0)
    h = p * 2  # built outside fn: an external, read as it is, gradient stops there
    f = arenagrad.compile(lambda x: x * h, 1)
    f.forward(np.array([[1.0], [2.0]]))
    f.backward()
    assert h.grad == 3.0 and p.grad == 0.0
    assert f.parameters == [h]


# ---------------------------------------------------------------------------- errors


def test_bad_input_raises_clear_errors():
    p = native.Value(1.0)
    f = arenagrad.compile(lambda a, b: a * b + p, 2)
    with pytest.raises(RuntimeError, match="forward"):
        f.backward()
    with pytest.raises(TypeError, match="float64"):
        f.forward(np.ones((3, 2), dtype=np.int64))
    with pytest.raises(TypeError, match="float64"):
        f.forward(np.ones((3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"shape \(batch, 2\)"):
        f.forward(np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"shape \(batch, 2\)"):
        f.forward(np.ones(2))
    with pytest.raises(TypeError):
        f.forward("not an array")
    with pytest.raises(TypeError, match=r"batch, 2"):
        f.forward()
    np.testing.assert_array_equal(f.forward([[1.0, 2.0]]), [3.0])  # lists are fine
    assert f.forward(np.asfortranarray(np.ones((3, 2)))).shape == (3,)
    with pytest.raises(ValueError, match="seed"):
        f.backward(np.ones(4))
    with pytest.raises(ValueError, match="seed"):
        f.backward(np.ones((3, 1)))
    with pytest.raises(TypeError, match="float64"):
        f.backward(np.ones(3, dtype=np.int32))
    assert f.forward(np.empty((0, 2))).shape == (0,)
    assert f.backward().shape == (0, 2)


def test_bad_compile_arguments():
    with pytest.raises(TypeError, match="callable"):
        arenagrad.compile(3, 1)
    with pytest.raises(TypeError, match="n_inputs"):
        arenagrad.compile(lambda x: x, 1.0)
    with pytest.raises(TypeError, match="n_inputs"):
        arenagrad.compile(lambda x: x, True)
    with pytest.raises(ValueError, match="n_inputs"):
        arenagrad.compile(lambda x: x, -1)
    with pytest.raises(ValueError, match="device"):
        arenagrad.compile(lambda x: x, 1, device="tpu")
    with pytest.raises(TypeError, match="Value"):
        arenagrad.compile(lambda x: 3.0, 1)
    with pytest.raises(TypeError, match="output 1"):
        arenagrad.compile(lambda x: [x, 2.0], 1)
    with pytest.raises(TypeError, match="non-empty"):
        arenagrad.compile(lambda x: [], 1)
    with pytest.raises(TypeError):
        arenagrad.compile(lambda x, y: x, 1)  # fn's own error surfaces


# _core.Replay is private (compile() checks every argument for users), but no call to it may
# read or write out of bounds: each misuse below is a clean exception.


def test_native_replay_rejects_non_values():
    v = native.Value(1.0)
    with pytest.raises(TypeError, match="Value"):
        arenagrad._core.Replay(1.0, [v], [v])
    with pytest.raises(TypeError, match="Value"):
        arenagrad._core.Replay(v, [v], ["x"])
    with pytest.raises(ValueError):
        arenagrad._core.Replay(v, [v], [v])  # an input that is not above the fence
    fence = native.Value(0.0)
    x = native.Value(0.0)
    with pytest.raises(ValueError):
        arenagrad._core.Replay(fence, [x, x], [x * 2])  # the same input twice
    with pytest.raises(ValueError, match="device"):
        arenagrad._core.Replay(fence, [x], [x * 2], "tpu")


def _native_replay():
    p = native.Value(3.0)
    fence = native.Value(0.0)
    x = native.Value(0.0)
    return p, arenagrad._core.Replay(fence, [x], [x * p, x + 1.0])


def test_native_replay_checks_array_shapes():
    _, replay = _native_replay()
    for X in (np.zeros(4), np.zeros((4, 2)), np.zeros((2, 4, 1))):
        with pytest.raises(ValueError, match="shape"):
            replay.forward(X)
    with pytest.raises(TypeError):
        replay.forward("not an array")
    with pytest.raises(RuntimeError, match="forward"):
        replay.backward()  # nothing to go back through yet
    replay.forward(np.ones((4, 1)))
    for seed in (np.ones((3, 2)), np.ones((4, 1)), np.ones(8)):
        with pytest.raises(ValueError, match="seed"):
            replay.backward(seed)
    with pytest.raises(ValueError, match="shape"):
        replay.forward(np.zeros((4, 3)))
    assert replay.backward().shape == (4, 1)  # the rejected call left the last forward intact


def test_native_replay_converts_arrays_it_is_given():
    p, replay = _native_replay()
    X = np.arange(6.0).reshape(2, 3)[:, 1:2]  # not contiguous
    assert replay.forward(X).tolist() == [[3.0, 2.0], [12.0, 5.0]]
    assert replay.forward([[1], [2]]).tolist() == [[3.0, 2.0], [6.0, 3.0]]  # ints in a list
    p.grad = 0.0
    assert replay.backward(np.ones((2, 2), dtype=np.float32)).tolist() == [[4.0], [4.0]]
    assert p.grad == 3.0


def test_native_replay_externals_is_a_copy():
    p, replay = _native_replay()
    externals = replay.externals
    assert externals == [p]
    externals.clear()
    del p
    assert replay.externals[0].data == 3.0  # the replay still owns its parameter
    assert replay.forward(np.ones((2, 1))).tolist() == [[3.0, 2.0], [3.0, 2.0]]


def test_cuda_without_a_device_raises_a_clear_error():
    if arenagrad.show_config(quiet=True)["cuda_devices"] > 0:
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError, match="cuda"):
        arenagrad.compile(lambda x: x * 2, 1, device="cuda")


def test_show_config_reports_the_build():
    config = arenagrad.show_config(quiet=True)
    assert config["version"] == arenagrad.__version__
    assert config["threads"] == arenagrad.get_num_threads()
    assert isinstance(config["cuda_compiled"], bool)
    assert config["cuda_devices"] >= 0
