"""`python -m arenagrad ...`: every command runs, has --help, and rejects bad arguments (paths
included, before any work) with a one-line error and exit status 2."""

from __future__ import annotations

import importlib.util
import os
import pickle
import re
import subprocess
import sys

import pytest

HAVE_SKLEARN = importlib.util.find_spec("sklearn") is not None
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None

needs_sklearn = pytest.mark.skipif(not HAVE_SKLEARN, reason="needs scikit-learn (the demo extra)")


def cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "arenagrad", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def run_main(capsys, *args):
    """The CLI in-process (fast): (exit status, stdout, stderr)."""
    from arenagrad.__main__ import main

    try:
        status = main(list(args))
    except SystemExit as exit:
        status = exit.code
    out = capsys.readouterr()
    return status, out.out, out.err


@pytest.mark.parametrize("command", [[], ["demo"], ["train"], ["train", "digits"]])
def test_help(capsys, command):
    status, out, _ = run_main(capsys, *command, "--help")
    assert status == 0
    assert out.startswith("usage: arenagrad")
    if command:
        assert "--seed" in out or "digits" in out


BAD_ARGUMENTS = [
    [],
    ["nonsense"],
    ["demo", "--steps", "0"],
    ["demo", "--steps", "ten"],
    ["demo", "--seed", "-1"],
    ["demo", "--bogus"],
    ["train"],
    ["train", "mnist"],
    ["train", "digits", "--epochs", "-2"],
    ["train", "digits", "--lr", "0"],
    ["train", "digits", "--batch-size", "x"],
    ["train", "digits", "--lr", "inf"],
    ["bench"],  # the benchmark harness is bench/compare.py in the source tree
    # Paths: refused while the arguments are read, before any training.
    ["train", "digits", "--save", "no-such-folder/digits.npz"],
    ["train", "digits", "--save", "."],
    ["train", "digits", "--save", ""],
    ["train", "digits", "--load", "no-such-checkpoint.npz"],
    ["train", "digits", "--load", "."],
    ["demo", "--plot", "no-such-folder/moons.png"],
]


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("arenagrad") and "error:" in lines[0], err
    return lines[0]


@pytest.mark.parametrize("args", BAD_ARGUMENTS)
def test_bad_arguments_give_one_line(capsys, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    status, out, err = run_main(capsys, *args)
    assert status == 2
    one_error_line(err)
    assert out == ""  # nothing ran


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="matplotlib not installed (optional)")
@pytest.mark.parametrize("name", ["moons", "moons.nope"])
def test_demo_plot_needs_an_image_format(capsys, tmp_path, name):
    status, out, err = run_main(capsys, "demo", "--plot", str(tmp_path / name))
    assert status == 2 and out == ""
    assert ".png" in one_error_line(err)  # says which formats work


def test_bad_argument_as_a_real_process():
    result = cli("demo", "--steps", "-5")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--steps" in result.stderr


def test_demo_output_reads_well_in_a_log():
    result = cli("demo", "--steps", "30", "--no-compare", "--seed", "7")
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout + result.stderr  # whole lines only, even where tqdm is
    lines = result.stdout.splitlines()
    assert "model: MLP 2-16-16-1, 337 parameters" in lines  # the model in one line
    assert all(len(line) < 100 for line in lines), lines
    steps = [line for line in lines if line.startswith("step ")]
    # One line per tenth of the run, plus the first step.
    assert [line.split()[1] for line in steps] == ["1/30", *(f"{k}/30" for k in range(3, 31, 3))]
    for line in steps:
        assert re.fullmatch(r"step +\d+/30  loss \d+\.\d{4}  accuracy \d+%", line), line
    assert re.fullmatch(r"trained in \d+\.\d\d s; final accuracy \d+%", lines[-1])


def test_demo_is_seeded():
    a = cli("demo", "--steps", "2", "--no-compare", "--seed", "3")
    b = cli("demo", "--steps", "2", "--no-compare", "--seed", "3")
    steps = [line for line in a.stdout.splitlines() if line.startswith("step")]
    assert steps and steps == [line for line in b.stdout.splitlines() if line.startswith("step")]


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="matplotlib not installed (optional)")
def test_demo_plot(tmp_path):
    out = tmp_path / "moons.png"
    result = cli("demo", "--steps", "2", "--no-compare", "--plot", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_sklearn
def test_train_digits_short_run_save_and_load(tmp_path):
    ck = tmp_path / "digits.npz"
    first = cli("train", "digits", "--epochs", "2", "--limit", "300", "--save", str(ck))
    assert first.returncode == 0, first.stderr
    last = first.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"held-out accuracy: \d+\.\d%", last)
    assert "confusion matrix" in first.stdout
    # Evaluating the saved model (0 more epochs) reproduces the same held-out accuracy.
    again = cli("train", "digits", "--epochs", "0", "--load", str(ck))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-1] == last


@needs_sklearn
def test_train_digits_bad_checkpoint_is_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    status, _, err = run_main(capsys, "train", "digits", "--epochs", "0", "--load", str(bad))
    assert status == 2
    assert "arenagrad checkpoint" in one_error_line(err)
    pickled = tmp_path / "model.npz"
    pickled.write_bytes(pickle.dumps({"params": [1.0, 2.0]}))
    status, _, err = run_main(capsys, "train", "digits", "--epochs", "0", "--load", str(pickled))
    assert status == 2
    line = one_error_line(err)
    assert "arenagrad checkpoint" in line and "pickle" not in line  # no advice to unpickle
    missing = str(tmp_path / "nope.npz")
    status, out, err = run_main(capsys, "train", "digits", "--epochs", "0", "--load", missing)
    assert status == 2 and out == "" and "nope.npz" in one_error_line(err)


def test_train_digits_without_sklearn_says_what_to_install(tmp_path):
    shim = tmp_path / "sklearn"
    shim.mkdir()
    (shim / "__init__.py").write_text("raise ImportError('hidden for this test')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    result = cli("train", "digits", "--epochs", "1", env=env)
    assert result.returncode == 2
    assert "arenagrad[demo]" in one_error_line(result.stderr)


def test_demo_times_a_step_against_the_baseline():
    from arenagrad import reference
    from arenagrad.apps import demo

    X, y = demo.moons(n_samples=8)
    native, baseline = demo.compare_step_times(reference, X, y, seed=1, rounds=3)
    assert len(native) == len(baseline) == 3
    assert all(t > 0 for t in native + baseline)


def test_demo_speed_report():
    from arenagrad.apps import demo

    lines = demo.report_speed("micrograd", [0.002, 0.001, 0.001, 0.001], [1.0, 1.2, 1.0, 0.8])
    assert lines[0].endswith("median of 4 interleaved rounds:")
    assert lines[1].split() == ["arenagrad", "1.00", "ms"]
    # Per-round ratios 500, 1200, 1000, 800: median 900, middle half 725 to 1,050.
    assert lines[2].split()[:3] == ["micrograd", "1,000", "ms"]
    assert "900x slower (middle half of the rounds: 725x to 1,050x)" in lines[2]
