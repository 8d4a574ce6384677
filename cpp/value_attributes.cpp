// The Value type's attributes: data, grad, label, and micrograd's _prev and _op.
#include <Python.h>

#include "trace.hpp"
#include "value.hpp"

namespace arenagrad {

PyObject* value_label(PyObject* self) {
    PyObject* label = reinterpret_cast<ValueObject*>(self)->label;
    return label != nullptr ? Py_NewRef(label) : PyUnicode_FromString("");
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

int put_label(PyObject* self, PyObject* value, void*) { return set_label(reinterpret_cast<ValueObject*>(self), value); }

PyObject* get_prev(PyObject* self, void*) {
    PyObject* operands = PySet_New(nullptr);
    if (operands == nullptr) return nullptr;
    CompactionBlocker hold_ids;  // PySet_Add may run the garbage collector
    bool failed = false;
    arena().for_each_operand(value_node(self), [&](NodeId operand) {
        if (failed) return;
        PyObject* handle = handle_of(operand);
        failed = handle == nullptr || PySet_Add(operands, handle) < 0;
        Py_XDECREF(handle);
    });
    if (failed) Py_CLEAR(operands);
    return operands;
}

PyObject* get_op(PyObject* self, void*) {
    const Arena& graph = arena();
    const NodeId id = value_node(self);
    const Op op = graph.op[id];
    if (op == Op::PowConst || op == Op::PowConstInt) {
        // micrograd's f'**{k}': an int exponent prints as an int, exactly (see int_as_doubles)
        const NodeId exponent = graph.rhs[id];
        PyObject* number = op == Op::PowConstInt ? PyLong_FromDouble(graph.data[exponent])
                                                 : PyFloat_FromDouble(graph.data[exponent]);
        if (op == Op::PowConstInt && graph.op[exponent] == Op::Linear) {  // see value_pow
            Py_CLEAR(number);
            number = PyLong_FromLong(0);
            graph.for_each_operand(exponent, [&](NodeId term) {
                PyObject* part = number != nullptr ? PyLong_FromDouble(graph.data[term]) : nullptr;
                Py_SETREF(number, part != nullptr ? PyNumber_Add(number, part) : nullptr);
                Py_XDECREF(part);
            });
        }
        if (number == nullptr) return nullptr;
        PyObject* name = PyUnicode_FromFormat("**%S", number);
        Py_DECREF(number);
        return name;
    }
    return PyUnicode_FromString(op_name(op));
}

}  // namespace

PyGetSetDef value_attributes[] = {
    {"data", get_data, put_data, "The forward value (float); writable.", nullptr},
    {"grad", get_grad, put_grad, "d(root)/d(this) accumulated by backward() (float); writable.", nullptr},
    {"label", get_label, put_label, "A name for graph drawing (str).", nullptr},
    {"_prev", get_prev, nullptr, "The operand Values of this node, as a set (micrograd's graph).", nullptr},
    {"_op", get_op, nullptr, "The op that made this node, as a string ('' for leaves).", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

}  // namespace arenagrad
