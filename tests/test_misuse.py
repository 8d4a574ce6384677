"""Wrong inputs fail loudly and the same way in both engines; numpy numbers just work."""

import math
import operator
import re
from fractions import Fraction

import numpy as np
import pytest


class OnlyIndex:
    def __index__(self):
        return 7


class OnlyFloat:
    def __float__(self):
        return 2.5


@pytest.mark.parametrize(
    "bad", ["a", "1.5", b"1", None, [1], (1,), {}, object(), 1 + 2j, np.array([1.0, 2.0])]
)
def test_value_rejects_non_numbers(engine, bad):
    with pytest.raises(TypeError):
        engine.Value(bad)


def test_value_rejects_a_value(engine):
    with pytest.raises(TypeError):
        engine.Value(engine.Value(1.0))


def test_value_error_message_names_the_type(engine):
    with pytest.raises(TypeError) as info:
        engine.Value("a")
    assert "str" in str(info.value)


@pytest.mark.parametrize(
    ("number", "want"),
    [
        (True, 1.0),
        (3, 3.0),
        (Fraction(1, 4), 0.25),
        (OnlyIndex(), 7.0),
        (OnlyFloat(), 2.5),
        (np.float32(0.5), 0.5),
        (np.int8(-3), -3.0),
        (np.uint64(2**40), 2.0**40),
        (np.bool_(True), 1.0),
        (np.float64("nan"), math.nan),
    ],
)
def test_value_accepts_real_numbers(engine, number, want):
    v = engine.Value(number)
    assert type(v.data) is float
    assert v.data == want or (math.isnan(want) and math.isnan(v.data))
    w = engine.Value(1.0) + number  # and the same numbers work as operands
    assert w.data == 1.0 + want or (math.isnan(want) and math.isnan(w.data))


@pytest.mark.parametrize(
    "expr",
    [
        lambda V: V(1) + "a",
        lambda V: "a" + V(1),
        lambda V: "a" * V(1),
        lambda V: V(1) * "a",
        lambda V: V(1) + None,
        lambda V: None - V(1),
        lambda V: V(1) / [],
        lambda V: [1] * V(2),
        lambda V: V(1) ** "a",
        lambda V: "a" ** V(1),
        lambda V: V(2) ** None,
        lambda V: V(1) + 1j,
        lambda V: -V(1) * object(),
    ],
)
def test_ops_with_non_numbers_raise_type_error(engine, expr):
    with pytest.raises(TypeError):
        expr(engine.Value)


def test_pow_with_modulo_raises_type_error(engine):
    with pytest.raises(TypeError):
        pow(engine.Value(2), 2, 3)
    with pytest.raises(TypeError):
        pow(engine.Value(2), engine.Value(2), 3)


@pytest.mark.parametrize("bad", [3, None, b"x", 1.5, ["a"]])
def test_label_must_be_str(engine, bad):
    with pytest.raises(TypeError):
        engine.Value(1.0, label=bad)
    v = engine.Value(1.0, label="ok")
    with pytest.raises(TypeError):
        v.label = bad
    assert v.label == "ok"


@pytest.mark.parametrize("bad", ["1.0", None, [1.0]])
def test_data_and_grad_setters_reject_non_numbers(engine, bad):
    v = engine.Value(1.0)
    with pytest.raises(TypeError):
        v.data = bad
    with pytest.raises(TypeError):
        v.grad = bad
    assert (v.data, v.grad) == (1.0, 0.0)


def _both_numbers(message, a, b):
    return re.search(rf"\b{a}\b", message) and re.search(rf"\b{b}\b", message)


def test_neuron_and_mlp_wrong_input_count(engine):
    with pytest.raises(ValueError) as info:
        engine.Neuron(3)([1.0, 2.0])
    assert _both_numbers(str(info.value), 3, 2), info.value
    with pytest.raises(ValueError) as info:
        engine.MLP(5, [4, 1])([1.0, 2.0, 3.0])
    assert _both_numbers(str(info.value), 5, 3), info.value


def test_linear_length_mismatch(engine):
    V = engine.Value
    with pytest.raises(ValueError) as info:
        engine.linear(V(0.0), [V(1.0), V(2.0), V(3.0)], [1.0, 2.0])
    assert _both_numbers(str(info.value), 3, 2), info.value
    with pytest.raises(ValueError) as info:
        engine.linear(V(0.0), [], [1.0])
    assert _both_numbers(str(info.value), 0, 1), info.value


def test_linear_and_sum_reject_non_numbers(engine):
    V = engine.Value
    with pytest.raises(TypeError):
        engine.linear(V(0.0), [V(1.0)], ["a"])
    with pytest.raises(TypeError):
        engine.sum([V(1.0), "a"])
    with pytest.raises(TypeError):
        engine.sum([V(1.0), None])


def test_linear_and_sum_read_every_kind_of_sequence_alike(engine):
    # Lists and tuples of plain Values and floats are read in place, anything else (other
    # iterables, Value subclasses, other numbers) is copied first: the results must not differ.
    class Sub(engine.Value):
        pass

    def build(kind):
        w, v = engine.Value(0.5), (Sub if kind == "subclass" else engine.Value)(-2.0)
        three = np.float64(3.0) if kind == "numpy" else 3.0
        ws, xs, vs = [w, v, w], [v, three, 1.25], [v, three, w]
        if kind == "generator":
            ws, xs, vs = iter(ws), (x for x in xs), iter(vs)
        elif kind == "tuple":
            ws, xs, vs = tuple(ws), tuple(xs), tuple(vs)
        out = engine.linear(v, ws, xs) * engine.sum(vs)
        out.backward()
        return out.data, w.grad, v.grad

    want = build("list")
    for kind in ("tuple", "generator", "subclass", "numpy"):
        assert build(kind) == want, kind


@pytest.mark.parametrize("op", [operator.lt, operator.le, operator.gt, operator.ge])
def test_ordering_comparisons_compare_data_with_numbers_only(engine, op):
    # < <= > >= compare .data (tests/test_value_api.py); anything but a number still raises.
    assert op(engine.Value(1), engine.Value(2)) is op(1.0, 2.0)
    for other in ("2", None, [2.0], complex(2, 0)):
        with pytest.raises(TypeError):
            op(engine.Value(1), other)


def test_values_are_hashable_by_identity(engine):
    V = engine.Value
    a, b = V(1.0), V(1.0)
    assert a == a and a != b  # equal data, different nodes
    assert (a == 1.0) is False  # no numeric equality either
    assert len({a, b, a}) == 2
    assert hash(a) == hash(a)
    lookup = {a: "a", b: "b"}
    assert lookup[a] == "a" and lookup[b] == "b"
    c = a * 2
    assert c in {c} and a not in {c}


def test_numpy_scalars_on_either_side(engine):
    V = engine.Value
    v = V(3.0)
    cases = [
        (np.float64(2) * v, 6.0),
        (v * np.float64(2), 6.0),
        (v + np.int64(3), 6.0),
        (np.int64(3) + v, 6.0),
        (np.int64(3) - v, 0.0),
        (np.float32(1.5) / v, 0.5),
        (v / np.int32(2), 1.5),
        (np.float64(2) ** v, 8.0),
        (v ** np.int64(2), 9.0),
        (-np.int64(1) * v, -3.0),
    ]
    for out, want in cases:
        assert isinstance(out, V), type(out)  # not a numpy scalar or 0-d object array
        assert out.data == want
    out = np.float64(2) * v
    out.backward()
    assert v.grad == 2.0


def test_numpy_array_is_not_silently_broadcast(engine):
    # A Value is not an array element: numpy defers to the Value, which refuses arrays.
    v = engine.Value(3.0)
    with pytest.raises(TypeError):
        np.array([1.0, 2.0]) * v
    with pytest.raises(TypeError):
        v + np.array([1.0, 2.0])
