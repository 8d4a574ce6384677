"""The native core under hostile use, in one process: handles that are dying or never built,
the compiled function's parameter list, memory with wide n-ary nodes, numbers that are not
real, and the messages of the module functions.

The tests that need processes of their own (interpreter exit, fork, sub-interpreters) are in
test_hardening_processes.py.
"""

import gc
import math
import weakref

import numpy as np
import pytest
from _support import needs_native

pytestmark = needs_native


@pytest.fixture
def ag():
    import arenagrad

    return arenagrad


@pytest.fixture
def core():
    from arenagrad import _core

    return _core


# ---- a Value subclass instance being deallocated ------------------------------------------
#
# CPython runs a subclass instance's weakref callbacks and clears its __dict__ (finalisers)
# after its reference count reached 0 but before the Value type's own dealloc releases the
# node. Code running then may ask another node for `_prev`, which must not hand the dying
# object out again (it would be freed with a live reference to it).


def _dying_subclass_instance(ag, arm):
    """A Sub leaf `a` (1.5), `b = a * 2.0`, and `arm(a, b)` setting up the callback; drops
    `a` and returns b and what the callback saw."""

    class Sub(ag.Value):
        pass

    a = Sub(1.5)
    b = a * 2.0
    seen = []
    arm(a, b, seen)
    del a
    gc.collect()
    return b, seen


def _look_at_prev(b, seen):
    operands = b._prev  # holds the fresh handles while they are read
    seen.append(sorted((v.data, type(v).__name__) for v in operands))


def test_a_finaliser_in_the_dead_instances_dict_runs_when_its_node_dies(ag):
    # A subclass instance's attributes stay with its node (the next handle of the node has
    # them), so a finaliser among them runs when the node is dropped, not when the instance
    # dies; it may then look at the graph like any Python code.
    class Probe:
        def __init__(self, other, seen):
            self.other, self.seen = other, seen

        def __del__(self):
            _look_at_prev(self.other, self.seen)

    other = ag.Value(3.0) * 4.0  # under the instance's nodes, alive throughout
    seen = []

    def arm(a, b, _):
        a.probe = Probe(other, seen)

    b, _ = _dying_subclass_instance(ag, arm)
    assert seen == []
    (leaf,) = [v for v in b._prev if v.data == 1.5]
    assert type(leaf).__name__ == "Sub" and isinstance(leaf.probe, Probe)
    b.backward()
    assert leaf.grad == 2.0
    del leaf, b  # the top nodes die: the leaf's node, and its attributes, with them
    assert seen == [[(3.0, "Value"), (4.0, "Value")]]


def test_prev_from_a_weakref_finalize_callback(ag):
    def arm(a, b, seen):
        weakref.finalize(a, _look_at_prev, b, seen)

    b, seen = _dying_subclass_instance(ag, arm)
    # A new handle for the dying instance's node: of its subclass (kept with the node).
    assert seen == [[(1.5, "Sub"), (2.0, "Value")]]
    assert sorted(v.data for v in b._prev) == [1.5, 2.0]


def test_handle_taken_from_a_dying_instance_stays_usable(ag):
    kept = []

    def arm(a, b, seen):
        weakref.finalize(a, lambda: kept.extend(v for v in b._prev if v.data == 1.5))

    before = ag.arena_stats()["live_values"]
    b, _ = _dying_subclass_instance(ag, arm)
    (leaf,) = kept
    assert leaf in b._prev  # the same handle: identity holds from then on
    b.backward()
    assert leaf.grad == 2.0
    leaf.data = 4.0
    assert (leaf * b).data == 4.0 * 3.0
    # One handle per node: b and the leaf, and nothing left of the dead instance.
    assert ag.arena_stats()["live_values"] == before + 2
    del kept[:], leaf
    assert ag.arena_stats()["live_values"] == before + 1


# ---- a Value subclass that cannot be built --------------------------------------------------


def test_subclass_that_cannot_be_built_is_never_seen(ag, core):
    # A half-built instance dropped after a failed push would run its __del__ on a handle
    # without a node: `.data` there read far out of bounds.
    dels = []

    class Sub(ag.Value):
        def __del__(self):
            dels.append(self.data)

    keep = ag.Value(0.0)  # the limit must be >= 1
    core.compact()
    before = ag.arena_stats()
    saved = core._set_node_limit(before["nodes"])
    try:
        for _ in range(3):
            with pytest.raises(MemoryError, match="too large"):
                Sub(1.0)
    finally:
        core._set_node_limit(saved)
    assert dels == []
    assert ag.arena_stats()["nodes"] == before["nodes"]
    assert ag.arena_stats()["live_values"] == before["live_values"]
    s = Sub(2.0)
    assert (s * 3).data == 6.0
    del s
    assert dels == [2.0]
    assert keep.data == 0.0


def test_subclass_allocation_running_gc_that_compacts(ag, core):
    # The new instance's leaf is pushed before the instance is allocated (tp_alloc may run
    # the garbage collector): it must survive a compaction that runs meanwhile, and the
    # instance must get its renumbered id.
    class Sub(ag.Value):
        pass

    buried = []

    def churn(phase, info):
        if phase == "start":
            buried.append(ag.Value(7.0))
            junk = [ag.Value(float(i)) for i in range(50)]
            buried.append(ag.Value(8.0))
            del junk
            core.compact()

    threshold = gc.get_threshold()
    gc.callbacks.append(churn)
    gc.set_threshold(1)
    try:
        made = [Sub(float(i)) for i in range(100)]
    finally:
        gc.callbacks.remove(churn)
        gc.set_threshold(*threshold)
    assert buried, "the garbage collector never ran during an allocation"
    assert [s.data for s in made] == [float(i) for i in range(100)]
    total = ag.sum(made)
    total.backward()
    assert total.data == sum(range(100)) and all(s.grad == 1.0 for s in made)
    assert all(v.data in (7.0, 8.0) for v in buried)


# ---- the compiled function's parameters -----------------------------------------------------


def test_parameter_lists_handed_out_are_copies(ag):
    w = [ag.Value(0.5), ag.Value(-0.25)]
    f = ag.compile(lambda x: w[0] * x + w[1], n_inputs=1)
    def same(params):
        return len(params) == len(w) and all(p is q for p, q in zip(params, w, strict=True))

    for params in (f.parameters, f._replay.externals):
        assert same(params)
        params.clear()
        params.append(ag.Value(9.0))
    assert same(f.parameters) and same(f._replay.externals)
    Y = f.forward(np.ones((3, 1)))
    np.testing.assert_array_equal(Y, [0.25, 0.25, 0.25])
    f.backward()
    assert [p.grad for p in w] == [3.0, 3.0]
    f.sgd_step(0.5)
    assert [p.data for p in w] == [0.5 - 1.5, -0.25 - 1.5]
    f.zero_grad()
    assert [p.grad for p in w] == [0.0, 0.0]


# ---- memory with wide n-ary nodes ----------------------------------------------------------


def test_side_table_of_wide_nodes_stays_flat(ag, core):
    # A 20k-input neuron over inputs converted to Values once, with the last loss kept (for
    # logging): each step leaves a dead `linear` with 40k operands under the kept loss.
    # Compaction must count them, not only the nodes (a few per step).
    n, steps = 20_000, 150
    w = [ag.Value(0.001 * (i % 7)) for i in range(n)]
    x = [ag.Value(1.0) for _ in range(n)]
    b = ag.Value(0.0)
    core.compact()
    start = ag.arena_stats()
    loss = None
    peak_operands = peak_bytes = 0
    for _ in range(steps):
        loss = (ag.linear(b, w, x) - 1.0) ** 2
        loss.backward()
        stats = ag.arena_stats()
        peak_operands = max(peak_operands, stats["nary_operands"])
        peak_bytes = max(peak_bytes, stats["bytes_reserved"])
    # Without counting the side table: 150 * 40k operands = 6M (24 MB), growing every step.
    assert peak_operands <= 6 * (2 * n + 1), peak_operands
    assert peak_bytes <= 8 * 2**20, peak_bytes
    assert ag.arena_stats()["compactions"] > start["compactions"]
    out = 0.0
    for wi in w:
        out = out + wi.data * 1.0
    assert loss.data == (out - 1.0) ** 2


def test_compaction_gives_memory_back(ag, core):
    # A wide node's operands buried under a live Value: once compaction drops them, their
    # memory is returned (not only reused).
    keep = ag.Value(1.0)
    xs = [ag.Value(float(i)) for i in range(200_000)]
    total = ag.sum(xs)
    top = ag.Value(2.0)  # keeps `total`'s node from being truncated when it dies
    del total, xs
    grown = ag.arena_stats()["bytes_reserved"]
    core.compact()
    after = ag.arena_stats()
    assert after["nary_operands"] < 1000
    assert after["bytes_reserved"] < grown / 4, (after["bytes_reserved"], grown)
    assert keep.data == 1.0 and top.data == 2.0


def chain(ag, w, length):
    """A graph of `length` + 1 nodes over w, and its value."""
    out = w * 1.0
    for _ in range(length // 2):
        out = out + w
    return out


def test_a_loop_that_drops_its_graph_keeps_its_memory(ag, core):
    # A training step whose graph dies at the end of the step (truncated, nothing kept):
    # the arena's memory must stay reserved for the next step. Giving it back at each step's
    # end meant taking it again from the system, a page fault per 4 kB of nodes, every step.
    w = ag.Value(0.5)
    core.compact()
    reserved_after_step = []
    for _ in range(6):
        out = chain(ag, w, 100_000)
        out.backward()
        del out
        reserved_after_step.append(ag.arena_stats()["bytes_reserved"])
    assert reserved_after_step[0] >= 100_000 * 8 * 2, reserved_after_step  # data and grad
    assert reserved_after_step[1:] == reserved_after_step[:-1], reserved_after_step


def test_a_large_graph_s_memory_goes_back_once_unused(ag, core):
    # A one-off large graph, then small steps: its memory goes back by itself once the
    # arena has dropped as many nodes again without needing it (here within ~2x that).
    w = ag.Value(0.5)
    core.compact()
    big = chain(ag, w, 200_000)
    del big
    grown = ag.arena_stats()["bytes_reserved"]
    assert grown >= 200_000 * 8 * 2
    small_steps = 0
    while ag.arena_stats()["bytes_reserved"] >= grown / 4:
        small = chain(ag, w, 1_000)
        del small
        small_steps += 1
        assert small_steps <= 2 * 3 * 200_000 // 1_000, ag.arena_stats()
    assert w.data == 0.5


@pytest.mark.parametrize("user_ops", [False, True], ids=["labels", "labels-and-user-ops"])
def test_compaction_keeps_extras_past_runs_of_dead_nodes(ag, core, user_ops):
    # Compaction jumps over a run of dead nodes at once when no micrograd-style user op is
    # left to count (and looks at each when one is): a node with extras (a label, a user
    # op's _op) inside the run must still be dropped, and the extras of the nodes kept above
    # it still moved with them.
    def op(name, child, data):
        return ag.Value(data, (child,), name) if user_ops else child * 1.0

    core.compact()
    first = ag.Value(1.0, label="first")
    a = ag.Value(2.0)
    b = a * 3
    b.label = "dead"
    dead = op("tanh", b, 6.0)
    dead.label = "also dead"
    c = dead + b
    kept = first * 4
    kept.label = "kept"
    top = op("relu", kept, 4.0)
    top.label = "top"
    del a, b, dead, c  # buried under `kept` and `top`
    before = ag.arena_stats()["nodes"]
    core.compact()
    # a, b and its constant 3, dead (and its constant 1.0 when it is a `*`), c
    assert ag.arena_stats()["nodes"] == before - (5 if user_ops else 6)
    assert (first.label, kept.label, top.label) == ("first", "kept", "top")
    assert top._op == ("relu" if user_ops else "*")
    assert (first.data, kept.data, top.data) == (1.0, 4.0, 4.0)
    assert "kept" in [v.label for v in top._prev]
    top.backward()  # a user op without a _backward of its own passes nothing on
    assert kept.grad == (0.0 if user_ops else 1.0)


# ---- numbers that are not real ---------------------------------------------------------------

COMPLEX = [
    pytest.param(lambda: np.complex128(1 + 2j), id="complex128"),
    pytest.param(lambda: np.complex64(1 + 2j), id="complex64"),
    pytest.param(lambda: np.clongdouble(1 + 2j), id="clongdouble"),
    pytest.param(lambda: np.complex128(3), id="complex128-real-valued"),
    pytest.param(lambda: 1 + 2j, id="python-complex"),
]


@pytest.mark.parametrize("make", COMPLEX)
def test_complex_numbers_are_refused_everywhere(make, engine):
    # numpy's complex scalars convert with float() (imaginary part dropped, only a
    # ComplexWarning, an error under this suite's warning filter): each conversion must
    # refuse them with TypeError, as the oracle does.
    c = make()
    v = engine.Value(1.0)
    attempts = {
        "Value(c)": lambda: engine.Value(c),
        "v + c": lambda: v + c,
        "c * v": lambda: c * v,
        "v ** c": lambda: v**c,
        "c ** v": lambda: c**v,
        "v.data = c": lambda: setattr(v, "data", c),
        "v.grad = c": lambda: setattr(v, "grad", c),
        "sum": lambda: engine.sum([v, c]),
        "linear(b=c)": lambda: engine.linear(c, [v], [1.0]),
        "linear(xs=[c])": lambda: engine.linear(0.0, [v], [c]),
    }
    accepted = []
    for what, attempt in attempts.items():
        try:
            attempt()
        except TypeError:
            continue
        accepted.append(what)
    assert accepted == []
    assert v.data == 1.0 and v.grad == 0.0


def test_complex_arrays_are_refused_by_the_parameter_writers(ag, core):
    ps = [ag.Value(1.0), ag.Value(2.0)]
    for write in (core.set_data, core.set_grad):
        for values in (np.array([1 + 2j, 3]), [np.complex64(1j), 2.0], [1 + 0j, 2]):
            with pytest.raises(TypeError, match="complex"):
                write(ps, values)
    assert [(p.data, p.grad) for p in ps] == [(1.0, 0.0), (2.0, 0.0)]


def test_compiled_function_refuses_complex_inputs(ag):
    w = ag.Value(0.5)
    f = ag.compile(lambda x: w * x, n_inputs=1)
    with pytest.raises(TypeError, match="complex"):
        f.forward([[np.complex64(1 + 2j)]])
    with pytest.raises(TypeError, match="complex"):
        f.forward(np.ones((2, 1), dtype=np.complex128))
    f.forward(np.ones((2, 1)))
    with pytest.raises(TypeError, match="complex"):
        f.backward([1 + 1j, 2])
    with pytest.raises(TypeError, match="real number"):
        f.sgd_step(np.complex128(0.1))
    assert w.data == 0.5


# ---- messages ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda ag: ag.sum(3),
            r"arenagrad.sum\(\): values must be a sequence \(list or tuple\) of Values and real "
            r"numbers, not 'int'",
        ),
        (
            lambda ag: ag.linear(0.0, 3, [1.0]),
            r"linear\(\): ws must be a sequence \(list or tuple\) of Values, not 'int'",
        ),
        (
            lambda ag: ag.linear(0.0, [ag.Value(1.0)], None),
            r"linear\(\): xs must be a sequence \(list or tuple\) of Values and real numbers, "
            r"not 'NoneType'",
        ),
        (
            lambda ag: ag.zero_grad(3.5),
            r"zero_grad\(\): values must be a sequence \(list or tuple\) of Values, not 'float'",
        ),
        (
            lambda ag: ag.sum([ag.Value(1.0), "x"]),
            r"arenagrad.sum\(\): values\[1\] must be a Value or a real number, not 'str'",
        ),
        (
            lambda ag: ag.linear(0.0, [1.0], [1.0]),
            r"linear\(\): ws\[0\] must be a Value, not 'float'",
        ),
        (
            lambda ag: ag.zero_grad([ag.Value(1.0), 2.0]),
            r"zero_grad\(\): values\[1\] must be a Value, not 'float'",
        ),
    ],
)
def test_module_functions_say_what_they_expected(ag, call, message):
    with pytest.raises(TypeError, match=f"^{message}$"):
        call(ag)


def test_iterator_errors_pass_through(ag):
    def broken():
        yield ag.Value(1.0)
        raise KeyError("from the iterator")

    with pytest.raises(KeyError, match="from the iterator"):
        ag.sum(broken())


@pytest.mark.parametrize(
    ("n", "error", "message"),
    [
        (2**40, ValueError, r"must be between 1 and 2147483647, got 1099511627776$"),
        (2**31, ValueError, r"must be between 1 and 2147483647, got 2147483648$"),
        (2**80, ValueError, r"must be between 1 and 2147483647, got an int of 81 bits$"),
        (-(2**70), ValueError, r"must be between 1 and 2147483647, got an int of 71 bits$"),
        (0, ValueError, r"must be between 1 and 2147483647, got 0$"),
        (-3, ValueError, r"must be between 1 and 2147483647, got -3$"),
        (2.0, TypeError, r"must be an int, not 'float'$"),
        ("4", TypeError, r"must be an int, not 'str'$"),
        (True, TypeError, r"must be an int, not 'bool'$"),
    ],
)
def test_set_num_threads_refuses_with_one_clear_error(ag, n, error, message):
    before = ag.get_num_threads()
    with pytest.raises(error, match=r"^set_num_threads\(n\): n " + message) as info:
        ag.set_num_threads(n)
    assert "\n" not in str(info.value)  # not pybind11's list of overloads
    assert ag.get_num_threads() == before


def test_set_num_threads_takes_numpy_ints(ag):
    before = ag.get_num_threads()
    try:
        ag.set_num_threads(np.int64(1))
        assert ag.get_num_threads() == 1
    finally:
        ag.set_num_threads(before)


@pytest.mark.parametrize(
    "k",
    [
        2**53,
        2**53 + 1,
        -(2**53 + 1),
        2**60 + 1,
        3**100,
        10**300 + 7,
        2**1023 + 12345,
        -(2**1023 + 2**970 + 1),
        np.uint64(2**64 - 1),
        np.int64(-(2**63) + 1),
    ],
    ids=str,
)
def test_int_exponents_print_exactly_in_op(ag, engine, k):
    # micrograd's f'**{other}' prints the int as written; the power itself is computed with
    # the exponent rounded to a double, as Python's float ** int does.
    x, m = engine.Value(1.5), engine.Value(-1.0)
    y, z = x**k, m**k
    assert y._op == f"**{k}"
    assert z.data == (-1.0) ** float(k)
    assert z._prev == {m}
    z.backward()
    assert m.grad == float(k) * (-1.0) ** (float(k) - 1)


def test_huge_exponent_nodes_survive_compaction_and_replay(ag, core):
    k = 2**60 + 1
    p = ag.Value(-1.0)
    x = ag.Value(2.0)
    y = x**k
    junk = [ag.Value(float(i)) for i in range(1000)]
    top = ag.Value(0.0)
    del junk
    core.compact()
    assert y._op == f"**{k}" and y.data == math.inf
    del top
    f = ag.compile(lambda a: a * p**k, n_inputs=1)
    np.testing.assert_array_equal(f.forward(np.array([[3.0]])), [3.0 * (-1.0) ** float(k)])


# ---- CUDA errors on a machine without a driver ---------------------------------------------


def _driver_loads():
    import ctypes

    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


def test_cuda_without_a_driver_says_so(ag, core):
    if not core.cuda_compiled:
        pytest.skip("this build has no CUDA kernels")
    count, why = core.cuda_devices()
    if count > 0:
        pytest.skip("a CUDA device is present")
    if _driver_loads():
        assert not why.startswith("no NVIDIA driver"), why  # there is one
    else:
        assert why.startswith("no NVIDIA driver"), why
        assert "insufficient" not in why
        with pytest.raises(RuntimeError, match="no NVIDIA driver"):
            ag.compile(lambda x: x * 2.0, n_inputs=1, device="cuda")
