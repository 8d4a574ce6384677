// The arena as a whole, seen from Python: its statistics, explicit compaction, and the node
// limit that the tests lower to reach "graph full" without allocating 150 GB.
#include <pybind11/pybind11.h>

#include "value.hpp"

namespace arenagrad {
namespace {

PyObject* arena_stats(PyObject*, PyObject*) {
    const Arena& graph = arena();
    return Py_BuildValue("{s:n,s:n,s:n,s:n,s:n}", "nodes", Py_ssize_t(graph.size()), "live_values",
                         Py_ssize_t(graph.live_handles()), "nary_operands", Py_ssize_t(graph.nary.size()),
                         "bytes_reserved", Py_ssize_t(graph.bytes_reserved()), "compactions",
                         Py_ssize_t(graph.compactions()));
}

PyObject* compact(PyObject*, PyObject*) {
    Arena& graph = arena();
    if (graph.compaction_blocked > 0) Py_RETURN_NONE;
    return guarded([&] {
        graph.truncate_dead_top();
        graph.compact(relocate_value);
        graph.give_back_free_memory();
        Py_RETURN_NONE;
    });
}

PyObject* set_node_limit(PyObject*, PyObject* limit) {
    if (!PyLong_Check(limit)) return PyErr_Format(PyExc_TypeError, "_set_node_limit(): n must be an int");
    const long long n = PyLong_AsLongLong(limit);
    if (n == -1 && PyErr_Occurred()) return nullptr;
    if (n < 1 || static_cast<unsigned long long>(n) > kMaxNodes)
        return PyErr_Format(PyExc_ValueError, "_set_node_limit(): n must be in [1, %zu], got %lld", kMaxNodes, n);
    Arena& graph = arena();
    const std::size_t previous = graph.node_limit();
    graph.set_node_limit(std::size_t(n));
    return PyLong_FromSize_t(previous);
}

PyMethodDef functions[] = {
    {"arena_stats", arena_stats, METH_NOARGS,
     "arena_stats() -> dict\n\nNodes in the arena, live Value handles, reserved bytes, compactions so far."},
    {"compact", compact, METH_NOARGS,
     "compact() -> None\n\nDrop every node no live Value needs now (normally automatic)."},
    {"_set_node_limit", set_node_limit, METH_O,
     "_set_node_limit(n) -> int\n\nTests only: cap the arena at n nodes; returns the previous cap."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

void bind_arena(pybind11::module_& m) {
    if (PyModule_AddFunctions(m.ptr(), functions) < 0) throw pybind11::error_already_set();
}

}  // namespace arenagrad
