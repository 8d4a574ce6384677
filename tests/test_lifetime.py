"""Node lifetime: the native arena must give back what Python no longer references, keep
what it does, and handle graphs far deeper than Python's recursion limit."""

import gc
import json
import subprocess
import sys

import pytest
from _support import ENGINE_NAMES, get_engine, needs_native


def stats(native):
    gc.collect()  # nothing should need it, but a stray cycle must not fail these tests
    return native.arena_stats()


def chain(V, x, n):
    """~3n nodes: y = y * 0.5 + x, n times (each step: a number leaf, a mul, an add)."""
    y = x
    for _ in range(n):
        y = y * 0.5 + x
    return y


@needs_native
def test_dropped_graphs_give_their_nodes_back(native):
    V = native.Value
    base = stats(native)
    peak = 0
    for i in range(200):
        x = V(float(i))
        y = chain(V, x, 333)  # 1000 nodes
        y.backward()
        assert abs(x.grad - 2.0) < 1e-12  # 1 + 0.5 + 0.25 + ... (333 terms)
        peak = max(peak, native.arena_stats()["nodes"])
        del x, y
    after = stats(native)
    assert peak >= base["nodes"] + 1000, (base, peak)
    assert after["nodes"] == base["nodes"], (base, after)
    assert after["live_values"] == base["live_values"], (base, after)


@needs_native
def test_live_values_counts_python_handles(native):
    V = native.Value
    base = stats(native)["live_values"]
    vs = [V(i) for i in range(10)]
    assert stats(native)["live_values"] == base + 10
    s = native.sum(vs)
    assert stats(native)["live_values"] == base + 11
    del vs
    assert stats(native)["live_values"] == base + 1
    s.backward()
    del s
    assert stats(native)["live_values"] == base


# The training-loop tests run in a fresh interpreter: how much garbage an arena tolerates
# before reclaiming it may depend on what it held before (earlier tests), and these tests
# are about a training loop on its own.
TRAINING_LOOP = """
import gc, json, random, sys
import arenagrad
from arenagrad.nn import MLP

n_samples, steps = int(sys.argv[1]), int(sys.argv[2])
random.seed(0)
rng = random.Random(1)
X = [[rng.uniform(-1, 1), rng.uniform(-1, 1)] for _ in range(n_samples)]
y = [1 if a * b > 0 else -1 for a, b in X]
model = MLP(2, [16, 16, 1])

def step():  # micrograd's demo step
    scores = [model(x) for x in X]
    loss = sum((1 + -yi * s).relu() for yi, s in zip(y, scores)) * (1.0 / n_samples)
    model.zero_grad()
    loss.backward()
    for p in model.parameters():
        p.data -= 0.05 * p.grad
    return loss

gc.collect()
base = arenagrad.arena_stats()["nodes"]
losses, sizes = [], []
loss = None
for _ in range(steps):
    loss = step()  # the previous loss, and its graph, is alive while this step is built
    losses.append(loss.data)
    sizes.append(arenagrad.arena_stats()["nodes"] - base)
del loss
gc.collect()
end = arenagrad.arena_stats()["nodes"] - base
print(json.dumps({"losses": losses, "sizes": sizes, "end": end}))
"""


def run_training_loop(n_samples, steps):
    result = subprocess.run(
        [sys.executable, "-c", TRAINING_LOOP, str(n_samples), str(steps)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@needs_native
def test_training_loop_memory_stays_within_4_steps():
    # Big enough graphs (~70k nodes a step) that no minimum arena size hides any growth.
    run = run_training_loop(n_samples=700, steps=13)
    one_step, sizes = run["sizes"][0], run["sizes"][1:]
    assert max(sizes) < 4 * one_step, f"one step: {one_step} nodes; arena after steps: {sizes}"
    assert run["losses"][-1] < run["losses"][0]  # and it still trains
    assert run["end"] == 0  # everything given back once the last loss is gone


@needs_native
def test_training_loop_memory_stops_growing():
    # Small graphs (~1k nodes) over many steps: the arena may grow to some fixed size before
    # it reclaims anything, but then it must stop growing.
    run = run_training_loop(n_samples=10, steps=600)
    one_step, sizes = run["sizes"][0], run["sizes"]
    first_half, second_half = max(sizes[:300]), max(sizes[300:])
    # Two steps of slack: the sampled sizes depend on where reclaiming falls between steps.
    assert second_half <= first_half + 2 * one_step, (one_step, first_half, second_half)
    assert run["end"] == 0


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_old_values_survive_churn(engine_name):
    """Values kept from earlier graphs stay correct while lots of garbage comes and goes
    around them (whatever the arena does to reclaim it)."""
    engine = get_engine(engine_name)
    V = engine.Value
    kept = []
    for i in range(60):
        x = V(float(i + 1))
        y = chain(V, x, 300)
        z = (y * y).tanh() + x.log()
        if i % 7 == 0:
            kept.append((x, y, z, y.data, z.data))
        del x, y, z
    for x, y, z, y_data, z_data in kept:
        assert (y.data, z.data) == (y_data, z_data)
        w = y * 2 - x  # new nodes on top of old ones
        assert w.data == y_data * 2 - x.data
        w.backward()
        assert abs(x.grad - (2 * 2.0 - 1.0)) < 1e-12  # dy/dx = 1 + 0.5 + 0.25 + ...


@needs_native
def test_prev_returns_the_users_objects(native):
    V = native.Value
    a, b = V(1.0), V(2.0)
    c = a * b
    assert {id(p) for p in c._prev} == {id(a), id(b)}
    # An intermediate whose last Python handle is gone is still reachable through _prev ...
    d = c + 1
    del c
    gc.collect()
    (c2,) = [p for p in d._prev if p._op == "*"]
    assert c2.data == 2.0 and c2._prev == {a, b}
    # ... and while someone holds it, _prev hands out that very object again.
    (c3,) = [p for p in d._prev if p._op == "*"]
    assert c3 is c2
    d.backward()
    assert (c2.grad, a.grad, b.grad) == (1.0, 2.0, 1.0)


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_deep_chain_backward(engine_name):
    engine = get_engine(engine_name)
    n = 1_000_000 if engine.native else 100_000  # far beyond the recursion limit either way
    x = engine.Value(0.5)
    y = x
    for _ in range(n):
        y = y + x
    assert y.data == 0.5 * (n + 1)
    y.backward()
    assert x.grad == n + 1
    del x, y  # freeing a deep chain must not overflow the C stack either
    gc.collect()
