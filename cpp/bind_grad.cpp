// _core._grad: the two sweeps behind arenagrad.grad (python/arenagrad/functional.py, which
// checks the arguments with messages meant for users; the checks here keep memory safe).
//
// Without create_graph the gradients are numbers (grad_values.hpp); with it they are new
// nodes (grad_graph.hpp), handed back as Values. Pushed nodes have no owner until their
// Values exist, and anything that may run Python code (an allocation that triggers the
// garbage collector, whose finalizers may drop Values and truncate the arena) could drop
// them: so the result list is allocated before the first push, and between the first push and
// the last handle only C++ code and handle creation run.
#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <vector>

#include "grad_graph.hpp"
#include "grad_values.hpp"
#include "value.hpp"

namespace py = pybind11;

namespace arenagrad {
namespace {

void check_values(const py::list& values, const char* what) {
    for (py::handle item : values)
        if (!is_value(item.ptr()))
            throw py::type_error(std::string("_grad(): ") + what + " must be Values, not '" +
                                 Py_TYPE(item.ptr())->tp_name + "'");
}

std::vector<NodeId> node_ids(const py::list& values) {
    std::vector<NodeId> ids;
    ids.reserve(values.size());
    for (py::handle item : values) ids.push_back(value_node(item.ptr()));
    return ids;
}

// A list of n Nones, to be filled in without allocating.
py::list nones(std::size_t n) {
    py::list list(n);
    for (std::size_t k = 0; k < n; ++k) PyList_SET_ITEM(list.ptr(), k, Py_NewRef(Py_None));
    return list;
}

py::list gradient_values(const py::list& outputs, const py::list& seeds, const py::list& inputs) {
    std::vector<double> seed;
    for (py::handle item : seeds) {
        if (!PyFloat_Check(item.ptr())) throw py::type_error("_grad(): without create_graph, seeds must be floats");
        seed.push_back(PyFloat_AS_DOUBLE(item.ptr()));
    }
    const std::vector<NodeId> out = node_ids(outputs), in = node_ids(inputs);
    std::vector<double> result(in.size());
    std::unique_ptr<bool[]> used(new bool[in.size()]);
    static GradientValues scratch;  // the GIL is held: one call at a time
    scratch.compute(arena(), out.data(), seed.data(), out.size(), in.data(), in.size(), result.data(), used.get());
    py::list grads = nones(in.size());
    for (std::size_t k = 0; k < in.size(); ++k)
        if (used[k]) grads[k] = py::float_(result[k]);
    return grads;
}

// RuntimeError naming the `_op` of a node whose rule has no derivative graph. The nodes the
// sweep pushed are dropped first; `node` itself is below them, kept alive by the outputs.
PyObject* refuse(Arena& graph, NodeId node) {
    graph.truncate_dead_top();
    PyObject* handle = handle_of(node);
    PyObject* op = handle != nullptr ? PyObject_GetAttrString(handle, "_op") : nullptr;
    Py_XDECREF(handle);
    if (op == nullptr) return nullptr;
    PyErr_Format(PyExc_RuntimeError,
                 "create_graph=True cannot differentiate through the node %R: its backward is Python code, "
                 "not ops that can be differentiated again",
                 op);
    Py_DECREF(op);
    return nullptr;
}

py::list gradient_graph(const py::list& outputs, const py::list& seeds, const py::list& inputs) {
    std::vector<double> seed_numbers(seeds.size());
    std::vector<bool> seed_is_value(seeds.size());
    for (std::size_t k = 0; k < seeds.size(); ++k) {
        PyObject* item = PyList_GET_ITEM(seeds.ptr(), k);
        seed_is_value[k] = is_value(item);
        if (!seed_is_value[k] && !PyFloat_Check(item))
            throw py::type_error("_grad(): seeds must be Values or floats");
        if (!seed_is_value[k]) seed_numbers[k] = PyFloat_AS_DOUBLE(item);
    }
    py::list grads = nones(inputs.size());  // before any push (see the top of this file)
    Arena& graph = arena();
    PyObject* failed = guarded([&]() -> PyObject* {
        compact_if_due(graph);  // before reading ids
        const std::vector<NodeId> out = node_ids(outputs), in = node_ids(inputs);
        GraphBuilder nodes(graph);
        std::vector<NodeId> seed(seeds.size());
        for (std::size_t k = 0; k < seeds.size(); ++k)
            seed[k] = seed_is_value[k] ? value_node(PyList_GET_ITEM(seeds.ptr(), k)) : nodes.constant(seed_numbers[k]);
        std::vector<NodeId> result;
        try {
            result = GradientGraph::build(graph, nodes, out, seed, in);
        } catch (const NoDerivativeGraph& refused) {
            return refuse(graph, refused.node);
        }
        for (std::size_t k = 0; k < result.size(); ++k) {
            if (result[k] == kNoGradient) continue;
            PyObject* handle = handle_of(result[k]);  // runs no Python code
            if (handle == nullptr) {
                graph.truncate_dead_top();
                return nullptr;
            }
            PyObject* none = PyList_GET_ITEM(grads.ptr(), k);
            PyList_SET_ITEM(grads.ptr(), k, handle);
            Py_DECREF(none);
        }
        return Py_None;  // borrowed: only a success marker
    });
    if (failed == nullptr) throw py::error_already_set();
    return grads;
}

}  // namespace

void bind_grad(py::module_& m) {
    m.def(
        "_grad",
        [](const py::list& outputs, const py::list& seeds, const py::list& inputs, bool create_graph) {
            check_values(outputs, "outputs");
            check_values(inputs, "inputs");
            if (seeds.size() != outputs.size()) throw py::value_error("_grad(): one seed per output");
            return create_graph ? gradient_graph(outputs, seeds, inputs) : gradient_values(outputs, seeds, inputs);
        },
        py::arg("outputs"), py::arg("seeds"), py::arg("inputs"), py::arg("create_graph"),
        "The gradient of every input (None where no output depends on it): floats, or with create_graph new "
        "Values. Use arenagrad.grad.");
}

}  // namespace arenagrad
