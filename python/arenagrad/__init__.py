"""arenagrad: micrograd's API over a compiled node arena.

    from arenagrad import Value          # instead of: from micrograd.engine import Value
    from arenagrad.nn import MLP         # instead of: from micrograd.nn import MLP
"""

import importlib.util

__version__ = "0.1.0"

try:
    from . import _core  # noqa: F401  (imported alone first, for the message below)
except ImportError as error:  # pragma: no cover - only without a build
    if importlib.util.find_spec(f"{__name__}._core") is not None:
        raise  # built, but it refused to load (in a sub-interpreter): its message says why
    raise ImportError(
        "arenagrad's native extension (arenagrad._core) is not built. Install the package with "
        "`pip install .` from the source tree (it needs a C++17 compiler and CMake), or use the "
        "pure-Python `arenagrad.reference` module, which has the same API."
    ) from error

from . import losses, optim, schedules, viz  # the training kit
from ._core import (
    Value,
    arena_stats,
    get_num_threads,
    linear,
    max,
    set_num_threads,
    sum,
    take,
    zero_grad,
)
from .checkpoint import load, save
from .compile import Compiled, CompiledPerWidth, compile
from .config import show_config
from .functional import grad, hessian, hvp
from .grad_mode import is_grad_enabled, no_grad
from .gradient_check import gradcheck

__all__ = [
    "Compiled",
    "CompiledPerWidth",
    "Value",
    "__version__",
    "arena_stats",
    "compile",
    "get_num_threads",
    "grad",
    "gradcheck",
    "hessian",
    "hvp",
    "is_grad_enabled",
    "linear",
    "load",
    "losses",
    "max",
    "no_grad",
    "optim",
    "save",
    "schedules",
    "set_num_threads",
    "show_config",
    "sum",
    "take",
    "viz",
    "zero_grad",
]
