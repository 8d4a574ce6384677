"""Limits: running out of node ids or memory raises MemoryError, never aborts, and leaves
the arena usable.

The real id limit (2**32 - 16 nodes) needs ~150 GB, so the id tests lower it with the
test-only `_core._set_node_limit`. The memory tests run in a subprocess whose address space
is capped with RLIMIT_AS (skipped under AddressSanitizer, which reserves terabytes of
virtual memory for its shadow, and where resource limits are unavailable).
"""

import os
import subprocess
import sys
import textwrap

import pytest
from _support import needs_native

pytestmark = needs_native

SANITIZED = bool(os.environ.get("ARENAGRAD_SANITIZED"))


@pytest.fixture
def limited():
    """Caps the arena at (current nodes + n) and restores the real limit afterwards."""
    import arenagrad
    from arenagrad import _core

    caps = []

    def cap(n):
        _core.compact()
        limit = arenagrad.arena_stats()["nodes"] + n
        caps.append(_core._set_node_limit(limit))
        return limit

    yield cap
    if caps:
        _core._set_node_limit(caps[0])


def test_real_limit_is_just_under_2_to_the_32():
    from arenagrad import _core

    previous = _core._set_node_limit(5)
    try:
        assert previous == 2**32 - 16
    finally:
        assert _core._set_node_limit(previous) == 5


@pytest.mark.parametrize("bad", [0, -1, 2**32, 2**64])
def test_set_node_limit_rejects_out_of_range(bad):
    from arenagrad import _core

    with pytest.raises((ValueError, OverflowError)):
        _core._set_node_limit(bad)


def test_set_node_limit_rejects_non_int():
    from arenagrad import _core

    with pytest.raises(TypeError):
        _core._set_node_limit(3.0)


BUILDERS = {
    "leaf": lambda ag, x: ag.Value(1.0),
    "binary": lambda ag, x: x + x,
    "with_number": lambda ag, x: x * 3.0,
    "number_first": lambda ag, x: 2.0**x,
    "unary": lambda ag, x: x.tanh(),
    "pow_const": lambda ag, x: x**2,
    "sum": lambda ag, x: ag.sum([x, 1.0, x, 2.0]),
    "linear": lambda ag, x: ag.linear(0.5, [x, x], [1.0, x]),
}


@pytest.mark.parametrize("how", sorted(BUILDERS))
def test_past_the_node_limit_raises_memory_error(limited, how):
    import arenagrad as ag

    x = ag.Value(2.0)
    before = ag.arena_stats()
    limited(50)
    kept = []
    with pytest.raises(MemoryError, match="arenagrad: the graph is too large"):
        for _ in range(100):
            kept.append(BUILDERS[how](ag, x))
    # The failed op left nothing behind: every node is accounted for by a live Value or as
    # an operand of one, and the n-ary side table matches.
    stats = ag.arena_stats()
    assert stats["live_values"] == before["live_values"] + len(kept)
    assert stats["nodes"] <= before["nodes"] + 50
    # Values built before the failure are intact and backward works over them.
    if kept:
        kept[-1].backward()
    expected = BUILDERS[how](__import__("arenagrad.reference").reference, _ref_leaf(2.0))
    if kept:
        assert kept[-1].data == expected.data
    # Freeing some room makes ops work again.
    del kept
    out = x * 4.0
    assert out.data == 8.0
    assert ag.arena_stats()["live_values"] == before["live_values"] + 1


def _ref_leaf(x):
    from arenagrad import reference

    return reference.Value(x)


def test_limit_hit_while_pushing_number_leaves_of_sum(limited):
    # sum() pushes one leaf per number before its own node: failing half-way must drop them.
    import arenagrad as ag

    before = ag.arena_stats()
    limited(10)
    with pytest.raises(MemoryError):
        ag.sum(range(20))
    after = ag.arena_stats()
    assert after["nodes"] == before["nodes"]
    assert after["nary_operands"] == before["nary_operands"]


def test_limit_restored_allows_growth(limited):
    import arenagrad as ag

    limited(5)
    from arenagrad import _core

    _core._set_node_limit(2**32 - 16)
    values = [ag.Value(float(i)) for i in range(100)]
    assert ag.sum(values).data == sum(range(100))


def _run_capped(code, headroom_mb):
    """Runs `code` in a fresh interpreter whose address space is capped at its size after
    imports plus headroom_mb. Returns the CompletedProcess."""
    prologue = textwrap.dedent(f"""
        import resource, arenagrad
        def vm_bytes():
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmSize:"):
                        return int(line.split()[1]) * 1024
        def cap():
            limit = vm_bytes() + {headroom_mb} * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    """)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-c", prologue + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


needs_rlimit = pytest.mark.skipif(
    SANITIZED or not sys.platform.startswith("linux"),
    reason="RLIMIT_AS capping needs Linux and no AddressSanitizer",
)


@needs_rlimit
def test_graph_too_big_for_memory_raises_memory_error():
    result = _run_capped(
        """
        cap()
        x = arenagrad.Value(1.0)
        try:
            while True:
                x = x + 1.0
        except MemoryError as e:
            n = arenagrad.arena_stats()["nodes"]
            print("MemoryError", n, e)
        # After the failure the graph is still consistent and usable.
        assert x.data == (n + 1) / 2, (x.data, n)  # leaf 1.0, then a leaf and a node per step
        x.backward()
        assert x.grad == 1.0
        del x
        y = arenagrad.Value(3.0) * 2
        assert y.data == 6.0
        assert arenagrad.arena_stats()["nodes"] == 3
        print("ok")
        """,
        headroom_mb=100,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "MemoryError" in result.stdout and result.stdout.rstrip().endswith("ok")
    assert int(result.stdout.split()[1]) > 1_000_000  # it did grow until memory ran out


@needs_rlimit
def test_backward_out_of_memory_raises_memory_error():
    # backward() allocates a flag per node: a failed allocation must not escape as an abort.
    result = _run_capped(
        """
        root = arenagrad.sum(range(20_000_000))   # 20M leaves: backward needs 20 MB
        cap()
        try:
            root.backward()
        except MemoryError:
            print("MemoryError")
        """,
        headroom_mb=4,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "MemoryError"


@needs_rlimit
def test_compact_out_of_memory_raises_memory_error():
    result = _run_capped(
        """
        junk = arenagrad.sum(range(20_000_000))
        keep = arenagrad.Value(1.0)
        del junk
        cap()
        try:
            arenagrad._core.compact()
        except MemoryError:
            print("MemoryError")
        print(keep.data)
        """,
        headroom_mb=4,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["MemoryError", "1.0"]
