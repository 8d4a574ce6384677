"""examples/gpt.py: the microgpt-style model gives the same losses on every engine."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from _support import assert_lane_sums, assert_same, needs_native

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "gpt.py"
if not SCRIPT.is_file():
    pytest.skip("examples/ is not beside tests/", allow_module_level=True)


@pytest.fixture(scope="module")
def gpt():
    spec = importlib.util.spec_from_file_location("example_gpt", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def python_losses(gpt):
    losses, _ = gpt.train("python", 3, docs=gpt.make_names()[:3])
    return losses


def test_the_pure_python_model_learns_something(gpt, python_losses):
    assert len(gpt.init_params(gpt.make_engine("python"), 27)) == 9
    losses, _ = gpt.train("python", 3, docs=gpt.make_names()[:1] * 3)
    assert losses[2] < losses[0]  # the same name three times: the loss goes down


@needs_native
@pytest.mark.parametrize("engine", ["arenagrad", "idiomatic"])
def test_arenagrad_losses_equal_the_pure_python_ones(gpt, python_losses, engine):
    losses, model = gpt.train(engine, 3, docs=gpt.make_names()[:3])
    assert len(losses) == len(python_losses)
    for got, want in zip(losses, python_losses, strict=True):
        assert_same(got, want, "loss", rel=1e-12)
    vocab = model.tokenizer.vocab_size
    assert len(model.params) == 2 * vocab * 16 + 16 * 16 + 4 * 16 * 16 + 2 * 64 * 16
    names = gpt.sample(model, 3)
    assert len(names) == 3 and all(isinstance(name, str) for name in names)


@needs_native
def test_compiled_lanes_equal_eager_documents(gpt):
    # B names of one length as the lanes of one replay: each lane's loss is the eager loss of
    # its name, and the parameters' gradients the eager sum over the names
    import arenagrad
    import numpy as np

    engine = gpt.make_compiled_engine()
    docs = gpt.make_names()
    tokenizer = gpt.Tokenizer(docs)
    sd = gpt.init_params(engine, tokenizer.vocab_size)
    params = [p for mat in sd.values() for row in mat for p in row]
    f = arenagrad.compile(lambda *tokens: gpt.document_loss(engine, sd, tokens), n_inputs=None)
    groups = gpt.batches_by_length(tokenizer, docs)
    eager = gpt.make_engine("idiomatic")
    for length, count in ((6, 5), (9, 3)):
        rows = groups[length][:count]
        arenagrad.zero_grad(params)
        Y = f.forward(np.array(rows, dtype=np.float64))
        f.backward()
        replay_grads = [p.grad for p in params]
        arenagrad.zero_grad(params)
        lane_grads = []
        for lane, row in enumerate(rows):
            loss = gpt.document_loss(eager, sd, row)
            assert_same(Y[lane], loss.data, "lane loss", rel=1e-12)
            arenagrad.zero_grad(params)
            loss.backward()
            lane_grads.append([p.grad for p in params])
        assert_lane_sums(replay_grads, lane_grads)
    assert sorted(f.widths) == [6, 9]


@needs_native
def test_compiled_training_runs(gpt):
    losses, model, tokens = gpt.train_compiled(6, 8)
    assert len(losses) == 6 and tokens > 0
    assert all(isinstance(name, str) for name in gpt.sample(model, 2))


def test_the_benchmark_runs(capsys):
    # bench/gpt.py at tiny sizes: every engine's row is there (no timing is checked)
    bench = SCRIPT.parents[1] / "bench" / "gpt.py"
    if not bench.is_file():
        pytest.skip("bench/ is not beside tests/")
    pytest.importorskip("arenagrad")
    spec = importlib.util.spec_from_file_location("bench_gpt", bench)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    engines = "python,arenagrad,idiomatic,compiled"
    if module.can_build_floor_value():  # the floor engine is a C extension built on the spot
        engines += ",floor"
    assert module.main(["--quick", "--engines", engines, "--phases"]) == 0
    speeds, phases = capsys.readouterr().out.split("by phase")
    for engine in engines.split(","):
        assert f"| {engine}" in speeds
        assert (f"| {engine}" in phases) == (engine != "compiled")  # an eager engine's phases
    with pytest.raises(SystemExit):
        module.main(["--engines", "nope"])
