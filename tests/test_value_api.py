"""What a PyTorch or micrograd user reaches for on a Value, on both engines: item() and
float(), ordering comparisons, detach(), backward(gradient), no_grad(), the constructor's
forms, `_children`, and what a node keeps (label, subclass, attributes) once the handle the
user held is gone.
"""

from __future__ import annotations

import copy
import math
import operator
import pickle
import threading

import numpy as np
import pytest
from _support import BINARY, ENGINE_NAMES, NARY, UNARY, get_engine, needs_native

# ----------------------------------------------------------------------------- numbers out


def test_item_and_float_give_the_data(engine):
    v = engine.Value(2.5) * 2
    assert v.item() == 5.0 and type(v.item()) is float
    assert float(v) == 5.0 and type(float(v)) is float
    assert math.exp(engine.Value(0.0)) == 1.0  # math functions take it through __float__
    assert f"{float(v):.1f}" == "5.0"
    assert v._prev  # nothing about the graph changed


# ----------------------------------------------------------------------------- comparisons


@pytest.mark.parametrize("op", [operator.lt, operator.le, operator.gt, operator.ge])
def test_ordering_compares_the_data(engine, op):
    V = engine.Value
    for x, y in [(1.0, 2.0), (2.0, 2.0), (3.0, -1.0), (math.nan, 1.0), (-math.inf, 0.0)]:
        want = op(x, y)
        for left, right in [(V(x), V(y)), (V(x), y), (x, V(y)), (V(x), np.float64(y))]:
            got = op(left, right)
            assert got is want, (op, left, right)
    with pytest.raises(TypeError):
        op(V(1.0), "1")


def test_max_min_sorted_work_on_values(engine):
    V = engine.Value
    vs = [V(3.0), V(-1.0), V(2.0)]
    assert max(vs) is vs[0] and min(vs) is vs[1]
    assert [v.data for v in sorted(vs)] == [-1.0, 2.0, 3.0]
    assert max(vs, key=lambda v: -v.data) is vs[1]


def test_equality_stays_identity_and_values_hash_by_identity(engine):
    V = engine.Value
    a, b = V(1.0), V(1.0)
    assert a == a and a != b
    assert (a == 1.0) is False  # no numeric equality either
    assert len({a, b, a}) == 2 and {a: 1}[a] == 1


# ----------------------------------------------------------------------------- detach, backward


def test_detach_is_a_new_leaf_with_the_same_data(engine):
    V = engine.Value
    a = V(3.0)
    b = a * a
    d = b.detach()
    assert type(d) is V and d.data == 9.0 and d._op == "" and d._prev == set() and d is not b
    (d * 2 + b).backward()
    assert a.grad == 6.0 and d.grad == 2.0  # no gradient through the detached copy


def test_backward_seeds_the_root_with_gradient(engine):
    V = engine.Value
    a = V(3.0)
    b = a * a
    b.backward(gradient=0.5)
    assert b.grad == 0.5 and a.grad == 3.0
    b.backward(2)  # the root is set, not added to; the rest accumulates, as with 1.0
    assert b.grad == 2.0 and a.grad == 15.0
    b.backward()
    assert b.grad == 1.0 and a.grad == 21.0
    for bad in ("1", V(1.0), [1.0]):
        with pytest.raises(TypeError):
            b.backward(bad)


# ----------------------------------------------------------------------------- _backward, _children


OPERANDS = [1.25, -0.5, 2.0, 0.75, -1.5, 0.25]


def _built(engine):
    """(node, operands) for every op of the tests' tables."""
    V = engine.Value
    out = []
    for case in UNARY.values():
        a = V(OPERANDS[0])
        out.append((case.build(a), [a]))
    for case in BINARY.values():
        a, b = V(OPERANDS[0]), V(OPERANDS[2])
        out.append((case.build(a, b), [a, b]))
    for case in NARY.values():
        vs = [V(x) for x in OPERANDS[: case.min_operands + 2 * case.step]]
        node = case.build(engine, vs)
        out.append((node, vs if case.children is None else case.children(node, vs)))
    return out


def test_children_are_the_operands_in_order(engine):
    for node, operands in _built(engine):
        assert list(node._children) == operands, node._op
        assert node._prev == set(operands)
    assert engine.Value(1.0)._children == ()


def test_backward_of_one_node_applies_its_local_rule_once(engine):
    for node, operands in _built(engine):
        node.grad = -1.5
        node._backward()
        once = [v.grad for v in operands]
        for v in operands:
            v.grad = 0.0
        node.backward(gradient=-1.5)
        assert once == [v.grad for v in operands], node._op
        node.grad = 0.0
        node._backward()  # with a zero grad, nothing moves
        assert once == [v.grad for v in operands], node._op


# ----------------------------------------------------------------------------- no_grad


def test_no_grad_makes_every_op_a_leaf_with_the_same_value(engine):
    with_graph = [node.data for node, _ in _built(engine)]
    with engine.module.no_grad():
        leaves = _built(engine)
    assert [node.data for node, _ in leaves] == with_graph
    for node, operands in leaves:
        assert node._prev == set() and node._op == "" and node._children == ()
        node.backward()
        assert all(v.grad == 0.0 for v in operands)


def test_no_grad_nests_restores_on_errors_and_decorates(engine):
    module = engine.module
    V = engine.Value
    assert module.is_grad_enabled()
    with module.no_grad():
        with module.no_grad():
            assert (V(1.0) + 1)._op == ""
        assert not module.is_grad_enabled()
    assert module.is_grad_enabled()
    with pytest.raises(KeyError), module.no_grad():
        raise KeyError("inside")
    assert module.is_grad_enabled() and (V(1.0) + 1)._op == "+"

    @module.no_grad()
    def evaluate(x):
        assert not module.is_grad_enabled()
        return (x * x).tanh()

    assert evaluate(V(0.5))._prev == set()
    assert module.is_grad_enabled()


def test_no_grad_belongs_to_the_thread_that_entered_it(engine):
    module = engine.module
    V = engine.Value
    seen = {}

    def worker():
        seen["op"] = (V(1.0) * 2)._op
        with module.no_grad():
            seen["inside"] = (V(1.0) * 2)._op

    with module.no_grad():
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        assert (V(1.0) * 2)._op == ""
    assert seen == {"op": "*", "inside": ""}


def test_backward_still_works_inside_no_grad(engine):
    a = engine.Value(2.0)
    b = a * a
    with engine.module.no_grad():
        b.backward()
    assert a.grad == 4.0


@needs_native
def test_evaluation_under_no_grad_keeps_no_graph(native):
    import arenagrad
    from arenagrad.nn import MLP

    model = MLP(4, [16, 16, 1])
    arenagrad._core.compact()
    before = arenagrad.arena_stats()["nodes"]

    def evaluate():
        scores = [model([0.1 * i, 0.2, -0.3, 0.4]) for i in range(200)]
        return scores, arenagrad.sum(scores)

    with_graph, total = evaluate()
    arenagrad._core.compact()
    assert arenagrad.arena_stats()["nodes"] > before + 200 * 30  # each score keeps its graph
    del with_graph, total
    with arenagrad.no_grad():
        scores, total = evaluate()
    arenagrad._core.compact()  # drops the dead intermediate leaves now rather than later
    # 200 leaves for the scores and one for the total: nothing else stayed
    assert arenagrad.arena_stats()["nodes"] == before + 201
    assert total.data == sum(s.data for s in scores)


# ----------------------------------------------------------------------------- the constructor


def test_constructor_forms(engine):
    V = engine.Value
    a = V(1.0)
    assert V(2, label="x").label == "x"
    assert V(2.0, (a,), "f", "lab").label == "lab"
    assert V(2.0, _children=(a,), _op="f")._op == "f"
    assert V(2.0, [a], [3])._prev == {a}  # lists do for both children and local_grads
    assert V(2.0, (a,), local_grads=(3.0,))._op == ""
    assert V(2.0, (), ())._prev == set()
    with pytest.raises(TypeError, match="label="):
        V(2.0, "x")  # the second argument is _children now, as in micrograd
    with pytest.raises(TypeError, match="_children"):
        V(2.0, 5)
    with pytest.raises(TypeError, match="child"):
        V(2.0, (1.0,), "f")
    with pytest.raises(ValueError, match="local_grads"):
        V(2.0, (a, a), (1.0,))
    with pytest.raises(TypeError, match="local_grads"):
        V(2.0, (a,), ("1",))
    with pytest.raises(TypeError, match="local_grads"):
        V(2.0, (a,), (V(1.0),))
    with pytest.raises(TypeError, match="_op"):
        V(2.0, (a,), (1.0,), local_grads=(1.0,))


# ----------------------------------------------------------------------------- never a number


@needs_native
def test_a_value_is_never_taken_for_a_number():
    # float(v) works now, but no conversion inside arenagrad may use it: a Value given where a
    # number belongs would silently lose its graph.
    import arenagrad
    from arenagrad import _core, reference
    from arenagrad.optim import SGD

    v = arenagrad.Value(2.0)
    with pytest.raises(TypeError):
        arenagrad.Value(v)
    with pytest.raises(TypeError):
        v.data = arenagrad.Value(1.0)
    with pytest.raises(TypeError):
        arenagrad.Value(1.0) + reference.Value(2.0)  # another engine's Value
    with pytest.raises(TypeError):
        reference.Value(v)
    with pytest.raises(TypeError):
        reference.Value(1.0) * v
    with pytest.raises(TypeError):
        _core.set_data([v], [arenagrad.Value(3.0)])
    with pytest.raises(TypeError):
        v.__setstate__((arenagrad.Value(1.0), ""))
    with pytest.raises(TypeError):
        SGD([v], lr=arenagrad.Value(0.1))
    f = arenagrad.compile(lambda x: x * v, n_inputs=1)
    with pytest.raises(TypeError, match="not Values"):
        f.forward([[arenagrad.Value(1.0)]])
    f.forward([[1.0]])
    with pytest.raises(TypeError, match="not Values"):
        f.backward([arenagrad.Value(1.0)])
    with pytest.raises(TypeError):
        f.sgd_step(arenagrad.Value(0.1))


# ----------------------------------------------------------------------------- kept with the node


def test_label_subclass_and_attributes_outlive_the_handle(engine):
    V = engine.Value

    class Sub(V):
        pass

    a = Sub(2.0, label="a")
    a.note = "kept"
    out = a * V(3.0, label="three")
    del a
    assert {v.label for v in out._prev} == {"a", "three"}  # micrograd's way to reach them
    assert {type(v) for v in out._prev} == {Sub, V}
    (first, second) = out._children
    assert type(first) is Sub and first.label == "a" and first.note == "kept"
    assert second.label == "three"
    first.more = 1
    del first, second
    (first, _) = out._children
    assert first.more == 1  # one dict, shared by every handle of the node


@needs_native
def test_what_a_node_keeps_survives_compaction_and_reaches_the_drawing():
    import arenagrad
    from arenagrad.viz import draw_dot

    V = arenagrad.Value

    class Sub(V):
        pass

    def build():
        x = Sub(1.5, label="x")
        x.role = "input"
        junk = [V(float(i)) * 2 for i in range(500)]  # dead nodes under the next ones
        y = x.tanh()
        y.label = "y"
        del junk
        return y * 2

    out = build()
    arenagrad._core.compact()
    (y, _) = out._children
    (x,) = y._children
    assert (y.label, x.label, x.role, type(x)) == ("y", "x", "input", Sub)
    dot = draw_dot(out)
    assert "{ x | data 1.5000" in dot and "{ y | data" in dot


def test_copies_and_pickles_keep_label_and_grad(engine):
    v = engine.Value(2.0, label="v")
    v.grad = 0.5
    for clone in (copy.copy(v), copy.deepcopy(v), pickle.loads(pickle.dumps(v))):
        assert (clone.data, clone.grad, clone.label) == (2.0, 0.5, "v")


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_labels_can_be_cleared_and_set_on_old_nodes(engine_name):
    V = get_engine(engine_name).Value
    vs = [V(float(i)) for i in range(50)]
    for v in reversed(vs):  # labels set newest first: inserted in order under the others
        v.label = f"v{v.data:g}"
    assert [v.label for v in vs] == [f"v{i}" for i in range(50)]
    vs[3].label = ""
    assert vs[3].label == "" and vs[4].label == "v4"
    with pytest.raises(TypeError):
        vs[0].label = 3


@needs_native
def test_a_node_made_while_dropped_extras_are_released_is_not_given_theirs():
    import arenagrad

    V = arenagrad.Value

    class Sub(V):
        pass

    made = []
    held = []

    class Finaliser:
        def __del__(self):
            held.clear()  # drops the labelled node now on top of the arena...
            made.append(V(7.0))  # ...and this node takes its id

    base = V(0.0)
    held.append(V(5.0, label="old"))
    top = Sub(2.0)
    top.finaliser = Finaliser()  # lives in the node's extras, released when the node is
    del top
    assert made and made[0].data == 7.0
    assert made[0].label == "" and type(made[0]) is V
    assert base.data == 0.0
