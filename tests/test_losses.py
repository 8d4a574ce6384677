"""Losses: values against closed forms, native against the oracle, gradients by gradcheck,
and stability at extreme logits."""

from __future__ import annotations

import math

import arenagrad
import numpy as np
import pytest
from _support import assert_same, needs_native
from arenagrad import losses


def values(engine, xs):
    return [engine.Value(x) for x in xs]


def sigmoid(x):
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def test_mse(engine):
    p = values(engine, [1.0, 2.0, -1.0])
    loss = losses.mse(p, [0.5, 2.0, 1.0])
    assert_same(loss.data, (0.25 + 0.0 + 4.0) / 3)
    loss.backward()
    for pi, t in zip(p, [0.5, 2.0, 1.0], strict=True):
        assert_same(pi.grad, 2 * (pi.data - t) / 3)
    single = engine.Value(3.0)
    assert_same(losses.mse(single, 1.0).data, 4.0)


def test_hinge_is_micrograds_svm_loss(engine):
    s = values(engine, [0.3, -2.0, 1.5, -0.2])
    y = [1, -1, 1, 1]
    loss = losses.hinge(s, y)
    expected = sum(max(0.0, 1 - yi * si.data) for si, yi in zip(s, y, strict=True)) / 4
    assert_same(loss.data, expected)
    loss.backward()
    assert [si.grad for si in s] == [-0.25, 0.0, 0.0, -0.25]
    with pytest.raises(ValueError, match="-1 or \\+1"):
        losses.hinge(s, [1, 0, 1, 1])


def test_bce_with_logits_values_and_grads(engine):
    xs = [-3.0, -0.5, 0.0, 0.7, 4.0]
    ts = [0.0, 1.0, 1.0, 0.0, 0.3]
    v = values(engine, xs)
    loss = losses.binary_cross_entropy_with_logits(v, ts)
    expected = [
        -(t * math.log(sigmoid(x)) + (1 - t) * math.log(1 - sigmoid(x)))
        for x, t in zip(xs, ts, strict=True)
    ]
    assert_same(loss.data, sum(expected) / len(xs), rel=1e-14)
    loss.backward()
    for vi, x, t in zip(v, xs, ts, strict=True):
        assert_same(vi.grad, (sigmoid(x) - t) / len(xs), rel=1e-12)


def test_bce_gradient_at_zero_is_exact(engine):
    x = engine.Value(0.0)
    losses.binary_cross_entropy_with_logits(x, 1.0).backward()
    assert x.grad == -0.5  # sigmoid(0) - 1, not relu's subgradient


def test_softmax_cross_entropy_index_and_probabilities(engine):
    z = [1.0, -0.5, 2.0, 0.1]
    logits = values(engine, z)
    loss = losses.softmax_cross_entropy(logits, 2)
    lse = math.log(sum(math.exp(zi) for zi in z))
    assert_same(loss.data, lse - 2.0, rel=1e-14)
    loss.backward()
    p = [math.exp(zi - lse) for zi in z]
    for k, zk in enumerate(logits):
        assert_same(zk.grad, p[k] - (k == 2), rel=1e-12)
    one_hot = values(engine, [0.0, 0.0, 1.0, 0.0])  # targets as Values (traceable)
    assert_same(losses.softmax_cross_entropy(values(engine, z), one_hot).data, loss.data, 1e-15)
    soft = [0.1, 0.2, 0.3, 0.4]
    expected = lse - sum(s * zi for s, zi in zip(soft, z, strict=True))
    assert_same(losses.softmax_cross_entropy(values(engine, z), soft).data, expected, 1e-14)


def test_softmax_cross_entropy_batch_is_mean(engine):
    rows = [[0.5, 1.5], [2.0, -1.0], [0.0, 0.0]]
    targets = [1, 0, 1]
    batch = losses.softmax_cross_entropy([values(engine, r) for r in rows], targets)
    each = [
        losses.softmax_cross_entropy(values(engine, r), t).data
        for r, t in zip(rows, targets, strict=True)
    ]
    assert_same(batch.data, sum(each) / 3, rel=1e-14)


@pytest.mark.parametrize("big", [1000.0, -1000.0, 1e6])
def test_extreme_logits_stay_finite(engine, big):
    z = values(engine, [big, 0.0, -3.0])
    loss = losses.softmax_cross_entropy(z, 1)
    loss.backward()
    assert math.isfinite(loss.data)
    assert all(math.isfinite(zi.grad) for zi in z)
    if big > 0:
        assert_same(loss.data, big, rel=1e-12)  # log-sum-exp ~ big, minus z[1] = 0
        assert [zi.grad for zi in z] == pytest.approx([1.0, -1.0, 0.0])
    x = engine.Value(big)
    bce = losses.binary_cross_entropy_with_logits(x, 0.0)
    bce.backward()
    assert math.isfinite(bce.data) and math.isfinite(x.grad)
    assert_same(bce.data, max(big, 0.0) + math.log1p(math.exp(-abs(big))))
    assert_same(x.grad, sigmoid(big))


BIGGEST = 1.7976931348623157e308  # the largest finite float


@pytest.mark.parametrize("x", [9e307, 1e308, BIGGEST, -9e307, -1e308, -BIGGEST])
@pytest.mark.parametrize("t", [0.0, 1.0, 0.3])
def test_bce_largest_finite_logits(engine, x, t):
    # The loss is max(x, 0) - x t (+ log(1 + exp(-|x|)) = 0 here), finite for every finite
    # logit: 0 for the matching target, |x| for the opposite one; the gradient is
    # sigmoid(x) - t (exactly 1 - t or -t), and -x with respect to a Value target.
    logit, target = engine.Value(x), engine.Value(t)
    loss = losses.binary_cross_entropy_with_logits(logit, target)
    loss.backward()
    assert_same(loss.data, max(x, 0.0) - x * t, rel=1e-15)
    assert math.isfinite(loss.data)
    assert logit.grad == (1.0 if x > 0 else 0.0) - t
    assert target.grad == -x
    plain = engine.Value(x)  # a number target: the same loss and gradient
    again = losses.binary_cross_entropy_with_logits(plain, t)
    again.backward()
    assert again.data == loss.data and plain.grad == logit.grad


@needs_native
@pytest.mark.parametrize("t", [0.0, 1.0, 0.3])
def test_bce_extreme_logits_native_equals_reference(native, reference, t):
    xs = [BIGGEST, 9e307, 1e300, 800.0, 37.0, 1e-300, 0.0, -1e-300, -37.0, -800.0, -9e307]
    xs += [-BIGGEST]

    def run(engine):
        v = values(engine, xs)
        loss = losses.binary_cross_entropy_with_logits(v, [t] * len(xs))
        loss.backward()
        return [loss.data] + [vi.grad for vi in v]

    assert run(native) == run(reference)  # bit for bit, the mean included


def test_bce_matches_torch_at_extreme_logits(engine):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for x in [BIGGEST, 9e307, 1e300, 40.0, 0.5, 0.0, -0.5, -40.0, -1e300, -9e307, -BIGGEST]:
        for t in [0.0, 1.0, 0.3]:
            tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
            expected = F.binary_cross_entropy_with_logits(tx, torch.tensor(t, dtype=torch.float64))
            expected.backward()
            v = engine.Value(x)
            loss = losses.binary_cross_entropy_with_logits(v, t)
            loss.backward()
            assert_same(loss.data, expected.item(), f"loss({x}, {t})", rel=1e-13)
            assert_same(v.grad, tx.grad.item(), f"grad({x}, {t})", rel=1e-13)


@needs_native
def test_native_matches_reference(native, reference):
    rng = np.random.default_rng(7)
    z = rng.normal(size=(4, 5)).tolist()
    t = [0, 3, 4, 1]

    def run(engine):
        rows = [values(engine, r) for r in z]
        flat = [v for r in rows for v in r]
        loss = (
            losses.softmax_cross_entropy(rows, t)
            + losses.binary_cross_entropy_with_logits(flat[:6], [0, 1, 1, 0, 0.5, 1])
            + losses.mse(flat[6:10], [1, 2, 3, 4])
            + losses.hinge(flat[10:14], [1, -1, -1, 1])
        )
        loss.backward()
        return loss.data, [v.grad for v in flat]

    (a, ga), (b, gb) = run(native), run(reference)
    assert_same(a, b)
    for x, y in zip(ga, gb, strict=True):
        assert_same(x, y)


@pytest.mark.parametrize(
    "fn",
    [
        lambda a, b, c: losses.softmax_cross_entropy([a, b, c], 0),
        lambda a, b, c: losses.softmax_cross_entropy([[a, b], [c, a]], [1, 0]),
        lambda a, b, c: losses.binary_cross_entropy_with_logits([a, b, c], [0.2, 1.0, 0.0]),
        lambda a, b, c: losses.mse([a, b], [c, 1.0]),
    ],
)
def test_gradients_by_finite_differences(engine, fn):
    arenagrad.gradcheck(fn, [0.3, -1.1, 2.4], value_type=engine.Value)


def test_bad_inputs():
    v = arenagrad.Value(1.0)
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        losses.mse([v, v], [1.0])
    with pytest.raises(TypeError, match="must be Values"):
        losses.mse([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(TypeError, match="predictions must be"):
        losses.mse("ab", [1.0, 2.0])
    with pytest.raises(ValueError, match="out of range"):
        losses.softmax_cross_entropy([v, v], 2)
    with pytest.raises(TypeError, match="bool"):
        losses.softmax_cross_entropy([v, v], True)
    with pytest.raises(ValueError, match="3 target probabilities"):
        losses.softmax_cross_entropy([v, v], [0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        losses.binary_cross_entropy_with_logits(v, 2.0)
    with pytest.raises(ValueError, match="no predictions"):
        losses.hinge([], [])


def test_bce_under_compiled_replay_at_the_largest_logits():
    # Traced at ordinary inputs, replayed on the largest finite logits of both signs: no lane
    # overflows, and each lane equals eager evaluation of the same row.
    f = arenagrad.compile(losses.binary_cross_entropy_with_logits, n_inputs=2)
    X = np.array([[x, t] for x in (BIGGEST, 9e307, -9e307, -BIGGEST) for t in (0.0, 1.0, 0.3)])
    Y = f.forward(X)
    dX = f.backward()
    for (x, t), y, (dx, dt) in zip(X.tolist(), Y.tolist(), dX.tolist(), strict=True):
        logit, target = arenagrad.Value(x), arenagrad.Value(t)
        loss = losses.binary_cross_entropy_with_logits(logit, target)
        loss.backward()
        assert math.isfinite(y) and y == loss.data
        assert (dx, dt) == (logit.grad, target.grad) == ((x > 0) - t, -x)


def test_losses_under_compiled_replay_match_eager():
    # Traced once (at zeros), replayed on rows that include extreme logits: the stable
    # formulations have no data-dependent branch, so the replay stays finite and exact.
    def per_sample(a, b, c, t0, t1, t2, y):
        return losses.softmax_cross_entropy([a, b, c], [t0, t1, t2]) + (
            losses.binary_cross_entropy_with_logits(a, y)
        )

    f = arenagrad.compile(per_sample, n_inputs=7)
    X = np.array(
        [
            [0.5, -1.0, 2.0, 0.0, 0.0, 1.0, 1.0],
            [1000.0, 0.0, -3.0, 0.0, 1.0, 0.0, 0.0],
            [-1000.0, 5.0, 4.0, 1.0, 0.0, 0.0, 1.0],
            [0.0, 0.0, 0.0, 0.2, 0.3, 0.5, 0.5],
        ]
    )
    Y = f.forward(X)
    dX = f.backward()
    for row, y, grads in zip(X.tolist(), Y.tolist(), dX.tolist(), strict=True):
        leaves = [arenagrad.Value(v) for v in row]
        loss = per_sample(*leaves)
        loss.backward()
        assert math.isfinite(y)
        assert_same(y, loss.data)
        for leaf, g in zip(leaves, grads, strict=True):
            assert math.isfinite(g)
            assert_same(g, leaf.grad)
