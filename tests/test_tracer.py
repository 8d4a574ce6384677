"""A tracer that never lies: while compile() traces, a number read out of a Value that the
inputs or the parameters flow into raises (it would be frozen into the tape), and take()
checks its index lane by lane instead of at the placeholders' value."""

import copy
import math

import numpy as np
import pytest
from _support import needs_native

pytestmark = needs_native


@pytest.fixture
def arenagrad():
    import arenagrad

    return arenagrad


def test_reading_data_of_a_traced_value_raises_with_the_fix(arenagrad):
    w = arenagrad.Value(2.0)

    def reads_data(x):
        y = x * w
        return arenagrad.Value(y.data)  # the old silent bug: every lane gets 0.0

    with pytest.raises(RuntimeError, match=r"\.data of a Value computed from the inputs") as caught:
        arenagrad.compile(reads_data, n_inputs=1)
    message = str(caught.value)
    for fix in ("arenagrad.take", "arenagrad.max", "relu", "detach"):
        assert fix in message


@pytest.mark.parametrize(
    "read",
    [
        lambda x, w: x.data,  # an input itself
        lambda x, w: (x + 1.0).data,
        lambda x, w: (w * 2.0).data,  # parameters change between replays: a lie as well
        lambda x, w: arenagrad_sum_of(x, w).data,
    ],
)
def test_every_value_the_inputs_or_parameters_flow_into_is_refused(arenagrad, read):
    w = arenagrad.Value(3.0)
    with pytest.raises(RuntimeError, match="while tracing"):
        arenagrad.compile(lambda x: x * read(x, w), n_inputs=1)


def arenagrad_sum_of(x, w):
    import arenagrad

    return arenagrad.sum([arenagrad.Value(1.0), x * 0.0, w])


def test_parameters_and_constants_stay_readable(arenagrad):
    w = arenagrad.Value(3.0)
    seen = []

    def fn(x):
        c = arenagrad.Value(0.5) * 4.0  # constants only: the same in every lane and replay
        seen.extend([w.data, c.data, arenagrad.Value(7.0).data])
        return x * w * c

    f = arenagrad.compile(fn, n_inputs=1)
    assert seen == [3.0, 2.0, 7.0]
    assert list(f.forward(np.array([[1.0], [2.0]]))) == [6.0, 12.0]


def test_reads_are_allowed_again_after_the_trace(arenagrad):
    w = arenagrad.Value(3.0)
    with pytest.raises(RuntimeError):
        arenagrad.compile(lambda x: arenagrad.Value((x * w).data), n_inputs=1)
    y = w * 2.0
    assert y.data == 6.0  # the failed trace closed its trace
    f = arenagrad.compile(lambda x: x * w, n_inputs=1)
    assert (w * 5.0).data == 15.0
    assert list(f.forward(np.array([[2.0]]))) == [6.0]


def test_compile_inside_a_trace_is_refused(arenagrad):
    def outer(x):
        arenagrad.compile(lambda y: y * 2.0, n_inputs=1)
        return x

    with pytest.raises(RuntimeError, match="while tracing another function"):
        arenagrad.compile(outer, n_inputs=1)


def test_a_traced_index_is_checked_per_lane_not_at_the_placeholder(arenagrad):
    values = [arenagrad.Value(float(10 * k)) for k in range(4)]
    # at the placeholder (0.0) this index is -1: eagerly an IndexError, but lanes are valid
    f = arenagrad.compile(lambda i: arenagrad.take(values, i - 1.0), n_inputs=1)
    assert list(f.forward(np.array([[1.0], [4.0]]))) == [0.0, 30.0]
    with pytest.raises(ValueError, match="lane 1"):
        f.forward(np.array([[1.0], [0.0]]))


# ----------------------------------------------------------------------------- the Value API


@pytest.mark.parametrize(
    ("read", "what"),
    [
        (lambda y: float(y), r"float\(\)"),
        (lambda y: y.item(), r"item\(\)"),
        (lambda y: bool(y), r"bool\(\)"),
        (lambda y: y < 1.0, "comparison"),
        (lambda y: y >= 1.0, "comparison"),
        (lambda y: max([y, y * 2.0]), "comparison"),  # builtins.max compares
        (lambda y: sorted([y, y + 1.0]), "comparison"),
        (lambda y: copy.deepcopy(y), "copy"),
        (lambda y: math.exp(y), r"float\(\)"),
    ],
)
def test_numbers_out_of_traced_values_are_refused(arenagrad, read, what):
    w = arenagrad.Value(2.0)

    def fn(x):
        read(x * w)
        return x

    with pytest.raises(RuntimeError, match=what):
        arenagrad.compile(fn, n_inputs=1)
    assert bool(w * 2.0) and float(w * 2.0) == 4.0 and (w < 3.0) is True  # eagerly: fine


def test_detach_in_a_trace_is_a_per_lane_node_with_no_gradient(arenagrad):
    w = arenagrad.Value(3.0)

    def fn(x):
        y = x * w
        return y * y.detach()  # d/dx = w * y (the detached factor gets no gradient)

    f = arenagrad.compile(fn, n_inputs=1)
    X = np.array([[1.0], [2.0], [-0.5]])
    Y = f.forward(X)
    w.grad = 0.0
    G = f.backward()
    assert list(Y) == [9.0, 36.0, 2.25]  # per lane, not the placeholder's 0 frozen
    assert list(G[:, 0]) == [9.0, 18.0, -4.5]
    assert w.grad == 1.0 * 3.0 + 2.0 * 6.0 + (-0.5) * (-1.5)
    # and eagerly detach() is a leaf, as in PyTorch
    y = w * 2.0
    d = y.detach()
    assert d._op == "" and d._prev == set() and d.data == 6.0


def test_detach_of_a_parameter_follows_its_updates(arenagrad):
    w = arenagrad.Value(3.0)
    f = arenagrad.compile(lambda x: x * w.detach(), n_inputs=1)
    assert list(f.forward(np.array([[2.0]]))) == [6.0]
    w.data = 5.0
    assert list(f.forward(np.array([[2.0]]))) == [10.0]
    f.backward()
    assert w.grad == 0.0


def test_no_grad_and_tracing_do_not_mix(arenagrad):

    def fn(x):
        with arenagrad.no_grad():
            return x * 2.0

    with pytest.raises(RuntimeError, match="no_grad"):
        arenagrad.compile(fn, n_inputs=1)
    with arenagrad.no_grad(), pytest.raises(RuntimeError, match="no_grad"):
        arenagrad.compile(lambda x: x * 2.0, n_inputs=1)
    assert arenagrad.is_grad_enabled()
    f = arenagrad.compile(lambda x: x * 2.0, n_inputs=1)  # the failed traces closed theirs
    assert list(f.forward(np.array([[1.5]]))) == [3.0]


def test_another_thread_is_not_tracing(arenagrad):
    # while fn is traced, a thread that reads numbers out of its own Values is not refused
    import threading

    w = arenagrad.Value(2.0)
    seen = []

    def other():
        y = w * 3.0
        seen.append((y.data, float(y), y > 1.0))

    def fn(x):
        worker = threading.Thread(target=other)
        worker.start()
        worker.join()
        return x * w

    f = arenagrad.compile(fn, n_inputs=1)
    assert seen == [(6.0, 6.0, True)]
    assert list(f.forward(np.array([[1.0]]))) == [2.0]
