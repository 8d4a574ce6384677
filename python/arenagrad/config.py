"""`arenagrad.show_config()`: what this build can use (threads, CUDA)."""

from __future__ import annotations

from typing import Any

from . import _core


def show_config(quiet: bool = False) -> dict[str, Any]:
    """Print (unless quiet) and return the version, OpenMP and thread count, whether the CUDA
    kernels are compiled in, and how many CUDA devices are usable now."""
    from . import __version__

    devices, why = _core.cuda_devices()
    config: dict[str, Any] = {
        "version": __version__,
        "openmp": bool(_core.openmp),
        "threads": _core.get_num_threads(),
        "cuda_compiled": bool(_core.cuda_compiled),
        "cuda_devices": devices,
        "cuda_status": why or "ok",
    }
    if not quiet:
        print(f"arenagrad {config['version']}")
        print(f"  OpenMP: {'yes' if config['openmp'] else 'no'} ({config['threads']} threads)")
        print(f"  CUDA compiled in: {'yes' if config['cuda_compiled'] else 'no'}")
        print(f"  CUDA devices: {devices}" + (f" ({why})" if why else ""))
    return config
