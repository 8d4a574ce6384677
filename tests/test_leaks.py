"""Never leak: every public operation, including its error paths, frees what it allocates.

Each operation runs many times; the Python memory still allocated afterwards (tracemalloc:
objects and their buffers) must not grow with the number of runs, and the arena must hold
no more live handles or nodes than before. A leaked reference to a float, a tuple or a
Value per call shows up as ~24-100 bytes per run here. (The arena's own buffers are checked
for leaks without Python by tests/cpp/arena_check.cpp under LeakSanitizer.)
"""

import copy
import gc
import pickle
import tracemalloc

import numpy as np
import pytest
from _support import needs_native

pytestmark = needs_native


def _cases():
    import arenagrad as ag
    from arenagrad import _core

    a, b = ag.Value(1.5, label="a"), ag.Value(-0.5)

    class Sub(ag.Value):
        pass

    class Bad:
        def __float__(self):
            raise ValueError("no")

    def expect(error, fn):
        def run():
            with pytest.raises(error):
                fn()

        return run

    class Clear:  # (defined once: creating a class per run grows CPython's type caches)
        def __init__(self, items):
            self.items = items

        def __float__(self):
            self.items.clear()
            return 1.0

    def changes_list():
        items = [a, None]
        items[1] = Clear(items)
        with pytest.raises(RuntimeError):
            ag.sum(items)

    def backward():
        out = (a * b + 1).tanh() ** 2
        out.backward()

    def set_attributes():
        a.data = 1.5
        a.grad = np.float64(0.0)
        a.label = "a"

    return {
        "Value": lambda: ag.Value(2.0, label="x"),
        "Value(subclass)": lambda: Sub(3),
        "Value(bad)": expect(TypeError, lambda: ag.Value("1")),
        "Value(huge int)": expect(OverflowError, lambda: ag.Value(2**2000)),
        "Value(raising __float__)": expect(ValueError, lambda: ag.Value(Bad())),
        "ops": lambda: (a + b, a - 1, 2 * a, a / b, -a, abs(a), a**2, a**b, 2**a, 1.0 / a),
        "unary": lambda: (a.relu(), a.tanh(), a.exp(), a.log(), a.sigmoid(), a.sqrt()),
        "op with bad operand": expect(TypeError, lambda: a + "x"),
        "pow with modulo": expect(TypeError, lambda: pow(a, 2, 3)),
        "backward": backward,
        "attributes": lambda: (a.data, a.grad, a.label, a._op, (a**2.5)._op, (a**1000)._op),
        "_prev": lambda: (a + b)._prev,
        "set attributes": set_attributes,
        "set bad data": expect(TypeError, lambda: setattr(a, "data", "1")),
        "set bad label": expect(TypeError, lambda: setattr(a, "label", 1)),
        "delete data": expect(AttributeError, lambda: delattr(a, "data")),
        "repr": lambda: repr(a),
        "copy/pickle": lambda: (copy.copy(a), copy.deepcopy(b), pickle.loads(pickle.dumps(a))),
        "sum": lambda: ag.sum([a, 1.0, np.float64(2.0), b]),
        "sum(generator)": lambda: ag.sum(x for x in (a, b, 3)),
        "sum(bad)": expect(TypeError, lambda: ag.sum([a, "x"])),
        "sum(changed list)": changes_list,
        "linear": lambda: ag.linear(0.5, [a, b], [1.0, a]),
        "linear(mismatch)": expect(ValueError, lambda: ag.linear(a, [a], [])),
        "linear(bad weight)": expect(TypeError, lambda: ag.linear(a, [1.0], [a])),
        "zero_grad": lambda: ag.zero_grad([a, b]),
        "zero_grad(bad)": expect(TypeError, lambda: ag.zero_grad([a, 1.0])),
        "arena_stats/compact": lambda: (ag.arena_stats(), _core.compact()),
    }


CASES = sorted(_cases())


@pytest.mark.parametrize("name", CASES)
def test_no_leak(name):
    import arenagrad as ag

    run = _cases()[name]
    for _ in range(2000):  # warm up caches, interned strings, free lists
        run()
    gc.collect()
    before = ag.arena_stats()
    # Two windows: a leak grows memory in both, a bounded cache stops growing. (A
    # pickle round trip keeps up to ~1000 small blocks traced in the sanitizer build, and
    # a few dozen in a release build, whatever the number of runs: not a leak.)
    tracemalloc.start()
    try:
        for _ in range(6000):
            run()
        gc.collect()
        middle, _ = tracemalloc.get_traced_memory()
        for _ in range(4000):
            run()
        gc.collect()
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a leak of even one small object per run would add > 80 KB over 4000 runs
    assert end - middle < 20_000, f"{name}: {end - middle} bytes kept by 4000 more runs"
    after = ag.arena_stats()
    assert after["live_values"] == before["live_values"]
    assert after["nodes"] <= before["nodes"]
