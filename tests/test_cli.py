"""`python -m arenagrad ...`: every command runs, has --help, and rejects bad arguments with a
one-line error and a non-zero exit status."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

HAVE_SKLEARN = importlib.util.find_spec("sklearn") is not None
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
try:
    import arenagrad

    HAVE_COMPILE = hasattr(arenagrad, "compile")
except ImportError:
    HAVE_COMPILE = False

needs_digits = pytest.mark.skipif(
    not (HAVE_SKLEARN and HAVE_COMPILE),
    reason="needs scikit-learn (the demo extra) and arenagrad.compile",
)


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


@pytest.mark.parametrize("command", [[], ["demo"], ["train"], ["train", "digits"], ["bench"]])
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
    ["bench", "--bogus"],
    ["bench", "--budget", "x"],
    ["bench", "--budget", "0"],
    ["bench", "--budget", "inf"],
    ["bench", "--seed", "-1"],
]


@pytest.mark.parametrize("args", BAD_ARGUMENTS)
def test_bad_arguments_give_one_line(capsys, args):
    status, out, err = run_main(capsys, *args)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("arenagrad") and "error:" in lines[0]
    assert out == ""


def test_bad_argument_as_a_real_process():
    result = cli("demo", "--steps", "-5")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--steps" in result.stderr


def test_demo_runs():
    result = cli("demo", "--steps", "3", "--no-compare", "--seed", "7")
    assert result.returncode == 0, result.stderr
    assert re.search(r"final accuracy: \d+\.\d%", result.stdout)
    assert "3/3" in result.stderr  # the progress bar (tqdm or the plain line) reached the end


def test_demo_is_seeded():
    a = cli("demo", "--steps", "2", "--no-compare", "--seed", "3")
    b = cli("demo", "--steps", "2", "--no-compare", "--seed", "3")
    final = [line for line in a.stdout.splitlines() if line.startswith("final")]
    assert final and final == [line for line in b.stdout.splitlines() if line.startswith("final")]


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="matplotlib not installed (optional)")
def test_demo_plot(tmp_path):
    out = tmp_path / "moons.png"
    result = cli("demo", "--steps", "2", "--no-compare", "--plot", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_digits
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


@needs_digits
def test_train_digits_bad_checkpoint_is_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    status, _, err = run_main(capsys, "train", "digits", "--epochs", "0", "--load", str(bad))
    assert status == 1
    assert len(err.strip().splitlines()) == 1
    assert "arenagrad checkpoint" in err
    missing = str(tmp_path / "nope.npz")
    status, _, err = run_main(capsys, "train", "digits", "--epochs", "0", "--load", missing)
    assert status == 1 and len(err.strip().splitlines()) == 1 and "nope.npz" in err


def test_train_digits_without_sklearn_says_what_to_install(tmp_path):
    shim = tmp_path / "sklearn"
    shim.mkdir()
    (shim / "__init__.py").write_text("raise ImportError('hidden for this test')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), *sys.path]))
    result = cli("train", "digits", "--epochs", "1", env=env)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert ("arenagrad[demo]" if HAVE_COMPILE else "arenagrad.compile") in result.stderr
