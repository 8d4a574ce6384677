"""`arenagrad.save` / `arenagrad.load`: parameters (and optimizer state) to a file and back.

    arenagrad.save(model, "model.npz", optimizer=opt)
    arenagrad.load(model, "model.npz", optimizer=opt)   # checks the architecture first

The file is a plain numpy `.npz` archive (readable with `np.load`, no pickle): `params`, the
parameter vector in `model.parameters()` order; `optimizer/<name>`, the optimizer's state
arrays; and `meta`, a JSON string with the format version, the model's description (its repr,
e.g. micrograd's "MLP of [Layer of [ReLUNeuron(2), ...]]") and the optimizer's
hyperparameters. Zip CRCs catch corruption.

Writes are atomic: the archive goes to a temporary file in the same directory, is flushed to
disk, and only then renamed over `path`, so a crash leaves the old checkpoint or the new one,
never half of one. Loading validates everything before touching the model or optimizer.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ._vectors import ParamVector, param_list

__all__ = ["load", "save"]

FORMAT = "arenagrad-checkpoint"
VERSION = 1


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


def save(model_or_params: Any, path: str | os.PathLike[str], optimizer: Any = None) -> None:
    """Write the parameters (and `optimizer`'s state, if given) to `path`, atomically."""
    params = ParamVector(param_list(model_or_params, "arenagrad.save()"))
    path = _path(path, "arenagrad.save()")
    arrays = {"params": params.data()}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "architecture": _describe(model_or_params, len(params)),
        "n_params": len(params),
        "optimizer": None,
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
    arrays["meta"] = np.array(json.dumps(meta))

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            np.savez(file, **arrays)  # type: ignore[arg-type]  # numpy's stub lacks **kwargs
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        with open(path, "rb") as file:
            archive = np.load(file, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            with archive:
                arrays = {name: archive[name] for name in archive.files}
        meta = json.loads(str(arrays.pop("meta")))
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, UnicodeError) as error:
        raise ValueError(
            f"{path} is not a readable arenagrad checkpoint (truncated or corrupt?): {error}"
        ) from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not an arenagrad checkpoint")
    if meta.get("version") != VERSION:
        raise ValueError(
            f"{path}: checkpoint format version {meta.get('version')} is not supported"
        )
    return meta, arrays


def load(
    model_or_params: Any, path: str | os.PathLike[str], optimizer: Any = None
) -> dict[str, Any]:
    """Read `path` into the parameters (and `optimizer`), after checking that the checkpoint
    was saved from the same architecture. Returns the checkpoint's metadata."""
    params = ParamVector(param_list(model_or_params, "arenagrad.load()"))
    path = _path(path, "arenagrad.load()")
    meta, arrays = _read(path)

    expected = _describe(model_or_params, len(params))
    if meta.get("architecture") != expected or meta.get("n_params") != len(params):
        raise ValueError(
            f"{path} was saved from a different architecture:\n"
            f"  checkpoint: {_short(str(meta.get('architecture')))} "
            f"({meta.get('n_params')} parameters)\n"
            f"  this model: {_short(expected)} ({len(params)} parameters)"
        )
    data = arrays.get("params")
    if data is None or data.dtype != np.float64 or data.shape != (len(params),):
        raise ValueError(f"{path}: parameter array is missing or has the wrong shape (corrupt?)")

    if optimizer is not None:
        saved = meta.get("optimizer")
        if saved is None:
            raise ValueError(f"{path} holds no optimizer state")
        try:
            state: dict[str, Any] = dict(saved["scalars"])
            for key in saved["arrays"]:
                state[key] = arrays[f"optimizer/{key}"]
            saved_state = {
                "optimizer": saved["type"],
                "hyperparameters": saved["hyperparameters"],
                "state": state,
            }
        except (KeyError, TypeError) as error:
            raise ValueError(f"{path}: optimizer state is incomplete (corrupt?)") from error
        optimizer.load_state_dict(saved_state)  # checks type and shapes before changing anything
    params.set_data(data)
    return meta
