"""Python code that runs inside a native call must not corrupt the arena.

A number's `__float__`, a garbage-collector callback or a finaliser can run arbitrary Python
in the middle of an op: build Values, drop them (truncating the arena), force a compaction,
or mutate the very list being read. Without the checks, each case below reads freed memory,
a wrong node, or a list item that is no longer there.
"""

import gc

import pytest
from _support import needs_native

pytestmark = needs_native


@pytest.fixture
def ag():
    import arenagrad

    return arenagrad


class Mutator:
    """A number whose conversion runs `action()` first."""

    def __init__(self, value, action):
        self.value = value
        self.action = action

    def __float__(self):
        self.action()
        return self.value


def test_sum_list_cleared_while_converting(ag):
    # The list is emptied while its items are read: reading on would run past its end.
    items = [ag.Value(1.0), None, ag.Value(3.0)]
    items[1] = Mutator(2.0, items.clear)
    with pytest.raises(RuntimeError, match="changed"):
        ag.sum(items)


def test_sum_value_replaced_while_converting(ag):
    # An item checked as a Value is replaced: its memory must not be read as a node id.
    items = [ag.Value(1.0), None]

    def replace():
        items[0] = "not a Value"

    items[1] = Mutator(2.0, replace)
    with pytest.raises(RuntimeError, match="changed"):
        ag.sum(items)


def test_linear_weights_mutated_while_converting_inputs(ag):
    ws = [ag.Value(0.5), ag.Value(0.25)]

    def clobber():
        ws[1] = 7

    with pytest.raises(RuntimeError, match="changed"):
        ag.linear(1.0, ws, [2.0, Mutator(4.0, clobber)])


def test_sum_with_harmless_conversions_still_works(ag):
    # The check must not reject a list that merely contains number-likes.
    built = []
    items = [ag.Value(1.0), Mutator(2.0, lambda: built.append(ag.Value(9.0) * 2)), 3]
    out = ag.sum(items)
    assert out.data == 6.0
    out.backward()
    assert items[0].grad == 1.0


def test_conversion_that_compacts_keeps_operands(ag):
    # The converted number's __float__ builds garbage and forces a compaction, which
    # renumbers the other operand; the op must read its id afterwards.
    from arenagrad import _core

    keep = ag.Value(3.0)
    junk = [ag.Value(float(i)) for i in range(50)]
    a = ag.Value(2.0)
    del junk

    def churn():
        t = [ag.Value(1.0) + 1 for _ in range(10)]
        del t
        _core.compact()

    out = a * Mutator(5.0, churn)
    assert out.data == 10.0
    out.backward()
    assert a.grad == 5.0
    assert keep.data == 3.0


def test_subclass_allocation_running_gc(ag):
    # A subclass instance is allocated by tp_alloc, which may run the garbage collector and
    # with it Python code that builds and drops Values. A leaf pushed before that would be
    # unowned and truncated away, and the new Value would point at a node the next Value
    # reuses.
    class Sub(ag.Value):
        pass

    def churn(phase, info):
        if phase == "start":
            x = ag.Value(5.0)
            del x

    threshold = gc.get_threshold()
    gc.callbacks.append(churn)
    gc.set_threshold(1)  # a collection every other allocation
    try:
        made = [Sub(float(i)) for i in range(200)]
    finally:
        gc.callbacks.remove(churn)
        gc.set_threshold(*threshold)
    later = [ag.Value(-1.0) for _ in range(200)]
    assert [s.data for s in made] == [float(i) for i in range(200)]
    assert all(v.data == -1.0 for v in later)
    stats = ag.arena_stats()
    assert stats["live_values"] <= stats["nodes"]


@pytest.mark.parametrize("state", [1, None, "x", [1.0, "a"]])
def test_setstate_with_a_non_tuple_raises_type_error(ag, state):
    # PyArg_ParseTuple given a non-tuple raises SystemError ("new style getargs format but
    # argument is not a tuple"); the state must be checked first (found by fuzz/fuzz_api.py).
    with pytest.raises(TypeError, match="tuple"):
        ag.Value(1.0).__setstate__(state)
