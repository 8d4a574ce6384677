"""The op table (cpp/ops.hpp) as Python sees it: arenagrad._core.op_table.

Every op in it must have an oracle twin (reference.OPS) and a derivative-graph twin
(reference.DERIVATIVE_GRAPHS), a builder and formulas in the tests' tables (_support.UNARY,
BINARY, NARY, which test_ops.py and test_random_graphs.py use) and lines in docs/semantics.md.
And every op, through whatever path the native engine takes for it, must compute what the
table's generic path computes: the eager sweep's fast paths against _core._backward_generic,
and compile()'s replay against eager evaluation, bit for bit.
"""

import math
import random
import struct

import numpy as np
import pytest
from _support import BINARY, NARY, OP_TABLE, REPO, UNARY, load_reference

arenagrad = pytest.importorskip("arenagrad")
from arenagrad import _core  # noqa: E402

TESTS_TABLE = {1: UNARY, 2: BINARY, None: NARY}
NAMES = [name for name, _, _ in OP_TABLE]


def identical(x, y):
    """Bit for bit, except that any nan matches any nan."""
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return struct.pack("<d", x) == struct.pack("<d", y)


# ----------------------------------------------------------------------------- coverage


def test_op_table_rows():
    assert isinstance(_core.op_table, tuple) and len(_core.op_table) > 0
    for row in _core.op_table:
        assert isinstance(row, tuple) and len(row) == 3, row
        name, op, arity = row
        assert isinstance(name, str) and name.isidentifier(), row
        assert isinstance(op, str) and op, row  # leaves ('') are not ops
        assert arity in (1, 2, None), row
    assert len(set(NAMES)) == len(NAMES), "names must be unique"


def test_every_op_has_an_oracle_twin():
    twins = load_reference().OPS
    for name, op, arity in OP_TABLE:
        assert name in twins, f"reference.OPS has no twin for {name!r}"
        assert (twins[name].op, twins[name].arity) == (op, arity), name
    assert set(twins) == set(NAMES), "reference.OPS has twins of ops the native table lacks"


def test_every_op_is_in_the_tests_tables():
    for name, op, arity in OP_TABLE:
        table = TESTS_TABLE[arity]
        assert name in table, f"_support has no builder/formulas for {name!r} (arity {arity})"
        # '**k' nodes append their exponent to the table's '**'
        assert table[name].op == op or (op == "**" and table[name].op.startswith(op)), name
    listed = {name for table in TESTS_TABLE.values() for name in table}
    assert listed == set(NAMES), "_support lists ops the native table lacks"


def test_every_op_has_a_line_in_semantics_md():
    doc = REPO / "docs" / "semantics.md"
    if not doc.exists():
        pytest.skip("run from outside a source checkout: no docs/")
    rows = [line for line in doc.read_text().splitlines() if line.startswith("| `")]
    for name in NAMES:
        assert any(line.startswith(f"| `{name}` |") for line in rows), (
            f"docs/semantics.md has no table row for {name!r}"
        )


def test_every_op_has_a_derivative_graph_twin_and_row():
    # The native rules' grad_* functions are required by the compiler; the oracle's twins
    # and the documentation are checked here.
    twins = load_reference().DERIVATIVE_GRAPHS
    assert set(twins) == set(NAMES), "reference.DERIVATIVE_GRAPHS does not match the op table"
    doc = REPO / "docs" / "semantics.md"
    if not doc.exists():
        pytest.skip("run from outside a source checkout: no docs/")
    text = doc.read_text()
    section = text[text.index("## Derivative graphs") :]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    for name in NAMES:
        assert any(line.startswith(f"| `{name}` |") for line in rows), (
            f"docs/semantics.md's derivative-graph table has no row for {name!r}"
        )


# ----------------------------------------------------------------------------- fast paths

GRID = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 1e-300, 1e300, math.inf, -math.inf, math.nan]


def graph(name, arity, values, picks, up):
    """Op `name` over Values made from `values` (operand k is Value picks[k]), times `up`.
    Returns the root and every Value of the graph."""
    pool = [arenagrad.Value(v) for v in values]
    operands = [pool[i] for i in picks]
    if arity == 1:
        out = UNARY[name].build(*operands)
    elif arity == 2:
        out = BINARY[name].build(*operands)
    else:
        out = NARY[name].build(arenagrad, operands)
    return out * up, [*pool, out]


@pytest.mark.parametrize(("name", "arity"), [(name, arity) for name, _, arity in OP_TABLE])
def test_fast_paths_match_the_generic_table_path(name, arity):
    # backward() takes hand-picked fast paths for the commonest ops; _backward_generic reaches
    # every node through the op table's switch. Both must give the same bits, for every op.
    rng = random.Random(name)
    for _ in range(60):
        if arity is None:
            count = NARY[name].min_operands + NARY[name].step * rng.randint(0, 3)
        else:
            count = arity
        values = [rng.choice(GRID) for _ in range(3)]
        picks = [rng.randrange(3) for _ in range(count)]  # operands repeat now and then
        up = rng.choice([1.0, -2.0, math.inf])
        fast_root, fast = graph(name, arity, values, picks, up)
        generic_root, generic = graph(name, arity, values, picks, up)
        fast_root.backward()
        _core._backward_generic(generic_root)
        for i, (a, b) in enumerate(zip(fast, generic, strict=True)):
            assert identical(a.grad, b.grad), (name, values, picks, up, i, a.grad, b.grad)


def test_backward_generic_takes_a_value():
    with pytest.raises(TypeError, match="takes a Value"):
        _core._backward_generic(1.0)


# ----------------------------------------------------------------------------- replay

POSITIVE = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]
ANY = [-2.0, -1.0, -0.5, -0.0, 0.0, 0.25, 0.5, 1.0, 2.5]


def patterns(name, arity):
    """Functions (xs, ps) -> a list of nodes of op `name`, on lane inputs (xs) and parameters
    (ps) in every combination the replay treats differently."""
    if arity == 1:
        build = UNARY[name].build
        return lambda xs, ps: [build(xs[0]), build(ps[0])]
    if arity == 2:
        build = BINARY[name].build
        return lambda xs, ps: [build(xs[0], xs[1]), build(xs[0], ps[0]), build(ps[1], xs[1])]
    case = NARY[name]
    # operand i drawn from lanes and parameters in turn: shared/lane mixes in every term
    order = [0, 2, 1, 3, 0, 1, 3, 2, 1, 0, 2, 3]
    count = case.min_operands + case.step * 4

    def build(xs, ps):
        pool = [xs[0], xs[1], ps[0], ps[1]]
        return [case.build(arenagrad, [pool[order[i % len(order)]] for i in range(count)])]

    return build


@pytest.mark.parametrize("batch", [70, 1])  # full and partial tiles of 64 lanes; one lane
@pytest.mark.parametrize("grid", ["positive", "any"])
@pytest.mark.parametrize(("name", "arity"), [(name, arity) for name, _, arity in OP_TABLE])
def test_replay_matches_eager(name, arity, grid, batch):
    rng = np.random.default_rng(len(name))
    X = rng.choice(POSITIVE if grid == "positive" else ANY, size=(batch, 2))
    params = [0.75, 1.5]
    build = patterns(name, arity)
    ps = [arenagrad.Value(p) for p in params]
    if arity is None and not NARY[name].replayable:
        # a user-defined op: its builder computes its numbers from .data, which the tracer
        # refuses (test_user_ops.py has the refusal by name)
        with pytest.raises(RuntimeError, match="read while tracing"):
            arenagrad.compile(lambda *xs: build(xs, ps), n_inputs=2)
        return
    f = arenagrad.compile(lambda *xs: build(xs, ps), n_inputs=2)
    Y = f.forward(X)
    G = f.backward()
    replay_param_grads = [p.grad for p in ps]

    lane_param_grads = []
    for lane, row in enumerate(X):
        qs = [arenagrad.Value(p) for p in params]
        xs = [arenagrad.Value(float(v)) for v in row]
        outs = build(xs, qs)
        arenagrad.sum(outs).backward()  # each output's grad is 1, as with the replay's seed
        for j, out in enumerate(outs):
            assert identical(out.data, Y[lane, j]), (name, lane, j, out.data, Y[lane, j])
        for i, x in enumerate(xs):
            assert identical(x.grad, G[lane, i]), (name, lane, i, x.grad, G[lane, i])
        lane_param_grads.append([q.grad for q in qs])
    # Shared gradients are summed over lanes in another order: equal up to rounding.
    for i, got in enumerate(replay_param_grads):
        want = scale = 0.0
        for lane_grads in lane_param_grads:
            want += lane_grads[i]
            scale += abs(lane_grads[i])
        if math.isfinite(want):
            assert abs(got - want) <= 1e-12 * scale, (name, i, got, want)
        else:
            assert identical(got, want), (name, i, got, want)
