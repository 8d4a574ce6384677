"""CUDA replay against CPU replay (needs a CUDA device: skipped without one)."""

from __future__ import annotations

import random

import numpy as np
import pytest

arenagrad = pytest.importorskip("arenagrad")
from arenagrad.nn import MLP  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        arenagrad.show_config(quiet=True)["cuda_devices"] == 0, reason="no CUDA device"
    ),
]

# CUDA's libm may differ from the host's in the last bit of exp/tanh/pow.
RTOL = 1e-10


def replay_both(fn, n_inputs, X, params, seed=None):
    """Forward and backward on the CPU and on the device; returns both results."""
    results = []
    for device in ("cpu", "cuda"):
        f = arenagrad.compile(fn, n_inputs, device=device)
        assert f.device == device
        for p in params:
            p.grad = 0.0
        Y = f.forward(X)
        G = f.backward(seed)
        results.append((Y, G, [p.grad for p in params]))
    return results


def assert_match(cpu, gpu):
    for a, b in zip(cpu[:2], gpu[:2], strict=True):
        np.testing.assert_allclose(b, a, rtol=RTOL, atol=1e-300)
    np.testing.assert_allclose(gpu[2], cpu[2], rtol=RTOL, atol=1e-12)


def test_demo_mlp_on_cuda_matches_cpu():
    random.seed(1)
    model = MLP(2, [16, 16, 1])
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=(5000, 2)), rng.choice([-1.0, 1.0], size=5000)])

    def hinge(x0, x1, y):
        return (1 + -y * model([x0, x1])).relu()

    cpu, gpu = replay_both(hinge, 3, X, model.parameters(), seed=np.full(5000, 1e-3))
    assert_match(cpu, gpu)


@pytest.mark.parametrize(
    "op",
    [
        "add",
        "sub",
        "mul",
        "div",
        "neg",
        "pow",
        "powv",
        "relu",
        "tanh",
        "exp",
        "log",
        "sigmoid",
        "abs",
        "sqrt",
        "sum",
    ],
)
def test_every_op_on_cuda_matches_cpu(op):
    p = arenagrad.Value(0.7)

    def fn(a, b):
        a = a * p + 0.1
        return {
            "add": lambda: a + b,
            "sub": lambda: a - b,
            "mul": lambda: a * b,
            "div": lambda: a / b,
            "neg": lambda: -a,
            "pow": lambda: a**3,
            "powv": lambda: a**b,
            "relu": lambda: (a - 1).relu(),
            "tanh": lambda: a.tanh(),
            "exp": lambda: a.exp(),
            "log": lambda: a.log(),
            "sigmoid": lambda: a.sigmoid(),
            "abs": lambda: (a - 1).abs(),
            "sqrt": lambda: a.sqrt(),
            "sum": lambda: arenagrad.sum([a, b, p, 2.0]),
        }[op]()

    X = np.random.default_rng(3).uniform(0.1, 2.0, size=(300, 2))
    cpu, gpu = replay_both(fn, 2, X, [p])
    assert_match(cpu, gpu)


def test_several_outputs_and_empty_batch_on_cuda():
    p = arenagrad.Value(1.5)
    X = np.random.default_rng(4).normal(size=(257, 2))
    seed = np.random.default_rng(5).normal(size=(257, 3))
    cpu, gpu = replay_both(lambda a, b: [a * p, (a + b).tanh(), p], 2, X, [p], seed=seed)
    assert_match(cpu, gpu)
    f = arenagrad.compile(lambda a: a * p, 1, device="cuda")
    assert f.forward(np.empty((0, 1))).shape == (0,)
    assert f.backward().shape == (0, 1)
