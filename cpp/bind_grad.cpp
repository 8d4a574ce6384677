// arenagrad.grad: torch.autograd.grad for Values, over the sweeps of grad_values.hpp (numbers)
// and grad_graph.hpp (create_graph=True: new nodes, handed back as Values).
//
// Written against the C API, like sum() and linear(): on a small graph the call is the cost,
// and backward() costs ~70 ns (through pybind11 and a Python wrapper, grad cost ~1.3 us).
//
// The order of work keeps the arena's rules (value.hpp): every argument is checked and every
// number converted first (a conversion may run Python code, which may drop Values), then the
// result tuple is allocated (an allocation may run the garbage collector), and only then are
// node ids read and nodes pushed. From the first push to the last handle only C++ code and
// handle creation run, so no unowned node can be truncated away.
#include <pybind11/pybind11.h>

#include <memory>
#include <new>
#include <vector>

#include "grad_graph.hpp"
#include "grad_values.hpp"
#include "value.hpp"

namespace arenagrad {
namespace {

// The arguments of grad(), checked, with the Values held in tuples of our own (a list the
// caller passed may change while a seed's __float__ runs).
struct Arguments {
    PyObject* outputs = nullptr;  // tuple of Values
    PyObject* inputs = nullptr;   // tuple of Values
    PyObject* given_seeds = nullptr;  // tuple of the seeds given, or null: 1.0 each
    std::vector<double> seeds;        // one per output, where it is a number
    std::vector<bool> seed_is_value;  // with create_graph, a Value seed is a node of the graph
    bool create_graph = false, allow_unused = false;

    Arguments() = default;
    Arguments(const Arguments&) = delete;
    Arguments& operator=(const Arguments&) = delete;
    ~Arguments() {
        Py_XDECREF(outputs);
        Py_XDECREF(inputs);
        Py_XDECREF(given_seeds);
    }
};

bool is_list_or_tuple(PyObject* obj) { return PyList_Check(obj) || PyTuple_Check(obj); }

// A Value, or a list or tuple of Values, as a new tuple; null with TypeError or ValueError.
PyObject* values_of(PyObject* arg, const char* what) {
    if (is_value(arg)) return PyTuple_Pack(1, arg);
    if (!is_list_or_tuple(arg))
        return PyErr_Format(PyExc_TypeError, "%s must be a Value or a list or tuple of Values, not '%.200s'", what,
                            Py_TYPE(arg)->tp_name);
    PyObject* items = PySequence_Tuple(arg);
    if (items == nullptr) return nullptr;
    if (PyTuple_GET_SIZE(items) == 0) {
        Py_DECREF(items);
        return PyErr_Format(PyExc_ValueError, "%s must not be empty", what);
    }
    for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(items); ++k) {
        PyObject* item = PyTuple_GET_ITEM(items, k);
        if (!is_value(item)) {
            PyErr_Format(PyExc_TypeError, "%s[%zd] must be a Value, not '%.200s'", what, k, Py_TYPE(item)->tp_name);
            Py_DECREF(items);
            return nullptr;
        }
    }
    return items;
}

bool flag(PyObject* obj, const char* what, bool& out) {
    if (obj == nullptr) return true;  // the default, false
    if (!PyBool_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a bool, not '%.200s'", what, Py_TYPE(obj)->tp_name);
        return false;
    }
    out = obj == Py_True;
    return true;
}

// One seed per output: None gives 1.0 each; a number or a Value, or a list or tuple of them.
bool parse_seeds(PyObject* grad_outputs, Arguments& a) {
    const Py_ssize_t n = PyTuple_GET_SIZE(a.outputs);
    a.seeds.assign(std::size_t(n), 1.0);
    a.seed_is_value.assign(std::size_t(n), false);
    if (grad_outputs == nullptr || grad_outputs == Py_None) return true;
    a.given_seeds = is_list_or_tuple(grad_outputs) ? PySequence_Tuple(grad_outputs) : PyTuple_Pack(1, grad_outputs);
    if (a.given_seeds == nullptr) return false;
    if (PyTuple_GET_SIZE(a.given_seeds) != n) {
        PyErr_Format(PyExc_ValueError, "grad_outputs has %zd item(s) but there are %zd output(s)",
                     PyTuple_GET_SIZE(a.given_seeds), n);
        return false;
    }
    for (Py_ssize_t k = 0; k < n; ++k) {
        PyObject* seed = PyTuple_GET_ITEM(a.given_seeds, k);
        if (is_value(seed)) {
            a.seed_is_value[std::size_t(k)] = true;
            continue;
        }
        const int converted = to_double(seed, &a.seeds[std::size_t(k)]);
        if (converted == 0)
            PyErr_Format(PyExc_TypeError, "grad_outputs[%zd] must be a real number or a Value, not '%.200s'", k,
                         Py_TYPE(seed)->tp_name);
        if (converted != 1) return false;
    }
    // Without create_graph nothing is differentiated through a Value seed: its value will do
    // (read now that no more conversions run).
    for (Py_ssize_t k = 0; k < n && !a.create_graph; ++k) {
        if (!a.seed_is_value[std::size_t(k)]) continue;
        a.seeds[std::size_t(k)] = arena().data[value_node(PyTuple_GET_ITEM(a.given_seeds, k))];
        a.seed_is_value[std::size_t(k)] = false;
    }
    return true;
}

// grad(outputs, inputs, grad_outputs=None, create_graph=False, allow_unused=False)
bool parse(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames, Arguments& a) {
    static const char* const names[] = {"outputs", "inputs", "grad_outputs", "create_graph", "allow_unused"};
    constexpr Py_ssize_t count = 5;
    PyObject* given[count] = {};
    if (nargs > count) {
        PyErr_Format(PyExc_TypeError, "grad() takes at most 5 positional arguments (%zd given)", nargs);
        return false;
    }
    for (Py_ssize_t k = 0; k < nargs; ++k) given[k] = args[k];
    const Py_ssize_t n_keywords = kwnames != nullptr ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < n_keywords; ++k) {
        PyObject* name = PyTuple_GET_ITEM(kwnames, k);
        Py_ssize_t at = 0;
        while (at < count && PyUnicode_CompareWithASCIIString(name, names[at]) != 0) ++at;
        if (at == count) {
            PyErr_Format(PyExc_TypeError, "grad() got an unexpected keyword argument %R", name);
            return false;
        }
        if (given[at] != nullptr) {
            PyErr_Format(PyExc_TypeError, "grad() got multiple values for argument '%s'", names[at]);
            return false;
        }
        given[at] = args[nargs + k];
    }
    for (Py_ssize_t k = 0; k < 2; ++k)
        if (given[k] == nullptr) {
            PyErr_Format(PyExc_TypeError, "grad() missing required argument '%s'", names[k]);
            return false;
        }
    a.outputs = values_of(given[0], "outputs");
    if (a.outputs == nullptr) return false;
    a.inputs = values_of(given[1], "inputs");
    return a.inputs != nullptr && flag(given[3], "create_graph", a.create_graph) &&
           flag(given[4], "allow_unused", a.allow_unused) && parse_seeds(given[2], a);
}

std::vector<NodeId> node_ids(PyObject* values) {
    std::vector<NodeId> ids(std::size_t(PyTuple_GET_SIZE(values)));
    for (std::size_t k = 0; k < ids.size(); ++k) ids[k] = value_node(PyTuple_GET_ITEM(values, Py_ssize_t(k)));
    return ids;
}

void unused(std::size_t k) {
    PyErr_Format(PyExc_ValueError,
                 "inputs[%zu] does not influence the outputs (no output depends on it); pass allow_unused=True "
                 "to get 0.0 for it",
                 k);
}

// Without create_graph: the gradients as floats, into `result`.
bool gradient_numbers(const Arguments& a, PyObject* result) {
    const std::vector<NodeId> out = node_ids(a.outputs), in = node_ids(a.inputs);
    std::vector<double> grads(in.size());
    const std::unique_ptr<bool[]> used(new bool[in.size()]);
    // The GIL is held: one call at a time, except one started by a Python `_backward` that
    // this call runs, which gets buffers of its own.
    static GradientValues scratch;
    static bool scratch_in_use = false;
    struct Use {
        bool mine = !scratch_in_use;
        Use() { scratch_in_use = true; }
        ~Use() { scratch_in_use = !mine; }
        Use(const Use&) = delete;
        Use& operator=(const Use&) = delete;
    };
    try {
        GradientValues own;
        const Use use;
        GradientValues& buffers = use.mine ? scratch : own;
        if (!buffers.compute(arena(), out.data(), a.seeds.data(), out.size(), in.data(), in.size(), grads.data(),
                             used.get()))
            return false;
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
        return false;
    }
    for (std::size_t k = 0; k < in.size(); ++k) {
        if (!used[k] && !a.allow_unused) {
            unused(k);
            return false;
        }
        PyObject* number = PyFloat_FromDouble(grads[k]);
        if (number == nullptr) return false;
        PyTuple_SET_ITEM(result, Py_ssize_t(k), number);
    }
    return true;
}

// RuntimeError naming the `_op` of a node whose rule has no derivative graph. The nodes the
// sweep pushed are dropped first; `node` itself is below them, kept alive by the outputs.
void refuse(Arena& graph, NodeId node) {
    graph.truncate_dead_top();
    PyObject* handle = handle_of(node);
    PyObject* op = handle != nullptr ? PyObject_GetAttrString(handle, "_op") : nullptr;
    Py_XDECREF(handle);
    if (op == nullptr) return;
    PyErr_Format(PyExc_RuntimeError,
                 "create_graph=True cannot differentiate through the node %R: its backward is Python code, "
                 "not ops that can be differentiated again",
                 op);
    Py_DECREF(op);
}

// With create_graph: the gradients as new Values, into `result`.
bool gradient_graph(const Arguments& a, PyObject* result) {
    Arena& graph = arena();
    try {
        if (!compact_if_due(graph)) return false;  // before reading ids (MemoryError set)
        const std::vector<NodeId> out = node_ids(a.outputs), in = node_ids(a.inputs);
        GraphBuilder nodes(graph);
        std::vector<NodeId> seeds(out.size());
        for (std::size_t k = 0; k < out.size(); ++k)
            seeds[k] = a.seed_is_value[k] ? value_node(PyTuple_GET_ITEM(a.given_seeds, Py_ssize_t(k)))
                                          : nodes.constant(a.seeds[k]);
        std::vector<NodeId> grads;
        try {
            grads = GradientGraph::build(graph, nodes, out, seeds, in);
        } catch (const NoDerivativeGraph& refused) {
            refuse(graph, refused.node);
            return false;
        }
        for (std::size_t k = 0; k < grads.size(); ++k) {
            if (grads[k] != kNoGradient) continue;
            if (!a.allow_unused) {
                graph.truncate_dead_top();
                unused(k);
                return false;
            }
            grads[k] = graph.leaf(0.0);  // a Value(0.0) of its own
        }
        for (std::size_t k = 0; k < grads.size(); ++k) {
            PyObject* handle = handle_of(grads[k]);  // runs no Python code
            if (handle == nullptr) return false;     // the caller drops the handles made so far
            PyTuple_SET_ITEM(result, Py_ssize_t(k), handle);
        }
        return true;
    } catch (const std::bad_alloc& error) {
        raise_memory_error(error);  // drops the unowned nodes on top
        return false;
    }
}

PyObject* grad(PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
    Arguments a;
    if (!parse(args, nargs, kwnames, a)) return nullptr;
    PyObject* result = PyTuple_New(PyTuple_GET_SIZE(a.inputs));  // before any push
    if (result == nullptr) return nullptr;
    if (!(a.create_graph ? gradient_graph(a, result) : gradient_numbers(a, result))) {
        Py_DECREF(result);              // items not set yet are null, which a tuple allows
        arena().truncate_dead_top();  // nodes pushed for handles that were never made
        return nullptr;
    }
    return result;
}

PyObject* module_grad(PyObject*, PyObject* const* args, Py_ssize_t nargsf, PyObject* kwnames) {
    try {
        return grad(args, PyVectorcall_NARGS(nargsf), kwnames);
    } catch (const std::bad_alloc&) {  // a vector of ids or seeds (the arena's own are caught within)
        arena().truncate_dead_top();
        return PyErr_NoMemory();
    }
}

PyMethodDef functions[] = {
    {"grad", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(module_grad)), METH_FASTCALL | METH_KEYWORDS,
     "grad(outputs, inputs, grad_outputs=None, create_graph=False, allow_unused=False)\n--\n\n"
     "The gradients of `outputs` with respect to each of `inputs`, as torch.autograd.grad: a tuple,\n"
     "one per input, of sum_k seed_k * d(outputs[k])/d(input).\n\n"
     "outputs, inputs: a Value or a list or tuple of Values (any nodes, not only leaves).\n"
     "grad_outputs: each output's seed (default 1.0 each): a number or a Value, or a list or tuple.\n"
     "No .grad attribute changes. Without create_graph the gradients are floats, computed by the\n"
     "sweep of backward(); with create_graph=True they are new Values, nodes of the graph built\n"
     "from the op table's ops, that can be differentiated again (their .data are those floats).\n"
     "An input that no output depends on raises ValueError; with allow_unused=True its gradient\n"
     "is 0.0 (a new Value(0.0) with create_graph)."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

void bind_grad(pybind11::module_& m) {
    if (PyModule_AddFunctions(m.ptr(), functions) < 0) throw pybind11::error_already_set();
}

}  // namespace arenagrad
