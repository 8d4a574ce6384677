// _core._trace_begin / _core._trace_end: the open trace (trace.hpp), for arenagrad.compile.
#include <pybind11/pybind11.h>

#include "trace.hpp"
#include "value.hpp"

namespace arenagrad {
namespace {

struct Trace {
    PyObject* fence = nullptr;         // the fence Value (a strong reference), null when closed
    PyObject* take_indices = nullptr;  // list of (index Value, number of values)
};

Trace open_trace;

PyObject* trace_begin(PyObject*, PyObject* fence) {
    if (!is_value(fence)) return PyErr_Format(PyExc_TypeError, "_trace_begin() takes a Value");
    if (open_trace.fence != nullptr)
        return PyErr_Format(PyExc_RuntimeError,
                            "arenagrad.compile() was called while tracing another function: compile it outside");
    PyObject* indices = PyList_New(0);
    if (indices == nullptr) return nullptr;
    Py_INCREF(fence);
    open_trace.fence = fence;
    open_trace.take_indices = indices;
    Py_RETURN_NONE;
}

// Closes the trace; returns its take indices.
PyObject* trace_end(PyObject*, PyObject*) {
    if (open_trace.fence == nullptr) return PyErr_Format(PyExc_RuntimeError, "_trace_end(): no trace is open");
    PyObject* indices = open_trace.take_indices;
    Py_CLEAR(open_trace.fence);
    open_trace.take_indices = nullptr;
    return indices;
}

PyMethodDef functions[] = {
    {"_trace_begin", trace_begin, METH_O, "_trace_begin(fence) -> None: compile() starts tracing (private)."},
    {"_trace_end", trace_end, METH_NOARGS, "_trace_end() -> list: compile() stops tracing (private)."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

int note_take_index(PyObject* index, std::size_t count) {
    if (open_trace.fence == nullptr || value_node(index) <= value_node(open_trace.fence)) return 0;
    PyObject* entry = Py_BuildValue("(On)", index, Py_ssize_t(count));
    if (entry == nullptr) return -1;
    const int appended = PyList_Append(open_trace.take_indices, entry);
    Py_DECREF(entry);
    return appended;
}

void bind_trace(pybind11::module_& m) {
    if (PyModule_AddFunctions(m.ptr(), functions) < 0) throw pybind11::error_already_set();
}

}  // namespace arenagrad
