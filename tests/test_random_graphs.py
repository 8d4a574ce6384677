"""Random expression DAGs: both engines against an independent evaluator, and each other.

A recipe is a list of leaves and a list of steps; each step makes one node from earlier
nodes (so subexpressions are shared and nodes reused, sometimes twice by the same op) or
from constants on either side. The same recipe is built with each engine, and evaluated by
`evaluate` below straight from the op table (_support.UNARY_RULES etc.), sweeping node
indices in reverse like the native arena does.
"""

import pytest
from _support import (
    BINARY_BUILD,
    BINARY_RULES,
    ENGINE_NAMES,
    INF,
    NAN,
    UNARY_BUILD,
    UNARY_RULES,
    assert_same,
    get_engine,
    needs_native,
    pow_const_rule,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

OPS = [*BINARY_BUILD, *UNARY_BUILD, "**k", "sum", "linear"]

# Mostly moderate numbers, so most results stay finite; a few specials for the rest.
SPECIALS = [0.0, -0.0, 1.0, -1.0, 2.0, 0.5, 1e-300, 1e300, INF, -INF, NAN]
moderate = st.floats(-3.0, 3.0)
leaf_values = st.one_of(moderate, moderate, moderate, st.sampled_from(SPECIALS))
constants = st.one_of(st.sampled_from([0.0, 1.0, -1.0, 2.0, 0.5, 3.0, -0.5, 2, -3]), moderate)
exponents = st.sampled_from([0, 1, 2, 3, -1, -2, 0.5, -0.5, 1.5, 1 / 3, 2.0])


@st.composite
def recipes(draw, max_steps=30):
    leaves = draw(st.lists(leaf_values, min_size=1, max_size=4))
    n = len(leaves)
    steps = []
    for _ in range(draw(st.integers(1, max_steps))):
        # Prefer the newest node half of the time: deep chains as well as wide DAGs.
        node = st.one_of(st.just(n - 1), st.integers(0, n - 1)).map(lambda i: ("n", i))
        op = draw(st.sampled_from(OPS))
        if op in BINARY_BUILD:
            # Value ** number is the '**k' op, so '**' only has a Value exponent.
            sides = ["vv", "cv"] if op == "**" else ["vv", "vc", "cv"]
            side = draw(st.sampled_from(sides))
            a = ("c", draw(constants)) if side == "cv" else draw(node)
            b = ("c", draw(constants)) if side == "vc" else draw(node)
            steps.append((op, (a, b)))
        elif op in UNARY_BUILD:
            steps.append((op, (draw(node),)))
        elif op == "**k":
            steps.append((op, (draw(node),), draw(exponents)))
        elif op == "sum":
            steps.append((op, tuple(draw(st.lists(node, min_size=0, max_size=4)))))
        else:  # linear: b, ws are nodes; xs nodes or constants
            k = draw(st.integers(0, 3))
            b = draw(node)
            ws = tuple(draw(node) for _ in range(k))
            xs = tuple(draw(st.one_of(node, constants.map(lambda c: ("c", c)))) for _ in range(k))
            steps.append((op, (b, ws, xs)))
        n += 1
    root = draw(st.one_of(st.just(n - 1), st.integers(0, n - 1)))
    passes = draw(st.sampled_from([1, 1, 2]))  # backward twice must accumulate
    return leaves, steps, root, passes


# ----------------------------------------------------------------------------- build


def build(engine, recipe):
    """The recipe's nodes as Values of `engine`."""
    leaves, steps, _, _ = recipe
    nodes = [engine.Value(x) for x in leaves]

    def arg(ref):
        kind, x = ref
        return nodes[x] if kind == "n" else x

    for op, args, *extra in steps:
        if op in BINARY_BUILD:
            out = BINARY_BUILD[op](arg(args[0]), arg(args[1]))
        elif op in UNARY_BUILD:
            out = UNARY_BUILD[op](arg(args[0]))
        elif op == "**k":
            out = arg(args[0]) ** extra[0]
        elif op == "sum":
            out = engine.sum([arg(r) for r in args])
        else:
            b, ws, xs = args
            out = engine.linear(arg(b), [arg(r) for r in ws], [arg(r) for r in xs])
        nodes.append(out)
    return nodes


def run_backward(nodes, recipe):
    _, _, root, passes = recipe
    for _ in range(passes):
        nodes[root].backward()


# ----------------------------------------------------------------------------- evaluate


def evaluate(recipe):
    """(data, grad) for each recipe node, computed from the op table.

    Constants get nodes of their own, created just before the node using them, as the
    engines do. The backward sweep walks node indices from the root down (a topological
    order, the native arena's), skipping nodes the root does not reach.
    """
    leaves, steps, root, passes = recipe
    data = list(leaves)
    operands = [[] for _ in leaves]  # per node, operand indices in order
    rules = [None for _ in leaves]  # per node, (kind, local-derivative rule)
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
        if op in BINARY_RULES:
            ids = [arg(args[0]), arg(args[1])]
            forward, deriv = BINARY_RULES[op]
            value = forward(data[ids[0]], data[ids[1]])
            rule = ("binary", deriv)
        elif op in UNARY_RULES or op == "**k":
            ids = [arg(args[0])]
            forward, deriv = pow_const_rule(extra[0]) if op == "**k" else UNARY_RULES[op]
            value = forward(data[ids[0]])
            rule = ("unary", deriv)
        elif op == "sum":
            ids = [arg(r) for r in args]
            value = 0.0
            for i in ids:
                value = value + data[i]
            rule = ("sum", None)
        else:
            b, ws, xs = args
            b_id, w_ids, x_ids = arg(b), [arg(r) for r in ws], [arg(r) for r in xs]
            ids = [b_id]
            value = data[b_id]
            for w, x in zip(w_ids, x_ids, strict=True):
                value = value + data[w] * data[x]
                ids += [w, x]  # gradients flow b, then w_0, x_0, w_1, x_1, ...
            rule = ("linear", None)
        data.append(value)
        operands.append(ids)
        rules.append(rule)
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
            kind, deriv = rules[i]
            g, ids = grad[i], operands[i]
            if kind == "binary":
                d_a, d_b = deriv(data[ids[0]], data[ids[1]], data[i])
                grad[ids[0]] += d_a * g
                grad[ids[1]] += d_b * g
            elif kind == "unary":
                grad[ids[0]] += deriv(data[ids[0]], data[i]) * g
            elif kind == "sum":
                for j in ids:
                    grad[j] += 1.0 * g
            else:  # linear: d_b = 1, d_w = x, d_x = w
                grad[ids[0]] += 1.0 * g
                for w, x in zip(ids[1::2], ids[2::2], strict=True):
                    grad[w] += data[x] * g
                    grad[x] += data[w] * g
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
