"""arenagrad.save / arenagrad.load: round trips, architecture checks, corrupt files, atomicity."""

from __future__ import annotations

import os
import random
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
