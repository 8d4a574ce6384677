"""take() and max(): eagerly against the oracle, their errors, and replayed with indices that
differ from lane to lane (parameter rows chosen per lane get their lanes' gradients)."""

import math

import numpy as np
import pytest
from _support import ENGINE_NAMES, assert_lane_sums, assert_same, get_engine, needs_native

pytestmark = []


@pytest.fixture(params=ENGINE_NAMES)
def engine(request):
    return get_engine(request.param)


def test_take_selects_and_differentiates_the_chosen_value(engine):
    values = [engine.Value(x) for x in (0.5, -1.0, 2.0, 2.0)]
    for position in range(4):
        for index in (position, engine.Value(float(position))):
            for v in values:
                v.grad = 0.0
            out = engine.take(values, index) * 3.0
            assert out.data == 3.0 * values[position].data
            out.backward()
            assert [v.grad for v in values] == [3.0 if k == position else 0.0 for k in range(4)]
            if not isinstance(index, int):
                assert index.grad == 0.0  # not differentiable with respect to the index
            assert engine.take(values, index)._op == "take"


@pytest.mark.parametrize(
    ("index", "error"),
    [(4, IndexError), (-1, IndexError), (100, IndexError), (1.0, TypeError), ("1", TypeError)],
)
def test_take_refuses_a_bad_int_index(engine, index, error):
    values = [engine.Value(float(x)) for x in range(4)]
    with pytest.raises(error):
        engine.take(values, index)


@pytest.mark.parametrize(
    ("index", "error"),
    [(4.0, IndexError), (-1.0, IndexError), (1.5, ValueError), (math.nan, ValueError),
     (math.inf, ValueError), (-0.5, ValueError), (1e300, IndexError), (-1e300, IndexError)],
)  # fmt: skip
def test_take_refuses_a_bad_value_index(engine, index, error):
    values = [engine.Value(float(x)) for x in range(4)]
    with pytest.raises(error):
        engine.take(values, engine.Value(index))


def test_take_and_max_refuse_bad_values(engine):
    with pytest.raises(ValueError):
        engine.take([], 0)
    with pytest.raises(ValueError):
        engine.max([])
    with pytest.raises(TypeError):
        engine.take([engine.Value(1.0), 2.0], 0)
    with pytest.raises(TypeError):
        engine.max([engine.Value(1.0), 2.0])
    with pytest.raises(TypeError):
        engine.max(3)


@pytest.mark.parametrize(
    ("data", "chosen"),
    [
        ([1.0, 3.0, 2.0], 1),
        ([3.0, 3.0, 1.0], 0),  # ties: the first
        ([-0.0, 0.0], 0),  # equal: the first
        ([0.0, -0.0], 0),
        ([1.0, math.nan, 5.0, math.nan], 1),  # nan propagates: the first nan
        ([math.nan, 7.0], 0),
        ([-math.inf, -math.inf], 0),
        ([2.0], 0),
    ],
)
def test_max_gives_the_gradient_to_the_first_largest(engine, data, chosen):
    values = [engine.Value(x) for x in data]
    out = engine.max(values)
    want = data[chosen]
    assert (math.isnan(out.data) and math.isnan(want)) or (
        out.data == want and math.copysign(1, out.data) == math.copysign(1, want)
    )
    (out * 2.0).backward()
    assert [v.grad for v in values] == [2.0 if k == chosen else 0.0 for k in range(len(data))]


def test_max_is_an_iterable_and_builtin_max_still_works(engine):
    values = (engine.Value(x) for x in (1.0, 4.0, 2.0))
    assert engine.max(values).data == 4.0


@needs_native
def test_native_matches_the_oracle_on_softmax():
    native, ref = get_engine("native"), get_engine("reference")

    def loss(engine, xs, target):
        logits = [engine.Value(x) for x in xs]
        m = engine.max(logits)
        exps = [(v - m).exp() for v in logits]
        total = engine.sum(exps)
        picked = engine.take(exps, engine.Value(float(target)))
        out = -(picked / total).log()
        out.backward()
        return [out.data] + [v.grad for v in logits]

    xs = [0.3, -1.2, 2.5, 2.5, 0.0]
    for target in range(len(xs)):
        for a, b in zip(loss(native, xs, target), loss(ref, xs, target), strict=True):
            assert_same(a, b)


# ----------------------------------------------------------------------------- replay


@needs_native
@pytest.mark.parametrize("batch", [1, 5, 70, 200])
def test_replay_takes_a_lane_index_and_scatters_parameter_gradients(batch):
    import arenagrad

    rng = np.random.default_rng(batch)
    table = [[arenagrad.Value(float(x)) for x in rng.normal(size=3)] for _ in range(6)]
    params = [v for row in table for v in row]

    def fn(token, x):
        row = [arenagrad.take([table[r][j] for r in range(6)], token) for j in range(3)]
        m = arenagrad.max(row)
        return arenagrad.sum([(v - m).exp() * x for v in row])

    f = arenagrad.compile(fn, n_inputs=2)
    tokens = rng.integers(0, 6, size=batch).astype(np.float64)
    X = np.stack([tokens, rng.normal(size=batch)], axis=1)
    for p in params:
        p.grad = 0.0
    Y = f.forward(X)
    G = f.backward()
    replay_grads = [p.grad for p in params]

    for p in params:
        p.grad = 0.0
    for lane in range(batch):
        out = fn(arenagrad.Value(X[lane, 0]), arenagrad.Value(X[lane, 1]))
        assert out.data == Y[lane]  # a lane is the eager evaluation, bit for bit
        out.backward()
        # the index gets no gradient; x gets its own
        assert G[lane, 0] == 0.0
    for p, got in zip(params, replay_grads, strict=True):
        assert_same(got, p.grad, rel=1e-12)
    used = {int(t) for t in tokens}
    for r in range(6):
        if r not in used:
            assert all(table[r][j].grad == 0.0 for j in range(3))


@needs_native
@pytest.mark.parametrize("bad", [6.0, -1.0, 2.5, math.nan])
def test_replay_refuses_a_bad_lane_index(bad):
    import arenagrad

    values = [arenagrad.Value(float(k)) for k in range(6)]
    f = arenagrad.compile(lambda i: arenagrad.take(values, i) * 2.0, n_inputs=1)
    X = np.array([[0.0], [5.0], [bad], [1.0]])
    with pytest.raises(ValueError, match="lane 2"):
        f.forward(X)
    assert list(f.forward(X[[0, 1, 3]])) == [0.0, 10.0, 2.0]
    assert f.n_outputs == 1
    G = f.backward()
    assert G.shape == (3, 1)
    assert values[5].grad == 2.0 and values[0].grad == 2.0 and values[3].grad == 0.0


@needs_native
def test_replay_rechecks_an_index_that_is_a_parameter():
    # an index made before the trace is read afresh at every forward, like any parameter
    import arenagrad

    rows = [arenagrad.Value(float(k + 1)) for k in range(3)]
    index = arenagrad.Value(1.0)
    f = arenagrad.compile(lambda x: arenagrad.take(rows, index) * x, n_inputs=1)
    X = np.array([[1.0], [2.0]])
    assert list(f.forward(X)) == [2.0, 4.0]
    index.data = 2.0
    assert list(f.forward(X)) == [3.0, 6.0]
    for bad in (3.0, -1.0, 0.5):
        index.data = bad
        with pytest.raises(ValueError, match="lane 0"):
            f.forward(X)
    index.data = 0.0
    assert list(f.forward(X)) == [1.0, 2.0]
    f.backward()
    assert [r.grad for r in rows] == [3.0, 0.0, 0.0]


@needs_native
def test_replay_index_computed_from_an_input():
    import arenagrad

    values = [arenagrad.Value(float(10 * k)) for k in range(4)]
    f = arenagrad.compile(lambda x: arenagrad.take(values, x * 2.0 + 1.0), n_inputs=1)
    assert list(f.forward(np.array([[0.0], [1.0]]))) == [10.0, 30.0]
    with pytest.raises(ValueError, match="lane 0"):
        f.forward(np.array([[2.0]]))


@needs_native
@pytest.mark.parametrize("batch", [1, 3, 70])
def test_replay_of_selections_over_parameters_only(batch):
    # take/max of parameters alone: computed once per forward, their gradient per lane
    import arenagrad

    ps = [arenagrad.Value(v) for v in (0.5, -1.5, 2.0, 2.0)]  # a tie: ps[2] is max(ps)'s

    def fn(x):
        top = arenagrad.max(ps)
        picked = arenagrad.take(ps, 1)
        return x * top + (x * x) * picked + arenagrad.max([ps[0] * ps[1], ps[3]]) * x

    f = arenagrad.compile(fn, n_inputs=1)
    X = np.linspace(-1.0, 2.0, batch).reshape(batch, 1)
    for p in ps:
        p.grad = 0.0
    Y = f.forward(X)
    f.backward()
    got = [p.grad for p in ps]
    lane_grads = []
    for lane in range(batch):
        for p in ps:
            p.grad = 0.0
        out = fn(arenagrad.Value(float(X[lane, 0])))
        assert out.data == Y[lane]
        out.backward()
        lane_grads.append([p.grad for p in ps])
    assert_lane_sums(got, lane_grads)
