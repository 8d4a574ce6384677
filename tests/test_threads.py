"""Threads: Values built and backpropagated from several Python threads at once, each on its
own graph, give the same results as the oracle.

All threads share the one process-wide arena; it is only touched while holding the GIL,
and every native call that may run Python code (a __float__, the garbage collector) is
written so that a thread switch there cannot leave a half-built node behind. A tiny switch
interval makes the interpreter switch threads as often as it can, and the threads also drop
Values (truncating the arena under each other) and bury dead nodes past the automatic
compaction threshold (renumbering each other's live Values). See docs/robustness.md.
"""

import contextlib
import random
import sys
import sysconfig
import threading

import pytest
from _support import assert_same, get_engine, needs_native

pytestmark = needs_native

THREADS = 6


def train_steps(eng, seed, lock=None):
    """Four SGD steps of a small MLP on random data; returns the final params and losses.
    MLP init draws from the global `random`, so seeding and init happen under `lock`."""
    with lock or contextlib.nullcontext():
        random.seed(seed)
        model = eng.MLP(3, [6, 6, 1])
    rng = random.Random(seed)
    xs = [[rng.uniform(-2, 2) for _ in range(3)] for _ in range(8)]
    ys = [rng.choice((-1.0, 1.0)) for _ in range(8)]
    losses = []
    for _ in range(4):
        scores = [model(x) for x in xs]
        loss = eng.sum([(1 + -y * s).relu() for y, s in zip(ys, scores, strict=True)]) * 0.125
        model.zero_grad()
        loss.backward()
        for p in model.parameters():
            p.data -= 0.05 * p.grad
        losses.append(loss.data)
    return [p.data for p in model.parameters()], losses


def expression(eng, seed):
    """A random expression with mixed ops; returns (root value, leaf grads)."""
    rng = random.Random(seed)
    leaves = [eng.Value(rng.uniform(-2, 2)) for _ in range(5)]
    pool = list(leaves)
    for _ in range(300):
        a, b = rng.choice(pool), rng.choice(pool)
        k = rng.randrange(6)
        v = (a + b, a * b, (a - b).tanh(), a.sigmoid() * 2.0, abs(a) + 1.0, eng.sum([a, b, 1.0]))[k]
        pool.append(v)
        if len(pool) > 20:
            pool.pop(rng.randrange(5, len(pool)))  # drop a temporary: truncation/compaction
    root = eng.sum(pool[5:])
    root.backward()
    return root.data, [leaf.grad for leaf in leaves]


def run_threads(target, n):
    results, errors = [None] * n, []
    barrier = threading.Barrier(n)

    def work(i):
        try:
            barrier.wait()
            results[i] = target(i)
        except BaseException as error:  # reported in the main thread
            errors.append(error)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors
    return results


def test_expressions_in_parallel_threads():
    nat, ref = get_engine("native"), get_engine("reference")
    got = run_threads(lambda i: expression(nat, 1000 + i), THREADS)
    for i, (data, grads) in enumerate(got):
        want_data, want_grads = expression(ref, 1000 + i)
        assert_same(data, want_data, f"thread {i} root")
        for g, w in zip(grads, want_grads, strict=True):
            assert_same(g, w, f"thread {i} grad")


def test_training_in_parallel_threads_with_compaction_churn():
    nat, ref = get_engine("native"), get_engine("reference")
    want = [train_steps(ref, 7 + i) for i in range(THREADS)]
    init_lock = threading.Lock()

    def job(i):
        if i < THREADS:
            return train_steps(nat, 7 + i, init_lock)
        # The churner: buries dead nodes under live ones, over and over.
        keep = []
        for _ in range(20):
            junk = nat.sum(range(70_000))
            keep.append(nat.Value(1.0))
            del junk
            keep.append(keep[-1] * 2)  # this op compacts, renumbering everyone's Values
        return None

    compactions = get_engine("native").arena_stats()["compactions"]
    got = run_threads(job, THREADS + 1)
    assert get_engine("native").arena_stats()["compactions"] >= compactions + 10
    for i in range(THREADS):
        params, losses = got[i]
        want_params, want_losses = want[i]
        for g, w in zip(losses, want_losses, strict=True):
            assert_same(g, w, f"thread {i} loss", rel=1e-9)
        for g, w in zip(params, want_params, strict=True):
            assert_same(g, w, f"thread {i} param", rel=1e-9)


def test_arena_is_balanced_after_threads():
    import arenagrad
    from arenagrad import _core

    _core.compact()
    before = arenagrad.arena_stats()
    run_threads(lambda i: expression(get_engine("native"), i), THREADS)
    _core.compact()
    after = arenagrad.arena_stats()
    assert after["live_values"] == before["live_values"]
    assert after["nodes"] == before["nodes"]


@pytest.mark.skipif(
    not sysconfig.get_config_var("Py_GIL_DISABLED"), reason="needs a free-threaded CPython"
)
def test_free_threaded_build_keeps_the_gil_on():
    # The extension does not declare itself free-threading safe (the arena is global and
    # unlocked), so importing it on a free-threaded interpreter re-enables the GIL.
    import arenagrad  # noqa: F401

    assert sys._is_gil_enabled()
