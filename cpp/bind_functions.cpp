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
// A list or tuple of exact Values and floats (what nn and the losses pass) is used as it is:
// checking those types runs no Python code, so nothing can change the sequence before the ids
// are read. Anything else is copied by PySequence_Fast and its numbers converted up front,
// which may run Python code (a __float__, a generator) that changes a list being read, so
// unchanged() must be checked once every argument is loaded.
class Items {
public:
    Items() = default;
    Items(const Items&) = delete;
    Items& operator=(const Items&) = delete;
    ~Items() { Py_XDECREF(sequence_); }

    // False with a Python error set (TypeError naming the first bad item).
    bool load(PyObject* items, const char* what, Numbers numbers) {
        what_ = what;
        numbers_allowed_ = numbers == Numbers::Allowed;
        if ((PyList_CheckExact(items) || PyTuple_CheckExact(items)) && all_plain(items)) {
            sequence_ = Py_NewRef(items);
            size_ = std::size_t(PySequence_Fast_GET_SIZE(items));
            items_ = PySequence_Fast_ITEMS(items);
            return true;
        }
        converted_ = true;
        sequence_ = PySequence_Fast(items, what);
        if (sequence_ == nullptr) return false;
        const Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence_);
        size_ = std::size_t(n);
        number_.assign(size_, 0.0);
        is_number_.assign(size_, 0);
        for (Py_ssize_t i = 0; i < n; ++i) {
            if (PySequence_Fast_GET_SIZE(sequence_) != n) return unchanged();  // a __float__ shrank it
            PyObject* item = PySequence_Fast_GET_ITEM(sequence_, i);
            if (is_value(item)) continue;
            Py_INCREF(item);  // its __float__ may drop it from the list
            const int converted = numbers_allowed_ ? to_double(item, &number_[std::size_t(i)]) : 0;
            if (converted == 0)
                PyErr_Format(PyExc_TypeError, "%s: item %zd must be a Value%s, not '%.200s'", what, i,
                             numbers_allowed_ ? " or a real number" : "", Py_TYPE(item)->tp_name);
            Py_DECREF(item);
            if (converted <= 0) return false;
            is_number_[std::size_t(i)] = 1;
        }
        items_ = PySequence_Fast_ITEMS(sequence_);
        return true;
    }

    // Whether loading ran Python code (which may have changed any sequence being read).
    bool ran_python() const { return converted_; }

    // False with RuntimeError if the sequence no longer holds what load() checked. Call it on
    // every argument of a call, after loading all of them, when any of them ran_python().
    bool unchanged() {
        items_ = PySequence_Fast_ITEMS(sequence_);  // a list's item array moves when it grows
        bool same = std::size_t(PySequence_Fast_GET_SIZE(sequence_)) == size_;
        for (std::size_t i = 0; same && i < size_; ++i)
            same = converted_ ? is_number_[i] || is_value(items_[i]) : plain(items_[i]);
        if (!same) PyErr_Format(PyExc_RuntimeError, "%s: the sequence changed while it was read", what_);
        return same;
    }

    std::size_t size() const { return size_; }

    // The node of item i, pushing a leaf for a number. Call after compact_if_due(); runs no
    // Python code.
    NodeId node(Arena& graph, std::size_t i) const {
        PyObject* item = items_[i];
        if (converted_) return is_number_[i] ? graph.leaf(number_[i]) : value_node(item);
        return is_exact_value(item) ? value_node(item) : graph.leaf(PyFloat_AS_DOUBLE(item));
    }

private:
    PyObject* sequence_ = nullptr;  // owned: the argument itself, or PySequence_Fast's copy
    PyObject** items_ = nullptr;    // its item array
    std::size_t size_ = 0;
    const char* what_ = "";
    bool numbers_allowed_ = false;
    bool converted_ = false;          // taken the general path: number_/is_number_ are filled
    std::vector<double> number_;      // the value of item i if it is a number
    std::vector<char> is_number_;

    bool plain(PyObject* item) const { return is_exact_value(item) || (numbers_allowed_ && PyFloat_CheckExact(item)); }
    bool all_plain(PyObject* items) const {
        PyObject** item = PySequence_Fast_ITEMS(items);
        for (Py_ssize_t i = 0, n = PySequence_Fast_GET_SIZE(items); i < n; ++i)
            if (!plain(item[i])) return false;
        return true;
    }
};

PyObject* module_sum(PyObject*, PyObject* values) {
    Items items;
    if (!items.load(values, "arenagrad.sum()", Numbers::Allowed)) return nullptr;
    if (items.ran_python() && !items.unchanged()) return nullptr;
    return guarded([&] {
        Arena& graph = arena();
        compact_if_due(graph);
        return wrap_new_node(graph.sum(items.size(), [&](std::size_t i) { return items.node(graph, i); }));
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
    if (weights.size() != inputs.size())
        return PyErr_Format(PyExc_ValueError, "linear(): got %zu weights but %zu inputs", weights.size(),
                            inputs.size());
    return guarded([&] {
        Arena& graph = arena();
        compact_if_due(graph);
        const NodeId b = bias_is_value ? value_node(bias) : graph.leaf(bias_number);
        return wrap_new_node(graph.linear(
            b, weights.size(), [&](std::size_t i) { return weights.node(graph, i); },
            [&](std::size_t i) { return inputs.node(graph, i); }));
    });
}

PyObject* module_zero_grad(PyObject*, PyObject* values) {
    Items params;
    if (!params.load(values, "zero_grad()", Numbers::Refused)) return nullptr;  // runs no __float__
    Arena& graph = arena();
    for (std::size_t i = 0; i < params.size(); ++i) graph.grad[params.node(graph, i)] = 0.0;
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
