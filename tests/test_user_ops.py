"""User-defined ops, in the two styles users write them.

micrograd's (and the lecture's): `out = Value(data, (children...), '_op')`, then a Python
closure assigned to `out._backward` that adds local derivative * out.grad into each child's
grad; backward() calls it at the node's place. microgpt's: `Value(data, children,
local_grads)`, one native node whose backward adds local_grads[i] * out.grad into child i.

Each is checked against the oracle (arenagrad.reference, which takes the same two styles),
against finite differences, inside deep graphs and mixed with native ops, under compaction,
and against Python code in a `_backward` that raises, builds or drops Values, or starts
another backward().
"""

from __future__ import annotations

import gc
import json
import math
import subprocess
import sys

import arenagrad
import pytest
from _support import ENGINE_NAMES, assert_same, get_engine, needs_native

# ----------------------------------------------------------------------------- the two styles


def py_tanh(V, x):
    """micrograd's lecture: tanh as a user op with a `_backward` closure."""
    t = (math.exp(2 * x.data) - 1) / (math.exp(2 * x.data) + 1)
    out = V(t, (x,), "tanh")

    def _backward():
        x.grad += (1 - t**2) * out.grad

    out._backward = _backward
    return out


def py_mul(V, a, b):
    out = V(a.data * b.data, (a, b), "*")

    def _backward():
        a.grad += b.data * out.grad
        b.grad += a.data * out.grad

    out._backward = _backward
    return out


def py_sum(V, values):
    values = list(values)
    out = V(math.fsum(v.data for v in values), tuple(values), "sum")

    def _backward():
        for v in values:
            v.grad += out.grad

    out._backward = _backward
    return out


# microgpt's ops, as its Value class writes them
def gpt_mul(V, a, b):
    return V(a.data * b.data, (a, b), (b.data, a.data))


def gpt_log(V, a):
    return V(math.log(a.data), (a,), (1 / a.data,))


def gpt_exp(V, a):
    return V(math.exp(a.data), (a,), (math.exp(a.data),))


def gpt_sum(V, values):
    values = list(values)
    return V(math.fsum(v.data for v in values), values, [1] * len(values))


STYLES = {
    "micrograd": (py_tanh, py_mul, py_sum),
    "microgpt": (lambda V, x: gpt_log(V, gpt_exp(V, x) + 1.0), gpt_mul, gpt_sum),
}


def mixed_graph(V, style, xs):
    """A graph of user ops (of one style) and native ops: a few layers deep, operands reused."""
    unary, mul, total = STYLES[style]
    a, b, c = xs
    h = [unary(V, a * 0.5 + b), mul(V, b, c), (c - a).tanh(), unary(V, mul(V, a, a))]
    h2 = [mul(V, h[0], h[1]) + h[2], unary(V, h[3] - h[0]), total(V, h) * h[1]]
    return total(V, [h2[0], h2[1] * 2.0, h2[2], a]) ** 2


@pytest.mark.parametrize("style", sorted(STYLES))
def test_user_ops_match_the_oracle_and_finite_differences(style):
    native, reference = get_engine("native"), get_engine("reference")
    point = [0.3, -0.7, 1.1]
    grads = {}
    for engine in (native, reference):
        xs = [engine.Value(x) for x in point]
        out = mixed_graph(engine.Value, style, xs)
        out.backward()
        out.backward()  # twice: the root is reset to 1, everything else accumulates
        grads[engine.name] = (out.data, [x.grad for x in xs])
    assert_same(grads["native"][0], grads["reference"][0])
    for g, h in zip(grads["native"][1], grads["reference"][1], strict=True):
        assert_same(g, h)
    for engine in (native, reference):
        worst = arenagrad.gradcheck(
            lambda *xs, e=engine: mixed_graph(e.Value, style, xs), point, value_type=engine.Value
        )
        assert worst < 1e-5


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_the_two_styles_agree_with_native_ops(engine_name):
    V = get_engine(engine_name).Value
    for style, (unary, mul, total) in STYLES.items():
        a, b = V(0.8), V(-1.7)
        mine = total(V, [mul(V, a, b), unary(V, a), b])
        a2, b2 = V(0.8), V(-1.7)
        native = (a2 * b2) + (a2.tanh() if style == "micrograd" else (a2.exp() + 1.0).log()) + b2
        assert_same(mine.data, native.data, style, rel=1e-14)
        mine.backward()
        native.backward()
        assert_same(a.grad, a2.grad, style, rel=1e-14)
        assert_same(b.grad, b2.grad, style, rel=1e-14)


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_nary_user_ops_of_any_arity(engine_name):
    V = get_engine(engine_name).Value
    for n in (1, 2, 3, 17):
        xs = [V(0.1 * (k + 1)) for k in range(n)]
        prod = math.prod(x.data for x in xs)
        gpt = V(prod, xs, [prod / x.data for x in xs])
        gpt.backward()
        assert [x.grad for x in xs] == [prod / x.data for x in xs]
        for x in xs:
            x.grad = 0.0
        out = V(prod, tuple(xs), "prod")

        def _backward(xs=xs, out=out, prod=prod):
            for x in xs:
                x.grad += prod / x.data * out.grad

        out._backward = _backward
        out.backward()
        assert [x.grad for x in xs] == [prod / x.data * 1.0 for x in xs]
        assert out._prev == set(xs) and list(out._children) == xs
        assert gpt._prev == set(xs) and list(gpt._children) == xs


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_a_child_twice_gets_both_contributions(engine_name):
    V = get_engine(engine_name).Value
    a = V(3.0)
    square = V(9.0, (a, a), (3.0, 3.0))
    square.backward()
    assert a.grad == 6.0
    a.grad = 0.0
    out = V(9.0, (a, a), "*")

    def _backward():
        a.grad += a.data * out.grad
        a.grad += a.data * out.grad

    out._backward = _backward
    (out * 2).backward()
    assert a.grad == 12.0


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_deep_chains_of_user_ops_need_no_recursion(engine_name):
    V = get_engine(engine_name).Value
    depth = 30_000 if engine_name == "native" else 5_000
    x = V(1.0)
    y = x
    for k in range(depth):
        if k % 2:
            y = V(y.data, (y,), (1.0,))
        else:
            out = V(y.data, (y,), "id")

            def _backward(child=y, out=out):
                child.grad += out.grad

            out._backward = _backward
            y = out
    (y * 3.0).backward()
    assert x.grad == 3.0


# ----------------------------------------------------------------------------- the lecture


def lecture_neuron(V):
    """Cell 13 of the lecture's first notebook: the neuron that backprop is taught on."""
    x1 = V(2.0, label="x1")
    x2 = V(0.0, label="x2")
    w1 = V(-3.0, label="w1")
    w2 = V(1.0, label="w2")
    b = V(6.8813735870195432, label="b")
    x1w1 = x1 * w1
    x1w1.label = "x1*w1"
    x2w2 = x2 * w2
    x2w2.label = "x2*w2"
    x1w1x2w2 = x1w1 + x2w2
    x1w1x2w2.label = "x1*w1 + x2*w2"
    n = x1w1x2w2 + b
    n.label = "n"
    return {name: v for name, v in locals().items() if name != "V"}


EXPECTED = {"x1": -1.5, "w1": 1.0, "x2": 0.5, "w2": 0.0, "n": 0.5, "b": 0.5}


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_lecture_backpropagates_by_hand_one_node_at_a_time(engine_name):
    V = get_engine(engine_name).Value
    g = lecture_neuron(V)
    o = g["n"].tanh()
    o.label = "o"
    # Cells 17 to 22: the lecture's own sequence (a leaf's _backward does nothing).
    o.grad = 1.0
    o._backward()
    g["n"]._backward()
    g["b"]._backward()
    g["x1w1x2w2"]._backward()
    g["x2w2"]._backward()
    g["x1w1"]._backward()
    for name, want in EXPECTED.items():
        assert g[name].grad == pytest.approx(want, abs=1e-12), name
    # Cell 15 gives the same numbers in one call, after zeroing.
    for v in (*g.values(), o):
        v.grad = 0.0
    o.backward()
    for name, want in EXPECTED.items():
        assert g[name].grad == pytest.approx(want, abs=1e-12), name


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_lecture_tanh_as_a_user_op_and_as_exp_and_division(engine_name):
    V = get_engine(engine_name).Value
    # The lecture's Value.tanh, written against this engine's Value.
    g = lecture_neuron(V)
    o = py_tanh(V, g["n"])
    o.label = "o"
    assert o._op == "tanh" and o._prev == {g["n"]}
    o.backward()
    for name, want in EXPECTED.items():
        assert g[name].grad == pytest.approx(want, abs=1e-12), name
    # The second notebook's cell 11: tanh spelled with exp and division.
    g = lecture_neuron(V)
    e = (2 * g["n"]).exp()
    o = (e - 1) / (e + 1)
    o.backward()
    for name, want in EXPECTED.items():
        assert g[name].grad == pytest.approx(want, abs=1e-12), name


def lecture_mlp_losses(V):
    """The second notebook's cells 14 to 17, verbatim but for the engine's Value and tanh (the
    lecture's, as a user op): its own Neuron, Layer and MLP, trained 20 steps."""
    import random

    class Neuron:
        def __init__(self, nin):
            self.w = [V(random.uniform(-1, 1)) for _ in range(nin)]
            self.b = V(random.uniform(-1, 1))

        def __call__(self, x):
            act = sum((wi * xi for wi, xi in zip(self.w, x, strict=True)), self.b)
            return py_tanh(V, act)

        def parameters(self):
            return [*self.w, self.b]

    class Layer:
        def __init__(self, nin, nout):
            self.neurons = [Neuron(nin) for _ in range(nout)]

        def __call__(self, x):
            outs = [n(x) for n in self.neurons]
            return outs[0] if len(outs) == 1 else outs

        def parameters(self):
            return [p for neuron in self.neurons for p in neuron.parameters()]

    class MLP:
        def __init__(self, nin, nouts):
            sz = [nin, *nouts]
            self.layers = [Layer(sz[i], sz[i + 1]) for i in range(len(nouts))]

        def __call__(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

        def parameters(self):
            return [p for layer in self.layers for p in layer.parameters()]

    random.seed(42)
    n = MLP(3, [4, 4, 1])
    xs = [[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]]
    ys = [1.0, -1.0, -1.0, 1.0]
    losses = []
    for _ in range(20):
        ypred = [n(x) for x in xs]
        loss = sum((yout - ygt) ** 2 for ygt, yout in zip(ys, ypred, strict=True))
        for p in n.parameters():
            p.grad = 0.0
        loss.backward()
        for p in n.parameters():
            p.data += -0.1 * p.grad
        losses.append(loss.data)
    return losses


@needs_native
def test_lecture_mlp_trains_as_on_the_oracle():
    losses = lecture_mlp_losses(arenagrad.Value)
    assert losses[-1] < 0.2 * losses[0]
    assert losses == pytest.approx(lecture_mlp_losses(get_engine("reference").Value), rel=1e-12)


# ----------------------------------------------------------------------------- `_backward`


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_backward_attribute_rules(engine_name):
    V = get_engine(engine_name).Value
    a = V(2.0)

    def fn():
        pass

    out = V(4.0, (a,), "sq")
    assert out._op == "sq" and out._prev == {a}
    out._backward()  # micrograd's default `_backward` does nothing
    out._backward = fn
    assert out._backward is fn
    with pytest.raises(TypeError, match="callable"):
        out._backward = 3
    native_node = a * 2
    with pytest.raises(AttributeError, match="native op"):
        native_node._backward = fn
    with pytest.raises(AttributeError, match="native op"):
        V(1.0, (a,), (1.0,))._backward = fn
    a._backward = fn  # a leaf: nothing to propagate to, accepted and ignored
    assert a._backward is not fn
    a._backward()
    assert V(3.0, (), "const")._op == "const"  # no children: a leaf with its _op


@needs_native
def test_backward_attribute_cannot_be_deleted():
    out = arenagrad.Value(1.0, (arenagrad.Value(1.0),), "f")
    with pytest.raises(AttributeError):
        del out._backward


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_native_node_backward_is_one_local_step(engine_name):
    engine = get_engine(engine_name)
    V = engine.Value
    a, b, c = V(1.5), V(-2.0), V(0.25)
    nodes = [a * b, a - c, a / b, -a, a**3, a**b, a.relu(), a.tanh(), a.exp(), b.abs()]
    nodes += [a.log(), a.sigmoid(), a.sqrt(), engine.sum([a, b, a])]
    nodes.append(engine.linear(c, [a, b], [b, c]))
    for node in nodes:  # operands are leaves: a sweep from the node is its one step
        for v in (a, b, c):
            v.grad = 0.0
        node.grad = 0.7
        node._backward()
        stepped = [v.grad for v in (a, b, c)]
        for v in (a, b, c):
            v.grad = 0.0
        node.backward(gradient=0.7)
        swept = [v.grad for v in (a, b, c)]
        assert stepped == swept, (node._op, stepped, swept)


# ----------------------------------------------------------------------------- safety


@needs_native
def test_user_ops_survive_compaction():
    V = arenagrad.Value
    keep = []
    for round_ in range(3):
        a, b = V(0.5 + round_), V(2.0)
        out = py_tanh(V, py_mul(V, a, b)) + gpt_mul(V, a, b)
        out.label = "out"
        keep.append((a, b, out))
        junk = [V(float(i)) * 2 for i in range(1000)]  # dead nodes stuck under `out`
        del junk
        arenagrad._core.compact()
    for a, b, out in keep:
        assert out.label == "out"
        out.backward()
        t = math.tanh(a.data * b.data)
        assert_same(a.grad, (1 - t * t) * b.data + b.data)
        assert_same(b.grad, (1 - t * t) * a.data + a.data)


@needs_native
def test_a_raising_backward_propagates_and_leaves_the_graph_usable():
    V = arenagrad.Value
    a = V(2.0)
    out = V(4.0, (a,), "bad")
    calls = []

    def _backward():
        calls.append(1)
        raise ZeroDivisionError("inside _backward")

    out._backward = _backward
    top = out * a
    with pytest.raises(ZeroDivisionError, match="inside _backward"):
        top.backward()
    assert (top.grad, out.grad, a.grad) == (1.0, 2.0, 4.0)  # what ran before it, as micrograd
    out._backward = lambda: None
    top.backward()
    assert a.grad == 8.0 and len(calls) == 1
    assert (V(3.0) * 2).data == 6.0


@needs_native
def test_python_in_backward_may_build_drop_compact_and_backprop_other_graphs():
    V = arenagrad.Value
    built, dropped = [], [V(5.0) * 3 for _ in range(50)]
    other = V(3.0)
    other_out = other * other

    def busy():
        built.extend(V(float(i)) * 2 for i in range(20_000))  # grows (moves) every array
        dropped.clear()  # truncation while the sweep runs
        other_out.backward()  # a sweep inside the sweep
        arenagrad._core.compact()  # refused while a sweep runs: node ids must stay put

    a, c = V(1.0), V(2.0)
    mid = V(a.data * 2, (a,), "busy")

    def _backward():
        busy()
        a.grad += 2 * mid.grad

    mid._backward = _backward
    out = (mid * c + a).tanh()
    out.backward()
    t = math.tanh(2.0 * 2.0 + 1.0)
    assert_same(c.grad, (1 - t * t) * 2.0)
    assert_same(a.grad, (1 - t * t) * (2.0 * 2.0 + 1.0))
    assert other.grad == 6.0 and len(built) == 20_000


@needs_native
def test_backward_calling_itself_stops_at_the_recursion_limit():
    V = arenagrad.Value
    a = V(1.0)
    out = V(1.0, (a,), "self")
    out._backward = lambda: out.backward()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)
    try:
        with pytest.raises(RecursionError):
            out.backward()
    finally:
        sys.setrecursionlimit(limit)
    assert (a * 2).data == 2.0


@needs_native
def test_a_backward_that_replaces_itself():
    V = arenagrad.Value
    a = V(1.0)
    out = V(2.0, (a,), "once")

    def first():
        out._backward = lambda: None  # frees this very function while it runs
        a.grad += 1.0

    out._backward = first
    del first
    out.backward()
    out.backward()
    assert a.grad == 1.0


# ----------------------------------------------------------------------------- memory

# In a fresh interpreter, like test_lifetime's training loops: how much garbage the arena holds
# before a compaction depends on what it held before.
MEMORY_SCRIPT = """
import json, math, random, arenagrad
V = arenagrad.Value
def tanh(x):
    t = math.tanh(x.data)
    out = V(t, (x,), 'tanh')
    def _backward():
        x.grad += (1 - t**2) * out.grad
    out._backward = _backward
    return out
random.seed(0)
ws = [V(random.uniform(-1, 1)) for _ in range(3)]
peak = 0
for step in range(600):
    rows = [[random.uniform(-1, 1) for _ in range(3)] for _ in range(20)]
    preds = (tanh(sum((w * x for w, x in zip(ws, r)), V(0.0))) for r in rows)
    loss = arenagrad.sum([(p - 1.0) ** 2 for p in preds])
    for w in ws:
        w.grad = 0.0
    loss.backward()
    for w in ws:
        w.data -= 0.01 * w.grad
    peak = max(peak, arenagrad.arena_stats()["nodes"])
del loss
after = arenagrad.arena_stats()
print(json.dumps({"peak": peak, "nodes": after["nodes"], "live": after["live_values"]}))
"""


@needs_native
def test_a_training_loop_with_micrograd_style_ops_keeps_memory_flat():
    # Each `_backward` closure holds its own node's Value (micrograd's pattern): without the
    # arena breaking that cycle, every step's graph would live forever (~110k nodes here).
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)
    assert figures["peak"] < 70_000, figures  # a compaction every ~64k nodes of footprint
    assert figures["nodes"] == 3 and figures["live"] == 3, figures  # the three weights


@needs_native
def test_dropping_a_graph_of_user_ops_gives_its_nodes_back():
    V = arenagrad.Value
    gc.collect()
    arenagrad._core.compact()
    base = arenagrad.arena_stats()
    x = V(0.5)
    y = x
    for k in range(2000):
        y = py_tanh(V, y) if k % 3 == 0 else gpt_mul(V, y, y) if k % 3 == 1 else y * 1.0
    y.backward()
    del x, y  # the top is held by its own closure only: the arena cannot tell yet ...
    arenagrad._core.compact()  # ... until it looks (a compaction, or a truncation below)
    after = arenagrad.arena_stats()
    assert (after["nodes"], after["live_values"]) == (base["nodes"], base["live_values"])


@needs_native
def test_a_closure_over_another_nodes_value_is_kept_as_long_as_needed():
    V = arenagrad.Value
    a = V(3.0)
    inner = py_tanh(V, a)  # its closure holds `a` and itself
    outer = py_mul(V, inner, inner)  # its closure holds `inner`
    del inner
    arenagrad._core.compact()  # inner is needed by outer: kept, with its closure
    outer.backward()
    t = math.tanh(3.0)
    assert_same(a.grad, 2 * t * (1 - t * t))


# ----------------------------------------------------------------------------- compile


@needs_native
@pytest.mark.parametrize("style", sorted(STYLES))
def test_compile_refuses_user_ops_by_name(style):
    V = arenagrad.Value
    w = V(0.5)  # a parameter: what fn builds on it is traced

    def fn(x):
        if style == "micrograd":
            return py_tanh(V, x * w) * 2
        return V(x.data * w.data, (x, w), _op="given", local_grads=[w.data, x.data]) * 2

    # building it reads .data of traced Values: the tracer refuses that first
    with pytest.raises(RuntimeError, match="read while tracing"):
        arenagrad.compile(fn, n_inputs=1)

    def given(x):  # its numbers not read from traced Values: refused by name
        if style == "micrograd":
            out = V(0.5, (x * w,), "tanh")
            out._backward = lambda: None
            return out * 2
        return V(0.25, (x, w), _op="given", local_grads=[0.5, 0.5]) * 2

    name = "'tanh'" if style == "micrograd" else "'given'"
    with pytest.raises(TypeError, match=f"user-defined op {name}"):
        arenagrad.compile(given, n_inputs=1)
    with pytest.raises(TypeError, match="user-defined op with no _op"):
        arenagrad.compile(lambda x: V(1.0, (x,), [1.0]), n_inputs=1)

    def index_only(x):  # the user op decides a take() index whose result fn never uses
        arenagrad.take([x, x * 2], V(1.0, (x,), _op="given", local_grads=[0.0]))
        return x * 3

    with pytest.raises(TypeError, match="user-defined op 'given'"):
        arenagrad.compile(index_only, n_inputs=1)


# ----------------------------------------------------------------------------- no_grad


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_user_ops_under_no_grad_are_leaves(engine_name):
    engine = get_engine(engine_name)
    V = engine.Value
    a = V(0.5)
    with engine.module.no_grad():
        t = py_tanh(V, a)  # its _backward assignment is accepted and does nothing
        g = gpt_mul(V, a, a)
    assert t.data == math.tanh(0.5) and g.data == 0.25
    for v in (t, g):
        assert v._prev == set() and v._op == ""
        v.backward()
    assert a.grad == 0.0
