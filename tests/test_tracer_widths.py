"""Per-width traces: compile(fn, n_inputs=None) traces fn once per input width, in a bounded
cache, so a sequence model replays at every length through one object."""

import numpy as np
import pytest
from _support import assert_same, needs_native

pytestmark = needs_native


@pytest.fixture
def arenagrad():
    import arenagrad

    return arenagrad


def running_mean_loss(arenagrad, w):
    def fn(*xs):  # a graph whose shape depends on how many inputs there are
        total = arenagrad.sum([(x * w - 1.0) ** 2 for x in xs])
        return total / len(xs)

    return fn


def test_each_width_is_traced_once_and_matches_eager(arenagrad):
    w = arenagrad.Value(0.5)
    fn = running_mean_loss(arenagrad, w)
    f = arenagrad.compile(fn, n_inputs=None)
    assert isinstance(f, arenagrad.CompiledPerWidth)
    rng = np.random.default_rng(0)
    for width in (3, 5, 3, 1, 5):
        X = rng.normal(size=(4, width))
        w.grad = 0.0
        Y = f.forward(X)
        G = f.backward()
        assert Y.shape == (4,) and G.shape == (4, width)
        replay_grad = w.grad
        w.grad = 0.0
        for lane in range(4):
            xs = [arenagrad.Value(float(v)) for v in X[lane]]
            out = fn(*xs)
            assert out.data == Y[lane]
            out.backward()
            for i, x in enumerate(xs):
                assert x.grad == G[lane, i]
        assert_same(replay_grad, w.grad, rel=1e-12)
    assert f.traced == 3 and sorted(f.widths) == [1, 3, 5]
    assert f.parameters == [w]


def test_the_cache_is_bounded_least_recently_used_first(arenagrad):
    w = arenagrad.Value(2.0)
    f = arenagrad.compile(running_mean_loss(arenagrad, w), n_inputs=None, max_traces=2)
    for width in (1, 2, 1, 3):
        f.forward(np.ones((2, width)))
    assert f.widths == [1, 3]  # 2 was used least recently when 3 came
    assert f.traced == 3
    f.forward(np.ones((2, 2)))
    assert f.traced == 4 and f.widths == [3, 2]


def test_backward_follows_the_last_forward(arenagrad):
    w = arenagrad.Value(1.0)
    f = arenagrad.compile(running_mean_loss(arenagrad, w), n_inputs=None)
    with pytest.raises(RuntimeError, match="forward"):
        f.backward()
    f.forward(np.ones((2, 4)))
    f.forward(np.ones((3, 2)))
    assert f.backward().shape == (3, 2)
    f.zero_grad()
    assert w.grad == 0.0


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"max_traces": 0}, ValueError), ({"max_traces": 1.5}, TypeError)],
)
def test_bad_arguments(arenagrad, kwargs, error):
    with pytest.raises(error):
        arenagrad.compile(lambda *xs: xs[0], n_inputs=None, **kwargs)


def test_bad_inputs(arenagrad):
    f = arenagrad.compile(lambda *xs: arenagrad.sum(list(xs)), n_inputs=None)
    with pytest.raises(ValueError, match="shape"):
        f.forward(np.ones(3))
    with pytest.raises(TypeError):
        f.forward(np.ones((2, 2), dtype=np.float32))
    assert list(f.forward([[1.0, 2.0]])) == [3.0]
