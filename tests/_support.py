"""Shared test helpers: the two engines, the comparison rule, and C's math functions.

Imported by conftest.py (which puts this directory on sys.path) and by the test modules.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import importlib.util
import math
import operator
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE_PATH = REPO / "python" / "arenagrad" / "reference.py"

# ----------------------------------------------------------------------------- engines

try:
    importlib.import_module("arenagrad._core")
except ImportError as error:
    HAVE_NATIVE = False
    NATIVE_MISSING = f"native extension not importable ({error.__class__.__name__}: {error})"
else:
    HAVE_NATIVE = True
    NATIVE_MISSING = ""

needs_native = pytest.mark.skipif(not HAVE_NATIVE, reason=NATIVE_MISSING)

# For parametrizing over both engines; the native one skips cleanly without a build.
ENGINE_NAMES = [pytest.param("native", marks=needs_native), "reference"]


def load_reference():
    """The oracle module: `arenagrad.reference`, or the source file when the package
    cannot be imported (no native build yet)."""
    try:
        return importlib.import_module("arenagrad.reference")
    except ImportError:
        pass
    name = "arenagrad_reference_standalone"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REFERENCE_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_ENGINES: dict[str, SimpleNamespace] = {}


def get_engine(name: str) -> SimpleNamespace:
    """A namespace with the public API of one engine: Value, sum, linear, Module, Neuron,
    Layer, MLP, plus `name`, `native` and (native only) `arena_stats`."""
    if name in _ENGINES:
        return _ENGINES[name]
    if name == "native":
        if not HAVE_NATIVE:
            pytest.skip(NATIVE_MISSING)
        import arenagrad
        import arenagrad.nn as nn

        ns = SimpleNamespace(
            name="native",
            native=True,
            module=arenagrad,
            Value=arenagrad.Value,
            sum=arenagrad.sum,
            linear=arenagrad.linear,
            Module=nn.Module,
            Neuron=nn.Neuron,
            Layer=nn.Layer,
            MLP=nn.MLP,
            arena_stats=arenagrad.arena_stats,
        )
    elif name == "reference":
        ref = load_reference()
        ns = SimpleNamespace(
            name="reference",
            native=False,
            module=ref,
            Value=ref.Value,
            sum=ref.sum,
            linear=ref.linear,
            Module=ref.Module,
            Neuron=ref.Neuron,
            Layer=ref.Layer,
            MLP=ref.MLP,
            arena_stats=None,
        )
    else:
        raise ValueError(name)
    _ENGINES[name] = ns
    return ns


# ----------------------------------------------------------------------------- comparison

REL = 1e-12


def same(x: float, y: float, rel: float = REL) -> bool:
    """Both nan, or the same infinity, or relative error <= rel (absolute error if one
    of them is zero)."""
    x, y = float(x), float(y)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if math.isinf(x) or math.isinf(y):
        return x == y
    if x == 0.0 or y == 0.0:
        return abs(x - y) <= rel
    return abs(x - y) <= rel * max(abs(x), abs(y))


def assert_same(x: float, y: float, what: str = "", rel: float = REL) -> None:
    assert same(x, y, rel), f"{what}: {x!r} != {y!r}" if what else f"{x!r} != {y!r}"


# ----------------------------------------------------------------------------- C math
# Expected values come from C's libm (what the native engine calls) through ctypes, so that
# they are computed independently of the oracle's Python helpers. Division and the
# fallback (no libm found, e.g. on Windows) use numpy float64 scalars, which follow IEEE.

_F = np.float64


def _load_libm():
    for name in (ctypes.util.find_library("m"), "libm.so.6", "libSystem.dylib"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        for fn, nargs in (("pow", 2), ("exp", 1), ("log", 1), ("sqrt", 1), ("tanh", 1)):
            f = getattr(lib, fn)
            f.restype = ctypes.c_double
            f.argtypes = [ctypes.c_double] * nargs
        return lib
    return None


_libm = _load_libm()


def _np(fn, *args):
    with np.errstate(all="ignore"):
        return float(fn(*(_F(a) for a in args)))


if _libm is not None:

    def c_pow(x, y):
        return _libm.pow(x, y)

    def c_exp(x):
        return _libm.exp(x)

    def c_log(x):
        return _libm.log(x)

    def c_sqrt(x):
        return _libm.sqrt(x)

    def c_tanh(x):
        return _libm.tanh(x)

else:  # pragma: no cover - platforms without a loadable libm

    def c_pow(x, y):
        return _np(np.power, x, y)

    def c_exp(x):
        return _np(np.exp, x)

    def c_log(x):
        return _np(np.log, x)

    def c_sqrt(x):
        return _np(np.sqrt, x)

    def c_tanh(x):
        return _np(np.tanh, x)


def c_div(a, b):
    return _np(np.divide, a, b)


# ----------------------------------------------------------------------------- the op table
# docs/semantics.md transcribed: for each _op, the forward formula and the local
# derivatives, in plain Python floats plus the C functions above (no exceptions).
# test_ops.py checks single ops against these; test_random_graphs.py evaluates whole
# graphs with them.

INF = math.inf
NAN = math.nan


def _sigmoid(a):
    if a >= 0.0:
        return c_div(1.0, 1.0 + c_exp(-a))
    e = c_exp(a)
    return c_div(e, 1.0 + e)


def _sign(a):
    return 1.0 if a > 0 else -1.0 if a < 0 else 0.0 if a == 0 else NAN


# _op: (forward(a), local derivative(a, out))
UNARY_RULES = {
    "neg": (lambda a: -a, lambda a, out: -1.0),
    "ReLU": (lambda a: 0.0 if a < 0 else a, lambda a, out: 1.0 if out > 0 else 0.0),
    "tanh": (c_tanh, lambda a, out: 1.0 - out * out),
    "exp": (c_exp, lambda a, out: out),
    "log": (c_log, lambda a, out: c_div(1.0, a)),
    "sigmoid": (_sigmoid, lambda a, out: out * (1.0 - out)),
    "abs": (math.fabs, lambda a, out: _sign(a)),
    "sqrt": (c_sqrt, lambda a, out: c_div(0.5, out)),
}

# _op: (forward(a, b), (d_a, d_b)(a, b, out))
BINARY_RULES = {
    "+": (lambda a, b: a + b, lambda a, b, out: (1.0, 1.0)),
    "-": (lambda a, b: a - b, lambda a, b, out: (1.0, -1.0)),
    "*": (lambda a, b: a * b, lambda a, b, out: (b, a)),
    "/": (c_div, lambda a, b, out: (c_div(1.0, b), c_div(-a, b * b))),
    "**": (
        c_pow,
        lambda a, b, out: (
            b * c_pow(a, b - 1.0),
            0.0 if (a == 0.0 and b >= 0.0) else out * c_log(a),
        ),
    ),
}


# How the tests build each op on Values (of either engine) or numbers: binary ops keyed like
# BINARY_RULES, unary ones by their _op like UNARY_RULES.
BINARY_BUILD = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "**": operator.pow,
}
UNARY_BUILD = {
    "neg": operator.neg,
    "ReLU": lambda v: v.relu(),
    "tanh": lambda v: v.tanh(),
    "exp": lambda v: v.exp(),
    "log": lambda v: v.log(),
    "sigmoid": lambda v: v.sigmoid(),
    "abs": abs,
    "sqrt": lambda v: v.sqrt(),
}


def pow_const_rule(k):
    """'**k': (forward(a), local derivative(a, out)) for a number exponent k."""
    k = float(k)
    return (lambda a: c_pow(a, k), lambda a, out: k * c_pow(a, k - 1.0))
