"""Random expression DAGs: both engines against an independent evaluator, and each other.

A recipe is a list of leaves and a list of steps; each step makes one node from earlier
nodes (so subexpressions are shared and nodes reused, sometimes twice by the same op) or
from constants on either side. The same recipe is built with each engine, and evaluated by
`evaluate` below straight from the op table (_support's UNARY, BINARY and NARY), sweeping node
indices in reverse like the native arena does. Recipes draw from every op of
arenagrad._core.op_table.
"""

import pytest
from _support import (
    BINARY,
    ENGINE_NAMES,
    INF,
    NAN,
    NARY,
    OP_TABLE,
    UNARY,
    assert_same,
    get_engine,
    needs_native,
    pow_const_rule,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

OPS = [name for name, _, _ in OP_TABLE]
# `Value ** k` makes pow_const_int for an int k, pow_const for any other number.
EXPONENTS = {"pow_const": [0.5, -0.5, 1.5, 1 / 3, 2.0], "pow_const_int": [0, 1, 2, 3, -1, -2]}

# Mostly moderate numbers, so most results stay finite; a few specials for the rest.
SPECIALS = [0.0, -0.0, 1.0, -1.0, 2.0, 0.5, 1e-300, 1e300, INF, -INF, NAN]
moderate = st.floats(-3.0, 3.0)
leaf_values = st.one_of(moderate, moderate, moderate, st.sampled_from(SPECIALS))
constants = st.one_of(st.sampled_from([0.0, 1.0, -1.0, 2.0, 0.5, 3.0, -0.5, 2, -3]), moderate)


@st.composite
def recipes(draw, max_steps=30, ops=OPS):
    leaves = draw(st.lists(leaf_values, min_size=1, max_size=4))
    n = len(leaves)
    steps = []
    for _ in range(draw(st.integers(1, max_steps))):
        # Prefer the newest node half of the time: deep chains as well as wide DAGs.
        node = st.one_of(st.just(n - 1), st.integers(0, n - 1)).map(lambda i: ("n", i))
        number = constants.map(lambda c: ("c", c))
        op = draw(st.sampled_from(ops))
        if op in BINARY:
            # Value ** number is pow_const, so pow only has a Value exponent.
            sides = ["vv", "cv"] if op == "pow" else ["vv", "vc", "cv"]
            side = draw(st.sampled_from(sides))
            a = draw(number) if side == "cv" else draw(node)
            b = draw(number) if side == "vc" else draw(node)
            steps.append((op, (a, b)))
        elif op in EXPONENTS:
            steps.append((op, (draw(node),), draw(st.sampled_from(EXPONENTS[op]))))
        elif op in UNARY:
            steps.append((op, (draw(node),)))
        else:
            case = NARY[op]
            count = case.min_operands + case.step * draw(st.integers(0, 3))
            operands = tuple(
                draw(st.one_of(node, number) if case.may_be_number(i) else node)
                for i in range(count)
            )
            steps.append((op, operands))
        n += 1
    root = draw(st.one_of(st.just(n - 1), st.integers(0, n - 1)))
    passes = draw(st.sampled_from([1, 1, 2]))  # backward twice must accumulate
    return leaves, steps, root, passes


# ----------------------------------------------------------------------------- build


def build(engine, recipe, unary=None):
    """The recipe's nodes as Values of `engine`; `unary` maps op names to functions that
    build them instead of the tables' (another library's forms of the helper ops)."""
    unary = unary or {}
    leaves, steps, _, _ = recipe
    nodes = [engine.Value(x) for x in leaves]

    def arg(ref):
        kind, x = ref
        return nodes[x] if kind == "n" else x

    for op, args, *extra in steps:
        if op in BINARY:
            out = BINARY[op].build(arg(args[0]), arg(args[1]))
        elif op in EXPONENTS:
            out = arg(args[0]) ** extra[0]
        elif op in unary:
            out = unary[op](arg(args[0]))
        elif op in UNARY:
            out = UNARY[op].build(arg(args[0]))
        else:
            out = NARY[op].build(engine, [arg(r) for r in args])
        nodes.append(out)
    return nodes


def run_backward(nodes, recipe):
    _, _, root, passes = recipe
    for _ in range(passes):
        nodes[root].backward()


# ----------------------------------------------------------------------------- evaluate


def local_rule(op, extra):
    """(forward, derivatives) of op over its operand values: forward(v) -> out,
    derivatives(v, out) -> one local derivative per operand."""
    if op in BINARY:
        case = BINARY[op]
        return (lambda v: case.forward(*v)), (lambda v, out: case.derivatives(*v, out))
    if op in EXPONENTS:
        forward, derivative = pow_const_rule(extra[0])
        return (lambda v: forward(v[0])), (lambda v, out: [derivative(v[0], out)])
    if op in UNARY:
        forward, derivative = UNARY[op].forward, UNARY[op].derivative
        return (lambda v: forward(v[0])), (lambda v, out: [derivative(v[0], out)])
    return NARY[op].forward, NARY[op].derivatives


def evaluate(recipe):
    """(data, grad) for each recipe node, computed from the op table.

    Constants get nodes of their own, created just before the node using them, as the
    engines do. The backward sweep walks node indices from the root down (a topological
    order, the native arena's), skipping nodes the root does not reach.
    """
    leaves, steps, root, passes = recipe
    data = list(leaves)
    operands = [[] for _ in leaves]  # per node, operand indices in order
    rules = [None for _ in leaves]  # per node, its local derivatives (None: a leaf)
    index = list(range(len(leaves)))  # recipe node -> evaluator node

    def arg(ref):
        kind, x = ref
        if kind == "n":
            return index[x]
        data.append(float(x))
        operands.append([])
        rules.append(None)
        return len(data) - 1

    for op, args, *extra in steps:
        ids = [arg(r) for r in args]
        forward, derivatives = local_rule(op, extra)
        data.append(forward([data[i] for i in ids]))
        operands.append(ids)
        rules.append(derivatives)
        index.append(len(data) - 1)

    top = index[root]
    reachable = {top}
    for i in range(top, -1, -1):
        if i in reachable:
            reachable.update(operands[i])

    grad = [0.0] * len(data)
    for _ in range(passes):
        grad[top] = 1.0
        for i in range(top, -1, -1):
            if i not in reachable or rules[i] is None:
                continue
            ids, g = operands[i], grad[i]
            for j, d in zip(ids, rules[i]([data[k] for k in ids], data[i]), strict=True):
                grad[j] += d * g
    return [data[i] for i in index], [grad[i] for i in index]


# ----------------------------------------------------------------------------- tests

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
@SETTINGS
@given(recipe=recipes())
def test_random_graph_matches_op_table(engine_name, recipe):
    check_against_op_table(get_engine(engine_name), recipe)


def check_against_op_table(engine, recipe):
    """Every node's data and grad on `engine` equal the op table's evaluation of the recipe."""
    nodes = build(engine, recipe)
    run_backward(nodes, recipe)
    want_data, want_grad = evaluate(recipe)
    for i, node in enumerate(nodes):
        assert_same(node.data, want_data[i], f"node {i} ({node._op!r}) data")
    for i, node in enumerate(nodes):
        assert_same(node.grad, want_grad[i], f"node {i} ({node._op!r}) grad")


@needs_native
@SETTINGS
@given(recipe=recipes())
def test_random_graph_native_matches_reference(recipe):
    native, reference = get_engine("native"), get_engine("reference")
    ours, oracle = build(native, recipe), build(reference, recipe)
    for i, (a, b) in enumerate(zip(ours, oracle, strict=True)):
        assert a._op == b._op, i
        assert len(a._prev) == len(b._prev), i
        assert_same(a.data, b.data, f"node {i} ({a._op!r}) data")
    run_backward(ours, recipe)
    run_backward(oracle, recipe)
    for i, (a, b) in enumerate(zip(ours, oracle, strict=True)):
        assert_same(a.grad, b.grad, f"node {i} ({a._op!r}) grad")


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
@settings(max_examples=25, deadline=None)
@given(recipe=recipes(max_steps=400))
def test_large_random_graph_matches_op_table(engine_name, recipe):
    check_against_op_table(get_engine(engine_name), recipe)
