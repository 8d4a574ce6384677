// The Value type's attributes: data, grad, label, and micrograd's _prev, _children, _op and
// _backward.
#include <Python.h>

#include "node_extras.hpp"
#include "trace.hpp"
#include "value.hpp"

namespace arenagrad {

PyObject* value_label(PyObject* self) {
    const NodeExtras* extras = extras_of(value_node(self));
    return extras != nullptr && extras->label != nullptr ? Py_NewRef(extras->label) : PyUnicode_FromString("");
}

namespace {

PyObject* get_data(PyObject* self, void*) {
    if (check_read(self, ".data") < 0) return nullptr;  // while compile() traces (trace.hpp)
    return PyFloat_FromDouble(arena().data[value_node(self)]);
}
PyObject* get_grad(PyObject* self, void*) { return PyFloat_FromDouble(arena().grad[value_node(self)]); }

// Converts the number assigned to Value.<name>; the node is looked up only afterwards, since
// the conversion may run Python code (and compact).
int assigned_number(PyObject* value, const char* name, double* out) {
    if (value == nullptr) {
        PyErr_Format(PyExc_AttributeError, "cannot delete Value.%s", name);
        return -1;
    }
    const int converted = to_double(value, out);
    if (converted == 0)
        PyErr_Format(PyExc_TypeError, "Value.%s must be a real number (int, float or numpy scalar), not '%.200s'", name,
                     Py_TYPE(value)->tp_name);
    return converted == 1 ? 0 : -1;
}

int put_data(PyObject* self, PyObject* value, void*) {
    double x;
    if (assigned_number(value, "data", &x) < 0) return -1;
    arena().data[value_node(self)] = x;
    return 0;
}

int put_grad(PyObject* self, PyObject* value, void*) {
    double x;
    if (assigned_number(value, "grad", &x) < 0) return -1;
    arena().grad[value_node(self)] = x;
    return 0;
}

PyObject* get_label(PyObject* self, void*) { return value_label(self); }

int put_label(PyObject* self, PyObject* value, void*) { return set_label(self, value); }

// add(handle) for the handle of each child of `self` (compaction is held off: making a handle,
// or adding it to a collection, may run the garbage collector, i.e. Python code).
template <typename Add>
bool for_each_child_handle(PyObject* self, Add add) {
    CompactionBlocker hold_ids;
    bool failed = false;
    arena().for_each_child(value_node(self), [&](NodeId child) {
        if (failed) return;
        PyObject* handle = handle_of(child);
        failed = handle == nullptr || !add(handle);
        Py_XDECREF(handle);
    });
    return !failed;
}

PyObject* get_prev(PyObject* self, void*) {
    PyObject* operands = PySet_New(nullptr);
    if (operands == nullptr) return nullptr;
    if (!for_each_child_handle(self, [&](PyObject* handle) { return PySet_Add(operands, handle) == 0; }))
        Py_CLEAR(operands);
    return operands;
}

// The children in operand order (the op table's: linear's b, w0, x0, w1, x1, ...).
PyObject* get_children(PyObject* self, void*) {
    PyObject* children = PyList_New(0);
    if (children == nullptr) return nullptr;
    const bool ok = for_each_child_handle(self, [&](PyObject* handle) { return PyList_Append(children, handle) == 0; });
    PyObject* tuple = ok ? PyList_AsTuple(children) : nullptr;
    Py_DECREF(children);
    return tuple;
}

PyObject* get_op(PyObject* self, void*) {
    const Arena& graph = arena();
    const NodeId id = value_node(self);
    const Op op = graph.op[id];
    if (op == Op::PowConst || op == Op::PowConstInt) {
        // micrograd's f'**{k}': an int exponent prints as an int; one past 2**53, which the
        // exponent leaf holds rounded, as written (value_pow keeps that `_op` with the node)
        const NodeExtras* extras = extras_of(id);
        if (extras != nullptr && extras->op != nullptr) return Py_NewRef(extras->op);
        const double k = graph.data[graph.rhs[id]];
        PyObject* number = op == Op::PowConstInt ? PyLong_FromDouble(k) : PyFloat_FromDouble(k);
        if (number == nullptr) return nullptr;
        PyObject* name = PyUnicode_FromFormat("**%S", number);
        Py_DECREF(number);
        return name;
    }
    if (op == Op::Leaf || op == Op::PyBackward || op == Op::LocalGrads) {  // the `_op` given, '' by default
        const NodeExtras* extras = extras_of(id);
        return extras != nullptr && extras->op != nullptr ? Py_NewRef(extras->op) : PyUnicode_FromString("");
    }
    return PyUnicode_FromString(op_name(op));
}

// micrograd's `node._backward()` for a native node: its local chain rule, once.
PyObject* node_backward(PyObject* self, PyObject*) {
    Py_INCREF(self);
    PyObject* result = guarded([&]() -> PyObject* {
        if (!arena().backward_node(value_node(self))) return nullptr;
        Py_RETURN_NONE;
    });
    Py_DECREF(self);
    return result;
}

PyMethodDef node_backward_method = {
    "_backward", node_backward, METH_NOARGS,
    "Apply this node's local chain rule once: add its grad times each local derivative into its "
    "operands' grads (micrograd's per-node _backward)."};

// micrograd's `_backward`: for a user op made with Value(data, _children, _op), the callable
// assigned to it; for every other node, its native chain rule (node_backward_method).
PyObject* get_backward(PyObject* self, void*) {
    const NodeId id = value_node(self);
    if (arena().op[id] == Op::PyBackward) {
        const NodeExtras* extras = extras_of(id);
        if (extras != nullptr && extras->backward != nullptr) return Py_NewRef(extras->backward);
    }
    return PyCFunction_New(&node_backward_method, self);
}

int put_backward(PyObject* self, PyObject* value, void*) {
    if (value == nullptr) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete Value._backward");
        return -1;
    }
    if (!PyCallable_Check(value)) {
        PyErr_Format(PyExc_TypeError, "Value._backward must be a callable of no arguments, not '%.200s'",
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    const NodeId id = value_node(self);
    const Op op = arena().op[id];
    if (op == Op::Leaf) return 0;  // no children, so nothing to propagate to (also no_grad()'s nodes)
    if (op != Op::PyBackward) {
        PyErr_Format(PyExc_AttributeError,
                     "the backward of a native op ('%s') cannot be replaced: build your own op as "
                     "Value(data, _children, _op) and give that one a _backward",
                     op_name(op));
        return -1;
    }
    PyObject* previous = nullptr;
    PyObject* done = guarded([&] {
        NodeExtras& extras = extras_for(id);
        previous = extras.backward;
        extras.backward = Py_NewRef(value);
        Py_RETURN_NONE;
    });
    Py_XDECREF(done);
    Py_XDECREF(previous);  // last: freeing it may run any Python code
    return done == nullptr ? -1 : 0;
}

}  // namespace

PyGetSetDef value_attributes[] = {
    {"data", get_data, put_data, "The forward value (float); writable.", nullptr},
    {"grad", get_grad, put_grad, "d(root)/d(this) accumulated by backward() (float); writable.", nullptr},
    {"label", get_label, put_label, "A name for graph drawing (str).", nullptr},
    {"_prev", get_prev, nullptr, "The operand Values of this node, as a set (micrograd's graph).", nullptr},
    {"_children", get_children, nullptr, "The operand Values of this node, in operand order, as a tuple.", nullptr},
    {"_op", get_op, nullptr, "The op that made this node, as a string ('' for leaves).", nullptr},
    {"_backward", get_backward, put_backward,
     "micrograd's per-node chain rule: call it to apply this node's local derivatives once. "
     "Assignable on a user-defined op made with Value(data, _children, _op).",
     nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

}  // namespace arenagrad
