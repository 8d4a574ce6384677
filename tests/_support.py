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
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

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


def readme(a, b):
    """micrograd's README example as a function of a and b, without `+=` (in place on
    tensors), for the engines, torch and the derivative tests alike."""
    c = a + b
    d = a * b + b**3
    c = c + (c + 1)
    c = c + (1 + c + (-a))
    d = d + (d * 2 + (b + a).relu())
    d = d + (3 * d + (b - a).relu())
    e = c - d
    f = e**2
    g = f / 2.0
    return g + 10.0 / f


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
            take=arenagrad.take,
            max=arenagrad.max,
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
            take=ref.take,
            max=ref.max,
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


def assert_lane_sums(got: list[float], lane_grads: list[list[float]], rel: float = 1e-12) -> None:
    """A replay's parameter gradients (got[i]) against the sum over lanes of each lane's eager
    gradients (lane_grads[lane][i]): equal to `rel` of the sum of their magnitudes (the lanes
    are added in another order, so terms that cancel may leave a last-bit difference)."""
    for i, g in enumerate(got):
        want = sum(grads[i] for grads in lane_grads)
        scale = sum(abs(grads[i]) for grads in lane_grads)
        assert abs(g - want) <= rel * scale, (i, g, want)


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
# docs/semantics.md transcribed, keyed by each op's name in arenagrad._core.op_table: how the
# tests build the op (on Values of either engine, or numbers), its forward formula and its
# local derivatives, in plain Python floats plus the C functions above (no exceptions).
# test_op_table.py checks that these tables cover _core.op_table exactly; test_ops.py checks
# single ops against them; test_random_graphs.py evaluates whole graphs with them.

INF = math.inf
NAN = math.nan


class Unary(NamedTuple):
    build: Callable[[Any], Any]  # a -> the op's node
    forward: Callable[[float], float]  # a -> out
    derivative: Callable[[float, float], float]  # (a, out) -> d(out)/da
    op: str  # the _op of the nodes `build` makes


class Binary(NamedTuple):
    build: Callable[[Any, Any], Any]  # (a, b) -> the op's node; either may be a number
    forward: Callable[[float, float], float]  # (a, b) -> out
    derivatives: Callable[[float, float, float], tuple[float, float]]  # (a, b, out) -> (d_a, d_b)
    op: str


class Nary(NamedTuple):
    # (engine, operands) -> the op's node, operands in the table's order
    build: Callable[[Any, list[Any]], Any]
    forward: Callable[[list[float]], float]  # operands -> out
    derivatives: Callable[[list[float], float], list[float]]  # (operands, out) -> d_i per operand
    op: str
    min_operands: int  # a valid operand count is min_operands + a multiple of `step`
    step: int
    may_be_number: Callable[[int], bool]  # whether operand i may be given as a plain number
    # The node's operands in order (its _children), given the node and the operands the
    # builder was given (default: those)
    children: Callable[[Any, list[Any]], list[Any]] | None = None
    replayable: bool = True  # False: compile() refuses it (a user-defined op)


def _sigmoid(a):
    if a >= 0.0:
        return c_div(1.0, 1.0 + c_exp(-a))
    e = c_exp(a)
    return c_div(e, 1.0 + e)


def _sign(a):
    return 1.0 if a > 0 else -1.0 if a < 0 else 0.0 if a == 0 else NAN


def pow_const_rule(k):
    """'**k': (forward(a), local derivative(a, out)) for a number exponent k."""
    k = float(k)
    if k == 0.0:  # a ** 0 is constant, even at a == 0 (PyTorch's choice)
        return (lambda a: c_pow(a, k), lambda a, out: 0.0)
    return (lambda a: c_pow(a, k), lambda a, out: k * c_pow(a, k - 1.0))


def _pow_const(k):
    return Unary(lambda v: v**k, *pow_const_rule(k), op=f"**{k}")


def op_node(name, *operands):
    """A node of op `name` over Values of either engine, for the ops that derivative graphs
    use and that have no method or operator (each engine's _op_node)."""
    ref = load_reference()
    if isinstance(operands[0], ref.Value):
        return ref._op_node(name, *operands)
    from arenagrad import _core

    return _core._op_node(name, *operands)


UNARY = {
    "neg": Unary(operator.neg, lambda a: -a, lambda a, out: -1.0, "neg"),
    "pow_const": _pow_const(2.5),  # a float exponent
    "pow_const_int": _pow_const(3),  # an int exponent
    "relu": Unary(
        lambda v: v.relu(),
        lambda a: 0.0 if a < 0 else a,
        lambda a, out: 1.0 if out > 0 else 0.0,
        "ReLU",
    ),
    "tanh": Unary(lambda v: v.tanh(), c_tanh, lambda a, out: 1.0 - out * out, "tanh"),
    "exp": Unary(lambda v: v.exp(), c_exp, lambda a, out: out, "exp"),
    "log": Unary(lambda v: v.log(), c_log, lambda a, out: c_div(1.0, a), "log"),
    "sigmoid": Unary(lambda v: v.sigmoid(), _sigmoid, lambda a, out: out * (1.0 - out), "sigmoid"),
    "abs": Unary(lambda v: v.abs(), math.fabs, lambda a, out: _sign(a), "abs"),
    "sqrt": Unary(lambda v: v.sqrt(), c_sqrt, lambda a, out: c_div(0.5, out), "sqrt"),
    "step": Unary(
        lambda v: op_node("step", v), lambda a: 1.0 if a > 0 else 0.0, lambda a, out: 0.0, "step"
    ),
    "sign": Unary(lambda v: op_node("sign", v), _sign, lambda a, out: 0.0, "sign"),
    "detach": Unary(lambda v: op_node("detach", v), lambda a: a, lambda a, out: 0.0, "detach"),
    # mask(x, condition), built here with the operand as its own condition
    "mask": Unary(
        lambda v: op_node("mask", v, v),
        lambda a: a if a != 0 else 0.0,
        lambda a, out: 1.0 if a != 0 else 0.0,
        "mask",
    ),
}

BINARY = {
    "add": Binary(operator.add, lambda a, b: a + b, lambda a, b, out: (1.0, 1.0), "+"),
    "sub": Binary(operator.sub, lambda a, b: a - b, lambda a, b, out: (1.0, -1.0), "-"),
    "mul": Binary(operator.mul, lambda a, b: a * b, lambda a, b, out: (b, a), "*"),
    "div": Binary(
        operator.truediv, c_div, lambda a, b, out: (c_div(1.0, b), c_div(-out, b)), "/"
    ),
    "pow": Binary(  # a Value exponent; `Value ** number` is pow_const
        operator.pow,
        c_pow,
        lambda a, b, out: (
            b * c_pow(a, b - 1.0) if b != 0.0 else 0.0,  # a ** 0 is constant (PyTorch's choice)
            0.0 if (a == 0.0 and b >= 0.0) else out * c_log(a),
        ),
        "**",
    ),
}


def _linear_forward(v):
    acc = v[0]
    for w, x in zip(v[1::2], v[2::2], strict=True):
        acc = acc + w * x
    return acc


def _linear_derivatives(v, out):
    d = [1.0]  # d_b
    for w, x in zip(v[1::2], v[2::2], strict=True):
        d += [x, w]  # d_w = x, d_x = w
    return d


def _sum_forward(v):
    acc = 0.0
    for x in v:
        acc = acc + x
    return acc


# The user-defined ops, each built as its users write it, with a formula of the tests' choosing.


def _squares_forward(v):
    acc = 0.0
    for x in v:
        acc = acc + x * x
    return acc


def _build_local_grads(engine, v):
    # microgpt's style: sum of squares, its value and local derivatives 2 * x_i from .data
    xs = [x.data for x in v]
    grads = [2.0 * x for x in xs]
    return engine.Value(_squares_forward(xs), v, _op="local_grads", local_grads=grads)


def _build_py_backward(engine, v):
    # micrograd's style: tanh(v_0 + v_1 + ...), with a `_backward` closure over `out`
    v = list(v)
    out = engine.Value(c_tanh(_sum_forward([x.data for x in v])), tuple(v), "py_backward")

    def _backward():
        d = 1.0 - out.data * out.data
        for x in v:
            x.grad += d * out.grad

    out._backward = _backward
    return out


NARY = {
    # operands [b, w0, x0, w1, x1, ...]
    "linear": Nary(
        lambda engine, v: engine.linear(v[0], v[1::2], v[2::2]),
        _linear_forward,
        _linear_derivatives,
        "linear",
        1,
        2,
        lambda i: i % 2 == 0,  # the bias and the inputs; weights must be Values
    ),
    "sum": Nary(
        lambda engine, v: engine.sum(v),
        _sum_forward,
        lambda v, out: [1.0] * len(v),
        "sum",
        0,
        1,
        lambda i: True,
    ),
    "local_grads": Nary(
        _build_local_grads,
        _squares_forward,
        lambda v, out: [2.0 * x for x in v],
        "local_grads",
        1,
        1,
        lambda i: False,
        replayable=False,
    ),
    "py_backward": Nary(
        _build_py_backward,
        lambda v: c_tanh(_sum_forward(v)),
        lambda v, out: [1.0 - out * out] * len(v),
        "py_backward",
        1,
        1,
        lambda i: False,
        replayable=False,
    ),
}

def _step_of(out, s):  # take's index node, step(s), if it is one
    index = next(iter(p for p in out._prev if p._op == "step" and p._prev == {s}), None)
    return index if index is not None else s


def _take_index(s):  # step(s): always a valid index, whatever the operand's value
    return 1.0 if s > 0.0 else 0.0


def _take_forward(v):
    return v[1 + int(_take_index(v[0]))]


def _take_derivatives(v, out):
    d = [0.0] * len(v)  # the index gets 0 (through step, whose derivative is 0 too)
    d[1 + int(_take_index(v[0]))] = 1.0
    return d


def _max_forward(v):  # the first largest; the first nan if there is one
    best = 0
    for k in range(1, len(v)):
        if math.isnan(v[best]):
            break
        if v[k] > v[best] or math.isnan(v[k]):
            best = k
    return v[best], best


def _max_derivatives(v, out):
    d = [0.0] * len(v)
    d[_max_forward(v)[1]] = 1.0
    return d


NARY["take"] = Nary(
    # operands [s, v0, v1, ...] -> take([v0, v1, ...], step(s)): an index that is valid for any
    # value drawn, so the generic tests can draw operands freely
    lambda engine, v: engine.take(v[1:], getattr(engine, "step", UNARY["step"].build)(v[0])),
    _take_forward,
    _take_derivatives,
    "take",
    3,
    1,
    lambda i: False,
    lambda out, v: [_step_of(out, v[0]), *v[1:]],
)
NARY["max"] = Nary(
    lambda engine, v: engine.max(v),
    lambda v: _max_forward(v)[0],
    _max_derivatives,
    "max",
    1,
    1,
    lambda i: False,
)

# Just the builders, for tests that only need to make every op.
BINARY_BUILD = {name: case.build for name, case in BINARY.items()}
UNARY_BUILD = {name: case.build for name, case in UNARY.items()}

if HAVE_NATIVE:
    from arenagrad import _core

    # (name, _op, arity) per op, arity None for n-ary: what the tests iterate over.
    OP_TABLE: list[tuple[str, str, int | None]] = list(_core.op_table)
else:  # the oracle alone can still be tested against the tables above
    OP_TABLE = [(name, "", 1) for name in UNARY]
    OP_TABLE += [(name, "", 2) for name in BINARY] + [(name, "", None) for name in NARY]


def op_names(arity):
    """The names of the table's ops of that arity (1, 2 or None for n-ary)."""
    return [name for name, _, n in OP_TABLE if n == arity]
