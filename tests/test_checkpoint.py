"""arenagrad.save / arenagrad.load: round trips, architecture checks, corrupt files, atomicity."""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
import time
import zipfile

import arenagrad
import numpy as np
import pytest
from arenagrad import optim
from arenagrad.nn import MLP


def model(seed=0, sizes=(3, [4, 2])):
    random.seed(seed)
    return MLP(*sizes)


def datas(m):
    return [p.data for p in m.parameters()]


def test_roundtrip_model(tmp_path):
    src, dst = model(1), model(2)
    assert datas(src) != datas(dst)
    path = tmp_path / "m.npz"
    arenagrad.save(src, path)
    meta = arenagrad.load(dst, str(path))  # str paths too
    assert datas(dst) == datas(src)  # bit-exact
    assert meta["architecture"] == repr(src)
    assert np.load(path)["params"].tolist() == datas(src)  # a plain npz, no pickle


def test_roundtrip_plain_parameter_list(tmp_path, engine):
    ps = [engine.Value(x) for x in (1.5, -2.0, 3.25)]
    arenagrad.save(ps, tmp_path / "p.npz")
    qs = [engine.Value(0.0) for _ in range(3)]
    arenagrad.load(qs, tmp_path / "p.npz")
    assert [q.data for q in qs] == [1.5, -2.0, 3.25]


@pytest.mark.parametrize(
    "make", [lambda ps: optim.Adam(ps, lr=0.01), lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9)]
)
def test_optimizer_state_resumes_exactly(tmp_path, make):
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(6, 26))

    def train(m, opt, steps):
        for g in steps:
            for p, gi in zip(m.parameters(), g, strict=True):
                p.grad = float(gi)
            opt.step()

    a = model(3)
    opt_a = make(a.parameters())
    train(a, opt_a, grads)  # 6 steps straight

    b = model(3)
    opt_b = make(b.parameters())
    train(b, opt_b, grads[:3])
    arenagrad.save(b, tmp_path / "ck.npz", optimizer=opt_b)
    c = model(99)
    opt_c = make(c.parameters())
    arenagrad.load(c, tmp_path / "ck.npz", optimizer=opt_c)
    train(c, opt_c, grads[3:])  # 3 + 3 steps through a checkpoint
    assert datas(c) == datas(a)


def test_architecture_mismatch_is_refused(tmp_path):
    arenagrad.save(model(0, (3, [4, 2])), tmp_path / "m.npz")
    other = model(5, (5, [3, 2]))  # same parameter count (26), different layers
    assert len(other.parameters()) == 26
    before = datas(other)
    with pytest.raises(ValueError, match="different architecture"):
        arenagrad.load(other, tmp_path / "m.npz")
    assert datas(other) == before  # untouched
    with pytest.raises(ValueError, match="different architecture"):
        arenagrad.load([arenagrad.Value(0.0)], tmp_path / "m.npz")


def test_missing_optimizer_state_and_wrong_optimizer(tmp_path):
    m = model()
    arenagrad.save(m, tmp_path / "m.npz")
    with pytest.raises(ValueError, match="no optimizer state"):
        arenagrad.load(m, tmp_path / "m.npz", optimizer=optim.SGD(m, lr=0.1))
    arenagrad.save(m, tmp_path / "m.npz", optimizer=optim.Adam(m))
    with pytest.raises(ValueError, match="not a SGD"):
        arenagrad.load(m, tmp_path / "m.npz", optimizer=optim.SGD(m, lr=0.1))


def test_truncated_and_corrupt_files(tmp_path):
    m = model()
    good = tmp_path / "good.npz"
    arenagrad.save(m, good)
    raw = good.read_bytes()
    cases = {
        "truncated": raw[: len(raw) // 2],
        "empty": b"",
        "garbage": b"not a checkpoint at all" * 10,
    }
    # Flip bytes inside the stored parameter array: the zip CRC must catch it.
    with zipfile.ZipFile(good) as z:
        info = z.getinfo("params.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 140
    flipped = bytearray(raw)
    flipped[start : start + 8] = bytes(b ^ 0xFF for b in flipped[start : start + 8])
    cases["bit flip"] = bytes(flipped)
    for name, data in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.npz"
        path.write_bytes(data)
        with pytest.raises(ValueError, match="arenagrad checkpoint"):
            arenagrad.load(m, path)
    npy = tmp_path / "array.npy"
    np.save(npy, np.zeros(26))
    with pytest.raises(ValueError, match="not a readable arenagrad checkpoint"):
        arenagrad.load(m, npy)
    other = tmp_path / "other.npz"
    np.savez(other, params=np.zeros(26))
    with pytest.raises(ValueError, match=r"not a readable arenagrad checkpoint|not an arenagrad"):
        arenagrad.load(m, other)
    with pytest.raises(FileNotFoundError):
        arenagrad.load(m, tmp_path / "missing.npz")


def test_wrong_types(tmp_path):
    with pytest.raises(TypeError, match="Module or an iterable"):
        arenagrad.save(42, tmp_path / "x.npz")
    with pytest.raises(TypeError, match="parameter 0 must be a Value"):
        arenagrad.save([1.0, 2.0], tmp_path / "x.npz")
    with pytest.raises(TypeError, match="path"):
        arenagrad.save(model(), 123)
    with pytest.raises(TypeError, match="not an optimizer"):
        arenagrad.save(model(), tmp_path / "x.npz", optimizer="adam")
    assert not (tmp_path / "x.npz").exists()


def test_write_is_atomic(tmp_path, monkeypatch):
    m = model(1)
    path = tmp_path / "m.npz"
    arenagrad.save(m, path)
    old = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # a crash in the middle of writing the archive

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        arenagrad.save(model(2), path)
    assert path.read_bytes() == old  # the previous checkpoint is intact
    assert os.listdir(tmp_path) == ["m.npz"]  # and no temporary file is left behind


# ---- hostile and corrupt files: one ValueError, and nothing changes ----------------------


def trained(seed=0):
    """A model and an Adam that has taken one step (non-trivial state)."""
    m = model(seed)
    opt = optim.Adam(m, lr=0.01)
    for p in m.parameters():
        p.grad = 0.25
    opt.step()
    return m, opt


def snapshot(m, opt):
    return datas(m), repr(opt), {k: np.copy(v) for k, v in opt.state.items()}


def assert_unchanged(before, m, opt):
    params, hyper, state = before
    assert datas(m) == params
    assert repr(opt) == hyper
    assert opt.state.keys() == state.keys()
    for key, value in state.items():
        np.testing.assert_array_equal(opt.state[key], value)


def rewrite(source, target, edit_meta=None, edit_arrays=None):
    """Copy a checkpoint, editing its metadata (a dict, or a function returning the JSON
    text) and its arrays."""
    with np.load(source) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(str(arrays["meta"]))
    text = edit_meta(meta) if edit_meta else None
    arrays["meta"] = np.array(text if isinstance(text, str) else json.dumps(meta))
    if edit_arrays:
        edit_arrays(arrays)
    np.savez(target, **arrays)


def hyper(**values):
    return lambda meta: meta["optimizer"]["hyperparameters"].update(values)


def scalars(**values):
    return lambda meta: meta["optimizer"]["scalars"].update(values)


HOSTILE_META = {
    # hyperparameters and step the constructors (or common sense) refuse
    "lr nan": (hyper(lr=float("nan")), r"invalid lr: nan"),
    "lr negative": (hyper(lr=-0.1), r"invalid lr"),
    "lr beyond float": (hyper(lr=10**400), r"invalid lr: an integer of \d+ bits"),
    "lr string": (hyper(lr="0.1"), r"lr must be a real number"),
    "betas 1, 1": (hyper(betas=[1, 1]), r"invalid betas"),
    "betas one number": (hyper(betas=0.9), r"betas must be a pair"),
    "eps -inf": (hyper(eps=float("-inf")), r"invalid eps"),
    "unknown hyperparameter": (hyper(momentum=0.9), r"no hyperparameter 'momentum'"),
    "step -1": (scalars(step=-1), r"invalid step: -1"),
    "step inf": (scalars(step=float("inf")), r"step must be an int"),
    "step huge": (scalars(step=10**400), r"invalid step: an integer of \d+ bits"),
    "step float": (scalars(step=2.0), r"step must be an int"),
    "step bool": (scalars(step=True), r"step must be an int"),
    # the file's structure
    "deeply nested": (
        lambda meta: json.dumps(meta)[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
        r"nested too deeply",
    ),
    "huge integer": (
        lambda meta: json.dumps(meta).replace('"n_params": 26', '"n_params": 1' + "0" * 5000),
        r"not valid JSON",
    ),
    "n_params string": (lambda meta: meta.update(n_params="26"), r"'n_params'"),
    "n_params nan": (lambda meta: meta.update(n_params=float("nan")), r"'n_params'"),
    "architecture list": (lambda meta: meta.update(architecture=[1]), r"'architecture'"),
    "optimizer list": (lambda meta: meta.update(optimizer=[1, 2]), r"'optimizer'"),
    "scalars list": (lambda meta: meta["optimizer"].update(scalars=[["step", 1]]), r"'scalars'"),
    "hyperparameters null": (
        lambda meta: meta["optimizer"].update(hyperparameters=None),
        r"'hyperparameters'",
    ),
    "array names numbers": (lambda meta: meta["optimizer"].update(arrays=[1]), r"not strings"),
    "array missing": (
        lambda meta: meta["optimizer"].update(arrays=["exp_avg", "exp_avg_sq", "x"]),
        r"no 'optimizer/x' entry",
    ),
    "optimizer type": (lambda meta: meta["optimizer"].update(type="SGD"), r"not a Adam"),
    "version true": (lambda meta: meta.update(version=True), r"format version True"),
    "version 2": (lambda meta: meta.update(version=2), r"format version 2"),
    "extra list": (lambda meta: meta.update(extra=[1]), r"'extra'"),
    "metadata a number": (lambda meta: "3.5", r"does not name the arenagrad checkpoint format"),
    "metadata NaN": (lambda meta: "NaN", r"does not name the arenagrad checkpoint format"),
}


@pytest.mark.parametrize("case", HOSTILE_META)
def test_hostile_metadata_is_one_value_error_and_changes_nothing(tmp_path, case):
    edit, message = HOSTILE_META[case]
    m, opt = trained(1)
    arenagrad.save(m, tmp_path / "good.npz", optimizer=opt)
    rewrite(tmp_path / "good.npz", tmp_path / "bad.npz", edit_meta=edit)
    m, opt = trained(2)
    before = snapshot(m, opt)
    with pytest.raises(ValueError, match=message):
        arenagrad.load(m, tmp_path / "bad.npz", optimizer=opt)
    assert_unchanged(before, m, opt)


BAD_STATE_ARRAYS = {
    "negative exp_avg_sq": (("optimizer/exp_avg_sq", -np.ones(26)), r"negative entries"),
    "strings": (("optimizer/exp_avg", np.array(["a"] * 26)), r"must hold real numbers"),
    "wrong length": (("optimizer/exp_avg", np.zeros(25)), r"has shape \(25,\)"),
    "pickled objects": (("optimizer/exp_avg", np.array([None] * 26)), r"pickled Python objects"),
    "params float32": (("params", np.zeros(26, dtype=np.float32)), r"parameter array"),
}


@pytest.mark.parametrize("case", BAD_STATE_ARRAYS)
def test_bad_state_arrays_change_nothing(tmp_path, case):
    (name, value), message = BAD_STATE_ARRAYS[case]
    m, opt = trained(1)
    arenagrad.save(m, tmp_path / "good.npz", optimizer=opt)
    rewrite(
        tmp_path / "good.npz", tmp_path / "bad.npz", edit_arrays=lambda a: a.update({name: value})
    )
    m, opt = trained(2)
    before = snapshot(m, opt)
    with pytest.raises(ValueError, match=message) as info:
        arenagrad.load(m, tmp_path / "bad.npz", optimizer=opt)
    assert "allow_pickle" not in str(info.value)
    assert_unchanged(before, m, opt)


@pytest.mark.parametrize(
    ("make", "bad"),
    [
        (lambda ps: optim.SGD(ps, lr=0.1), dict(lr=float("nan"))),
        (lambda ps: optim.SGD(ps, lr=0.1), dict(momentum=-1)),
        (lambda ps: optim.SGD(ps, lr=0.1), dict(nesterov=True)),  # needs momentum > 0
        (lambda ps: optim.SGD(ps, lr=0.1), dict(nesterov="yes")),
        (lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9), dict(dampening="0")),
        (lambda ps: optim.Adam(ps), dict(betas=(1, 1))),
        (lambda ps: optim.Adam(ps), dict(betas=(0.9,))),
        (lambda ps: optim.Adam(ps), dict(eps=-1e-8)),
        (lambda ps: optim.AdamW(ps), dict(weight_decay=float("nan"))),
        (lambda ps: optim.AdamW(ps), dict(lr=10**400)),
    ],
)
def test_load_state_dict_holds_states_to_the_constructors_rules(make, bad):
    # The same values, through the constructor and through load_state_dict: the same
    # exception and message (one check, shared), and load_state_dict changes nothing.
    ps = [arenagrad.Value(1.0), arenagrad.Value(-2.0)]
    opt = make(ps)
    kwargs = {**opt.state_dict()["hyperparameters"], **bad}
    with pytest.raises((TypeError, ValueError)) as by_constructor:
        type(opt)(ps, **kwargs)
    saved = opt.state_dict()
    saved["hyperparameters"].update(bad)
    fresh = make(ps)
    before = (repr(fresh), fresh.state_dict()["state"])
    with pytest.raises(type(by_constructor.value)) as by_load:
        fresh.load_state_dict(saved)
    assert str(by_load.value) == str(by_constructor.value)
    assert repr(fresh) == before[0]
    assert fresh.state_dict()["state"].keys() == before[1].keys()


def test_load_state_dict_is_all_or_nothing():
    ps = [arenagrad.Value(1.0), arenagrad.Value(-2.0)]
    opt = optim.Adam(ps, lr=0.5)
    saved = optim.Adam(ps, lr=0.01).state_dict()
    saved["state"]["step"] = -1  # valid hyperparameters, an invalid step: nothing applies
    with pytest.raises(ValueError, match="invalid step"):
        opt.load_state_dict(saved)
    assert opt.lr == 0.5 and opt.state["step"] == 0
    saved["state"]["step"] = 3
    saved["state"]["exp_avg"] = [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(saved)
    assert opt.lr == 0.5 and opt.state["exp_avg"].tolist() == [0.0, 0.0]
    saved["state"]["exp_avg"] = [1.0, 2.0]
    opt.load_state_dict(saved)  # lists of numbers are fine
    assert opt.lr == 0.01 and opt.state["step"] == 3 and opt.state["exp_avg"].tolist() == [1, 2]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"\x80\x04K\x01." + bytes(range(256)), "not an .npz (zip) archive"),  # a pickle
        (bytes(random.Random(3).randrange(256) for _ in range(4096)), "not an .npz"),
        (None, "single numpy array (.npy)"),
    ],
)
def test_non_checkpoints_do_not_mention_pickles(tmp_path, content, reason):
    path = tmp_path / "file.npz"
    if content is None:
        np.save(tmp_path / "file.npy", np.zeros(26))
        path = tmp_path / "file.npy"
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match="not a readable arenagrad checkpoint") as info:
        arenagrad.load(model(), path)
    assert reason in str(info.value)
    assert "pickle" not in str(info.value)


def test_architecture_message_counts_once(tmp_path):
    arenagrad.save([arenagrad.Value(1.0)] * 3, tmp_path / "p.npz")
    with pytest.raises(ValueError) as info:
        arenagrad.load([arenagrad.Value(1.0)] * 2, tmp_path / "p.npz")
    assert "checkpoint: 3 parameters\n" in str(info.value)
    assert str(info.value).endswith("this model: 2 parameters")


# ---- extra -----------------------------------------------------------------------------


def test_extra_round_trips(tmp_path):
    m = model()
    extra = {"epoch": 3, "split": {"seed": 5, "hash": "ab12"}, "rng": {"state": 2**127 + 1}}
    arenagrad.save(m, tmp_path / "m.npz", extra=extra)
    assert arenagrad.load(m, tmp_path / "m.npz")["extra"] == extra
    arenagrad.save(m, tmp_path / "m.npz", extra={"pair": (1, 2)})
    assert arenagrad.load(m, tmp_path / "m.npz")["extra"] == {"pair": [1, 2]}  # JSON's lists
    arenagrad.save(m, tmp_path / "m.npz")
    assert arenagrad.load(m, tmp_path / "m.npz")["extra"] is None


def test_extra_must_be_a_json_dict(tmp_path):
    m = model()
    with pytest.raises(TypeError, match="extra must be a dict"):
        arenagrad.save(m, tmp_path / "m.npz", extra=[1, 2])
    with pytest.raises(TypeError, match="JSON-serialisable"):
        arenagrad.save(m, tmp_path / "m.npz", extra={"f": open})
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(TypeError, match="JSON-serialisable"):
        arenagrad.save(m, tmp_path / "m.npz", extra=loop)
    assert not (tmp_path / "m.npz").exists()


def test_checkpoint_without_extra_entry_loads(tmp_path):
    # Files written before `extra` existed have no such entry.
    m = model()
    arenagrad.save(m, tmp_path / "m.npz")
    rewrite(tmp_path / "m.npz", tmp_path / "old.npz", edit_meta=lambda meta: meta.pop("extra"))
    assert arenagrad.load(m, tmp_path / "old.npz")["extra"] is None


# ---- file modes and temporary files ------------------------------------------------------

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes and locks")


@posix_only
def test_new_file_gets_the_umask_mode_and_overwrites_keep_the_old_mode(tmp_path):
    path = tmp_path / "m.npz"
    old_umask = os.umask(0o027)
    try:
        arenagrad.save(model(), path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0666 & ~0027, as open() would
    path.chmod(0o604)
    arenagrad.save(model(1), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o604


@posix_only
def test_stale_temporary_files_of_this_target_are_removed(tmp_path):
    import fcntl

    path = tmp_path / "m.npz"
    stale = [tmp_path / ".m.npz.abcd1234.tmp", tmp_path / ".m.npz.zz_9yy_0.tmp"]
    kept = [
        tmp_path / ".m.npz.abc.tmp",  # not our pattern: too short
        tmp_path / ".m.npz.ABCD1234.tmp",  # upper case: never ours
        tmp_path / ".m.npz.abcd1234.tmp.bak",
        tmp_path / ".other.npz.abcd1234.tmp",  # another target's
        tmp_path / "m.npz.abcd1234.tmp",
    ]
    for p in stale + kept:
        p.write_bytes(b"half a checkpoint")
    running = tmp_path / ".m.npz.running1.tmp"  # a save still writing: it holds the lock
    running.write_bytes(b"in progress")
    fd = os.open(running, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        arenagrad.save(model(), path)
        assert running.exists()
    finally:
        os.close(fd)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)
    arenagrad.save(model(), path)  # its lock gone, the file is stale too
    assert not running.exists()
    assert sorted(os.listdir(tmp_path)) == sorted(["m.npz", *(p.name for p in kept)])


KILLED_SAVE = """
import os, sys, time
import arenagrad, numpy as np
from arenagrad.nn import MLP
def stuck(fd):
    open(sys.argv[2], "w").close()  # the archive is written, not yet renamed: signal, wait
    time.sleep(60)
os.fsync = stuck
arenagrad.save(MLP(3, [4, 2]), sys.argv[1])
"""


@posix_only
def test_save_killed_mid_write_leaves_the_old_file_and_the_next_save_cleans_up(tmp_path):
    path = tmp_path / "m.npz"
    m = model(1)
    arenagrad.save(m, path)
    old = path.read_bytes()
    ready = tmp_path / "ready"
    child = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(path), str(ready)])
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert child.poll() is None, "the saving process ended early"
            assert time.monotonic() < deadline, "the saving process never got to fsync"
            time.sleep(0.05)
    finally:
        child.kill()  # SIGKILL: no cleanup handler runs
        child.wait()
    leftovers = [n for n in os.listdir(tmp_path) if n.startswith(".m.npz.")]
    assert len(leftovers) == 1 and leftovers[0].endswith(".tmp")
    assert path.read_bytes() == old  # the old checkpoint is intact
    arenagrad.save(model(2), path)
    assert sorted(os.listdir(tmp_path)) == ["m.npz", "ready"]
