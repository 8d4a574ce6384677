"""arenagrad.grad, hessian and hvp through user-defined ops (docs/higher_order.md).

microgpt's `Value(data, children, local_grads)`: its gradient graph is `local_grads[i] * g`,
each local gradient a constant leaf, so a derivative taken again through it is 0 there (the
user computed those numbers from `.data`; nothing records how). micrograd's `Value(data,
_children, _op)` with a Python `_backward`: `create_graph=True` through it raises a
RuntimeError naming its `_op`; without `create_graph` the closure runs on the sweep's own
numbers (its node's and its children's `.grad` hold them while it runs) and every `.grad` is
put back, so grad() gives what backward() would, and touches no `.grad`.

Every result is checked against the oracle, bit for bit where the sweep order is the same.
"""

from __future__ import annotations

import math

import pytest
from _support import ENGINE_NAMES, get_engine, needs_native
from test_user_ops import gpt_exp, gpt_log, gpt_mul, gpt_sum, mixed_graph, py_mul, py_tanh

POINT = [0.3, -0.7, 1.1]


def both_engines(fn):
    """fn(engine) on the native engine and on the oracle: the two results."""
    return fn(get_engine("native")), fn(get_engine("reference"))


def identical(x, y):
    return x == y or (math.isnan(x) and math.isnan(y))


def assert_identical_lists(got, want):
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert identical(g, w), f"#{k}: {g!r} != {w!r}"


# ----------------------------------------------------------------------------- microgpt's style


def gpt_cube(V, x):
    """x ** 3 as one microgpt node: its local gradient 3 x**2 is a number."""
    return V(x.data**3, (x,), (3 * x.data**2,))


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_local_grads_derivative_graph_holds_the_float_gradient(engine_name):
    engine = get_engine(engine_name)
    xs = [engine.Value(x) for x in POINT]
    out = mixed_graph(engine.Value, "microgpt", xs)
    numbers = engine.module.grad(out, xs)
    values = engine.module.grad(out, xs, create_graph=True)
    assert [v.data for v in values] == list(numbers)
    out.backward()
    assert [x.grad for x in xs] == list(numbers)  # backward()'s numbers, bit for bit


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_local_grads_are_constants_when_differentiated_again(engine_name):
    engine = get_engine(engine_name)
    V, grad = engine.Value, engine.module.grad
    x = V(1.5)
    cube = gpt_cube(V, x)
    (d,) = grad(cube, x, create_graph=True)
    assert d.data == 3 * 1.5**2
    # 3 x**2 is the number 6.75 in the graph, not a function of x: its derivative is 0
    with pytest.raises(ValueError, match="does not influence"):
        grad(d, x)
    assert grad(d, x, allow_unused=True) == (0.0,)
    # Mixed with a native op: y = cube(x) * x. dy/dx = c * x + cube, with c = 3 x**2 fixed,
    # so d2y/dx2 = c + c (the native x ** 4 would give 12 x**2).
    y = cube * x
    (dy,) = grad(y, x, create_graph=True)
    assert dy.data == 6.75 * 1.5 + 1.5**3
    (d2y,) = grad(dy, x)
    assert d2y == 6.75 + 6.75


@needs_native
def test_local_grads_to_the_third_order_match_the_oracle():
    def derivatives(engine):
        V, grad = engine.Value, engine.module.grad
        xs = [V(x) for x in POINT]
        a, b, c = xs
        u = gpt_log(V, gpt_exp(V, a * b) + 1.0)
        y = gpt_sum(V, [gpt_mul(V, u, c) * a, u.tanh() * b, gpt_mul(V, a, a) * c])
        values, frontier = [y.data], [y]
        for _ in range(3):
            frontier = [
                g for f in frontier for g in grad(f, xs, create_graph=True, allow_unused=True)
            ]
            values += [g.data for g in frontier]
        return values

    assert_identical_lists(*both_engines(derivatives))


@needs_native
def test_hessian_and_hvp_through_local_grads_match_the_oracle():
    def f_of(engine):
        V = engine.Value

        def f(a, b):
            return gpt_mul(V, gpt_log(V, a * a + 1.0), b) + (a * b) ** 2

        return f

    def results(engine):
        f = f_of(engine)
        H = engine.module.hessian(f, [0.4, -1.3])
        Hv = engine.module.hvp(f, [0.4, -1.3], [1.0, 0.5])
        return [x for row in H for x in row] + list(Hv)

    assert_identical_lists(*both_engines(results))


# ----------------------------------------------------------------------------- micrograd's style


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_create_graph_through_a_python_backward_names_its_op(engine_name):
    engine = get_engine(engine_name)
    V, grad = engine.Value, engine.module.grad
    x, w = V(0.5), V(-1.5)
    y = py_tanh(V, x * w) * 3.0
    stats = engine.arena_stats() if engine.arena_stats else None
    with pytest.raises(RuntimeError, match=r"'tanh'.*Python code"):
        grad(y, [x, w], create_graph=True)
    with pytest.raises(RuntimeError, match=r"'tanh'"):
        engine.module.hessian(lambda a: py_tanh(V, a) * a, [0.2])
    if stats is not None:  # the partial gradient graph is dropped
        after = engine.arena_stats()
        assert (after["nodes"], after["live_values"]) == (stats["nodes"], stats["live_values"])
    # The refusal is only for a path through the closure: above it, gradients are ops.
    t = py_tanh(V, x)
    z = t * t + w
    dt, dw = grad(z, [t, w], create_graph=True)
    assert (dt.data, dw.data) == (2 * t.data, 1.0)


def with_sentinel_grads(values):
    for k, v in enumerate(values):
        v.grad = 100.0 + k
    return [v.grad for v in values]


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_grad_through_python_backward_is_backward_and_touches_no_grad(engine_name):
    engine = get_engine(engine_name)
    V, grad = engine.Value, engine.module.grad
    xs = [V(x) for x in POINT]
    out = mixed_graph(V, "micrograd", xs)
    inner = [out, *xs]
    before = with_sentinel_grads(inner)
    numbers = grad(out, xs)
    assert [v.grad for v in inner] == before  # nothing changed, not even temporarily visible
    for v in inner:
        v.grad = 0.0
    out.backward()
    assert [x.grad for x in xs] == list(numbers)  # bit for bit: the same sweep
    # seeds, several outputs, an inner node as an input
    a, b, c = xs
    h = py_mul(V, a, b)
    k = py_tanh(V, h + c)
    before = with_sentinel_grads([h, k, a, b, c])
    got = grad([k, h], [a, h, c], grad_outputs=[2.0, -0.5])
    assert [v.grad for v in (h, k, a, b, c)] == before
    for v in (h, k, a, b, c):
        v.grad = 0.0
    k.backward(2.0)
    h_from_k = h.grad
    want_a = a.grad
    for v in (h, k, a, b, c):
        v.grad = 0.0
    h.backward(-0.5)
    assert got[1] == h_from_k - 0.5
    assert math.isclose(got[0], want_a + a.grad, rel_tol=1e-15)
    assert got[2] == (1 - k.data**2) * 2.0


@needs_native
def test_grad_through_python_backward_matches_the_oracle():
    def results(engine):
        V, grad = engine.Value, engine.module.grad
        xs = [V(x) for x in POINT]
        a, b, c = xs
        out = mixed_graph(V, "micrograd", xs)
        r = list(grad(out, xs))
        sq = py_mul(V, a, a)  # a child twice: its closure adds twice into a.grad
        unset = V(c.data * 2.0, (c, b), "noop")  # no _backward assigned: adds nothing
        y = sq * b + unset
        r += list(grad(y, [a, b, c]))
        r += list(grad([y, out], xs, grad_outputs=[0.25, V(-3.0)]))
        return r

    assert_identical_lists(*both_engines(results))


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_a_raising_python_backward_propagates_and_grads_are_put_back(engine_name):
    engine = get_engine(engine_name)
    V, grad = engine.Value, engine.module.grad
    x = V(0.7)
    t = py_tanh(V, x)
    bad = V(t.data, (t,), "bad")

    def _backward():
        t.grad += 1e9  # a partial write, then a failure
        raise ZeroDivisionError("inside _backward")

    bad._backward = _backward
    y = bad * 2.0 + t
    before = with_sentinel_grads([x, t, bad, y])
    with pytest.raises(ZeroDivisionError, match="inside _backward"):
        grad(y, x)
    assert [v.grad for v in (x, t, bad, y)] == before
    # the node below it works as before
    assert grad(t, x) == (1 - t.data**2,)


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_a_python_backward_may_build_values_and_call_grad_itself(engine_name):
    engine = get_engine(engine_name)
    V, grad = engine.Value, engine.module.grad
    x, w = V(0.4), V(1.7)
    inner = x * w

    def nested_tanh(v):
        t = math.tanh(v.data)
        out = V(t, (v,), "nested")

        def _backward():
            junk = [V(float(k)) * 2.0 for k in range(2000)]  # grows (and moves) the arena
            (d,) = grad(junk[-1] * inner, w)  # a grad() inside grad(): buffers of its own
            assert d == junk[-1].data * x.data
            v.grad += (1 - t**2) * out.grad

        out._backward = _backward
        return out

    y = nested_tanh(inner) * 3.0 + nested_tanh(x)
    got = grad(y, [x, w])
    y.backward()
    assert list(got) == [x.grad, w.grad]


@needs_native
def test_grad_through_python_backward_survives_compaction_triggers(native):
    from arenagrad import _core

    V, grad = native.Value, native.module.grad
    x = V(0.3)
    y = x
    for _ in range(50):
        y = py_tanh(V, y * 1.1)
    calls = []

    def compacting():
        _core.compact()  # blocked while the sweep runs: ids must stay put
        calls.append(1)

    z = V(y.data, (y,), "compacting")

    def _backward():
        compacting()
        y.grad += z.grad

    z._backward = _backward
    (got,) = grad(z, x)
    z.backward()
    assert calls == [1, 1] and got == x.grad
