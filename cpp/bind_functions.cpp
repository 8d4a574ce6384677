// Module functions over many Values at once: sum(), linear() and zero_grad().
//
// sum() and linear() build one n-ary node for what micrograd builds as a chain of `+` and `*`
// nodes; nn.Neuron and the losses call them with lists of exact Values and floats, so that
// case is read straight into the arena (see Items).
#include <pybind11/pybind11.h>

#include <vector>

#include "value.hpp"

namespace arenagrad {
namespace {

enum class Numbers { Allowed, Refused };

// The items of a sequence argument: Values, and real numbers where allowed.
//
// A list or tuple of exact Values and floats (what nn and the losses pass) is read as it is:
// checking those types runs no Python code, so nothing can change it before the ids are read.
// Anything else is copied item by item into a list of our own, each number converted to a
// float up front. Either way items() then holds only Values and floats (see item_node).
// Converting a number may run Python code (a __float__) that changes a list being read, so
// once every argument of a call is loaded, each must be checked unchanged() if any of them
// ran_python().
class Items {
public:
    Items() = default;
    Items(const Items&) = delete;
    Items& operator=(const Items&) = delete;
    ~Items() {
        if (copy_ != nullptr) {
            Py_DECREF(sequence_);
            Py_DECREF(copy_);
        }
    }

    // False with a Python error set (TypeError naming the first bad item). `what` names the
    // argument for messages: the function, then the parameter ("linear(): ws").
    bool load(PyObject* items, const char* what, Numbers numbers) {
        what_ = what;
        numbers_allowed_ = numbers == Numbers::Allowed;
        if (!(PyList_CheckExact(items) || PyTuple_CheckExact(items)) || !all_plain(items)) return load_copy(items);
        sequence_ = items;  // borrowed: the caller holds it for the whole call
        size_ = std::size_t(PySequence_Fast_GET_SIZE(items));
        items_ = PySequence_Fast_ITEMS(items);
        return true;
    }

    // Whether loading ran Python code (which may have changed any sequence being read).
    bool ran_python() const { return copy_ != nullptr; }

    // False with RuntimeError if the sequence no longer holds what load() checked: the same
    // number of items, and a Value wherever it had one.
    bool unchanged() {
        bool same = std::size_t(PySequence_Fast_GET_SIZE(sequence_)) == size_;
        PyObject** now = PySequence_Fast_ITEMS(sequence_);
        for (std::size_t i = 0; same && i < size_; ++i)
            same = copy_ != nullptr ? PyFloat_CheckExact(items_[i]) || is_value(now[i]) : plain(now[i]);
        if (copy_ == nullptr) items_ = now;  // a list's item array moves when it grows
        return same || changed();
    }

    std::size_t size() const { return size_; }
    PyObject* const* items() const { return items_; }

private:
    PyObject* sequence_ = nullptr;  // the argument as a list or tuple (owned if copy_ is made)
    PyObject* copy_ = nullptr;      // our list of its items, numbers as floats (owned), if made
    PyObject** items_ = nullptr;    // copy_'s items if made, else sequence_'s
    std::size_t size_ = 0;
    const char* what_ = "";
    bool numbers_allowed_ = false;

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

    bool load_copy(PyObject* items) {
        PyObject* sequence = PySequence_Fast(items, "");
        if (sequence == nullptr) {
            if (!PyErr_ExceptionMatches(PyExc_TypeError)) return false;  // e.g. an iterator that raised
            PyErr_Format(PyExc_TypeError, "%s must be a sequence (list or tuple) of Values%s, not '%.200s'", what_,
                         numbers_allowed_ ? " and real numbers" : "", Py_TYPE(items)->tp_name);
            return false;
        }
        const Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence);
        copy_ = PyList_New(n);
        if (copy_ == nullptr) {
            Py_DECREF(sequence);
            return false;
        }
        sequence_ = sequence;
        size_ = std::size_t(n);
        for (Py_ssize_t i = 0; i < n; ++i) {
            if (PySequence_Fast_GET_SIZE(sequence_) != n) return changed();  // a __float__ shrank it
            PyObject* item = Py_NewRef(PySequence_Fast_GET_ITEM(sequence_, i));  // its __float__ may drop it
            double number = 0.0;
            const int converted = is_value(item) ? 2 : numbers_allowed_ ? to_double(item, &number) : 0;
            if (converted == 0)
                PyErr_Format(PyExc_TypeError, "%s[%zd] must be a Value%s, not '%.200s'", what_, i,
                             numbers_allowed_ ? " or a real number" : "", Py_TYPE(item)->tp_name);
            if (converted == 1 && !PyFloat_CheckExact(item)) Py_SETREF(item, PyFloat_FromDouble(number));
            if (converted <= 0 || item == nullptr) {
                Py_XDECREF(item);
                return false;
            }
            PyList_SET_ITEM(copy_, i, item);
        }
        items_ = PySequence_Fast_ITEMS(copy_);
        return true;
    }
};

// The node of an item of Items: a Value's own, or a new leaf for a float. Call after
// compact_if_due(); runs no Python code.
NodeId item_node(Arena& graph, PyObject* item) {
    return PyFloat_CheckExact(item) ? graph.leaf(PyFloat_AS_DOUBLE(item)) : value_node(item);
}

PyObject* module_sum(PyObject*, PyObject* values) {
    Items items;
    if (!items.load(values, "arenagrad.sum(): values", Numbers::Allowed)) return nullptr;
    if (items.ran_python() && !items.unchanged()) return nullptr;
    const std::size_t n = items.size();
    PyObject* const* v = items.items();
    return guarded([&] {
        Arena& graph = arena();
        compact_if_due(graph);
        return wrap_new_node(graph.sum(n, [&](std::size_t i) { return item_node(graph, v[i]); }));
    });
}

PyObject* module_linear(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 3) return PyErr_Format(PyExc_TypeError, "linear(b, ws, xs) takes 3 arguments (%zd given)", nargs);
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
    PyObject* const* w = weights.items();  // all Values: numbers are refused
    PyObject* const* x = inputs.items();
    return guarded([&] {
        Arena& graph = arena();
        compact_if_due(graph);
        const NodeId b = bias_is_value ? value_node(bias) : graph.leaf(bias_number);
        return wrap_new_node(graph.linear(
            b, n, [&](std::size_t i) { return value_node(w[i]); },
            [&](std::size_t i) { return item_node(graph, x[i]); }));
    });
}

PyObject* module_zero_grad(PyObject*, PyObject* values) {
    Items params;
    if (!params.load(values, "zero_grad(): values", Numbers::Refused)) return nullptr;  // runs no __float__
    Arena& graph = arena();
    PyObject* const* p = params.items();  // all Values: numbers are refused
    for (std::size_t i = 0; i < params.size(); ++i) graph.grad[value_node(p[i])] = 0.0;
    Py_RETURN_NONE;
}

PyMethodDef functions[] = {
    {"sum", module_sum, METH_O,
     "sum(values) -> Value\n\nOne n-ary node for v0 + v1 + ... (numbers allowed), summed left to right from 0.0."},
    {"linear", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(module_linear)), METH_FASTCALL,
     "linear(b, ws, xs) -> Value\n\nOne fused node for b + w0*x0 + w1*x1 + ..., summed in micrograd's order."},
    {"zero_grad", module_zero_grad, METH_O, "zero_grad(values) -> None\n\nSet .grad = 0.0 on every Value given."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

void bind_functions(pybind11::module_& m) {
    if (PyModule_AddFunctions(m.ptr(), functions) < 0) throw pybind11::error_already_set();
}

}  // namespace arenagrad
