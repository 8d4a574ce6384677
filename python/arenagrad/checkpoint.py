"""`arenagrad.save` / `arenagrad.load`: parameters (and optimizer state) to a file and back.

    arenagrad.save(model, "model.npz", optimizer=opt, extra={"epoch": 3})
    meta = arenagrad.load(model, "model.npz", optimizer=opt)   # checks the architecture first
    meta["extra"]                                             # {"epoch": 3}

The file is a plain numpy `.npz` archive (readable with `np.load`, no pickle): `params`, the
parameter vector in `model.parameters()` order; `optimizer/<name>`, the optimizer's state
arrays; and `meta`, a JSON string with the format version, the model's description (its repr,
e.g. micrograd's "MLP of [Layer of [ReLUNeuron(2), ...]]"), the optimizer's hyperparameters,
and `extra`: whatever JSON-serialisable dict the caller passed to `save` (the training loop's
own progress, say), handed back by `load` as `meta["extra"]` (None if none was saved). Zip CRCs
catch corruption.

Writes are atomic: the archive goes to a temporary file `.NAME.XXXXXXXX.tmp` in the same
directory, is flushed to disk, and only then renamed over `path`, so a crash leaves the old
checkpoint or the new one, never half of one. The new file keeps the permission bits of the one
it replaces (a new one gets the umask's, as `open()` would). A save killed outright (kill -9,
power loss) can leave its temporary file behind; the next save to the same path removes such
files, on POSIX systems, where a lock tells them apart from the file of a save still running
(only names of exactly that pattern, for that path).

Loading checks everything before it touches the model or the optimizer, and changes both or
neither: any file that is not a checkpoint saved for this model raises one ValueError.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ._vectors import ParamVector, param_list

__all__ = ["load", "save"]

FORMAT = "arenagrad-checkpoint"
VERSION = 1

# Temporary files: tempfile.mkstemp's names (8 characters of this alphabet), but created here so
# that the umask applies to them (mkstemp's are always 0600) and so that they can be locked.
_TEMP_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789_"


def _path(path: Any, what: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what}: path must be a str or os.PathLike, not {type(path).__name__!r}")
    return Path(path)


def _describe(model_or_params: Any, n: int) -> str:
    """What must match on load: a module's repr (its architecture), else the parameter count."""
    if hasattr(model_or_params, "parameters"):
        return repr(model_or_params)
    return f"{n} parameters"


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 5] + " ...]"


def _counted(description: str, n: int) -> str:
    """A description and its parameter count, the count once if it is the description."""
    if description == f"{n} parameters":
        return description
    return f"{_short(description)} ({n} parameters)"


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as error:  # ValueError: a circular reference
        raise TypeError(f"arenagrad.save(): {what} must be JSON-serialisable: {error}") from None


# ---- writing --------------------------------------------------------------------------------


def save(
    model_or_params: Any,
    path: str | os.PathLike[str],
    optimizer: Any = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the parameters (and `optimizer`'s state, if given) to `path`, atomically.

    `extra`: a dict of JSON values stored with them (e.g. the epoch, a data split, an RNG
    state); `load` returns it as `meta["extra"]` (as JSON gives it back: tuples become lists).
    """
    params = ParamVector(param_list(model_or_params, "arenagrad.save()"))
    path = _path(path, "arenagrad.save()")
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"arenagrad.save(): extra must be a dict, not {type(extra).__name__!r}")
    arrays = {"params": params.data()}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "architecture": _describe(model_or_params, len(params)),
        "n_params": len(params),
        "optimizer": None,
        "extra": extra,
    }
    if optimizer is not None:
        if not hasattr(optimizer, "state_dict"):
            raise TypeError(f"arenagrad.save(): not an optimizer: {type(optimizer).__name__!r}")
        state = optimizer.state_dict()
        scalars = {}
        for key, value in state["state"].items():
            if isinstance(value, np.ndarray):
                arrays[f"optimizer/{key}"] = value
            else:
                scalars[key] = value
        meta["optimizer"] = {
            "type": state["optimizer"],
            "hyperparameters": state["hyperparameters"],
            "scalars": scalars,
            "arrays": sorted(k for k, v in state["state"].items() if isinstance(v, np.ndarray)),
        }
    arrays["meta"] = np.array(_json(meta, "extra"))

    _remove_stale_temporaries(path)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as file:
            np.savez(file, **arrays)  # type: ignore[arg-type]  # numpy's stub lacks **kwargs
            file.flush()
            os.fsync(file.fileno())
            if sys.platform != "win32":  # renamed while locked: never taken for a stale file
                os.replace(tmp, path)
        if sys.platform == "win32":  # Windows cannot rename an open file
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _temporary_names(path: Path) -> re.Pattern[str]:
    """The names of our temporary files for `path`, and nothing else."""
    return re.compile(re.escape(f".{path.name}.") + r"[a-z0-9_]{8}\.tmp")


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new temporary file next to `path` (open for writing, locked where locks exist), with
    the permission bits of the file it will replace, or else the umask's."""
    try:
        mode: int | None = stat.S_IMODE(os.stat(path).st_mode) & 0o777
    except OSError:
        mode = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        token = "".join(secrets.choice(_TEMP_ALPHABET) for _ in range(8))
        tmp = path.parent / f".{path.name}.{token}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as for any new file
        except FileExistsError:
            continue
        try:
            if not _lock_own_temporary(fd, tmp):
                os.close(fd)  # a concurrent save removed it before we locked it: another name
                continue
            if mode is not None:
                os.chmod(tmp, mode)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return fd, tmp
    raise FileExistsError(f"arenagrad.save(): no free temporary file name next to {path}")


def _lock_own_temporary(fd: int, tmp: Path) -> bool:
    """Lock the file just created (POSIX; Windows has no flock and cleans up nothing); False
    if, in the moment before, another save took it for a stale one and removed it (the name
    then no longer leads to this file)."""
    if sys.platform != "win32":
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            return os.path.samestat(os.stat(tmp), os.fstat(fd))
        except FileNotFoundError:
            return False
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Remove temporary files left for `path` by saves that were killed: ours by name, and not
    locked (a running save holds its lock until its file is renamed). Best effort."""
    if sys.platform == "win32":
        return  # no flock(): a running save's file could not be told from a stale one
    import fcntl

    names = _temporary_names(path)
    try:
        entries = [e for e in os.scandir(path.parent) if names.fullmatch(e.name)]
    except OSError:
        return
    for entry in entries:
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while its save still runs
            if os.path.samestat(os.stat(entry.path), os.fstat(fd)):
                os.unlink(entry.path)
        except OSError:
            pass
        finally:
            os.close(fd)


# ---- reading --------------------------------------------------------------------------------


class _NotACheckpoint(ValueError):
    pass


def _open_archive(file: Any) -> Any:
    """The open file as an NpzFile, after checking what kind of file it is: numpy's own
    messages for other files talk about pickles and `allow_pickle`, which would mislead."""
    head = file.read(6)
    file.seek(0)
    if not head:
        raise _NotACheckpoint("the file is empty")
    if head.startswith(b"\x93NUMPY"):
        raise _NotACheckpoint("it holds a single numpy array (.npy), not an .npz archive")
    if not head.startswith(b"PK"):
        raise _NotACheckpoint("it is not an .npz (zip) archive")
    return np.load(file, allow_pickle=False)


def _member(archive: Any, name: str) -> np.ndarray:
    if name not in archive.files:
        raise _NotACheckpoint(f"it has no {name!r} entry")
    try:
        value = archive[name]
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise _NotACheckpoint(f"its {name!r} entry holds pickled Python objects") from None
        raise
    if not isinstance(value, np.ndarray):  # a zip member that is not an .npy array
        raise _NotACheckpoint(f"its {name!r} entry is not a numpy array")
    return value


def _parse_meta(text: str) -> dict[str, Any]:
    try:
        meta = json.loads(text)  # NaN and huge numbers parse; the checks that follow judge them
    except RecursionError:
        raise _NotACheckpoint("its metadata is nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, or an integer of too many digits
        raise _NotACheckpoint(f"its metadata is not valid JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _NotACheckpoint("its metadata does not name the arenagrad checkpoint format")
    version = meta.get("version")
    if isinstance(version, bool) or version != VERSION:
        raise _NotACheckpoint(
            f"its format version {_short(repr(version), 40)} is not supported "
            f"(this arenagrad reads version {VERSION})"
        )
    expected_types: dict[str, Any] = {
        "architecture": str,
        "n_params": int,
        "optimizer": (dict, type(None)),
        "extra": (dict, type(None)),
    }
    for key, types in expected_types.items():
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, types):
            raise _NotACheckpoint(f"its metadata entry {key!r} is missing or of the wrong type")
    saved = meta["optimizer"]
    if saved is not None:
        shape = {"type": str, "hyperparameters": dict, "scalars": dict, "arrays": list}
        for key, kind in shape.items():
            if not isinstance(saved.get(key), kind):
                raise _NotACheckpoint(
                    f"its optimizer entry {key!r} is missing or of the wrong type"
                )
        if not all(isinstance(name, str) for name in saved["arrays"]):
            raise _NotACheckpoint("its optimizer array names are not strings")
    meta.setdefault("extra", None)  # checkpoints written before `extra` existed
    return meta


def _read(path: Path, with_optimizer: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The metadata and the arrays `load` needs (others in the archive are not read)."""
    try:
        with open(path, "rb") as file, _open_archive(file) as archive:
            meta = _parse_meta(str(_member(archive, "meta")))
            arrays = {"params": _member(archive, "params")}
            if with_optimizer and meta["optimizer"] is not None:
                for key in meta["optimizer"]["arrays"]:
                    arrays[f"optimizer/{key}"] = _member(archive, f"optimizer/{key}")
    except FileNotFoundError:
        raise
    except _NotACheckpoint as error:
        raise ValueError(f"{path} is not a readable arenagrad checkpoint: {error}") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, UnicodeError) as error:
        raise ValueError(
            f"{path} is not a readable arenagrad checkpoint (truncated or corrupt?): {error}"
        ) from error
    return meta, arrays


def _optimizer_state(path: Path, meta: dict[str, Any], arrays: dict[str, Any]) -> dict[str, Any]:
    saved = meta["optimizer"]
    if saved is None:
        raise ValueError(f"{path} holds no optimizer state")
    state: dict[str, Any] = dict(saved["scalars"])
    for key in saved["arrays"]:
        state[key] = arrays[f"optimizer/{key}"]
    return {"optimizer": saved["type"], "hyperparameters": saved["hyperparameters"], "state": state}


def load(
    model_or_params: Any, path: str | os.PathLike[str], optimizer: Any = None
) -> dict[str, Any]:
    """Read `path` into the parameters (and `optimizer`), after checking that the checkpoint
    was saved from the same architecture. Returns the checkpoint's metadata, with the `extra`
    dict given to `save` as `meta["extra"]` (None if none was).

    All or nothing: on any error (ValueError for a file that is not a checkpoint of this model,
    or whose optimizer state the optimizer's own checks refuse), neither the parameters nor the
    optimizer have changed."""
    params = ParamVector(param_list(model_or_params, "arenagrad.load()"))
    path = _path(path, "arenagrad.load()")
    meta, arrays = _read(path, with_optimizer=optimizer is not None)

    expected = _describe(model_or_params, len(params))
    if meta["architecture"] != expected or meta["n_params"] != len(params):
        raise ValueError(
            f"{path} was saved from a different architecture:\n"
            f"  checkpoint: {_counted(meta['architecture'], meta['n_params'])}\n"
            f"  this model: {_counted(expected, len(params))}"
        )
    data = arrays["params"]
    if data.dtype != np.float64 or data.shape != (len(params),):
        raise ValueError(f"{path}: parameter array is missing or has the wrong shape (corrupt?)")

    before = None
    if optimizer is not None:
        state = _optimizer_state(path, meta, arrays)
        before = optimizer.state_dict() if hasattr(optimizer, "state_dict") else None
        try:
            optimizer.load_state_dict(state)  # checks everything before changing anything
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: its optimizer state cannot be loaded: {error}") from None
    old_data = params.data()
    try:
        params.set_data(data)
    except BaseException:
        params.set_data(old_data)  # e.g. Value-like parameters refusing a value halfway
        if before is not None:
            optimizer.load_state_dict(before)
        raise
    return meta
