"""arenagrad.grad, hessian and hvp: gradients as numbers and as graphs, differentiated again.

grad() without create_graph must be backward() without touching .grad; with create_graph it
returns Values whose data are those numbers, bit for bit, and that differentiate again to any
order. Every op's derivative graph (the rules' grad_* functions in cpp/ops.hpp and their twins
in reference.DERIVATIVE_GRAPHS) is checked to the third order against the oracle and, when
torch is installed, against torch.autograd.grad(create_graph=True); so are random DAGs.
Compiled replays of functions that call grad() are in test_higher_order_replay.py.
"""

from __future__ import annotations

import math
import struct

import pytest
from _support import BINARY, NARY, OP_TABLE, UNARY, assert_same, needs_native, readme, same

INF, NAN = math.inf, math.nan


def identical(x, y):
    """Bit for bit, except that any nan matches any nan."""
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return struct.pack("<d", x) == struct.pack("<d", y)


def equal_values(x, y):
    """Identical, but 0.0 and -0.0 match: a gradient with one contribution is that
    contribution, where a sweep adding it into 0.0 turns -0.0 into 0.0."""
    return identical(x, y) or (x == 0.0 and y == 0.0)


def smooth(a, b):
    return (a * b + 1).tanh() * (a / (b * b + 1)).exp() - (b * b + 0.5).log() + 2**a * b.sigmoid()


# ----------------------------------------------------------------------------- the API


def test_grad_gives_backwards_numbers_and_touches_no_grad(engine):
    V = engine.Value
    for fn in (readme, smooth):
        a, b = V(-1.5), V(0.75)
        out = fn(a, b)
        a.grad, b.grad, out.grad = 7.0, -3.0, 11.0  # must survive grad()
        grads = engine.module.grad(out, [a, b])
        assert isinstance(grads, tuple) and all(type(g) is float for g in grads)
        assert (a.grad, b.grad, out.grad) == (7.0, -3.0, 11.0)
        a.grad = b.grad = 0.0
        out.backward()
        assert identical(grads[0], a.grad) and identical(grads[1], b.grad), (fn, grads)


def test_create_graph_gives_values_holding_those_numbers(engine):
    V = engine.Value
    a, b = V(-1.5), V(0.75)
    out = smooth(a, b)
    numbers = engine.module.grad(out, [a, b])
    values = engine.module.grad(out, [a, b], create_graph=True)
    assert all(isinstance(v, V) for v in values)
    assert all(equal_values(v.data, n) for v, n in zip(values, numbers, strict=True))
    assert a.grad == b.grad == 0.0


@needs_native
def test_grad_without_create_graph_builds_no_node(native):
    a, b = native.Value(0.5), native.Value(2.0)
    out = smooth(a, b)
    before = native.arena_stats()
    native.module.grad(out, [a, b])
    assert native.arena_stats() == before


@needs_native
@pytest.mark.parametrize("room", [0, 1, 5, 20])
def test_a_full_arena_raises_memory_error_and_drops_the_partial_graph(native, room):
    import arenagrad
    from arenagrad import _core

    a, b = native.Value(0.5), native.Value(2.0)
    out = smooth(a, b)
    _core.compact()
    before = arenagrad.arena_stats()
    previous = _core._set_node_limit(before["nodes"] + room)
    try:
        with pytest.raises(MemoryError):
            arenagrad.grad(out, [a, b], create_graph=True)
        assert arenagrad.arena_stats()["nodes"] == before["nodes"]
        assert arenagrad.grad(out, [a, b]) == arenagrad.grad(out, [a, b])  # no nodes needed
    finally:
        _core._set_node_limit(previous)
    values = arenagrad.grad(out, [a, b], create_graph=True)  # and the arena still works
    assert [v.data for v in values] == list(arenagrad.grad(out, [a, b]))


def test_several_outputs_with_seeds(engine):
    V, grad = engine.Value, engine.module.grad
    x = V(0.5)
    y1, y2 = x * x * x, x.exp()
    (got,) = grad([y1, y2], x, grad_outputs=[2.0, -1.5])
    assert_same(got, 2.0 * 3 * 0.25 - 1.5 * math.exp(0.5))
    (twice,) = grad([y1, y1], x)  # an output given twice counts twice
    assert_same(twice, 2 * 3 * 0.25)
    (values,) = grad([y1, y2], [x], [2, V(-1.5)], create_graph=True)
    assert_same(values.data, got)


def test_value_seeds_are_differentiated_through(engine):
    # d/dv of (v * dy/dx) is dy/dx: the seed is part of the graph with create_graph
    V, grad = engine.Value, engine.module.grad
    x, v = V(0.3), V(2.0)
    y = x.tanh()
    (g,) = grad(y, x, grad_outputs=v, create_graph=True)
    assert_same(g.data, 2.0 * (1 - math.tanh(0.3) ** 2))
    (d_seed,) = grad(g, v)
    assert_same(d_seed, 1 - math.tanh(0.3) ** 2)


def test_third_derivative_of_a_cubic(engine):
    V, grad = engine.Value, engine.module.grad
    x = V(3.0)
    y = x * x * x
    (d1,) = grad(y, x, create_graph=True)
    (d2,) = grad(d1, x, create_graph=True)
    (d3,) = grad(d2, x, create_graph=True)
    assert (d1.data, d2.data, d3.data) == (27.0, 18.0, 6.0)
    with pytest.raises(ValueError, match="does not influence"):
        grad(d3, x)  # 6 = 6 * seed: no path to x any more
    assert grad(d3, x, allow_unused=True) == (0.0,)


def test_unused_inputs(engine):
    V, grad = engine.Value, engine.module.grad
    x, y, later = V(1.0), V(2.0), V(3.0)
    out = x * 2
    with pytest.raises(ValueError, match=r"inputs\[1\] does not influence the outputs"):
        grad(out, [x, y])
    assert grad(out, [x, y, later], allow_unused=True) == (2.0, 0.0, 0.0)
    values = grad(out, [x, y], create_graph=True, allow_unused=True)
    assert [v.data for v in values] == [2.0, 0.0]
    assert isinstance(values[1], V)


def test_inputs_may_be_interior_nodes_and_repeat(engine):
    V, grad = engine.Value, engine.module.grad
    x = V(0.7)
    h = x.tanh()
    out = h * h + x
    d_h, d_x, again = grad(out, [h, x, h])
    assert_same(d_h, 2 * h.data)
    assert_same(d_x, 2 * h.data * (1 - h.data**2) + 1)
    assert again == d_h


def test_arguments_by_position_or_keyword(engine):
    V, grad = engine.Value, engine.module.grad
    x = V(1.5)
    y = x * x
    by_keyword = grad(
        outputs=y, inputs=[x], grad_outputs=None, create_graph=True, allow_unused=False
    )
    by_position = grad(y, (x,), [2.0], True, False)
    assert by_keyword[0].data == 3.0 and by_position[0].data == 6.0
    with pytest.raises(TypeError):
        grad(y, x, None, False, False, 1)  # six positional arguments
    with pytest.raises(TypeError):
        grad(y)


def test_an_output_is_its_own_input(engine):
    V, grad = engine.Value, engine.module.grad
    x = V(4.0)
    assert grad(x, x) == (1.0,)
    assert grad(x, x, grad_outputs=-2.5) == (-2.5,)


BAD_ARGUMENTS = [
    ("no outputs", lambda V, x: ([], [x]), {}, ValueError),
    ("no inputs", lambda V, x: (x * 2, []), {}, ValueError),
    ("output not a Value", lambda V, x: (1.0, [x]), {}, TypeError),
    ("input not a Value", lambda V, x: (x * 2, [x, 2.0]), {}, TypeError),
    ("a str", lambda V, x: (x * 2, "x"), {}, TypeError),
    ("seed count", lambda V, x: (x * 2, x), {"grad_outputs": [1.0, 2.0]}, ValueError),
    ("seed a str", lambda V, x: (x * 2, x), {"grad_outputs": "1"}, TypeError),
    ("seed complex", lambda V, x: (x * 2, x), {"grad_outputs": 1j}, TypeError),
    ("create_graph not bool", lambda V, x: (x * 2, x), {"create_graph": 1}, TypeError),
    ("allow_unused not bool", lambda V, x: (x * 2, x), {"allow_unused": None}, TypeError),
    ("a generator", lambda V, x: ((v for v in [x * 2]), x), {}, TypeError),
    ("unknown keyword", lambda V, x: (x * 2, x), {"retain_graph": True}, TypeError),
    ("inputs twice", lambda V, x: (x * 2, x), {"inputs": 1.0}, TypeError),
]


@pytest.mark.parametrize(("what", "args", "kwargs", "error"), BAD_ARGUMENTS, ids=lambda c: c)
def test_bad_arguments_raise(engine, what, args, kwargs, error):
    x = engine.Value(1.0)
    with pytest.raises(error):
        engine.module.grad(*args(engine.Value, x), **kwargs)


def test_the_oracle_refuses_a_python_backward_with_create_graph(reference):
    # micrograd-style ops with a Python _backward closure cannot be differentiated twice.
    ref = reference.module
    x = ref.Value(2.0)
    custom = ref.Value(x.data**2, (x,), "square")
    custom._backward = lambda: None
    assert ref.grad(custom, x) == (0.0,)  # the closure adds nothing: it is what it says
    with pytest.raises(RuntimeError, match="'square'"):
        ref.grad(custom, x, create_graph=True)


# ----------------------------------------------------------------------------- hessian, hvp


def rosenbrock(x, y):
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def rosenbrock_hessian(x, y):
    return [[2 - 400 * (y - x * x) + 800 * x * x, -400 * x], [-400 * x, 200.0]]


def test_hessian_of_rosenbrock(engine):
    for point in [(-1.2, 1.0), (1.0, 1.0), (0.3, -0.4)]:
        H = engine.module.hessian(rosenbrock, list(point))
        want = rosenbrock_hessian(*point)
        assert isinstance(H, list) and all(isinstance(row, list) for row in H)
        for i in range(2):
            for j in range(2):
                assert_same(H[i][j], want[i][j], f"H[{i}][{j}] at {point}")


def test_hessian_is_symmetric_and_takes_values(engine):
    V = engine.Value
    H = engine.module.hessian(smooth, [V(0.4), -1.1])  # a Value's data is used
    assert_same(H[0][1], H[1][0])
    assert engine.module.hessian(smooth, [0.4, -1.1]) == H


def test_hessian_of_an_unused_input_is_zero(engine):
    H = engine.module.hessian(lambda x, y: x * x * x, [2.0, 5.0])
    assert H == [[12.0, 0.0], [0.0, 0.0]]


def test_hessian_and_hvp_bad_arguments(engine):
    m = engine.module
    with pytest.raises(TypeError, match="must return a Value"):
        m.hessian(lambda x: 3.0, [1.0])
    with pytest.raises(ValueError):
        m.hessian(smooth, [])
    with pytest.raises(TypeError):
        m.hessian(smooth, ["a", 1.0])
    with pytest.raises(ValueError, match="v has 1 item"):
        m.hvp(smooth, [1.0, 2.0], [1.0])


def test_hvp_is_hessian_times_v(engine):
    point, v = [0.4, -1.1], [0.25, -2.0]
    H = engine.module.hessian(smooth, point)
    Hv = engine.module.hvp(smooth, point, v)
    for i in range(2):
        assert_same(Hv[i], H[i][0] * v[0] + H[i][1] * v[1], f"(Hv)[{i}]")


@needs_native
def test_hessian_and_hvp_match_the_oracle(native, reference):
    for fn, point in [(readme, [-4.0, 2.0]), (smooth, [0.4, -1.1]), (rosenbrock, [-1.2, 1.0])]:
        ours, oracle = native.module.hessian(fn, point), reference.module.hessian(fn, point)
        for row, want in zip(ours, oracle, strict=True):
            for got, w in zip(row, want, strict=True):
                assert_same(got, w)
        v = [0.5, -3.0]
        for got, w in zip(
            native.module.hvp(fn, point, v), reference.module.hvp(fn, point, v), strict=True
        ):
            assert_same(got, w)


# ----------------------------------------------------------------------------- every op
# f = op(inputs) for each op of the table, differentiated to the third order: every partial
# derivative of every order, as torch.autograd.grad(..., materialize_grads=True) lists them.

UNARY_POINTS = [-2.5, -1.0, -0.3, 0.2, 0.7, 1.0, 3.0]
UNARY_EDGES = [0.0, -0.0, 1e-300, INF, -INF, NAN]
BINARY_POINTS = [(0.7, 1.3), (2.0, -0.5), (-1.5, 3.0), (0.25, 0.25), (-0.8, -1.7)]
BINARY_EDGES = [
    (0.0, 0.0), (0.0, 2.0), (0.0, -1.0), (2.0, 0.0), (-0.0, 3.0), (INF, 1.0), (NAN, 0.0),
]  # fmt: skip


def op_function(name, arity):
    """(f(engine, inputs) -> Value, number of inputs) for op `name`."""
    if arity == 1:
        return (lambda engine, xs: UNARY[name].build(xs[0])), 1
    if arity == 2:
        return (lambda engine, xs: BINARY[name].build(xs[0], xs[1])), 2
    if name == "linear":  # b + w0 x0 + w1 x1 with inputs in every position
        return (lambda engine, xs: engine.linear(xs[0], [xs[1], xs[0]], [xs[0], xs[1]])), 2
    case = NARY[name]
    return (lambda engine, xs: case.build(engine, [xs[0], xs[1], xs[0]])), 2


def points_for(arity, edges):
    if arity == 1:
        return [(x,) for x in (UNARY_EDGES if edges else UNARY_POINTS)]
    return BINARY_EDGES if edges else BINARY_POINTS


def derivatives(engine, fn, point, order=3):
    """f's value, then every partial derivative of orders 1..order (a flat list)."""
    xs = [engine.Value(x) for x in point]
    out = fn(engine, xs)
    values, frontier = [out.data], [out]
    for _ in range(order):
        frontier = [
            g
            for f in frontier
            for g in engine.module.grad(f, xs, create_graph=True, allow_unused=True)
        ]
        values += [g.data for g in frontier]
    return values


# The user-defined ops' derivative graphs (constants, or a refusal) are tested in
# test_user_ops_grad.py.
OP_CASES = [
    (name, arity) for name, _, arity in OP_TABLE if name not in ("local_grads", "py_backward")
]


@needs_native
@pytest.mark.parametrize(("name", "arity"), OP_CASES, ids=[name for name, _ in OP_CASES])
@pytest.mark.parametrize("edges", [False, True], ids=["points", "edges"])
def test_every_op_to_the_third_order_matches_the_oracle(native, reference, name, arity, edges):
    fn, _ = op_function(name, arity)
    for point in points_for(arity, edges):
        ours, oracle = derivatives(native, fn, point), derivatives(reference, fn, point)
        for k, (got, want) in enumerate(zip(ours, oracle, strict=True)):
            assert same(got, want), f"{name}{point} derivative #{k}: {got!r} != {want!r}"


@pytest.mark.parametrize(("name", "arity"), OP_CASES, ids=[name for name, _ in OP_CASES])
def test_every_op_graph_holds_the_float_gradients(engine, name, arity):
    # The derivative graph's values are the sweep's numbers: first order against grad()
    # without create_graph, second order against backward() through the first-order Values.
    fn, n = op_function(name, arity)
    for point in points_for(arity, False) + points_for(arity, True):
        xs = [engine.Value(x) for x in point]
        out = fn(engine, xs)
        numbers = engine.module.grad(out, xs, allow_unused=True)
        values = engine.module.grad(out, xs, create_graph=True, allow_unused=True)
        for k in range(n):
            assert equal_values(values[k].data, numbers[k]), (name, point, k)
            for x in xs:
                x.grad = 0.0
            values[k].backward()
            second = engine.module.grad(values[k], xs, allow_unused=True)
            for j in range(n):
                assert equal_values(second[j], xs[j].grad), (name, point, k, j)


# ----------------------------------------------------------------------------- torch


def torch_or_skip():
    return pytest.importorskip("torch")


def torch_engine(torch):
    """The tests' builders, run on float64 tensors (the ops without a method mapped to
    PyTorch's: step is a comparison, hence constant; sign; where)."""

    def linear(b, ws, xs):
        acc = b
        for w, x in zip(ws, xs, strict=True):
            acc = acc + w * x
        return acc

    def total(vs):
        acc = 0.0
        for v in vs:
            acc = acc + v
        return acc

    from types import SimpleNamespace

    return SimpleNamespace(
        linear=linear,
        sum=total,
        step=lambda t: (t > 0).to(torch.float64),
        take=lambda vs, i: torch.stack(list(vs))[i.long()],
        max=lambda vs: torch.stack(list(vs)).max(dim=0).values,  # the first largest
        unary={
            "step": lambda t: (t > 0).to(torch.float64),
            "sign": torch.sign,
            "mask": lambda t: torch.where(t != 0, t, torch.zeros_like(t)),
            "detach": lambda t: t.detach(),
        },
    )


def torch_function(torch, name, arity):
    engine = torch_engine(torch)
    if name in engine.unary:
        return lambda xs: engine.unary[name](xs[0])
    fn, _ = op_function(name, arity)
    return lambda xs: fn(engine, xs)


def torch_derivatives(torch, fn, point, order=3):
    xs = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in point]
    out = fn(xs)
    values, frontier = [out.item()], [out]
    for _ in range(order):
        grads = []
        for f in frontier:
            if f.requires_grad:
                grads += torch.autograd.grad(
                    f, xs, create_graph=True, allow_unused=True, materialize_grads=True
                )
            else:  # a constant: zero derivatives
                grads += [torch.zeros((), dtype=torch.float64) for _ in xs]
        frontier = grads
        values += [g.item() for g in frontier]
    return values


def close_to_torch(got, want):
    """torch decomposes some derivatives differently (its div backward is g / b, ours
    (1 / b) * g), so the last bits may differ: 1e-12 relative, or 1e-12 absolute near 0."""
    if math.isnan(got) or math.isnan(want) or math.isinf(got) or math.isinf(want):
        return same(got, want)
    return math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize(("name", "arity"), OP_CASES, ids=[name for name, _ in OP_CASES])
def test_every_op_to_the_third_order_matches_torch(engine, name, arity):
    torch = torch_or_skip()
    fn, _ = op_function(name, arity)
    tfn = torch_function(torch, name, arity)
    for point in points_for(arity, False):
        want = torch_derivatives(torch, tfn, point)
        got = derivatives(engine, fn, point)
        for k, (g, w) in enumerate(zip(got, want, strict=True)):
            assert close_to_torch(g, w), f"{name}{point} derivative #{k}: {g!r}, torch {w!r}"


# The edge cases docs/semantics.md lists: (what, f, point, derivatives of orders 1..3).
EDGE_CASES = [
    ("relu at 0", lambda xs: xs[0].relu(), [0.0], [[0.0], [0.0], [0.0]]),
    ("abs at 0", lambda xs: xs[0].abs(), [0.0], [[0.0], [0.0], [0.0]]),
    ("log at 0", lambda xs: xs[0].log(), [0.0], [[INF], [-INF], [INF]]),
    ("sqrt at 0", lambda xs: xs[0].sqrt(), [0.0], [[INF], [-INF], [INF]]),
    ("1 / x at 0", lambda xs: 1.0 / xs[0], [0.0], [[-INF], [INF], [-INF]]),
    ("x ** 0 at 0", lambda xs: xs[0] ** 0, [0.0], [[0.0], [0.0], [0.0]]),
    ("x ** 2 at 0", lambda xs: xs[0] ** 2, [0.0], [[0.0], [2.0], [0.0]]),
    ("x ** 3 at 0", lambda xs: xs[0] ** 3, [0.0], [[0.0], [0.0], [6.0]]),
    ("0 ** y at 2", lambda xs: 0.0 ** xs[0], [2.0], [[0.0], [NAN], [NAN]]),
    ("0 ** y at -1", lambda xs: 0.0 ** xs[0], [-1.0], [[-INF], [INF], [-INF]]),
    ("x ** y at (2, 0)", lambda xs: xs[0] ** xs[1], [2.0, 0.0], None),
    ("x ** y at (0, 2)", lambda xs: xs[0] ** xs[1], [0.0, 2.0], None),
]


@pytest.mark.parametrize(("what", "f", "point", "want"), EDGE_CASES, ids=[c[0] for c in EDGE_CASES])
def test_edge_cases_follow_pytorch(engine, what, f, point, want):
    got = derivatives(engine, lambda engine, xs: f(xs), point)[1:]
    if want is not None:  # stated in docs/semantics.md
        flat = [x for order in want for x in order]
        assert all(identical(g, w) for g, w in zip(got, flat, strict=True)), (got, flat)
    try:
        import torch
    except ImportError:
        return
    theirs = torch_derivatives(torch, f, point)[1:]
    assert all(same(g, w) for g, w in zip(got, theirs, strict=True)), (got, theirs)


def test_x_to_the_y_at_y_0_is_constant_in_x(engine):
    # PyTorch's choice: d/dx x ** y is 0 where y == 0, even at x == 0 (0 * 0 ** -1 = nan)
    got = derivatives(engine, lambda engine, xs: xs[0] ** xs[1], [0.0, 0.0], order=1)
    assert got[1] == 0.0
    got = derivatives(engine, lambda engine, xs: xs[0] ** 0, [0.0], order=3)
    assert got[1:] == [0.0, 0.0, 0.0]


# ----------------------------------------------------------------------------- bench


def test_the_benchmark_script_runs(capsys, monkeypatch):
    # bench/higher_order.py, small sizes: its tables have every row (no timing is checked)
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "higher_order.py"
    if not script.is_file():
        pytest.skip("bench/ is not beside tests/")
    pytest.importorskip("arenagrad")
    monkeypatch.syspath_prepend(str(script.parent))  # as `python bench/higher_order.py` has it
    spec = importlib.util.spec_from_file_location("bench_higher_order", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--quick"])
    out = capsys.readouterr().out
    assert "| grad(root, [w, b]) |" in out and "| backward() |" in out
    assert "| extended Rosenbrock | 50 |" in out and "| demo loss" in out
