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
from collections.abc import Callable, Sequence
from typing import NamedTuple

__all__ = [
    "MLP",
    "Layer",
    "Module",
    "Neuron",
    "Value",
    "grad",
    "hessian",
    "hvp",
    "is_grad_enabled",
    "linear",
    "max",
    "no_grad",
    "sum",
    "take",
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


@contextlib.contextmanager
def _graph_even_without_grad():
    """Ops build nodes inside it even in no_grad(): a derivative graph asked for with
    create_graph=True is built whatever the mode (as the native GraphBuilder and PyTorch do)."""
    global _threads_without_grad
    depth = getattr(_grad_state, "depth", 0)
    if depth == 0:
        yield
        return
    _grad_state.depth = 0
    _threads_without_grad -= 1
    try:
        yield
    finally:
        _grad_state.depth = depth
        _threads_without_grad += 1


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


def _selection_values(values, what):
    values = list(values) if not isinstance(values, (list, tuple)) else values
    for i, v in enumerate(values):
        if not isinstance(v, Value):
            raise TypeError(f"{what}(): values[{i}] must be a Value, not {type(v).__name__!r}")
    if not values:
        raise ValueError(f"{what}(): values is empty")
    return tuple(values)


def take(values, index):
    """One ``take`` node: ``values[index]`` (index: a Value holding an integer, or an int),
    differentiable with respect to the chosen value, not the index. Its operands are
    ``(index, v_0, v_1, ...)``."""
    if isinstance(index, Value):
        position = index._data
    elif isinstance(index, numbers.Integral):
        position = float(operator.index(index))
        index = Value(position)
    else:
        raise TypeError(f"take(): index must be a Value or an int, not {type(index).__name__!r}")
    values = _selection_values(values, "take")
    if not (math.isfinite(position) and position == math.floor(position)):
        raise ValueError(f"take(): index {position!r} is not an integer")
    if not 0.0 <= position < len(values):
        raise IndexError(f"take(): index {int(position)} is out of range for {len(values)} values")
    return _nary("take", (index, *values))


def max(values):  # arenagrad.max is the n-ary node; it shadows builtins.max on purpose
    """One ``max`` node over ``values`` (Values): the largest; its gradient goes to the first
    largest operand (the first nan, if there is one)."""
    return _nary("max", _selection_values(values, "max"))


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


def _step(x):  # relu's derivative
    return 1.0 if x > 0.0 else 0.0


def _sign(x):  # abs's derivative; nan stays nan
    return 1.0 if x > 0.0 else -1.0 if x < 0.0 else 0.0 if x == 0.0 else _NAN


def _mask(x, c):  # x where the condition c is nonzero (nan is), else 0
    return x if c != 0.0 else 0.0


# Selections (take, max): the node's value is one operand's, chosen by position; `choice`
# gives that position in the operand list, or len(v) when there is none (value nan).


def _take_choice(v):  # [index, v_0, v_1, ...]
    index = v[0]
    if 0.0 <= index < len(v) - 1 and index == math.floor(index):
        return 1 + int(index)
    return len(v)


def _max_choice(v):  # the first largest; the first nan if there is one
    best = 0
    for k in range(1, len(v)):
        if v[best] != v[best]:
            break
        if v[k] > v[best] or v[k] != v[k]:
            best = k
    return best


def _take_forward(v):
    chosen = _take_choice(v)
    return v[chosen] if chosen < len(v) else _NAN


def _max_forward(v):
    return v[_max_choice(v)]


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
    b._grad += _div(-out._data, b._data) * out._grad  # -(a / b) / b


def _neg_rule(out):
    (a,) = out._children
    a._grad += -1.0 * out._grad


def _pow_const_rule(out):
    (a,) = out._children
    k = out._arg
    # a ** 0 is constant: 0 even where 0 * a ** -1 is nan (PyTorch's choice)
    d = 0.0 if k == 0.0 else k * _pow(a._data, k - 1.0)
    a._grad += d * out._grad


def _pow_const_int_rule(out):  # the same; its own function, so a node tells which op made it
    _pow_const_rule(out)


def _pow_value_rule(out):
    a, b = out._children
    x, y = a._data, b._data
    # a ** b is constant in a where b == 0 (PyTorch's choice, as for pow_const)
    d_a = y * _pow(x, y - 1.0) if y != 0.0 else 0.0
    a._grad += d_a * out._grad
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


def _step_rule(out):
    (a,) = out._children
    a._grad += 0.0 * out._grad


def _sign_rule(out):
    (a,) = out._children
    a._grad += 0.0 * out._grad


def _mask_rule(out):
    (a,) = out._children
    d = 1.0 if out._arg._data != 0.0 else 0.0  # the condition, a Value that gets no gradient
    a._grad += d * out._grad


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


def _detach_rule(out):  # the value passes, the gradient does not
    (a,) = out._children
    a._grad += 0.0 * out._grad


def _select_into(out, chosen):
    g = out._grad
    for k, v in enumerate(out._children):  # every operand: 1 for the chosen one, else 0
        v._grad += (1.0 if k == chosen else 0.0) * g


def _take_rule(out):
    _select_into(out, _take_choice([v._data for v in out._children]))


def _max_rule(out):
    _select_into(out, _max_choice([v._data for v in out._children]))
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
# data (pow_const's also its exponent, mask's its condition; n-ary ones a list), rule applies
# the local derivatives.


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
    "pow_const_int": Twin("**", 1, _pow, _pow_const_int_rule),
    "pow": Twin("**", 2, _pow, _pow_value_rule),
    "relu": Twin("ReLU", 1, _relu, _relu_rule),
    "tanh": Twin("tanh", 1, math.tanh, _tanh_rule),
    "exp": Twin("exp", 1, _exp, _exp_rule),
    "log": Twin("log", 1, _log, _log_rule),
    "sigmoid": Twin("sigmoid", 1, _sigmoid, _sigmoid_rule),
    "abs": Twin("abs", 1, math.fabs, _abs_rule),
    "sqrt": Twin("sqrt", 1, _sqrt, _sqrt_rule),
    "step": Twin("step", 1, _step, _step_rule),
    "sign": Twin("sign", 1, _sign, _sign_rule),
    "mask": Twin("mask", 1, _mask, _mask_rule),  # forward(x, condition)
    "linear": Twin("linear", None, _linear_forward, _linear_rule),
    "sum": Twin("sum", None, _sum_forward, _sum_rule),
    "take": Twin("take", None, _take_forward, _take_rule),
    "max": Twin("max", None, _max_forward, _max_rule),
    "detach": Twin("detach", 1, operator.pos, _detach_rule),  # Value.detach() while tracing
    "local_grads": Twin("local_grads", None, _given, _local_grads_rule),
    "py_backward": Twin("py_backward", None, _given, _py_backward_rule),
}


# --------------------------------------------------------------------------- higher order
# grad, hessian and hvp: the twins of arenagrad.grad/hessian/hvp (python/arenagrad/
# functional.py over cpp/grad_values.hpp and cpp/grad_graph.hpp). With create_graph, each
# op's derivative is built from the table's ops by its twin below of the rule's grad_*
# functions (cpp/ops.hpp), node for node and in the same order, so the graphs, their values
# and the order in which a later sweep adds are the native engine's.


def _op_node(name, *operands):
    """One node of op `name` over Values (a unary or binary op; mask takes (x, condition)):
    the twin of the native test hook _core._op_node, for ops that have no method."""
    if name not in OPS:
        raise ValueError(f"_op_node(): no op named {name!r}")
    if name in ("pow_const", "pow_const_int") or OPS[name].arity is None:
        raise ValueError(f"_op_node(): {name!r} is built by its own function or operator")
    arity = 2 if name == "mask" else OPS[name].arity
    if len(operands) != arity:
        raise TypeError(f"_op_node(): {name!r} takes {arity} operand(s)")
    if not all(isinstance(v, Value) for v in operands):
        raise TypeError("_op_node(): operands must be Values")
    if name == "mask":
        return _mask_node(*operands)
    return _unary(name, *operands) if arity == 1 else _binary(name, *operands)


def _mask_node(x, condition):
    """mask: x where `condition` is nonzero, else 0. The condition is kept (in _arg) and read,
    but it is not an operand: it gets no gradient, as pow_const's exponent."""
    twin = OPS["mask"]
    return _node(twin.forward(x._data, condition._data), (x,), twin.op, twin.rule, condition)


class _Product(NamedTuple):
    """A contribution factor * grad, not built yet: the products added into one node become
    one linear node (cpp/grad_graph.hpp)."""

    factor: Value
    grad: Value


class _GraphBuilder:
    """The twin of GraphBuilder (cpp/grad_graph.hpp): what the grad_* functions build with."""

    def __init__(self):
        self._constants = {}

    def times(self, d, grad):
        return _Product(d, grad)

    def add(self, x, y):
        return _binary("add", x, y)

    def sub(self, x, y):
        return _binary("sub", x, y)

    def mul(self, x, y):
        return _binary("mul", x, y)

    def div(self, x, y):
        return _binary("div", x, y)

    def pow(self, x, y):
        return _binary("pow", x, y)

    def unary(self, name, x):
        return _unary(name, x)

    def neg(self, x):
        return _unary("neg", x)

    def log(self, x):
        return _unary("log", x)

    def abs(self, x):
        return _unary("abs", x)

    def relu(self, x):
        return _unary("relu", x)

    def step(self, x):
        return _unary("step", x)

    def sign(self, x):
        return _unary("sign", x)

    def mask(self, x, condition):
        return _mask_node(x, condition)

    def pow_const(self, x, k, name):
        self.constant(k)  # the native node's exponent leaf (here the exponent is its _arg)
        twin = OPS[name]
        shown = int(k) if name == "pow_const_int" else k  # as Value.__pow__ shows it
        return _node(twin.forward(x._data, k), (x,), f"{twin.op}{shown}", twin.rule, k)

    def constant(self, v):
        """A leaf holding v, one per value (bit pattern: -0.0 is not 0.0) and per sweep."""
        key = v.hex()
        if key not in self._constants:
            self._constants[key] = Value(v)
        return self._constants[key]


# Each op's derivative graph: given the builder, the node `out`, its gradient node `grad` and
# `wants` (whether an operand leads to an input), yields (operand, d * grad) for each wanted
# operand, in operand order, building each only when it is wanted; d * grad is a node, or a
# product nodes.times(d, grad).


def _add_graph(nodes, out, grad, wants):
    a, b = out._children
    if wants(a):
        yield a, grad
    if wants(b):
        yield b, grad


def _sub_graph(nodes, out, grad, wants):
    a, b = out._children
    if wants(a):
        yield a, grad
    if wants(b):
        yield b, nodes.neg(grad)


def _mul_graph(nodes, out, grad, wants):
    a, b = out._children
    if wants(a):
        yield a, nodes.times(b, grad)
    if wants(b):
        yield b, nodes.times(a, grad)


def _div_graph(nodes, out, grad, wants):
    a, b = out._children
    if wants(a):
        d = nodes.div(nodes.constant(1.0), b)
        yield a, nodes.times(d, grad)
    if wants(b):
        d = nodes.div(nodes.neg(out), b)
        yield b, nodes.times(d, grad)


def _neg_graph(nodes, out, grad, wants):
    (a,) = out._children
    if wants(a):
        yield a, nodes.neg(grad)


def _power_rule_graph(name):
    def graph(nodes, out, grad, wants):
        (a,) = out._children
        if not wants(a):
            return
        k = out._arg
        if k == 0.0:
            yield a, nodes.times(nodes.constant(0.0), grad)
            return
        factor = nodes.constant(k)
        # pow(a, 1) is a for every double, so x ** 2's derivative is 2 * x, without a node
        lower = a if k == 2.0 else nodes.pow_const(a, k - 1.0, name)
        d = nodes.mul(factor, lower)
        yield a, nodes.times(d, grad)

    return graph


def _pow_graph(nodes, out, grad, wants):
    a, b = out._children
    if wants(a):
        b_minus_1 = nodes.sub(b, nodes.constant(1.0))
        power = nodes.pow(a, b_minus_1)
        d = nodes.mul(b, power)
        yield a, nodes.times(nodes.mask(d, b), grad)  # 0 where b == 0
    if wants(b):
        log_a = nodes.log(a)
        d = nodes.mul(out, log_a)
        # |a| + relu(-b) is 0 exactly where a == 0 and b >= 0
        size_of_a = nodes.abs(a)
        minus_b = nodes.neg(b)
        below_zero = nodes.relu(minus_b)
        keep = nodes.add(size_of_a, below_zero)
        yield b, nodes.times(nodes.mask(d, keep), grad)


def _relu_graph(nodes, out, grad, wants):
    (a,) = out._children
    if wants(a):
        yield a, nodes.times(nodes.step(out), grad)


def _tanh_graph(nodes, out, grad, wants):
    (a,) = out._children
    if wants(a):
        out_squared = nodes.mul(out, out)
        d = nodes.sub(nodes.constant(1.0), out_squared)
        yield a, nodes.times(d, grad)


def _exp_graph(nodes, out, grad, wants):
    (a,) = out._children
    if wants(a):
        yield a, nodes.times(out, grad)


def _log_graph(nodes, out, grad, wants):
    (a,) = out._children
    if wants(a):
        d = nodes.div(nodes.constant(1.0), a)
        yield a, nodes.times(d, grad)


def _sigmoid_graph(nodes, out, grad, wants):
    (a,) = out._children
    if wants(a):
        one_minus_out = nodes.sub(nodes.constant(1.0), out)
        d = nodes.mul(out, one_minus_out)
        yield a, nodes.times(d, grad)


def _abs_graph(nodes, out, grad, wants):
    (a,) = out._children
    if wants(a):
        yield a, nodes.times(nodes.sign(a), grad)


def _sqrt_graph(nodes, out, grad, wants):
    (a,) = out._children
    if wants(a):
        d = nodes.div(nodes.constant(0.5), out)
        yield a, nodes.times(d, grad)


def _zero_graph(nodes, out, grad, wants):  # step and sign: derivative 0
    (a,) = out._children
    if wants(a):
        yield a, nodes.times(nodes.constant(0.0), grad)


def _mask_graph(nodes, out, grad, wants):
    (a,) = out._children
    if wants(a):
        d = nodes.mask(nodes.constant(1.0), out._arg)
        yield a, nodes.times(d, grad)


def _linear_graph(nodes, out, grad, wants):
    b, *terms = out._children
    if wants(b):
        yield b, grad
    for w, x in zip(terms[0::2], terms[1::2], strict=True):
        if wants(w):
            yield w, nodes.times(x, grad)
        if wants(x):
            yield x, nodes.times(w, grad)


def _sum_graph(nodes, out, grad, wants):
    for v in out._children:
        if wants(v):
            yield v, grad


def _take_graph(nodes, out, grad, wants):  # d_v_k = take(one-hot at k, index)
    index, *values = out._children
    if wants(index):
        yield index, nodes.times(nodes.constant(0.0), grad)
    for k, v in enumerate(values):
        if wants(v):
            one, zero = nodes.constant(1.0), nodes.constant(0.0)
            hot = tuple(one if j == k else zero for j in range(len(values)))
            yield v, nodes.times(_nary("take", (index, *hot)), grad)


def _max_graph(nodes, out, grad, wants):  # d_v_k = tie_k * (1 - d_v_0 - ... - d_v_k-1)
    rest = nodes.constant(1.0)
    for k, v in enumerate(out._children):
        gap = nodes.sub(out, v)
        above = nodes.step(gap)
        tie = nodes.sub(nodes.constant(1.0), above)
        d = nodes.mul(tie, rest)
        if k + 1 < len(out._children):
            rest = nodes.sub(rest, d)
        if wants(v):
            yield v, nodes.times(d, grad)
def _local_grads_graph(nodes, out, grad, wants):
    # each local gradient is a constant (a number the user computed), so differentiating
    # this again gives 0 through it (docs/higher_order.md)
    for child, d in zip(out._children, out._arg, strict=True):
        if wants(child):
            yield child, nodes.times(nodes.constant(d), grad)


def _py_backward_graph(nodes, out, grad, wants):
    for child in out._children:
        if wants(child):
            raise _no_derivative_graph(out)
    yield from ()


def _no_derivative_graph(node):
    return RuntimeError(
        f"create_graph=True cannot differentiate through the node {node._op!r}: its "
        "backward is Python code, not ops that can be differentiated again"
    )


DERIVATIVE_GRAPHS = {
    "add": _add_graph,
    "sub": _sub_graph,
    "mul": _mul_graph,
    "div": _div_graph,
    "neg": _neg_graph,
    "pow_const": _power_rule_graph("pow_const"),
    "pow_const_int": _power_rule_graph("pow_const_int"),
    "pow": _pow_graph,
    "relu": _relu_graph,
    "tanh": _tanh_graph,
    "exp": _exp_graph,
    "log": _log_graph,
    "sigmoid": _sigmoid_graph,
    "abs": _abs_graph,
    "sqrt": _sqrt_graph,
    "step": _zero_graph,
    "sign": _zero_graph,
    "mask": _mask_graph,
    "linear": _linear_graph,
    "sum": _sum_graph,
    "take": _take_graph,
    "max": _max_graph,
    "detach": _zero_graph,
    "local_grads": _local_grads_graph,
    "py_backward": _py_backward_graph,
}
_GRAPH_OF_RULE = {OPS[name].rule: graph for name, graph in DERIVATIVE_GRAPHS.items()}


def _is_sequence(x):
    return isinstance(x, Sequence) and not isinstance(x, (str, bytes))


def _grad_values(items, what):
    if isinstance(items, Value):
        return [items]
    if not isinstance(items, (list, tuple)):
        raise TypeError(
            f"{what} must be a Value or a list or tuple of Values, not {type(items).__name__}"
        )
    values = list(items)
    for k, item in enumerate(values):
        if not isinstance(item, Value):
            raise TypeError(f"{what}[{k}] must be a Value, not {type(item).__name__}")
    if not values:
        raise ValueError(f"{what} must not be empty")
    return values


def _grad_seeds(grad_outputs, n_outputs, create_graph):
    if grad_outputs is None:
        return [1.0] * n_outputs
    given = list(grad_outputs) if isinstance(grad_outputs, (list, tuple)) else [grad_outputs]
    if len(given) != n_outputs:
        raise ValueError(
            f"grad_outputs has {len(given)} item(s) but there are {n_outputs} output(s)"
        )
    seeds = []
    for k, seed in enumerate(given):
        if isinstance(seed, Value):
            seeds.append(seed if create_graph else seed._data)
        else:
            seeds.append(_real_or_raise(seed, f"grad_outputs[{k}]"))
    return seeds


def _reachable(outputs, lowest=None):
    """Every node the outputs depend on (through operands), not below serial `lowest`."""
    seen = set()
    stack = [v for v in outputs if lowest is None or v._serial >= lowest]
    seen.update(stack)
    while stack:
        for child in stack.pop()._children:
            if child not in seen and (lowest is None or child._serial >= lowest):
                seen.add(child)
                stack.append(child)
    return seen


def _gradient_numbers(outputs, seeds, inputs):
    """The sweep of backward() on zeroed grads seeded with `seeds`, down to the lowest input
    (nodes below it cannot lead to one); every grad it uses is put back afterwards, also when
    a user's `_backward` raises. None for an input no output depends on."""
    reached = _reachable(outputs)
    lowest = min(x._serial for x in inputs)
    saved = [(v, v._grad) for v in reached]
    try:
        for v in reached:
            v._grad = 0.0
        for out, seed in zip(outputs, seeds, strict=True):
            out._grad += seed
        for v in sorted(reached, key=_by_serial, reverse=True):
            if v._serial < lowest:
                break
            v._rule(v)
        return [x._grad if x in reached else None for x in inputs]
    finally:
        for v, g in saved:
            v._grad = g


def _total(nodes, terms):
    """A node's gradient from its contributions: the one contribution (a product as a mul
    node), or all of them added in order from 0.0 like the sweep's `grad += d * out.grad`
    into a zeroed grad: a sum node if they are all nodes, else a linear node
    0.0 + d_1 * g_1 + ..., a node c being the term c * 1.0 (exactly c)."""
    if len(terms) == 1:
        (only,) = terms
        return nodes.mul(only.factor, only.grad) if isinstance(only, _Product) else only
    if not any(isinstance(t, _Product) for t in terms):
        return _nary("sum", tuple(terms))
    zero = nodes.constant(0.0)
    one = nodes.constant(1.0)
    operands = [zero]
    for t in terms:
        operands += [t.factor, t.grad] if isinstance(t, _Product) else [t, one]
    return _nary("linear", tuple(operands))


def _gradient_graph(outputs, seeds, inputs):
    """The gradient nodes of the inputs (None where no output depends on one)."""
    nodes = _GraphBuilder()
    seeds = [s if isinstance(s, Value) else nodes.constant(s) for s in seeds]
    lowest = min(x._serial for x in inputs)
    order = sorted(_reachable(outputs, lowest), key=_by_serial)
    # Only nodes on a path to an input are visited, and only such operands get gradients.
    targets = set(inputs)
    on_path = set()
    for v in order:
        if v in targets or any(child in on_path for child in v._children):
            on_path.add(v)
    wants = on_path.__contains__
    contributions = {}
    for out, seed in zip(outputs, seeds, strict=True):
        if wants(out):
            contributions.setdefault(out, []).append(seed)
    totals = {}
    for v in reversed(order):
        terms = contributions.get(v)
        if terms is None:
            continue
        total = _total(nodes, terms)
        totals[v] = total
        if not v._children:
            continue
        graph = _GRAPH_OF_RULE[v._rule]
        for operand, contribution in graph(nodes, v, total, wants):
            contributions.setdefault(operand, []).append(contribution)
    return [totals.get(x) for x in inputs]


def grad(outputs, inputs, grad_outputs=None, create_graph=False, allow_unused=False):
    """The gradients of `outputs` with respect to each of `inputs` (torch.autograd.grad's
    meaning, docs/api.md): floats, or with create_graph=True new Values that can be
    differentiated again. No .grad changes. An input no output depends on raises ValueError,
    or gets 0.0 (Value(0.0) with create_graph) with allow_unused=True."""
    outs = _grad_values(outputs, "outputs")
    ins = _grad_values(inputs, "inputs")
    if not isinstance(create_graph, bool):
        raise TypeError(f"create_graph must be a bool, not {type(create_graph).__name__}")
    if not isinstance(allow_unused, bool):
        raise TypeError(f"allow_unused must be a bool, not {type(allow_unused).__name__}")
    seeds = _grad_seeds(grad_outputs, len(outs), create_graph)
    if create_graph:
        with _graph_even_without_grad():
            grads = _gradient_graph(outs, seeds, ins)
    else:
        grads = _gradient_numbers(outs, seeds, ins)
    for k, g in enumerate(grads):
        if g is None:
            if not allow_unused:
                raise ValueError(
                    f"inputs[{k}] does not influence the outputs (no output depends on it); "
                    "pass allow_unused=True to get 0.0 for it"
                )
            grads[k] = Value(0.0) if create_graph else 0.0
    return tuple(grads)


def _leaves(inputs):
    items = list(inputs) if _is_sequence(inputs) else [inputs]
    if not items:
        raise ValueError("inputs must not be empty")
    return [
        Value(x._data if isinstance(x, Value) else _real_or_raise(x, f"inputs[{k}]"))
        for k, x in enumerate(items)
    ]


def _scalar(f, xs):
    y = f(*xs)
    if not isinstance(y, Value):
        raise TypeError(f"f must return a Value, not {type(y).__name__}")
    return y


def hessian(f, inputs):
    """d2 f / dx_i dx_j at `inputs` as a list of lists of floats (arenagrad.hessian's twin)."""
    xs = _leaves(inputs)
    y = _scalar(f, xs)
    first = grad(y, xs, create_graph=True, allow_unused=True)
    return [list(grad(g, xs, allow_unused=True)) for g in first]


def hvp(f, inputs, v):
    """The Hessian of f at `inputs` times the vector v (arenagrad.hvp's twin)."""
    xs = _leaves(inputs)
    vector = list(v) if _is_sequence(v) else [v]
    if len(vector) != len(xs):
        raise ValueError(f"v has {len(vector)} item(s) but there are {len(xs)} input(s)")
    seeds = [_real_or_raise(x, f"v[{k}]") for k, x in enumerate(vector)]
    y = _scalar(f, xs)
    first = grad(y, xs, create_graph=True, allow_unused=True)
    return list(grad(list(first), xs, grad_outputs=seeds, allow_unused=True))


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
