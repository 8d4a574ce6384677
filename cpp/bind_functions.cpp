// Module functions over many Values at once: sum(), linear() and zero_grad(); no_grad()'s
// switch; and the check compile() makes for ops a tape cannot replay.
//
// sum() and linear() build one n-ary node for what micrograd builds as a chain of `+` and `*`
// nodes; nn.Neuron and the losses call them with lists of exact Values and floats, so that
// case is read straight into the arena (see Items).
#include <pybind11/pybind11.h>

#include <algorithm>
#include <new>
#include <vector>

#include "trace.hpp"
#include "value.hpp"

namespace arenagrad {
namespace {

enum class Numbers { Allowed, Refused };

// The items of a sequence argument: Values, and real numbers where allowed.
//
// A list or tuple of exact Values and floats (what nn and the losses pass) is read in place:
// checking those types runs no Python code, so nothing can change it before the ids are read.
// Anything else (another iterable, Value subclasses, other kinds of numbers) goes through
// PySequence_Fast, with every number converted up front. A conversion may run Python code (a
// __float__) that changes a list being read, so once every argument of a call is loaded, each
// must be checked unchanged() if any of them ran_python().
class Items {
public:
    Items() = default;
    Items(const Items&) = delete;
    Items& operator=(const Items&) = delete;
    ~Items() {
        if (owned_ == nullptr) return;
        Py_DECREF(owned_);
        delete[] converted_;
    }

    // False with a Python error set (TypeError naming the first bad item). `what` names the
    // argument for messages: the function, then the parameter ("linear(): ws").
    bool load(PyObject* items, const char* what, Numbers numbers) {
        what_ = what;
        numbers_allowed_ = numbers == Numbers::Allowed;
        if (!(PyList_CheckExact(items) || PyTuple_CheckExact(items)) || !all_plain(items))
            return load_converting(items);
        sequence_ = items;  // borrowed: the caller holds it for the whole call
        size_ = std::size_t(PySequence_Fast_GET_SIZE(items));
        items_ = PySequence_Fast_ITEMS(items);
        return true;
    }

    // Whether loading ran Python code (which may have changed any sequence being read).
    bool ran_python() const { return owned_ != nullptr; }

    // False with RuntimeError unless the sequence still has as many items, and a Value
    // wherever load() found one.
    bool unchanged() {
        items_ = PySequence_Fast_ITEMS(sequence_);  // a list's item array moves when it grows
        bool same = std::size_t(PySequence_Fast_GET_SIZE(sequence_)) == size_;
        for (std::size_t i = 0; same && i < size_; ++i)
            same = owned_ == nullptr ? plain(items_[i]) : converted_[i].is_number || is_value(items_[i]);
        return same || changed();
    }

    std::size_t size() const { return size_; }

    // For an argument that holds only Values (numbers refused): its items.
    PyObject* const* values() const { return items_; }

    // Returns build(node), where node(graph, i) is the node of item i: a Value's own, or a new
    // leaf for a number. Call node after compact_if_due(); it runs no Python code. Each way of
    // loading has its own node, so the loop over the items does not ask which it was.
    template <typename Build>
    PyObject* with_nodes(Build&& build) const {
        if (owned_ == nullptr) {
            PyObject* const* items = items_;  // exact Values and floats
            return build([items](Arena& graph, std::size_t i) {
                PyObject* item = items[i];
                return PyFloat_CheckExact(item) ? graph.leaf(PyFloat_AS_DOUBLE(item)) : value_node(item);
            });
        }
        return build([this](Arena& graph, std::size_t i) {
            return converted_[i].is_number ? graph.leaf(converted_[i].number) : value_node(items_[i]);
        });
    }

    // The value of item i, a Value's data or a number: for no_grad(), which makes no nodes.
    double value(const Arena& graph, std::size_t i) const {
        if (owned_ == nullptr)
            return PyFloat_CheckExact(items_[i]) ? PyFloat_AS_DOUBLE(items_[i]) : graph.data[value_node(items_[i])];
        return converted_[i].is_number ? converted_[i].number : graph.data[value_node(items_[i])];
    }

private:
    struct Converted {
        bool is_number;  // else a Value
        double number;
    };

    // Only owned_ has a default: the read of a list of Values, on the hot path, sets the rest.
    PyObject* owned_ = nullptr;  // sequence_, when load_converting made it
    PyObject* sequence_;         // the argument as a list or tuple
    PyObject** items_;           // sequence_'s items
    std::size_t size_;
    Converted* converted_;  // owned with owned_: what item i is
    const char* what_;
    bool numbers_allowed_;

    bool plain(PyObject* item) const { return is_exact_value(item) || (numbers_allowed_ && PyFloat_CheckExact(item)); }
    bool all_plain(PyObject* items) const {
        PyObject** item = PySequence_Fast_ITEMS(items);
        for (Py_ssize_t i = 0, n = PySequence_Fast_GET_SIZE(items); i < n; ++i)
            if (!plain(item[i])) return false;
        return true;
    }

    bool changed() const {
        PyErr_Format(PyExc_RuntimeError, "%s changed while it was read", what_);
        return false;
    }

    bool load_converting(PyObject* items) {
        sequence_ = PySequence_Fast(items, "");
        if (sequence_ == nullptr) {
            if (!PyErr_ExceptionMatches(PyExc_TypeError)) return false;  // e.g. an iterator that raised
            PyErr_Format(PyExc_TypeError, "%s must be a sequence (list or tuple) of Values%s, not '%.200s'", what_,
                         numbers_allowed_ ? " and real numbers" : "", Py_TYPE(items)->tp_name);
            return false;
        }
        const Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence_);
        size_ = std::size_t(n);
        converted_ = new (std::nothrow) Converted[size_]();  // all Values until found otherwise
        owned_ = sequence_;
        if (converted_ == nullptr) {
            PyErr_NoMemory();
            return false;
        }
        for (Py_ssize_t i = 0; i < n; ++i) {
            if (PySequence_Fast_GET_SIZE(sequence_) != n) return changed();  // a __float__ shrank it
            PyObject* item = PySequence_Fast_GET_ITEM(sequence_, i);
            if (is_value(item)) continue;
            Py_INCREF(item);  // its __float__ may drop it from the list
            const int converted = numbers_allowed_ ? to_double(item, &converted_[i].number) : 0;
            if (converted == 0)
                PyErr_Format(PyExc_TypeError, "%s[%zd] must be a Value%s, not '%.200s'", what_, i,
                             numbers_allowed_ ? " or a real number" : "", Py_TYPE(item)->tp_name);
            Py_DECREF(item);
            if (converted <= 0) return false;
            converted_[i].is_number = true;
        }
        items_ = PySequence_Fast_ITEMS(sequence_);
        return true;
    }
};

PyObject* module_sum(PyObject*, PyObject* values) {
    if (!compact_if_due(arena())) return nullptr;
    Items items;
    if (!items.load(values, "arenagrad.sum(): values", Numbers::Allowed)) return nullptr;
    if (items.ran_python() && !items.unchanged()) return nullptr;
    const std::size_t n = items.size();
    Arena& graph = arena();
    if (!grad_enabled()) {  // the same fold, into a leaf
        double acc = rules::Sum::start();
        for (std::size_t i = 0; i < n; ++i) acc = rules::Sum::step(acc, items.value(graph, i));
        return guarded([&] { return wrap_new_node(graph.leaf(acc)); });
    }
    return items.with_nodes([&](auto node) {
        return guarded([&] { return wrap_new_node(graph.sum(n, [&](std::size_t i) { return node(graph, i); })); });
    });
}

PyObject* module_linear(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 3) return PyErr_Format(PyExc_TypeError, "linear(b, ws, xs) takes 3 arguments (%zd given)", nargs);
    if (!compact_if_due(arena())) return nullptr;
    PyObject* bias = args[0];
    double bias_number = 0.0;
    const bool bias_is_value = is_value(bias);
    if (!bias_is_value) {
        const int converted = to_double(bias, &bias_number);
        if (converted <= 0) return converted < 0 ? nullptr : not_a_number("linear(): b", bias);
    }
    Items weights, inputs;
    if (!weights.load(args[1], "linear(): ws", Numbers::Refused) ||
        !inputs.load(args[2], "linear(): xs", Numbers::Allowed))
        return nullptr;
    if ((weights.ran_python() || inputs.ran_python()) && (!weights.unchanged() || !inputs.unchanged())) return nullptr;
    const std::size_t n = weights.size();
    if (inputs.size() != n)
        return PyErr_Format(PyExc_ValueError, "linear(): got %zu weights but %zu inputs", n, inputs.size());
    PyObject* const* w = weights.values();
    Arena& graph = arena();
    if (!grad_enabled()) {  // the same fold, into a leaf
        double acc = rules::Linear::start(bias_is_value ? graph.data[value_node(bias)] : bias_number);
        for (std::size_t i = 0; i < n; ++i)
            acc = rules::Linear::step(acc, graph.data[value_node(w[i])], inputs.value(graph, i));
        return guarded([&] { return wrap_new_node(graph.leaf(acc)); });
    }
    return inputs.with_nodes([&](auto input_node) {
        return guarded([&] {
            const NodeId b = bias_is_value ? value_node(bias) : graph.leaf(bias_number);
            return wrap_new_node(graph.linear(
                b, n, [&](std::size_t i) { return value_node(w[i]); },
                [&](std::size_t i) { return input_node(graph, i); }));
        });
    });
}

PyObject* module_zero_grad(PyObject*, PyObject* values) {
    Items params;
    if (!params.load(values, "zero_grad(): values", Numbers::Refused)) return nullptr;  // runs no __float__
    Arena& graph = arena();
    PyObject* const* p = params.values();
    for (std::size_t i = 0; i < params.size(); ++i) graph.grad[value_node(p[i])] = 0.0;
    Py_RETURN_NONE;
}

// no_grad()'s switch for the calling thread (python/arenagrad/grad_mode.py is the public side).
PyObject* enter_no_grad(PyObject*, PyObject*) {
    if (tracing())  // its ops would make leaves: constants of the tape (trace.hpp)
        return PyErr_Format(PyExc_RuntimeError,
                            "no_grad() inside a function that arenagrad.compile() traces: its ops would make "
                            "leaves, frozen into the tape with the placeholders' values (v.detach() stops a "
                            "gradient and is traced per lane)");
    if (GradMode::depth++ == 0) ++GradMode::threads_without_grad;
    Py_RETURN_NONE;
}

PyObject* exit_no_grad(PyObject*, PyObject*) {
    if (GradMode::depth == 0) return PyErr_Format(PyExc_RuntimeError, "_exit_no_grad(): not inside no_grad()");
    if (--GradMode::depth == 0) --GradMode::threads_without_grad;
    Py_RETURN_NONE;
}

PyObject* is_grad_enabled(PyObject*, PyObject*) { return PyBool_FromLong(grad_enabled()); }

// The first node (as a Value) that the outputs reach above the fence and that a tape cannot
// replay (a user-defined op), or None. compile() refuses such a trace, naming the op.
PyObject* not_replayable(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 2 || !is_value(args[0]) || !PyList_Check(args[1]))
        return PyErr_Format(PyExc_TypeError, "_not_replayable(fence, outputs) takes a Value and a list of Values");
    PyObject* outputs = args[1];
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(outputs); ++k)
        if (!is_value(PyList_GET_ITEM(outputs, k)))
            return PyErr_Format(PyExc_TypeError, "_not_replayable(): outputs must be Values");
    const Arena& graph = arena();
    const std::size_t base = std::size_t(value_node(args[0])) + 1;
    std::size_t top = base;
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(outputs); ++k)
        top = std::max(top, std::size_t(value_node(PyList_GET_ITEM(outputs, k))) + 1);
    std::vector<bool> reached;
    try {  // a C function: nothing may throw out of it
        reached.assign(top - base, false);
    } catch (const std::bad_alloc&) {
        return PyErr_NoMemory();
    }
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(outputs); ++k) {
        const NodeId id = value_node(PyList_GET_ITEM(outputs, k));
        if (id >= base) reached[id - base] = true;
    }
    for (std::size_t i = top; i-- > base;) {  // ids are topological: one reverse pass
        if (!reached[i - base]) continue;
        const Op o = graph.op[i];
        if (!is_replayable(o)) return handle_of(NodeId(i));
        auto need = [&](NodeId id) {
            if (id >= base) reached[id - base] = true;
        };
        if (is_nary(o)) {
            for (std::size_t k = 0; k < graph.rhs[i]; ++k) need(graph.nary[graph.lhs[i] + k]);
        } else if (o != Op::Leaf) {
            need(graph.lhs[i]);
            need(graph.rhs[i]);
        }
    }
    Py_RETURN_NONE;
}

PyMethodDef functions[] = {
    {"sum", module_sum, METH_O,
     "sum(values) -> Value\n\nOne n-ary node for v0 + v1 + ... (numbers allowed), summed left to right from 0.0."},
    {"linear", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(module_linear)), METH_FASTCALL,
     "linear(b, ws, xs) -> Value\n\nOne fused node for b + w0*x0 + w1*x1 + ..., summed in micrograd's order."},
    {"zero_grad", module_zero_grad, METH_O, "zero_grad(values) -> None\n\nSet .grad = 0.0 on every Value given."},
    {"_enter_no_grad", enter_no_grad, METH_NOARGS, "_enter_no_grad() -> None\n\nno_grad()'s __enter__."},
    {"_exit_no_grad", exit_no_grad, METH_NOARGS, "_exit_no_grad() -> None\n\nno_grad()'s __exit__."},
    {"is_grad_enabled", is_grad_enabled, METH_NOARGS,
     "is_grad_enabled() -> bool\n\nFalse inside no_grad() (in this thread): ops then build leaves."},
    {"_not_replayable", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(not_replayable)), METH_FASTCALL,
     "_not_replayable(fence, outputs) -> Value | None\n\nThe first traced node a tape cannot replay."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

void bind_functions(pybind11::module_& m) {
    if (PyModule_AddFunctions(m.ptr(), functions) < 0) throw pybind11::error_already_set();
}

}  // namespace arenagrad
