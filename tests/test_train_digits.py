"""`train digits` checkpoints: the held-out split travels with the weights, and --load resumes
the same run (batch order included). Driven through the command line, in-process."""

from __future__ import annotations

import importlib.util
import json
import random

import numpy as np
import pytest

arenagrad = pytest.importorskip("arenagrad")

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("sklearn") is None,
    reason="needs scikit-learn (the demo extra)",
)

SMALL = ("--limit", "200")  # a few epochs over 200 samples: fast, and still a real run


def cli(capsys, *args):
    """(exit status, stdout, stderr) of `python -m arenagrad train digits ARGS`."""
    from arenagrad.__main__ import main

    try:
        status = main(["train", "digits", *map(str, args)])
    except SystemExit as exit:
        status = exit.code
    out = capsys.readouterr()
    return status, out.out, out.err


def ok(capsys, *args):
    status, out, err = cli(capsys, *args)
    assert status == 0, err
    return out


def refused(capsys, *args):
    status, out, err = cli(capsys, *args)
    assert status == 2, out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    return lines[0]


def arrays(path):
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}


def run_record(path):
    return json.loads(str(arrays(path)["meta"]))["extra"]["train digits"]


def test_resumed_run_equals_the_uninterrupted_run(capsys, tmp_path):
    straight, half, resumed = (tmp_path / name for name in ("4.npz", "2.npz", "2+2.npz"))
    ok(capsys, "--epochs", 4, *SMALL, "--save", straight)
    ok(capsys, "--epochs", 2, *SMALL, "--save", half)
    out = ok(capsys, "--epochs", 2, *SMALL, "--load", half, "--save", resumed)
    assert "after epoch 2 of its run" in out and "after epoch 4" in out
    a, b = arrays(straight), arrays(resumed)
    assert a.keys() == b.keys()
    for name in a:  # parameters, Adam's moments and the metadata: bit for bit
        assert np.array_equal(a[name], b[name]), name
    assert run_record(resumed)["epochs_done"] == 4
    # The same accuracy is reported for both.
    last = ok(capsys, "--epochs", 0, "--load", straight).strip().splitlines()[-1]
    assert last == ok(capsys, "--epochs", 0, "--load", resumed).strip().splitlines()[-1]


def test_a_checkpoint_is_evaluated_on_its_own_held_out_split_only(capsys, tmp_path):
    ck = tmp_path / "seed1.npz"
    trained = ok(capsys, "--epochs", 1, *SMALL, "--seed", 1, "--save", ck)
    record = run_record(ck)["split"]
    assert record["seed"] == 1 and record["test_fraction"] == 0.2
    assert len(record["test_sha256"]) == 64
    # Another seed's held-out samples overlap this run's training samples: refused.
    message = refused(capsys, "--epochs", 0, "--load", ck, "--seed", 2)
    assert "--seed 1" in message and "held-out" in message
    refused(capsys, "--epochs", 0, "--load", ck)  # the default seed 0 is another seed too
    evaluated = ok(capsys, "--epochs", 0, "--load", ck, "--seed", 1)
    assert evaluated.strip().splitlines()[-1] == trained.strip().splitlines()[-1]


def test_resuming_with_other_options_is_refused_but_evaluating_is_not(capsys, tmp_path):
    ck = tmp_path / "ck.npz"
    ok(capsys, "--epochs", 1, *SMALL, "--save", ck)
    for other in [("--batch-size", 16, *SMALL), ("--lr", 0.05, *SMALL), ()]:
        message = refused(capsys, "--epochs", 1, "--load", ck, *other)
        assert "--batch-size 32 --lr 0.01 --limit 200" in message
    ok(capsys, "--epochs", 0, "--load", ck, "--batch-size", 16)


def test_checkpoints_that_record_no_split_or_another_one_are_refused(capsys, tmp_path):
    from arenagrad import optim
    from arenagrad.nn import MLP

    random.seed(0)
    model = MLP(64, [32, 10])  # the right architecture, but no record of its data
    plain = tmp_path / "plain.npz"
    arenagrad.save(model, plain, optimizer=optim.Adam(model.parameters()))
    assert "records no train-digits run" in refused(capsys, "--epochs", 0, "--load", plain)

    ck = tmp_path / "ck.npz"
    ok(capsys, "--epochs", 1, *SMALL, "--save", ck)

    def tampered(name, edit):
        content = arrays(ck)
        meta = json.loads(str(content["meta"]))
        edit(meta["extra"]["train digits"])
        content["meta"] = np.array(json.dumps(meta))
        np.savez(tmp_path / name, **content)
        return tmp_path / name

    other_split = tampered("split.npz", lambda run: run["split"].update(test_sha256="0" * 64))
    assert "another split" in refused(capsys, "--epochs", 0, "--load", other_split)
    no_rng = tampered("rng.npz", lambda run: run.pop("batch_rng"))
    assert "incomplete" in refused(capsys, "--epochs", 0, "--load", no_rng)
    bad_rng = tampered("bad_rng.npz", lambda run: run["batch_rng"].update(bit_generator="MT"))
    assert "batch-order state" in refused(capsys, "--epochs", 1, *SMALL, "--load", bad_rng)
    negative = tampered("negative.npz", lambda run: run.update(epochs_done=-1))
    assert "incomplete" in refused(capsys, "--epochs", 0, "--load", negative)
    # Metadata nested far deeper than json can read back: one line, no RecursionError.
    content = arrays(ck)
    text = str(content["meta"])
    content["meta"] = np.array(text[:-1] + ', "x": ' + "[" * 200_000 + "]" * 200_000 + "}")
    deep = tmp_path / "deep.npz"
    np.savez(deep, **content)
    assert "nested too deeply" in refused(capsys, "--epochs", 0, "--load", deep)
