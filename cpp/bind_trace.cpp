// _core._trace_begin / _core._trace_end: the open trace (trace.hpp), for arenagrad.compile.
#include <pybind11/pybind11.h>

#include <vector>

#include "trace.hpp"
#include "value.hpp"

namespace arenagrad {
namespace {

struct Trace {
    PyObject* fence = nullptr;         // the fence Value (a strong reference), null when closed
    std::size_t n_inputs = 0;          // the placeholders: the nodes right above the fence
    PyObject* take_indices = nullptr;  // list of (index Value, number of values)
};

thread_local Trace open_trace;  // the calling thread's (see trace_open)

PyObject* trace_begin(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 2 || !is_value(args[0]) || !PyLong_Check(args[1]))
        return PyErr_Format(PyExc_TypeError, "_trace_begin(fence, n_inputs) takes a Value and an int");
    if (open_trace.fence != nullptr)
        return PyErr_Format(PyExc_RuntimeError,
                            "arenagrad.compile() was called while tracing another function: compile it outside");
    if (!grad_enabled())
        return PyErr_Format(PyExc_RuntimeError,
                            "arenagrad.compile() under no_grad(): every op would make a leaf and nothing would be "
                            "traced (call it outside the no_grad block)");
    const Py_ssize_t n_inputs = PyLong_AsSsize_t(args[1]);
    if (n_inputs < 0) return PyErr_Occurred() ? nullptr : PyErr_Format(PyExc_ValueError, "n_inputs < 0");
    PyObject* indices = PyList_New(0);
    if (indices == nullptr) return nullptr;
    open_trace.fence = Py_NewRef(args[0]);
    open_trace.n_inputs = std::size_t(n_inputs);
    open_trace.take_indices = indices;
    trace_open = true;
    ++threads_tracing;
    Py_RETURN_NONE;
}

// Closes the trace; returns its take indices.
PyObject* trace_end(PyObject*, PyObject*) {
    if (open_trace.fence == nullptr) return PyErr_Format(PyExc_RuntimeError, "_trace_end(): no trace is open");
    PyObject* indices = open_trace.take_indices;
    Py_CLEAR(open_trace.fence);
    open_trace.take_indices = nullptr;
    trace_open = false;
    --threads_tracing;
    return indices;
}

PyMethodDef functions[] = {
    {"_trace_begin", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(trace_begin)), METH_FASTCALL,
     "_trace_begin(fence, n_inputs) -> None: compile() starts tracing (private)."},
    {"_trace_end", trace_end, METH_NOARGS, "_trace_end() -> list: compile() stops tracing (private)."},
    {nullptr, nullptr, 0, nullptr},
};

// Whether an input or a node from below the fence (a parameter, or any Value made before the
// trace, which the replay reads afresh at every forward) flows into node `id`.
bool depends_on_inputs_or_parameters(const Arena& graph, NodeId fence, std::size_t n_inputs, NodeId id) {
    const auto is_input = [&](NodeId node) { return node > fence && node <= fence + n_inputs; };
    if (id <= fence) return false;  // a parameter itself: its value is what the replay reads
    std::vector<std::uint8_t> seen(std::size_t(id - fence), 0);  // nodes fence + 1 .. id
    std::vector<NodeId> stack{id};
    bool depends = false;
    while (!stack.empty() && !depends) {
        const NodeId node = stack.back();
        stack.pop_back();
        if (node <= fence || is_input(node)) {
            depends = true;
            break;
        }
        if (seen[node - fence - 1] != 0) continue;
        seen[node - fence - 1] = 1;
        const Op o = graph.op[node];
        if (o == Op::Leaf) continue;  // a constant made while tracing
        if (is_nary(o)) {
            for (std::size_t k = 0; k < graph.rhs[node]; ++k) stack.push_back(graph.nary[graph.lhs[node] + k]);
        } else {  // rhs: the second operand, or the operand again, an exponent, a condition
            stack.push_back(graph.lhs[node]);
            stack.push_back(graph.rhs[node]);
        }
    }
    return depends;
}

}  // namespace

bool traced(PyObject* value) {
    return open_trace.fence != nullptr && value_node(value) > value_node(open_trace.fence);
}

int note_take_index(PyObject* index, std::size_t count) {
    if (open_trace.fence == nullptr) return 0;  // a Value made before the trace too: read at every forward
    PyObject* entry = Py_BuildValue("(On)", index, Py_ssize_t(count));
    if (entry == nullptr) return -1;
    const int appended = PyList_Append(open_trace.take_indices, entry);
    Py_DECREF(entry);
    return appended;
}

int refuse_traced_read(PyObject* value, const char* what) {
    if (open_trace.fence == nullptr) return 0;
    const Arena& graph = arena();
    const NodeId id = value_node(value);
    try {
        if (!depends_on_inputs_or_parameters(graph, value_node(open_trace.fence), open_trace.n_inputs, id)) return 0;
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
        return -1;
    }
    PyErr_Format(PyExc_RuntimeError,
                 "arenagrad.compile: %s of a Value computed from the inputs (or the parameters) was read while "
                 "tracing. It holds the placeholders' value, and a number taken out of the graph would be frozen "
                 "into the tape, the same for every lane and every replay. Keep the computation in Values: "
                 "arenagrad.take(values, index) to select by a Value, arenagrad.max(values) for a maximum "
                 "(.detach() it for a softmax shift), v.relu() or arenagrad.max instead of a branch on a sign, "
                 "v.detach() to stop gradients. (Parameters' and constants' values stay readable. A "
                 "user-defined op, Value(data, children, ...), computes its numbers this way: compile() "
                 "cannot replay one; build it from arenagrad's ops.)",
                 what);
    return -1;
}

void bind_trace(pybind11::module_& m) {
    if (PyModule_AddFunctions(m.ptr(), functions) < 0) throw pybind11::error_already_set();
}

}  // namespace arenagrad
