// take() and max(): the selection nodes (rules::Take, rules::Max in ops.hpp).
//
// Both take a sequence of Values only: the items' types are checked before any node is
// pushed and reading them runs no Python code. take's index is a Value or an int; a Value
// index is read when the node is built, and one that is not an integer in range raises here
// (an index traced from compile()'s inputs is checked lane by lane instead, see trace.hpp).
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstdio>

#include "trace.hpp"
#include "value.hpp"

namespace arenagrad {
namespace {

// The items of `values` as a new reference to a list or tuple of Values, or null with
// TypeError. An iterable that is not a list or tuple is read into a list first.
PyObject* values_of(PyObject* values, const char* what) {
    PyObject* items = PySequence_Fast(values, "");
    if (items == nullptr) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "%s(): values must be a sequence of Values, not '%.200s'", what,
                         Py_TYPE(values)->tp_name);
        }
        return nullptr;
    }
    PyObject** item = PySequence_Fast_ITEMS(items);
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; ++i) {
        if (!is_value(item[i])) {
            PyErr_Format(PyExc_TypeError, "%s(): values[%zd] must be a Value, not '%.200s'", what, i,
                         Py_TYPE(item[i])->tp_name);
            Py_DECREF(items);
            return nullptr;
        }
    }
    if (n == 0) {
        PyErr_Format(PyExc_ValueError, "%s(): values is empty", what);
        Py_DECREF(items);
        return nullptr;
    }
    return items;
}

PyObject* module_take(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 2) return PyErr_Format(PyExc_TypeError, "take(values, index) takes 2 arguments (%zd given)", nargs);
    // Compaction runs Python (finalisers of dropped nodes' extras): before any pointer into
    // the caller's list is taken.
    if (!compact_if_due(arena())) return nullptr;
    PyObject* index = args[1];
    const bool index_is_value = is_value(index);
    double index_number = 0.0;
    if (!index_is_value) {
        if (PyFloat_Check(index) || !PyIndex_Check(index))
            return PyErr_Format(PyExc_TypeError, "take(): index must be a Value or an int, not '%.200s'",
                                Py_TYPE(index)->tp_name);
        const Py_ssize_t i = PyNumber_AsSsize_t(index, PyExc_IndexError);  // may run __index__
        if (i == -1 && PyErr_Occurred()) return nullptr;
        index_number = double(i);
    }
    PyObject* items = values_of(args[0], "take");  // after __index__, which could change the list
    if (items == nullptr) return nullptr;
    const std::size_t n = std::size_t(PySequence_Fast_GET_SIZE(items));
    if (index_is_value) index_number = arena().data[value_node(index)];
    // An index traced from the inputs holds the placeholders' value, not the lanes': compile()
    // checks each lane's after every forward instead.
    if (!(index_is_value && traced(index))) {
        if (!(std::isfinite(index_number) && index_number == std::floor(index_number))) {
            Py_DECREF(items);
            char shown[32];
            std::snprintf(shown, sizeof shown, "%.17g", index_number);
            return PyErr_Format(PyExc_ValueError, "take(): index %s is not an integer", shown);
        }
        if (index_number < 0.0 || index_number >= double(n)) {
            Py_DECREF(items);
            char shown[32];
            std::snprintf(shown, sizeof shown, "%.17g", index_number);
            return PyErr_Format(PyExc_IndexError, "take(): index %s is out of range for %zu values", shown, n);
        }
    }
    PyObject** item = PySequence_Fast_ITEMS(items);
    PyObject* result = guarded([&] {
        Arena& graph = arena();
        if (!grad_enabled())  // under no_grad(): a leaf holding the chosen value
            return wrap_new_node(graph.leaf(graph.data[value_node(item[std::size_t(index_number)])]));
        const NodeId head = index_is_value ? value_node(index) : graph.leaf(index_number);
        const NodeId id = graph.select(Op::Take, n + 1, [&](std::size_t k) { return k == 0 ? head : value_node(item[k - 1]); });
        return wrap_new_node(id);
    });
    if (result != nullptr && index_is_value && note_take_index(index, n) < 0) Py_CLEAR(result);
    Py_DECREF(items);
    return result;
}

PyObject* module_max(PyObject*, PyObject* values) {
    if (!compact_if_due(arena())) return nullptr;  // before reading the list, as in take()
    PyObject* items = values_of(values, "max");
    if (items == nullptr) return nullptr;
    const std::size_t n = std::size_t(PySequence_Fast_GET_SIZE(items));
    PyObject** item = PySequence_Fast_ITEMS(items);
    PyObject* result = guarded([&] {
        Arena& graph = arena();
        if (!grad_enabled()) {  // under no_grad(): a leaf holding the largest value
            const double top = selected_value<rules::Max>(
                [&](std::uint32_t k) { return graph.data[value_node(item[k])]; }, std::uint32_t(n));
            return wrap_new_node(graph.leaf(top));
        }
        return wrap_new_node(graph.select(Op::Max, n, [&](std::size_t k) { return value_node(item[k]); }));
    });
    Py_DECREF(items);
    return result;
}

PyMethodDef functions[] = {
    {"take", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(module_take)), METH_FASTCALL,
     "take(values, index) -> Value\n\nOne node selecting values[index] (index: a Value holding an integer, or an "
     "int); differentiable with respect to the chosen value, not the index."},
    {"max", module_max, METH_O,
     "max(values) -> Value\n\nOne node holding the largest of the Values; its gradient goes to the first largest "
     "(the first nan, if any)."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

void bind_select(pybind11::module_& m) {
    if (PyModule_AddFunctions(m.ptr(), functions) < 0) throw pybind11::error_already_set();
}

}  // namespace arenagrad
