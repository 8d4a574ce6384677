"""nn: reprs, parameters, seeded initialisation, and micrograd's demo training loop."""

import functools
import random
import re

import numpy as np
import pytest
from _support import assert_same, get_engine


def make_moons(n=100, noise=0.1, seed=1337):
    """Two interleaving half circles, like sklearn.datasets.make_moons; y in {-1, 1}."""
    rng = np.random.default_rng(seed)
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0, np.pi, n_out)
    t_in = np.linspace(0, np.pi, n_in)
    X = np.vstack(
        [
            np.column_stack([np.cos(t_out), np.sin(t_out)]),
            np.column_stack([1 - np.cos(t_in), 1 - np.sin(t_in) - 0.5]),
        ]
    )
    X += rng.normal(scale=noise, size=X.shape)
    y = np.concatenate([np.zeros(n_out, dtype=np.int64), np.ones(n_in, dtype=np.int64)])
    return X, y * 2 - 1


@functools.cache  # the pure-Python oracle takes a while; two tests share each run
def demo_training(engine_name, steps=20, n=100):
    """micrograd's demo.ipynb training loop, unchanged except for the engine: returns
    [(loss, accuracy) per step] and the final parameters."""
    engine = get_engine(engine_name)
    Value = engine.Value
    X, y = make_moons(n)
    random.seed(1337)
    model = engine.MLP(2, [16, 16, 1])  # 2-layer neural network

    def loss():
        inputs = [list(map(Value, xrow)) for xrow in X]
        scores = list(map(model, inputs))
        # svm "max-margin" loss; yi is a numpy int64 on the left of a Value
        losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(y, scores, strict=True)]
        data_loss = sum(losses) * (1.0 / len(losses))
        alpha = 1e-4  # L2 regularization
        reg_loss = alpha * sum(p * p for p in model.parameters())
        total_loss = data_loss + reg_loss
        accuracy = [(yi > 0) == (s.data > 0) for yi, s in zip(y, scores, strict=True)]
        return total_loss, sum(accuracy) / len(accuracy)

    history = []
    for k in range(steps):
        total_loss, acc = loss()
        model.zero_grad()
        total_loss.backward()
        learning_rate = 1.0 - 0.9 * k / 100
        for p in model.parameters():
            p.data -= learning_rate * p.grad
        history.append((total_loss.data, float(acc)))
    return tuple(history), tuple(p.data for p in model.parameters())


# ----------------------------------------------------------------------------- structure


def test_reprs(engine):
    assert repr(engine.Neuron(3)) == "ReLUNeuron(3)"
    assert repr(engine.Neuron(3, nonlin=False)) == "LinearNeuron(3)"
    assert repr(engine.Layer(2, 3)) == "Layer of [ReLUNeuron(2), ReLUNeuron(2), ReLUNeuron(2)]"
    assert repr(engine.Layer(2, 1, nonlin=False)) == "Layer of [LinearNeuron(2)]"
    hidden1 = ", ".join(["ReLUNeuron(2)"] * 16)
    hidden2 = ", ".join(["ReLUNeuron(16)"] * 16)
    assert repr(engine.MLP(2, [16, 16, 1])) == (
        f"MLP of [Layer of [{hidden1}], Layer of [{hidden2}], Layer of [LinearNeuron(16)]]"
    )


def test_parameter_counts(engine):
    assert engine.Module().parameters() == []
    assert len(engine.Neuron(3).parameters()) == 4
    assert len(engine.Layer(3, 2).parameters()) == 8
    params = engine.MLP(2, [16, 16, 1]).parameters()
    assert len(params) == 337  # as in micrograd's demo
    assert len({id(p) for p in params}) == 337
    assert all(isinstance(p, engine.Value) for p in params)


def test_seeded_init(engine):
    random.seed(1337)
    model = engine.MLP(3, [4, 2])
    random.seed(1337)
    want = []
    for nin, nout in [(3, 4), (4, 2)]:
        for _ in range(nout):  # each neuron: nin weights from random.uniform(-1, 1), then b = 0
            want += [random.uniform(-1, 1) for _ in range(nin)] + [0.0]
    assert [p.data for p in model.parameters()] == want
    assert [p.grad for p in model.parameters()] == [0.0] * len(want)


def test_seeded_init_identical_across_engines(native, reference):
    random.seed(1337)
    a = native.MLP(2, [16, 16, 1])
    random.seed(1337)
    b = reference.MLP(2, [16, 16, 1])
    assert [p.data for p in a.parameters()] == [p.data for p in b.parameters()]


def test_neuron_forward_and_backward(engine):
    random.seed(0)
    n = engine.Neuron(3)
    w = [p.data for p in n.w]
    x = [0.5, -1.0, 2.0]
    pre = 0.0
    for wi, xi in zip(w, x, strict=True):
        pre = pre + wi * xi
    out = n(x)
    assert out.data == (0.0 if pre < 0 else pre)
    out.backward()
    d = 1.0 if out.data > 0 else 0.0
    assert [p.grad for p in n.w] == [d * xi for xi in x]
    assert n.b.grad == d
    # Values as inputs receive gradients too; a tuple works as well as a list.
    xv = tuple(engine.Value(xi) for xi in x)
    lin = engine.Neuron(3, nonlin=False)
    o = lin(xv)
    want = 0.0
    for p, xi in zip(lin.w, x, strict=True):
        want = want + p.data * xi
    assert o.data == want
    o.backward()
    assert [v.grad for v in xv] == [p.data for p in lin.w]


def test_neuron_forward_rounds_like_micrograd(engine):
    # micrograd's Neuron computes sum((wi*xi for ...), b): b first, then each term in order.
    rng = random.Random(11)
    for _ in range(300):
        nin = rng.randint(1, 10)
        n = engine.Neuron(nin, nonlin=False)
        n.b.data = rng.uniform(-1, 1) * 10 ** rng.randint(-3, 3)
        x = [rng.uniform(-1, 1) * 10 ** rng.randint(-3, 3) for _ in range(nin)]
        want = n.b.data
        for wi, xi in zip(n.w, x, strict=True):
            want = want + wi.data * xi
        assert n(x).data == want


def test_layer_output_shape(engine):
    assert isinstance(engine.Layer(2, 1)([1.0, 2.0]), engine.Value)
    out = engine.Layer(2, 3)([1.0, 2.0])
    assert isinstance(out, list) and len(out) == 3
    assert all(isinstance(o, engine.Value) for o in out)
    assert isinstance(engine.MLP(2, [3, 1])([1.0, 2.0]), engine.Value)


def test_zero_grad_and_live_parameters(engine):
    random.seed(3)
    model = engine.MLP(2, [3, 1])
    out = model([1.0, -2.0])
    (out * out).backward()
    assert any(p.grad != 0.0 for p in model.parameters())
    model.zero_grad()
    assert all(type(p.grad) is float and p.grad == 0.0 for p in model.parameters())
    # parameters() hands out the model's own Values: updates through it change the model.
    before = model([1.0, -2.0]).data
    for p in model.parameters():
        p.data += 0.5
    assert model([1.0, -2.0]).data != before
    assert model.layers[0].neurons[0].b.data == 0.5


@pytest.mark.parametrize(
    ("make", "call"),
    [
        (lambda e: e.Neuron(7), [1.0, 2.0, 3.0, 4.0]),
        (lambda e: e.Layer(7, 2), [1.0, 2.0, 3.0, 4.0]),
        (lambda e: e.MLP(7, [3, 1]), [1.0, 2.0, 3.0, 4.0]),
        (lambda e: e.Neuron(4), [1.0] * 7),
    ],
)
def test_wrong_input_count(engine, make, call):
    model = make(engine)
    with pytest.raises(ValueError) as info:
        model(call)
    message = str(info.value)
    assert re.search(r"\b7\b", message) and re.search(r"\b4\b", message), message


BAD_SIZES = [
    (lambda nn: nn.MLP(-1, [3]), ValueError, r"nin must be >= 1, got -1"),
    (lambda nn: nn.MLP(2, [-3]), ValueError, r"nouts\[0\] must be >= 1, got -3"),
    (lambda nn: nn.MLP(2, [0, 1]), ValueError, r"nouts\[0\] must be >= 1, got 0"),
    (lambda nn: nn.MLP(2, [4, 0]), ValueError, r"nouts\[1\] must be >= 1, got 0"),
    (lambda nn: nn.MLP(2, []), ValueError, r"at least one layer"),
    (lambda nn: nn.MLP(2, 3), TypeError, r"nouts must be a list of layer sizes, not 'int'"),
    (lambda nn: nn.MLP(2, "31"), TypeError, r"nouts must be a list of layer sizes, not 'str'"),
    (lambda nn: nn.MLP(2.0, [1]), TypeError, r"nin must be an int, not 'float'"),
    (lambda nn: nn.MLP(True, [1]), TypeError, r"nin must be an int, not 'bool'"),
    (lambda nn: nn.MLP(2, [3, 1.0]), TypeError, r"nouts\[1\] must be an int, not 'float'"),
    (lambda nn: nn.Layer(2, 0), ValueError, r"Layer\(nin, nout\): nout must be >= 1, got 0"),
    (lambda nn: nn.Layer(-2, 3), ValueError, r"Layer\(nin, nout\): nin must be >= 1"),
    (lambda nn: nn.Layer(2, False), TypeError, r"nout must be an int, not 'bool'"),
    (lambda nn: nn.Neuron(0), ValueError, r"Neuron\(nin\): nin must be >= 1, got 0"),
    (lambda nn: nn.Neuron(-5), ValueError, r"Neuron\(nin\): nin must be >= 1, got -5"),
    (lambda nn: nn.Neuron(2.5), TypeError, r"Neuron\(nin\): nin must be an int"),
    (lambda nn: nn.Neuron(None), TypeError, r"nin must be an int, not 'NoneType'"),
]


@pytest.mark.parametrize(("build", "error", "message"), BAD_SIZES)
def test_bad_sizes_are_refused_when_the_model_is_built(native, build, error, message):
    import arenagrad.nn as nn

    with pytest.raises(error, match=message):
        build(nn)


def test_integer_like_sizes_are_accepted(native):
    import arenagrad.nn as nn

    random.seed(0)
    model = nn.MLP(np.int64(2), np.array([3, 1]))  # numpy integers, any iterable of sizes
    assert repr(model) == repr(nn.MLP(2, (3, 1)))
    assert len(model.parameters()) == 13
    assert len(nn.Layer(np.int32(4), 2).parameters()) == 10


# ----------------------------------------------------------------------------- training


def test_training_first_step_matches_numpy(engine):
    """Loss and every parameter gradient of the demo's first step, against a numpy
    matrix implementation of the same network (a different summation order, hence the
    tolerance relative to the largest gradient)."""
    Value = engine.Value
    X, y = make_moons()
    random.seed(1337)
    model = engine.MLP(2, [16, 16, 1])
    params = model.parameters()

    scores = [model(list(map(Value, row))) for row in X]
    losses = [(1 + -yi * s).relu() for yi, s in zip(y, scores, strict=True)]
    total = sum(losses) * (1.0 / len(losses)) + 1e-4 * sum(p * p for p in params)
    total.backward()

    # Parameters are neuron-major (w..., b) per layer; unpack into matrices.
    flat = np.array([p.data for p in params])
    shapes = [(16, 2), (16, 16), (1, 16)]
    Ws, bs, at = [], [], 0
    for nout, nin in shapes:
        block = flat[at : at + nout * (nin + 1)].reshape(nout, nin + 1)
        Ws.append(block[:, :nin])
        bs.append(block[:, nin])
        at += nout * (nin + 1)
    pre1 = X @ Ws[0].T + bs[0]
    h1 = np.maximum(pre1, 0)
    pre2 = h1 @ Ws[1].T + bs[1]
    h2 = np.maximum(pre2, 0)
    s = (h2 @ Ws[2].T + bs[2])[:, 0]
    margin = 1 - y * s
    want_loss = np.maximum(margin, 0).mean() + 1e-4 * np.sum(flat * flat)
    ds = -y * (margin > 0) / len(y)
    g3 = ds[:, None]
    g2 = (g3 @ Ws[2]) * (pre2 > 0)
    g1 = (g2 @ Ws[1]) * (pre1 > 0)
    grads = []
    for g, inp in [(g1, X), (g2, h1), (g3, h2)]:
        grads.append(np.column_stack([g.T @ inp, g.sum(axis=0)]).ravel())
    want_grad = np.concatenate(grads) + 2e-4 * flat

    assert_same(total.data, want_loss, "loss", rel=1e-12)
    got_grad = np.array([p.grad for p in params])
    scale = np.max(np.abs(want_grad))
    worst = np.max(np.abs(got_grad - want_grad)) / scale
    assert worst <= 1e-12, f"largest gradient error {worst:.3g} of the largest gradient"


def test_training_reduces_loss(engine):
    history, _ = demo_training(engine.name, steps=20)
    losses = [loss for loss, _ in history]
    accuracies = [acc for _, acc in history]
    assert losses[-1] < 0.6 * losses[0], losses
    assert accuracies[-1] > accuracies[0], accuracies


def test_training_trajectory_native_matches_reference(native, reference):
    ours, ours_params = demo_training(native.name, steps=20)
    oracle, oracle_params = demo_training(reference.name, steps=20)
    for k, ((loss_a, acc_a), (loss_b, acc_b)) in enumerate(zip(ours, oracle, strict=True)):
        assert_same(loss_a, loss_b, f"step {k} loss", rel=1e-9)
        assert acc_a == acc_b, f"step {k} accuracy"
    for i, (a, b) in enumerate(zip(ours_params, oracle_params, strict=True)):
        assert_same(a, b, f"parameter {i} after training", rel=1e-9)
