"""Pure-Python oracle for arenagrad: micrograd's engine and nn, with arenagrad's op table.

This module is the executable form of ``docs/semantics.md``. The test suite builds every
graph twice, once with the native engine and once with this file, and compares the results.
It deliberately uses nothing but the standard library and never imports ``arenagrad._core``
(or anything else from arenagrad), so it can also be loaded as a standalone file.

``OPS`` is the twin of the native op table (``cpp/ops.hpp``): one entry per op, keyed by the
names of ``arenagrad._core.op_table``, from which every node here is built.

It follows micrograd (https://github.com/karpathy/micrograd, ``engine.py`` and ``nn.py``)
closely; the deliberate differences are the ones listed in ``docs/semantics.md``:
IEEE-754 results instead of Python exceptions, ``-``, ``/`` and ``neg`` as single nodes,
``.data``/``.grad`` always ``float``, extra ops, and the n-ary ``sum``/``linear`` nodes.
Like the native engine it also takes user-defined ops in micrograd's and in microgpt's style,
and has ``no_grad``, ``item``, ``float()``, ``< <= > >=``, ``detach`` and
``backward(gradient)`` (``docs/api.md``).
"""

import builtins
import contextlib
import functools
import itertools
import math
import numbers
import operator
import random
import threading
from collections.abc import Callable
from typing import NamedTuple

__all__ = [
    "MLP",
    "Layer",
    "Module",
    "Neuron",
    "Value",
    "is_grad_enabled",
    "linear",
    "no_grad",
    "sum",
]

_INF = math.inf
_NAN = math.nan


# --------------------------------------------------------------------------- IEEE helpers
# Python's float division and math functions raise where C returns inf/nan. The native
# engine computes in C++, so these helpers reproduce the C99 (Annex F) results exactly.


def _is_odd_integer(y):
    # Every double >= 2**53 is an even integer, and fmod handles that correctly.
    return math.isfinite(y) and y == math.floor(y) and math.fmod(y, 2.0) != 0.0


def _div(a, b):
    try:
        return a / b
    except ZeroDivisionError:
        if a == 0.0 or a != a:  # 0/0 and nan/0
            return _NAN
        # b is +0.0 or -0.0: the sign of the infinity is sign(a) * sign(b).
        return math.copysign(_INF, a) * math.copysign(1.0, b)


def _pow(x, y):
    try:
        return math.pow(x, y)
    except OverflowError:
        return -_INF if x < 0.0 and _is_odd_integer(y) else _INF
    except ValueError:
        if x == 0.0:  # a pole: y < 0
            return -_INF if math.copysign(1.0, x) < 0.0 and _is_odd_integer(y) else _INF
        return _NAN  # x < 0 and y not an integer


def _exp(x):
    try:
        return math.exp(x)
    except OverflowError:
        return _INF


def _log(x):
    try:
        return math.log(x)
    except ValueError:  # x <= 0 (or -inf): C gives -inf at +-0 and nan below zero
        return -_INF if x == 0.0 else _NAN


def _sqrt(x):
    try:
        return math.sqrt(x)
    except ValueError:  # x < 0
        return _NAN


# --------------------------------------------------------------------------- numbers in


def _real(x):
    """float(x) if x is a real number (int, float, bool, numpy scalar, ...), else None."""
    # str and bytes convert with float() but are not numbers; complex would lose its
    # imaginary part (numpy's complex scalars even allow float() with only a warning; numpy
    # registers them as numbers.Complex, its real scalars as numbers.Real). A Value converts
    # with float() too, but is not a number either: neither this module's nor another
    # engine's (anything with micrograd's `_prev`).
    if isinstance(x, (Value, str, bytes, bytearray, complex)):
        return None
    t = type(x)
    if not (hasattr(t, "__float__") or hasattr(t, "__index__")) or hasattr(t, "_prev"):
        return None
    if t not in (float, int) and isinstance(x, numbers.Complex) and not isinstance(x, numbers.Real):
        return None
    try:
        return float(x)
    except (TypeError, ValueError):  # e.g. a numpy array with more than one element
        return None


def _real_or_raise(x, what):
    f = _real(x)
    if f is None:
        raise TypeError(
            f"{what} must be a real number (int, float, bool or numpy scalar), "
            f"got {type(x).__name__}"
        )
    return f


def _operand(x):
    """x as a Value: Values pass through, numbers become new leaves, anything else None."""
    if isinstance(x, Value):
        return x
    f = _real(x)
    return None if f is None else Value(f)


def _operand_or_raise(x, what):
    v = _operand(x)
    if v is None:
        raise TypeError(f"{what} must be a Value or a real number, got {type(x).__name__}")
    return v


# --------------------------------------------------------------------------- Value
# Each node stores its operands in order (`_children`) and a `_rule`: a module-level function
# that applies the node's local derivatives, `x.grad += d * out.grad` for each operand x.
# micrograd keeps a closure per node instead; that closure refers back to its node, so every
# graph becomes reference cycles that only the cyclic garbage collector can free, which made
# the oracle several times slower on a training loop. Here graphs are freed by refcounting.

_serial = itertools.count()  # creation order, see Value.backward
_by_serial = operator.attrgetter("_serial")


def _leaf_rule(out):
    pass


# --------------------------------------------------------------------------- no_grad
# Thread-local like the native switch: a count of threads inside one, and each thread's depth.

_grad_state = threading.local()
_threads_without_grad = 0


def is_grad_enabled():
    """False inside no_grad() (in this thread): ops then build leaves."""
    return _threads_without_grad == 0 or getattr(_grad_state, "depth", 0) == 0


_grad_enabled = is_grad_enabled


class no_grad(contextlib.ContextDecorator):
    """Inside it (in this thread), ops return leaves: no graph is kept. Also a decorator."""

    def __enter__(self):
        global _threads_without_grad
        depth = getattr(_grad_state, "depth", 0)
        _grad_state.depth = depth + 1
        if depth == 0:
            _threads_without_grad += 1
        return self

    def __exit__(self, *exc):
        global _threads_without_grad
        _grad_state.depth -= 1
        if _grad_state.depth == 0:
            _threads_without_grad -= 1
        return False


def _node(data, children, op, rule, arg=None):
    """A new interior node (no label, no gradient yet); a leaf under no_grad()."""
    if not _grad_enabled():
        return Value(data)
    out = Value.__new__(Value)
    out._data = data
    out._grad = 0.0
    out._label = ""
    out._children = children
    out._op = op
    out._rule = rule
    out._arg = arg
    out._serial = next(_serial)
    return out


class Value:
    """A scalar in a computation graph, with its gradient (micrograd's ``Value``)."""

    __slots__ = ("_arg", "_children", "_data", "_grad", "_label", "_op", "_rule", "_serial")

    # numpy scalars and arrays on the left of an operator return NotImplemented instead of
    # treating a Value as an object array element, so Python calls our reflected op.
    __array_ufunc__ = None

    def __init__(self, data, _children=(), _op="", label="", *, local_grads=None):
        # micrograd's Value(data, _children, _op) (a user-defined op whose _backward the
        # caller assigns) or microgpt's Value(data, children, local_grads): see _user_op.
        self._data = _real_or_raise(data, "Value data")
        self._grad = 0.0
        self.label = label
        if not isinstance(_op, str):
            if local_grads is not None:
                raise TypeError(f"Value(): _op must be a str, got {type(_op).__name__}")
            _op, local_grads = "", _op
        children, grads = _user_op(_children, local_grads)
        self._serial = next(_serial)
        self._children = ()
        self._op = _op if _grad_enabled() else ""
        self._rule = _leaf_rule
        self._arg = None
        if children and _grad_enabled():
            self._children = children
            if grads is None:
                self._rule = _py_backward_rule  # _arg: the _backward assigned later
            else:
                self._rule = _local_grads_rule
                self._arg = grads

    # ---- attributes: always float / str

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        self._data = _real_or_raise(value, "Value.data")

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value):
        self._grad = _real_or_raise(value, "Value.grad")

    @property
    def label(self):
        return self._label

    @label.setter
    def label(self, value):
        if not isinstance(value, str):
            raise TypeError(f"Value.label must be a str, got {type(value).__name__}")
        self._label = value

    @property
    def _prev(self):
        """The operands, as a set (micrograd's graph, e.g. for drawing it)."""
        return set(self._children)

    @property
    def _backward(self):
        """micrograd's per-node step: calling it applies this node's local derivatives (a
        user-defined op's: the callable assigned to it)."""
        if self._rule is _py_backward_rule and self._arg is not None:
            return self._arg
        return functools.partial(self._rule, self)

    @_backward.setter
    def _backward(self, fn):
        if not callable(fn):
            raise TypeError(f"Value._backward must be callable, got {type(fn).__name__}")
        if self._rule is _leaf_rule:  # no children: nothing to propagate to
            return
        if self._rule is not _py_backward_rule:
            raise AttributeError(
                f"the backward of a native op ({self._op!r}) cannot be replaced: build your own "
                "op as Value(data, _children, _op) and give that one a _backward"
            )
        self._arg = fn

    # ---- PyTorch's conveniences

    def item(self):
        return self._data

    def __float__(self):
        return self._data

    def detach(self):
        return Value(self._data)

    # < <= > >= compare the data; == stays identity (micrograd's), so Values hash by identity.
    def __lt__(self, other):
        other = _compared(other)
        return NotImplemented if other is None else self._data < other

    def __le__(self, other):
        other = _compared(other)
        return NotImplemented if other is None else self._data <= other

    def __gt__(self, other):
        other = _compared(other)
        return NotImplemented if other is None else self._data > other

    def __ge__(self, other):
        other = _compared(other)
        return NotImplemented if other is None else self._data >= other

    __hash__ = object.__hash__

    # ---- binary ops: the dunder methods only convert operands; _add etc. build the node

    def __add__(self, other):
        other = _operand(other)
        return NotImplemented if other is None else _binary("add", self, other)

    def __radd__(self, other):
        other = _operand(other)
        return NotImplemented if other is None else _binary("add", other, self)

    def __sub__(self, other):
        other = _operand(other)
        return NotImplemented if other is None else _binary("sub", self, other)

    def __rsub__(self, other):
        other = _operand(other)
        return NotImplemented if other is None else _binary("sub", other, self)

    def __mul__(self, other):
        other = _operand(other)
        return NotImplemented if other is None else _binary("mul", self, other)

    def __rmul__(self, other):
        other = _operand(other)
        return NotImplemented if other is None else _binary("mul", other, self)

    def __truediv__(self, other):
        other = _operand(other)
        return NotImplemented if other is None else _binary("div", self, other)

    def __rtruediv__(self, other):
        other = _operand(other)
        return NotImplemented if other is None else _binary("div", other, self)

    def __pow__(self, other, modulo=None):
        if modulo is not None:
            raise TypeError("pow() with a modulus is not supported for Value")
        if isinstance(other, Value):
            return _binary("pow", self, other)
        k = _real(other)
        if k is None:
            return NotImplemented
        # '**k' keeps the exponent as the user wrote it in _op (micrograd's f'**{other}'); an
        # integer (int, bool, numpy ints: anything with __index__) makes pow_const_int.
        integral = hasattr(type(other), "__index__")
        shown = int(other) if isinstance(other, bool) else other  # bool prints as an int
        twin = OPS["pow_const_int" if integral else "pow_const"]
        return _node(twin.forward(self._data, k), (self,), f"{twin.op}{shown}", twin.rule, k)

    def __rpow__(self, other):
        other = _operand(other)
        return NotImplemented if other is None else _binary("pow", other, self)

    def __neg__(self):
        return _unary("neg", self)

    def __abs__(self):
        return self.abs()

    # ---- unary ops

    def relu(self):
        return _unary("relu", self)

    def tanh(self):
        return _unary("tanh", self)

    def exp(self):
        return _unary("exp", self)

    def log(self):
        return _unary("log", self)

    def sigmoid(self):
        return _unary("sigmoid", self)

    def abs(self):
        return _unary("abs", self)

    def sqrt(self):
        return _unary("sqrt", self)

    # ---- autograd

    def backward(self, gradient=1.0):
        seed = _real_or_raise(gradient, "backward(): gradient")
        # Collect everything reachable from self with an explicit stack (graphs can be
        # millions of nodes deep, far beyond Python's recursion limit) ...
        seen = {self}
        stack = [self]
        while stack:
            for child in stack.pop()._children:
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        # ... and visit it newest first. Every operand is created before the node using it,
        # so this is a topological order; it is also exactly the order of the native
        # arena's reverse sweep over node ids, so gradients are summed in the same order.
        topo = sorted(seen, key=_by_serial, reverse=True)
        self._grad = seed
        for v in topo:
            v._rule(v)

    def __repr__(self):
        return f"Value(data={self._data}, grad={self._grad})"


def _compared(x):
    """What a Value is compared with: another Value's data or a real number, else None."""
    return x._data if isinstance(x, Value) else _real(x)


def _user_op(children, local_grads):
    """(children, local_grads) of Value(data, children, ...): a tuple of Values, and a tuple
    of floats of the same length or None."""
    if isinstance(children, (str, bytes)):
        raise TypeError(
            f"Value(): _children must be an iterable of Values, not {type(children).__name__} "
            "(give a label as label=...)"
        )
    try:
        children = tuple(children)
    except TypeError:
        raise TypeError(
            f"Value(): _children must be an iterable of Values, not {type(children).__name__}"
        ) from None
    grads = None
    if local_grads is not None:
        try:
            items = list(local_grads)
        except TypeError:
            raise TypeError(
                "Value(): local_grads must be a sequence of real numbers (or _op a str), "
                f"not {type(local_grads).__name__}"
            ) from None
        if len(items) != len(children):
            raise ValueError(f"Value(): {len(children)} children but {len(items)} local_grads")
        grads = tuple(_real_or_raise(d, f"Value(): local_grads[{k}]") for k, d in enumerate(items))
    for k, child in enumerate(children):
        if not isinstance(child, Value):
            raise TypeError(f"Value(): child {k} must be a Value, not {type(child).__name__}")
    return children, grads


# --------------------------------------------------------------------------- node builders
# Each takes the op's forward formula, _op and rule from its twin in OPS (below).


def _unary(name, a):
    twin = OPS[name]
    return _node(twin.forward(a._data), (a,), twin.op, twin.rule)


def _binary(name, a, b):
    twin = OPS[name]
    return _node(twin.forward(a._data, b._data), (a, b), twin.op, twin.rule)


def _nary(name, operands):
    twin = OPS[name]
    return _node(twin.forward([v._data for v in operands]), operands, twin.op, twin.rule)


def sum(values):  # arenagrad.sum is the n-ary node; it shadows builtins.sum on purpose
    """One ``sum`` node over ``values`` (any iterable of Values or numbers)."""
    return _nary("sum", tuple(_operand_or_raise(v, "sum() item") for v in values))


def linear(b, ws, xs):
    """One ``linear`` node: ``b + w_0*x_0 + w_1*x_1 + ...`` summed in that order.

    This is micrograd's ``sum((wi*xi for wi, xi in zip(w, x)), b)`` fused into one node,
    with the same forward rounding. Its operands are ``(b, w_0, x_0, w_1, x_1, ...)``.
    """
    ws = list(ws)
    xs = list(xs)
    if len(ws) != len(xs):
        raise ValueError(f"linear() got {len(ws)} weights but {len(xs)} inputs")
    operands = [_operand_or_raise(b, "linear() bias")]
    for w, x in zip(ws, xs, strict=True):
        operands.append(_operand_or_raise(w, "linear() weight"))
        operands.append(_operand_or_raise(x, "linear() input"))
    return _nary("linear", tuple(operands))


# --------------------------------------------------------------------------- forward formulas
# Those that are not a Python operator, on floats (docs/semantics.md).


def _relu(x):
    return 0.0 if x < 0.0 else x


def _sigmoid(x):
    # Two branches so that exp never overflows for large |x|.
    if x >= 0.0:
        return _div(1.0, 1.0 + _exp(-x))
    e = _exp(x)
    return _div(e, 1.0 + e)


def _linear_forward(v):
    acc = v[0]
    for w, x in zip(v[1::2], v[2::2], strict=True):
        acc = acc + w * x
    return acc


def _sum_forward(v):
    acc = 0.0
    for x in v:
        acc = acc + x
    return acc


# --------------------------------------------------------------------------- local derivatives
# One rule per op: `x.grad += d * out.grad` for each operand x, with d from the table in
# docs/semantics.md, computed from the operands' and the node's *current* data.


def _add_rule(out):
    a, b = out._children
    a._grad += 1.0 * out._grad
    b._grad += 1.0 * out._grad


def _sub_rule(out):
    a, b = out._children
    a._grad += 1.0 * out._grad
    b._grad += -1.0 * out._grad


def _mul_rule(out):
    a, b = out._children
    a._grad += b._data * out._grad
    b._grad += a._data * out._grad


def _truediv_rule(out):
    a, b = out._children
    a._grad += _div(1.0, b._data) * out._grad
    b._grad += _div(-a._data, b._data * b._data) * out._grad


def _neg_rule(out):
    (a,) = out._children
    a._grad += -1.0 * out._grad


def _pow_const_rule(out):
    (a,) = out._children
    k = out._arg
    a._grad += (k * _pow(a._data, k - 1.0)) * out._grad


def _pow_value_rule(out):
    a, b = out._children
    x, y = a._data, b._data
    a._grad += (y * _pow(x, y - 1.0)) * out._grad
    # d/dy x**y = x**y * log(x), except that 0**y is constant 0 (or 1) for y >= 0.
    d_b = 0.0 if (x == 0.0 and y >= 0.0) else out._data * _log(x)
    b._grad += d_b * out._grad


def _relu_rule(out):
    (a,) = out._children
    # Not `(out > 0) * grad`: a 0.0 multiplier keeps 0 * inf = nan, like micrograd.
    d = 1.0 if out._data > 0.0 else 0.0
    a._grad += d * out._grad


def _tanh_rule(out):
    (a,) = out._children
    a._grad += (1.0 - out._data * out._data) * out._grad


def _exp_rule(out):
    (a,) = out._children
    a._grad += out._data * out._grad


def _log_rule(out):
    (a,) = out._children
    a._grad += _div(1.0, a._data) * out._grad


def _sigmoid_rule(out):
    (a,) = out._children
    a._grad += (out._data * (1.0 - out._data)) * out._grad


def _abs_rule(out):
    (a,) = out._children
    x = a._data
    d = 1.0 if x > 0.0 else -1.0 if x < 0.0 else 0.0 if x == 0.0 else _NAN
    a._grad += d * out._grad


def _sqrt_rule(out):
    (a,) = out._children
    a._grad += _div(0.5, out._data) * out._grad


def _sum_rule(out):
    g = out._grad
    for v in out._children:  # every occurrence, so sum([a, a]) gives a.grad == 2
        v._grad += 1.0 * g


def _linear_rule(out):
    b, *terms = out._children
    g = out._grad
    b._grad += 1.0 * g
    for w, x in zip(terms[0::2], terms[1::2], strict=True):
        w._grad += x._data * g
        x._grad += w._data * g


# User-defined ops: microgpt's gives its local derivatives (out._arg), micrograd's a callable
# (out._arg, once assigned) that applies them itself; neither has a forward formula here.


def _local_grads_rule(out):
    g = out._grad
    for child, d in zip(out._children, out._arg, strict=True):
        child._grad += d * g


def _py_backward_rule(out):
    if out._arg is not None:
        out._arg()


def _given(*_):
    raise TypeError("a user-defined op's value is given, not computed")


# --------------------------------------------------------------------------- the op table
# The twins of the native op table (cpp/ops.hpp), keyed by the names of
# arenagrad._core.op_table; every node above is built from here. forward takes the operands'
# data (pow_const's also its exponent; n-ary ones a list), rule applies the local derivatives.


class Twin(NamedTuple):
    op: str  # micrograd's _op ('**k' nodes append their exponent)
    arity: int | None  # 1, 2, or None for n-ary
    forward: Callable[..., float]
    rule: Callable[[Value], None]


OPS = {
    "add": Twin("+", 2, operator.add, _add_rule),
    "sub": Twin("-", 2, operator.sub, _sub_rule),
    "mul": Twin("*", 2, operator.mul, _mul_rule),
    "div": Twin("/", 2, _div, _truediv_rule),
    "neg": Twin("neg", 1, operator.neg, _neg_rule),
    "pow_const": Twin("**", 1, _pow, _pow_const_rule),
    "pow_const_int": Twin("**", 1, _pow, _pow_const_rule),
    "pow": Twin("**", 2, _pow, _pow_value_rule),
    "relu": Twin("ReLU", 1, _relu, _relu_rule),
    "tanh": Twin("tanh", 1, math.tanh, _tanh_rule),
    "exp": Twin("exp", 1, _exp, _exp_rule),
    "log": Twin("log", 1, _log, _log_rule),
    "sigmoid": Twin("sigmoid", 1, _sigmoid, _sigmoid_rule),
    "abs": Twin("abs", 1, math.fabs, _abs_rule),
    "sqrt": Twin("sqrt", 1, _sqrt, _sqrt_rule),
    "linear": Twin("linear", None, _linear_forward, _linear_rule),
    "sum": Twin("sum", None, _sum_forward, _sum_rule),
    "local_grads": Twin("local_grads", None, _given, _local_grads_rule),
    "py_backward": Twin("py_backward", None, _given, _py_backward_rule),
}


# --------------------------------------------------------------------------- nn (micrograd's)


class Module:
    def zero_grad(self):
        for p in self.parameters():
            p.grad = 0.0

    def parameters(self):
        return []


class Neuron(Module):
    def __init__(self, nin, nonlin=True):
        self.w = [Value(random.uniform(-1, 1)) for _ in range(nin)]
        self.b = Value(0)
        self.nonlin = nonlin

    def __call__(self, x):
        if not hasattr(x, "__len__"):
            x = list(x)
        if len(x) != len(self.w):
            raise ValueError(f"Neuron expects {len(self.w)} inputs, got {len(x)}")
        # micrograd's unfused form on purpose: the oracle checks the fused native neuron.
        act = builtins.sum((wi * xi for wi, xi in zip(self.w, x, strict=True)), self.b)
        return act.relu() if self.nonlin else act

    def parameters(self):
        return [*self.w, self.b]

    def __repr__(self):
        return f"{'ReLU' if self.nonlin else 'Linear'}Neuron({len(self.w)})"


class Layer(Module):
    def __init__(self, nin, nout, **kwargs):
        self.neurons = [Neuron(nin, **kwargs) for _ in range(nout)]

    def __call__(self, x):
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self):
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self):
        return f"Layer of [{', '.join(str(n) for n in self.neurons)}]"


class MLP(Module):
    def __init__(self, nin, nouts):
        sz = [nin, *nouts]
        self.layers = [
            Layer(sz[i], sz[i + 1], nonlin=i != len(nouts) - 1) for i in range(len(nouts))
        ]

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self):
        return f"MLP of [{', '.join(str(layer) for layer in self.layers)}]"
