"""Pure-Python oracle for arenagrad: micrograd's engine and nn, with arenagrad's op table.

This module is the executable form of ``docs/semantics.md``. The test suite builds every
graph twice, once with the native engine and once with this file, and compares the results.
It deliberately uses nothing but the standard library and never imports ``arenagrad._core``
(or anything else from arenagrad), so it can also be loaded as a standalone file.

It follows micrograd (https://github.com/karpathy/micrograd, ``engine.py`` and ``nn.py``)
closely; the deliberate differences are the ones listed in ``docs/semantics.md``:
IEEE-754 results instead of Python exceptions, ``-``, ``/`` and ``neg`` as single nodes,
``.data``/``.grad`` always ``float``, extra ops, and the n-ary ``sum``/``linear`` nodes.
"""

import builtins
import functools
import itertools
import math
import operator
import random

__all__ = ["MLP", "Layer", "Module", "Neuron", "Value", "linear", "sum"]

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
    # imaginary part (numpy's complex scalars even allow float() with only a warning).
    if isinstance(x, (Value, str, bytes, bytearray, complex)):
        return None
    t = type(x)
    if not (hasattr(t, "__float__") or hasattr(t, "__index__")):
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


def _node(data, children, op, rule, arg=None):
    """A new interior node (no label, no gradient yet)."""
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

    def __init__(self, data, label=""):
        self._data = _real_or_raise(data, "Value data")
        self._grad = 0.0
        self.label = label
        self._children = ()
        self._op = ""
        self._rule = _leaf_rule
        self._arg = None
        self._serial = next(_serial)

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
        """micrograd's per-node step: calling it applies this node's local derivatives."""
        return functools.partial(self._rule, self)

    # ---- binary ops: the dunder methods only convert operands; _add etc. build the node

    def __add__(self, other):
        other = _operand(other)
        return NotImplemented if other is None else _add(self, other)

    def __radd__(self, other):
        other = _operand(other)
        return NotImplemented if other is None else _add(other, self)

    def __sub__(self, other):
        other = _operand(other)
        return NotImplemented if other is None else _sub(self, other)

    def __rsub__(self, other):
        other = _operand(other)
        return NotImplemented if other is None else _sub(other, self)

    def __mul__(self, other):
        other = _operand(other)
        return NotImplemented if other is None else _mul(self, other)

    def __rmul__(self, other):
        other = _operand(other)
        return NotImplemented if other is None else _mul(other, self)

    def __truediv__(self, other):
        other = _operand(other)
        return NotImplemented if other is None else _truediv(self, other)

    def __rtruediv__(self, other):
        other = _operand(other)
        return NotImplemented if other is None else _truediv(other, self)

    def __pow__(self, other, modulo=None):
        if modulo is not None:
            raise TypeError("pow() with a modulus is not supported for Value")
        if isinstance(other, Value):
            return _pow_value(self, other)
        k = _real(other)
        if k is None:
            return NotImplemented
        # '**k' keeps the exponent as the user wrote it in _op (micrograd's f'**{other}').
        shown = int(other) if isinstance(other, bool) else other  # bool prints as an int
        return _node(_pow(self._data, k), (self,), f"**{shown}", _pow_const_rule, k)

    def __rpow__(self, other):
        other = _operand(other)
        return NotImplemented if other is None else _pow_value(other, self)

    def __neg__(self):
        return _node(-self._data, (self,), "neg", _neg_rule)

    def __abs__(self):
        return self.abs()

    # ---- unary ops

    def relu(self):
        x = self._data
        return _node(0.0 if x < 0.0 else x, (self,), "ReLU", _relu_rule)

    def tanh(self):
        return _node(math.tanh(self._data), (self,), "tanh", _tanh_rule)

    def exp(self):
        return _node(_exp(self._data), (self,), "exp", _exp_rule)

    def log(self):
        return _node(_log(self._data), (self,), "log", _log_rule)

    def sigmoid(self):
        x = self._data
        # Two branches so that exp never overflows for large |x|.
        if x >= 0.0:
            s = _div(1.0, 1.0 + _exp(-x))
        else:
            e = _exp(x)
            s = _div(e, 1.0 + e)
        return _node(s, (self,), "sigmoid", _sigmoid_rule)

    def abs(self):
        return _node(math.fabs(self._data), (self,), "abs", _abs_rule)

    def sqrt(self):
        return _node(_sqrt(self._data), (self,), "sqrt", _sqrt_rule)

    # ---- autograd

    def backward(self):
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
        self._grad = 1.0
        for v in topo:
            v._rule(v)

    def __repr__(self):
        return f"Value(data={self._data}, grad={self._grad})"


# --------------------------------------------------------------------------- node builders


def _add(a, b):
    return _node(a._data + b._data, (a, b), "+", _add_rule)


def _sub(a, b):
    return _node(a._data - b._data, (a, b), "-", _sub_rule)


def _mul(a, b):
    return _node(a._data * b._data, (a, b), "*", _mul_rule)


def _truediv(a, b):
    return _node(_div(a._data, b._data), (a, b), "/", _truediv_rule)


def _pow_value(a, b):
    return _node(_pow(a._data, b._data), (a, b), "**", _pow_value_rule)


def sum(values):  # arenagrad.sum is the n-ary node; it shadows builtins.sum on purpose
    """One ``sum`` node over ``values`` (any iterable of Values or numbers)."""
    vs = tuple(_operand_or_raise(v, "sum() item") for v in values)
    acc = 0.0
    for v in vs:
        acc = acc + v._data
    return _node(acc, vs, "sum", _sum_rule)


def linear(b, ws, xs):
    """One ``linear`` node: ``b + w_0*x_0 + w_1*x_1 + ...`` summed in that order.

    This is micrograd's ``sum((wi*xi for wi, xi in zip(w, x)), b)`` fused into one node,
    with the same forward rounding.
    """
    ws = list(ws)
    xs = list(xs)
    if len(ws) != len(xs):
        raise ValueError(f"linear() got {len(ws)} weights but {len(xs)} inputs")
    b = _operand_or_raise(b, "linear() bias")
    ws = [_operand_or_raise(w, "linear() weight") for w in ws]
    xs = [_operand_or_raise(x, "linear() input") for x in xs]
    acc = b._data
    for w, x in zip(ws, xs, strict=True):
        acc = acc + w._data * x._data
    return _node(acc, (b, *ws, *xs), "linear", _linear_rule, len(ws))


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
    n = out._arg
    b, ws, xs = out._children[0], out._children[1 : n + 1], out._children[n + 1 :]
    g = out._grad
    b._grad += 1.0 * g
    for w, x in zip(ws, xs, strict=True):
        w._grad += x._data * g
        x._grad += w._data * g


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
