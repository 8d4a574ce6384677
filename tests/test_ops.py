"""Every op of docs/semantics.md, forward and every operand's gradient, for both engines.

Expected values are computed here from the op table with C's libm (through ctypes), not
from the oracle, so these tests check the oracle too. Both engines must match them.
"""

import builtins
import itertools
import math
import random
import struct

import numpy as np
import pytest
from _support import (
    BINARY,
    INF,
    NAN,
    NARY,
    UNARY,
    assert_same,
    c_div,
    c_exp,
    c_log,
    c_pow,
    c_sqrt,
    needs_native,
    op_names,
    pow_const_rule,
)


def exact(x, y):
    """Bit-level equality for the results we can predict exactly: nan matches nan, and
    the sign of zero matters."""
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return x == y and math.copysign(1.0, x) == math.copysign(1.0, y)


class Mismatches:
    """Collects every mismatch of a table-driven test, so one failure shows them all."""

    def __init__(self):
        self.lines = []

    def same(self, what, got, want):
        if not _same(got, want):
            self.lines.append(f"{what}: got {got!r}, want {want!r}")

    def true(self, what, ok):
        if not ok:
            self.lines.append(what)

    def check(self):
        assert not self.lines, f"{len(self.lines)} mismatches:\n" + "\n".join(self.lines[:60])


def _same(x, y):
    try:
        assert_same(x, y)
    except AssertionError:
        return False
    return True


# ----------------------------------------------------------------------------- unary ops
# Every op of arenagrad._core.op_table, with its builder and formulas from _support's tables.

# Other ways to make an op's node, tested like the op itself.
UNARY_ALIASES = {"builtin abs": ("abs", builtins.abs)}

UNARY_GRID = [
    0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 1e-300, -1e-300, 5e-324, 1e300, -1e300,
    20.0, -20.0, 36.0, -36.0, 709.0, 710.0, -745.0, -746.0, 1000.0, -1000.0, INF, -INF, NAN,
]  # fmt: skip

# Upstream gradients: 1 (backward from the op itself) and others through `out * G`, since
# the rule is `x.grad += d * out.grad` (d = 0 with out.grad = inf must give nan).
UPSTREAM = [1.0, -2.5, INF]


def _backward_with_upstream(engine, out, g):
    """Run backward so that out.grad == g, and return the root."""
    if g == 1.0:
        out.backward()
        return out
    root = out * engine.Value(g)
    root.backward()
    return root


@pytest.mark.parametrize("name", [*op_names(1), *UNARY_ALIASES])
def test_unary_op(engine, name):
    op_name, alias = UNARY_ALIASES.get(name, (name, None))
    case = UNARY[op_name]
    build = alias or case.build
    m = Mismatches()
    for x, g in itertools.product(UNARY_GRID, UPSTREAM):
        a = engine.Value(x)
        out = build(a)
        want = case.forward(x)
        m.same(f"{name}({x!r}).data", out.data, want)
        m.true(f"{name}({x!r})._op == {out._op!r}", out._op == case.op)
        m.true(f"{name}({x!r})._prev", out._prev == {a} and next(iter(out._prev)) is a)
        _backward_with_upstream(engine, out, g)
        m.same(f"{name}({x!r}) with out.grad={g}: a.grad", a.grad, case.derivative(x, want) * g)
        m.same(f"{name}({x!r}) with out.grad={g}: out.grad", out.grad, g)
    m.check()


# ----------------------------------------------------------------------------- binary ops

BINARY_GRID = [
    0.0, -0.0, 1.0, -1.0, 2.0, -8.0, 0.5, 1 / 3, 3.0, -2.5, 1e300, -1e-300, INF, -INF, NAN,
]  # fmt: skip


# `Value ** number` is the one-operand pow_const op, tested below.
BINARY_CASES = [
    (name, side)
    for name in op_names(2)
    for side in ("value-value", "value-number", "number-value")
    if (name, side) != ("pow", "value-number")
]


@pytest.mark.parametrize(("name", "side"), BINARY_CASES)
def test_binary_op(engine, name, side):
    case = BINARY[name]
    build = case.build
    V = engine.Value
    m = Mismatches()
    for x, y in itertools.product(BINARY_GRID, BINARY_GRID):
        what = f"{x!r} {name} {y!r} ({side})"
        if side == "value-value":
            a, b = V(x), V(y)
            out = build(a, b)
        elif side == "value-number":
            a = V(x)
            out = build(a, y)
            b = next((p for p in out._prev if p is not a), None)
        else:
            b = V(y)
            out = build(x, b)
            a = next((p for p in out._prev if p is not b), None)
        want = case.forward(x, y)
        m.same(f"{what}: data", out.data, want)
        m.true(f"{what}: _op {out._op!r}", out._op == case.op)
        m.true(f"{what}: _prev has {len(out._prev)} operands", len(out._prev) == 2)
        if a is None or b is None:
            m.true(f"{what}: the number is missing from _prev", False)
            continue
        # The number became a leaf of its own (micrograd does the same).
        for leaf, v in ((a, x), (b, y)):
            m.true(f"{what}: operand {v!r} is a leaf", leaf._op == "" and len(leaf._prev) == 0)
            m.true(f"{what}: operand {v!r} has data {leaf.data!r}", exact(leaf.data, v))
        m.true(f"{what}: _prev is {{a, b}}", out._prev == {a, b})
        out.backward()
        d_a, d_b = case.derivatives(x, y, want)
        m.same(f"{what}: a.grad", a.grad, d_a)
        m.same(f"{what}: b.grad", b.grad, d_b)
    m.check()


# ----------------------------------------------------------------------------- n-ary ops

# Small dyadic numbers, so sums of products are exact in any order (a Value used as several
# operands collects several contributions), plus the specials.
NARY_GRID = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 0.125, INF, -INF, NAN]


@pytest.mark.parametrize("name", op_names(None))
def test_nary_op(engine, name):
    case = NARY[name]
    rng = random.Random(name)
    m = Mismatches()
    for trial in range(300):
        n = case.min_operands + case.step * rng.randint(0, 4)
        pool = [engine.Value(rng.choice(NARY_GRID)) for _ in range(rng.randint(1, 4))]
        picks = [rng.randrange(len(pool)) for _ in range(n)]  # repeated operands on purpose
        operands = [pool[i] for i in picks]
        xs = [v.data for v in operands]
        what = f"{name}{tuple(xs)} (trial {trial})"
        out = case.build(engine, operands)
        want = case.forward(xs)
        m.same(f"{what}: data", out.data, want)
        m.true(f"{what}: _op {out._op!r}", out._op == case.op)
        prev = set(operands if case.children is None else case.children(out, operands))
        m.true(f"{what}: _prev", out._prev == prev)
        g = rng.choice(UPSTREAM)
        _backward_with_upstream(engine, out, g)
        expected = [0.0] * len(pool)
        for i, d in zip(picks, case.derivatives(xs, want), strict=True):
            expected[i] += d * g
        for k, v in enumerate(pool):
            m.same(f"{what} with out.grad={g}: grad of pool[{k}]", v.grad, expected[k])
    m.check()


# ----------------------------------------------------------------------------- '**k'

POW_BASES = [0.0, -0.0, 1.0, -1.0, 2.0, -8.0, 0.5, -0.5, 1e300, -1e-300, INF, -INF, NAN]
POW_EXPONENTS = [0, 1, 2, 3, -1, -2, -3, 0.0, -0.0, 0.5, -0.5, 1 / 3, 2.5, 1e16, INF, NAN]


def test_pow_number_exponent(engine):
    m = Mismatches()
    for x, k in itertools.product(POW_BASES, POW_EXPONENTS):
        a = engine.Value(x)
        out = a**k
        what = f"Value({x!r}) ** {k!r}"
        forward, deriv = pow_const_rule(k)
        want = forward(x)
        m.same(f"{what}: data", out.data, want)
        # The exponent appears as written: an int stays an int (micrograd's f"**{other}").
        m.true(f"{what}: _op {out._op!r}", out._op == f"**{k}")
        m.true(f"{what}: _prev", out._prev == {a})
        out.backward()
        m.same(f"{what}: a.grad", a.grad, deriv(x, want))
    m.check()


def test_pow_numpy_exponent(engine):
    a = engine.Value(3.0)
    for k in (np.float64(0.5), np.int64(2), np.float32(2.0)):
        out = a**k
        assert_same(out.data, c_pow(3.0, float(k)))
        a.grad = 0.0
        out.backward()
        assert_same(a.grad, float(k) * c_pow(3.0, float(k) - 1.0))


# ----------------------------------------------------------------------------- edge cases

# (description, build from the Value a, a's data, expected out.data, expected a.grad)
EDGE_CASES = [
    ("log(0)", lambda a: a.log(), 0.0, -INF, INF),
    ("log(-0.0)", lambda a: a.log(), -0.0, -INF, -INF),
    ("log(-1)", lambda a: a.log(), -1.0, NAN, -1.0),
    ("log(inf)", lambda a: a.log(), INF, INF, 0.0),
    ("exp(1000)", lambda a: a.exp(), 1000.0, INF, INF),
    ("exp(-1000)", lambda a: a.exp(), -1000.0, 0.0, 0.0),
    ("sqrt(0)", lambda a: a.sqrt(), 0.0, 0.0, INF),
    ("sqrt(-0.0)", lambda a: a.sqrt(), -0.0, -0.0, -INF),
    ("sqrt(-1)", lambda a: a.sqrt(), -1.0, NAN, NAN),
    ("0 ** -1", lambda a: a**-1, 0.0, INF, -INF),
    ("-0.0 ** -1", lambda a: a**-1, -0.0, -INF, -INF),
    ("-0.0 ** -2", lambda a: a**-2, -0.0, INF, INF),
    ("0 ** 0", lambda a: a**0, 0.0, 1.0, 0.0),  # a ** 0 is constant (PyTorch's choice)
    ("(-8) ** (1/3)", lambda a: a ** (1 / 3), -8.0, NAN, NAN),
    ("(-10) ** 401", lambda a: a**401, -10.0, -INF, INF),
    ("10 ** Value(400)", lambda a: 10.0**a, 400.0, INF, INF),
    ("0 ** Value(2)", lambda a: 0.0**a, 2.0, 0.0, 0.0),  # d_b = 0 where a == 0, b >= 0
    ("0 ** Value(0)", lambda a: 0.0**a, 0.0, 1.0, 0.0),
    ("0 ** Value(-1)", lambda a: 0.0**a, -1.0, INF, -INF),  # inf * log(0)
    ("(-8) ** Value(1/3)", lambda a: (-8.0) ** a, 1 / 3, NAN, NAN),
    ("1 / Value(0)", lambda a: 1.0 / a, 0.0, INF, -INF),
    ("-1 / Value(0)", lambda a: -1.0 / a, 0.0, -INF, INF),
    ("1 / Value(-0.0)", lambda a: 1.0 / a, -0.0, -INF, -INF),
    ("Value(0) / 0", lambda a: a / 0.0, 0.0, NAN, INF),
    ("Value(1) / -0.0", lambda a: a / -0.0, 1.0, -INF, -INF),
    ("Value(0) * inf", lambda a: a * INF, 0.0, NAN, INF),
    ("inf - Value(inf)", lambda a: INF - a, INF, NAN, -1.0),
    ("relu(-0.0)", lambda a: a.relu(), -0.0, -0.0, 0.0),
    ("relu(-1)", lambda a: a.relu(), -1.0, 0.0, 0.0),
    ("relu(nan)", lambda a: a.relu(), NAN, NAN, 0.0),
    ("relu(-1) * inf", lambda a: a.relu() * INF, -1.0, NAN, NAN),  # 0 * inf upstream
    ("relu(2) * inf", lambda a: a.relu() * INF, 2.0, INF, INF),
    ("sigmoid(1000)", lambda a: a.sigmoid(), 1000.0, 1.0, 0.0),
    ("sigmoid(-1000)", lambda a: a.sigmoid(), -1000.0, 0.0, 0.0),
    ("sigmoid(0)", lambda a: a.sigmoid(), 0.0, 0.5, 0.25),
    ("sigmoid(nan)", lambda a: a.sigmoid(), NAN, NAN, NAN),
    ("tanh(inf)", lambda a: a.tanh(), INF, 1.0, 0.0),
    ("tanh(-0.0)", lambda a: a.tanh(), -0.0, -0.0, 1.0),
    ("abs(-0.0)", lambda a: a.abs(), -0.0, 0.0, 0.0),
    ("abs(-inf)", lambda a: abs(a), -INF, INF, -1.0),
    ("abs(nan)", lambda a: a.abs(), NAN, NAN, NAN),
    ("-Value(0.0)", lambda a: -a, 0.0, -0.0, -1.0),
    ("Value(0.0) - 0.0", lambda a: a - 0.0, 0.0, 0.0, 1.0),
    ("Value(-0.0) + -0.0", lambda a: a + -0.0, -0.0, -0.0, 1.0),
]


@pytest.mark.parametrize(
    ("build", "x", "want_data", "want_grad"),
    [pytest.param(*case[1:], id=case[0]) for case in EDGE_CASES],
)
def test_ieee_edge_case(engine, build, x, want_data, want_grad):
    a = engine.Value(x)
    out = build(a)
    assert exact(out.data, want_data), f"data {out.data!r}, want {want_data!r}"
    out.backward()
    assert exact(a.grad, want_grad), f"grad {a.grad!r}, want {want_grad!r}"


# ----------------------------------------------------------------------------- graph structure


def test_op_strings(engine):
    V, a, b = engine.Value, engine.Value(2.0), engine.Value(3.0)
    cases = {
        "": V(1.0),
        "+": [a + b, a + 1, 1 + a, a + 1.5],
        "-": [a - b, a - 1, 1 - a],
        "*": [a * b, a * 2, 2 * a],
        "/": [a / b, a / 2, 2 / a],
        "neg": [-a],
        "**2": [a**2],
        "**2.0": [a**2.0],
        "**-1": [a**-1],
        "**0.5": [a**0.5],
        "**0.3333333333333333": [a ** (1 / 3)],
        "**1e+16": [a**1e16],
        "**": [a**b, 2**a, 2.5**a],
        "ReLU": [a.relu()],
        "tanh": [a.tanh()],
        "exp": [a.exp()],
        "log": [a.log()],
        "sigmoid": [a.sigmoid()],
        "abs": [a.abs(), abs(a)],
        "sqrt": [a.sqrt()],
        "sum": [engine.sum([a, b]), engine.sum([])],
        "linear": [engine.linear(a, [b], [2.0]), engine.linear(a, [], [])],
    }
    for op, nodes in cases.items():
        for node in nodes if isinstance(nodes, list) else [nodes]:
            assert node._op == op, (node, node._op, op)


def test_pow_op_string_uses_the_exponent_as_given(engine):
    # micrograd's f"**{other}": the number the user wrote, formatted by Python; integer-like
    # exponents (int, numpy ints, bool) print as ints.
    a = engine.Value(2.0)
    for k in (3, -2, 2.0, 0.1, np.int64(3), np.float64(0.5)):
        assert (a**k)._op == f"**{k}", (k, (a**k)._op)
    assert (a**True)._op == "**1"


def test_prev_holds_the_users_objects(engine):
    V = engine.Value
    a, b, w = V(2.0), V(3.0), V(-1.0)
    assert len(a._prev) == 0
    c = a * b
    assert c._prev == {a, b}
    assert all(p is a or p is b for p in c._prev)
    assert (a * a)._prev == {a}
    assert (-a)._prev == {a}
    d = c + w
    assert d._prev == {c, w}
    assert any(p is c for p in d._prev)
    assert engine.sum([a, b, a])._prev == {a, b}
    assert engine.linear(w, [a], [b])._prev == {w, a, b}
    # Numbers become new leaves: three operands, one of them a fresh Value(2.0).
    lin = engine.linear(w, [a], [2.0])
    (leaf,) = [p for p in lin._prev if p is not w and p is not a]
    assert leaf.data == 2.0 and leaf._op == ""


def test_repr(engine):
    V = engine.Value
    assert repr(V(2)) == "Value(data=2.0, grad=0.0)"
    assert repr(V(-0.0)) == "Value(data=-0.0, grad=0.0)"
    assert repr(V(0.1)) == "Value(data=0.1, grad=0.0)"
    assert repr(V(1e16)) == "Value(data=1e+16, grad=0.0)"
    assert repr(V(INF)) == "Value(data=inf, grad=0.0)"
    assert repr(V(-INF)) == "Value(data=-inf, grad=0.0)"
    assert repr(V(NAN)) == "Value(data=nan, grad=0.0)"
    a, b = V(-4.0), V(2.0)
    c = a * b
    c.backward()
    assert repr(c) == "Value(data=-8.0, grad=1.0)"
    assert repr(a) == "Value(data=-4.0, grad=2.0)"
    assert str(a) == repr(a)


def test_repr_formats_floats_like_python(engine):
    # Python prints the shortest string that round-trips; the native repr must too.
    rng = random.Random(1234)
    values = [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(300)]
    values += [rng.uniform(-10, 10) for _ in range(100)] + [5e-324, 1.7976931348623157e308]
    values += [1e15, 1e16, 123456789012345680.0, 0.0001, 0.00001, 2.5e-7]
    for x in values:
        if math.isnan(x):
            continue  # nan payloads: covered above
        v = engine.Value(x)
        v.grad = -x
        assert repr(v) == f"Value(data={x!r}, grad={-x!r})"


def test_label(engine):
    V = engine.Value
    assert V(1.0).label == ""
    assert V(1.0, label="x").label == "x"
    a = V(1.0, label="a")
    a.label = "renamed"
    assert a.label == "renamed"
    c = a * 2
    assert c.label == ""
    c.label = "c"
    assert c.label == "c"
    assert a.label == "renamed"


def test_data_and_grad_are_floats(engine):
    V = engine.Value
    for x in (2, True, np.int64(7), np.float32(0.1), np.float64(1.5)):
        v = V(x)
        assert type(v.data) is float and v.data == float(x)
        assert type(v.grad) is float and v.grad == 0.0
    v = V(1.0)
    v.data = 3
    v.grad = 2
    assert type(v.data) is float and v.data == 3.0
    assert type(v.grad) is float and v.grad == 2.0
    v.data = np.float64(4.5)
    assert type(v.data) is float and v.data == 4.5
    c = v * 2
    assert type(c.data) is float and c.data == 9.0


def test_backward_reads_current_data(engine):
    # Local derivatives use the operands' .data at backward time, as in micrograd.
    a, b = engine.Value(2.0), engine.Value(3.0)
    c = a * b
    a.data = 10.0
    c.backward()
    assert c.data == 6.0  # forward value is not recomputed
    assert b.grad == 10.0
    assert a.grad == 3.0
    t = engine.Value(0.5).tanh()
    (x,) = t._prev
    t.data = 2.0  # d = 1 - out * out uses the node's current data
    t.backward()
    assert x.grad == -3.0


def test_backward_twice_accumulates_like_micrograd(engine):
    a, b = engine.Value(2.0), engine.Value(3.0)
    c = a * b
    d = c + a
    d.backward()
    assert (a.grad, b.grad, c.grad, d.grad) == (4.0, 2.0, 1.0, 1.0)
    d.backward()
    # The root is reset to 1; c keeps its 1 and adds 1 more, then passes 2 * b to a.
    assert (a.grad, b.grad, c.grad, d.grad) == (11.0, 6.0, 2.0, 1.0)


def test_backward_sets_root_and_accumulates_into_leaves(engine):
    a = engine.Value(2.0)
    a.grad = 5.0
    c = a * 3
    c.grad = 7.0
    c.backward()
    assert c.grad == 1.0
    assert a.grad == 8.0
    leaf = engine.Value(1.0)
    leaf.grad = 3.0
    leaf.backward()
    assert leaf.grad == 1.0


def test_unreachable_nodes_untouched(engine):
    V = engine.Value
    a, b = V(2.0), V(3.0)
    side = a * 5  # built before the root, shares the leaf a, but not an operand of root
    side.grad = 0.25
    c = a * b
    later = c * 2  # built after the root from it: above it, not reachable from it
    other = V(9.0)
    c.backward()
    assert (a.grad, b.grad, c.grad) == (3.0, 2.0, 1.0)
    assert side.grad == 0.25
    assert later.grad == 0.0
    assert other.grad == 0.0
    assert all(p.grad == 0.0 for p in side._prev if p is not a)
    assert all(p.grad == 0.0 for p in later._prev if p is not c)


def test_shared_subexpressions(engine):
    a = engine.Value(3.0)
    b = a * a  # a used twice by one node
    c = b + b  # b used twice by one node
    d = c * a  # and a again further up
    d.backward()
    assert d.data == 54.0
    assert b.grad == 2 * 3.0  # dc/db = 2, dd/dc = a
    assert a.grad == 18.0 + 6.0 * 2 * 3.0  # direct (c) + through b (2 * b.grad * a)


# ----------------------------------------------------------------------------- sum and linear


def test_sum(engine):
    V = engine.Value
    a, b = V(2.0), V(-5.0)
    s = engine.sum([a, b, a])
    assert s._op == "sum" and s.data == -1.0
    s.backward()
    assert a.grad == 2.0 and b.grad == 1.0  # every occurrence counts
    assert engine.sum(v for v in (a, b)).data == -3.0  # any iterable
    empty = engine.sum([])
    assert empty.data == 0.0 and len(empty._prev) == 0
    empty.backward()
    assert empty.grad == 1.0
    # acc = 0.0 + v: 0.0 + -0.0 is +0.0.
    assert exact(engine.sum([V(-0.0)]).data, 0.0)


def test_sum_adds_in_order(engine):
    xs = [1e16, 1.0, 1.0, -1e16, 3.5, 1e-300]
    acc = 0.0
    for x in xs:
        acc = acc + x
    assert acc == 3.5  # ((1e16 + 1) + 1) rounds back to 1e16; another order gives 5.5
    for perm in itertools.permutations(xs):
        want = 0.0
        for x in perm:
            want = want + x
        assert engine.sum([engine.Value(x) for x in perm]).data == want, perm


def test_sum_non_finite(engine):
    V = engine.Value
    assert engine.sum([V(INF), V(1.0)]).data == INF
    assert math.isnan(engine.sum([V(INF), V(-INF)]).data)
    s = engine.sum([V(NAN), V(1.0)])
    s.backward()
    assert all(p.grad == 1.0 for p in s._prev)


def test_linear(engine):
    V = engine.Value
    b, w1, w2, x1 = V(0.5), V(2.0), V(-3.0), V(4.0)
    out = engine.linear(b, [w1, w2], [x1, 1.5])
    assert out._op == "linear"
    assert out.data == (0.5 + 2.0 * 4.0) + -3.0 * 1.5
    assert len(out._prev) == 5
    out.backward()
    assert (b.grad, w1.grad, w2.grad, x1.grad) == (1.0, 4.0, 1.5, 2.0)
    (leaf,) = [p for p in out._prev if p not in {b, w1, w2, x1}]
    assert leaf.data == 1.5 and leaf.grad == -3.0
    # Generators are fine; the bias alone when there are no terms.
    assert engine.linear(b, iter([w1]), (x for x in [x1])).data == 0.5 + 8.0
    assert engine.linear(b, [], []).data == 0.5


def test_linear_repeated_operands(engine):
    V = engine.Value
    b, w, x = V(1.0), V(2.0), V(3.0)
    out = engine.linear(b, [w, w, x], [x, 5.0, w])
    assert out.data == ((1.0 + 2.0 * 3.0) + 2.0 * 5.0) + 3.0 * 2.0
    out.backward()
    assert w.grad == 3.0 + 5.0 + 3.0
    assert x.grad == 2.0 + 2.0
    assert b.grad == 1.0


def test_linear_matches_micrograd_neuron_bit_for_bit(engine):
    # The fused node must round exactly like micrograd's sum((w*x ...), b): no FMA, same order.
    V = engine.Value
    rng = random.Random(7)
    for _ in range(500):
        n = rng.randint(0, 12)
        bias = rng.uniform(-1, 1)
        ws = [rng.uniform(-1, 1) for _ in range(n)]
        xs = [rng.uniform(-3, 3) * 10 ** rng.randint(-5, 5) for _ in range(n)]
        micrograd = builtins.sum((V(w) * x for w, x in zip(ws, xs, strict=True)), V(bias))
        fused = engine.linear(V(bias), [V(w) for w in ws], xs)
        assert fused.data == micrograd.data, (bias, ws, xs)
        want = bias
        for w, x in zip(ws, xs, strict=True):
            want = want + w * x
        assert fused.data == want


# ----------------------------------------------------------------------------- native API


@needs_native
def test_native_public_api():
    import arenagrad
    import arenagrad.engine
    import arenagrad.nn

    assert arenagrad.engine.Value is arenagrad.Value
    assert arenagrad.sum is not builtins.sum
    assert builtins.sum([1, 2, 3]) == 6  # importing arenagrad does not touch builtins
    for name in ("Module", "Neuron", "Layer", "MLP"):
        assert hasattr(arenagrad.nn, name)
    stats = arenagrad.arena_stats()
    assert isinstance(stats, dict)
    assert isinstance(stats["nodes"], int) and isinstance(stats["live_values"], int)


# ----------------------------------------------------------------------------- oracle helpers


@pytest.mark.parametrize("fn", ["pow", "div", "exp", "log", "sqrt"])
def test_reference_ieee_helpers_match_c(reference, fn):
    ref = reference.module
    specials = [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 3.0, -3.0, 0.5, -0.5, 1 / 3, 1e-300, -1e-300]
    specials += [1e300, -1e300, 1e16, -1e16, 2.0**53 + 2, 1e308, 5e-324, INF, -INF, NAN]
    m = Mismatches()
    if fn in ("pow", "div"):
        ours, theirs = {"pow": (ref._pow, c_pow), "div": (ref._div, c_div)}[fn]
        for x, y in itertools.product(specials, specials):
            got, want = ours(x, y), theirs(x, y)
            m.true(f"{fn}({x!r}, {y!r}): {got!r} != {want!r}", exact(got, want))
    else:
        ours, theirs = getattr(ref, f"_{fn}"), {"exp": c_exp, "log": c_log, "sqrt": c_sqrt}[fn]
        for x in [*specials, 709.78, 709.79, -745.1, -746.0]:
            m.true(f"{fn}({x!r}): {ours(x)!r} != {theirs(x)!r}", exact(ours(x), theirs(x)))
    m.check()
