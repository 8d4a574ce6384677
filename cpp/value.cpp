// The Python `Value` type and the Value-level module functions. See value.hpp for why this
// file uses the C API directly.
//
// Rules that keep the arena consistent:
//  * Convert every Python number to a double *before* pushing any node: a conversion may run
//    Python code (a `__float__`), which may free Values and truncate the arena, and an
//    unowned node pushed earlier would be truncated with them.
//  * Call maybe_compact() before reading node ids out of Value objects, never between.
//  * A node pushed but not yet owned sits at the top; on failure truncate_dead_top() drops it.
#include "value.hpp"

#include <new>
#include <vector>

namespace arenagrad {
namespace {

struct ValueObject {
    PyObject_HEAD
    NodeId id;
    PyObject* label;  // a str, or null for ''
};

PyTypeObject* value_type = nullptr;

// The id of a handle allocated but not yet attached to a node (never a real id: > kMaxNodes).
constexpr NodeId kNoNode = 0xFFFFFFFFu;

ValueObject* as_value(PyObject* obj) { return reinterpret_cast<ValueObject*>(obj); }

void relocate(void* owner, NodeId new_id) { static_cast<ValueObject*>(owner)->id = new_id; }

PyObject* raise_graph_full(const std::bad_alloc& error) {
    arena().truncate_dead_top();
    PyErr_SetString(PyExc_MemoryError, error.what());
    return nullptr;
}

// Memory of dead Values of the exact type, reused by the next new one: a training step
// creates and drops tens of thousands of Values, and a pointer pop is cheaper than a trip
// through obmalloc each way. Bounded, so a big graph's worth of handles is not kept.
// Off in sanitizer builds, where recycled memory would hide a Value used after its free.
#if defined(ARENAGRAD_SANITIZE)
constexpr int kFreeValuesMax = 1;
constexpr bool kRecycleValues = false;
#else
constexpr int kFreeValuesMax = 1024;
constexpr bool kRecycleValues = true;
#endif
void* free_values[kFreeValuesMax];
int free_value_count = 0;

// A new Python handle (of the exact Value type) for node `id`, which must have none.
// Skips tp_alloc's generic zeroing and bookkeeping (hot path); this runs no Python code, so
// it is safe between pushing a node and owning it.
PyObject* new_handle(NodeId id) {
    void* memory = free_value_count > 0 ? free_values[--free_value_count] : PyObject_Malloc(sizeof(ValueObject));
    if (memory == nullptr) return PyErr_NoMemory();
    ValueObject* self = static_cast<ValueObject*>(memory);
    PyObject_Init(reinterpret_cast<PyObject*>(self), value_type);
    self->id = id;
    self->label = nullptr;
    arena().adopt(id, self);
    return reinterpret_cast<PyObject*>(self);
}

// Wraps a node just pushed on top of the arena (drops it again if wrapping fails).
PyObject* wrap_new_node(NodeId id) {
    PyObject* obj = new_handle(id);
    if (obj == nullptr) arena().truncate_dead_top();
    return obj;
}

PyObject* not_a_number(const char* what, PyObject* obj) {
    return PyErr_Format(PyExc_TypeError, "%s must be a real number (int, float or numpy scalar), not '%.200s'",
                        what, Py_TYPE(obj)->tp_name);
}

// ---- construction and destruction ----------------------------------------------------

int set_label(ValueObject* self, PyObject* label) {
    if (label == nullptr) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete Value.label (set it to '' instead)");
        return -1;
    }
    if (!PyUnicode_Check(label)) {
        PyErr_Format(PyExc_TypeError, "Value label must be a str, not '%.200s'", Py_TYPE(label)->tp_name);
        return -1;
    }
    Py_XSETREF(self->label, Py_NewRef(label));
    return 0;
}

PyObject* value_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
    static const char* keywords[] = {"data", "label", nullptr};
    PyObject* data = nullptr;
    PyObject* label = nullptr;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O:Value", const_cast<char**>(keywords), &data, &label))
        return nullptr;
    double x;
    int converted = to_double(data, &x);
    if (converted < 0) return nullptr;
    if (converted == 0) return not_a_number("Value data", data);
    if (label != nullptr && !PyUnicode_Check(label))
        return PyErr_Format(PyExc_TypeError, "Value label must be a str, not '%.200s'", Py_TYPE(label)->tp_name);
    if (type != value_type) {
        // A subclass's tp_alloc may run the garbage collector, i.e. arbitrary Python code that
        // builds and drops Values; a leaf pushed before it would be unowned and could be
        // truncated or compacted away. So allocate first, then push.
        PyObject* obj = type->tp_alloc(type, 0);
        if (obj == nullptr) return nullptr;
        ValueObject* self = as_value(obj);
        self->id = kNoNode;
        self->label = nullptr;
        try {
            self->id = arena().leaf(x);
        } catch (const std::bad_alloc& error) {
            Py_DECREF(obj);
            return raise_graph_full(error);
        }
        arena().adopt(self->id, self);
        if (label != nullptr) set_label(self, label);  // checked above: cannot fail
        return obj;
    }
    try {
        NodeId id = arena().leaf(x);
        PyObject* obj = new_handle(id);
        if (obj == nullptr) {
            arena().truncate_dead_top();
            return nullptr;
        }
        if (label != nullptr) set_label(as_value(obj), label);  // checked above: cannot fail
        return obj;
    } catch (const std::bad_alloc& error) {
        return raise_graph_full(error);
    }
}

// `Value(x)` by vectorcall: micrograd code wraps every input number in a Value, and the
// generic type call (an argument tuple, keyword parsing) costs more than the node itself.
// Only `Value` itself is called this way (tp_vectorcall is not inherited by subclasses).
PyObject* value_vectorcall(PyObject* type, PyObject* const* args, std::size_t nargsf, PyObject* kwnames) {
    const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs == 1 && kwnames == nullptr && type == reinterpret_cast<PyObject*>(value_type)) {
        double x;
        const int converted = to_double(args[0], &x);
        if (converted < 0) return nullptr;
        if (converted == 0) return not_a_number("Value data", args[0]);
        try {
            return wrap_new_node(arena().leaf(x));
        } catch (const std::bad_alloc& error) {
            return raise_graph_full(error);
        }
    }
    // Anything else (a label, keywords): the ordinary type call, with a tuple and a dict.
    PyObject* positional = PyTuple_New(nargs);
    if (positional == nullptr) return nullptr;
    for (Py_ssize_t i = 0; i < nargs; ++i) PyTuple_SET_ITEM(positional, i, Py_NewRef(args[i]));
    PyObject* keywords = nullptr;
    if (kwnames != nullptr && PyTuple_GET_SIZE(kwnames) > 0) {
        keywords = PyDict_New();
        for (Py_ssize_t k = 0; keywords != nullptr && k < PyTuple_GET_SIZE(kwnames); ++k)
            if (PyDict_SetItem(keywords, PyTuple_GET_ITEM(kwnames, k), args[nargs + k]) < 0) Py_CLEAR(keywords);
        if (keywords == nullptr) {
            Py_DECREF(positional);
            return nullptr;
        }
    }
    PyObject* result = PyType_Type.tp_call(type, positional, keywords);
    Py_DECREF(positional);
    Py_XDECREF(keywords);
    return result;
}

void value_dealloc(PyObject* obj) {
    PyTypeObject* type = Py_TYPE(obj);
    ValueObject* self = as_value(obj);
    if (self->id != kNoNode) arena().release(self->id);
    Py_CLEAR(self->label);
    if (type != value_type)
        type->tp_free(obj);
    else if (kRecycleValues && free_value_count < kFreeValuesMax)
        free_values[free_value_count++] = obj;
    else
        PyObject_Free(obj);
    Py_DECREF(type);  // instances of heap types own a reference to their type
}

// ---- ops -------------------------------------------------------------------------------

// What an operand of `a op b` is: 1 a Value, 0 a real number (stored in *number), 2 neither
// (the op returns NotImplemented, so Python raises its usual TypeError), -1 an error is set.
// Exact Values and floats, the common cases, are recognised before any general check.
int classify_operand(PyObject* obj, double* number) {
    if (Py_IS_TYPE(obj, value_type)) return 1;
    if (PyFloat_CheckExact(obj)) {
        *number = PyFloat_AS_DOUBLE(obj);
        return 0;
    }
    if (is_value(obj)) return 1;
    const int converted = to_double(obj, number);
    return converted == 1 ? 0 : converted == 0 ? 2 : -1;
}

// `a op b` where either side may be a number: Python numbers become leaf nodes, as in
// micrograd. Anything else returns NotImplemented, so Python raises its usual TypeError.
PyObject* binary_op(Op op, PyObject* a, PyObject* b) {
    double a_number = 0.0, b_number = 0.0;
    const int a_kind = classify_operand(a, &a_number);
    if (a_kind < 0) return nullptr;
    const int b_kind = a_kind == 2 ? 2 : classify_operand(b, &b_number);
    if (b_kind < 0) return nullptr;
    if (a_kind == 2 || b_kind == 2) return Py_NewRef(Py_NotImplemented);
    Arena& graph = arena();
    try {
        graph.maybe_compact(relocate);
        NodeId lhs = a_kind == 1 ? as_value(a)->id : graph.leaf(a_number);
        NodeId rhs = b_kind == 1 ? as_value(b)->id : graph.leaf(b_number);
        return wrap_new_node(graph.binary(op, lhs, rhs));
    } catch (const std::bad_alloc& error) {
        return raise_graph_full(error);
    }
}

PyObject* unary_op(Op op, PyObject* a) {
    Arena& graph = arena();
    try {
        graph.maybe_compact(relocate);
        return wrap_new_node(graph.unary(op, as_value(a)->id));
    } catch (const std::bad_alloc& error) {
        return raise_graph_full(error);
    }
}

PyObject* value_add(PyObject* a, PyObject* b) { return binary_op(Op::Add, a, b); }
PyObject* value_sub(PyObject* a, PyObject* b) { return binary_op(Op::Sub, a, b); }
PyObject* value_mul(PyObject* a, PyObject* b) { return binary_op(Op::Mul, a, b); }
PyObject* value_div(PyObject* a, PyObject* b) { return binary_op(Op::Div, a, b); }
PyObject* value_neg(PyObject* a) { return unary_op(Op::Neg, a); }
PyObject* value_abs(PyObject* a) { return unary_op(Op::Abs, a); }

// `a ** k` with a number k keeps micrograd's one-operand node ('**k'); an exponent that is a
// Value (or a number base, `2 ** v`) makes a two-operand '**' node with the exponent's grad.
PyObject* value_pow(PyObject* a, PyObject* b, PyObject* modulo) {
    if (modulo != Py_None) return Py_NewRef(Py_NotImplemented);
    if (is_value(a) && !is_value(b)) {
        double k;
        int converted = to_double(b, &k);
        if (converted <= 0) return converted < 0 ? nullptr : Py_NewRef(Py_NotImplemented);
        const bool k_is_int = PyIndex_Check(b);  // int, bool, numpy integers print as ints
        Arena& graph = arena();
        try {
            graph.maybe_compact(relocate);
            return wrap_new_node(graph.pow_const(as_value(a)->id, k, k_is_int));
        } catch (const std::bad_alloc& error) {
            return raise_graph_full(error);
        }
    }
    return binary_op(Op::Pow, a, b);
}

PyObject* value_relu(PyObject* self, PyObject*) { return unary_op(Op::Relu, self); }
PyObject* value_tanh(PyObject* self, PyObject*) { return unary_op(Op::Tanh, self); }
PyObject* value_exp(PyObject* self, PyObject*) { return unary_op(Op::Exp, self); }
PyObject* value_log(PyObject* self, PyObject*) { return unary_op(Op::Log, self); }
PyObject* value_sigmoid(PyObject* self, PyObject*) { return unary_op(Op::Sigmoid, self); }
PyObject* value_abs_method(PyObject* self, PyObject*) { return unary_op(Op::Abs, self); }
PyObject* value_sqrt(PyObject* self, PyObject*) { return unary_op(Op::Sqrt, self); }

PyObject* value_backward(PyObject* self, PyObject*) {
    try {
        arena().backward(as_value(self)->id);  // allocates one flag per node
    } catch (const std::bad_alloc&) {
        return PyErr_NoMemory();
    }
    Py_RETURN_NONE;
}

// ---- attributes --------------------------------------------------------------------------

PyObject* get_data(PyObject* self, void*) { return PyFloat_FromDouble(arena().data[as_value(self)->id]); }
PyObject* get_grad(PyObject* self, void*) { return PyFloat_FromDouble(arena().grad[as_value(self)->id]); }

int set_number(PyObject* value, const char* name, double* out) {
    if (value == nullptr) {
        PyErr_Format(PyExc_AttributeError, "cannot delete Value.%s", name);
        return -1;
    }
    int converted = to_double(value, out);
    if (converted == 0)
        PyErr_Format(PyExc_TypeError, "Value.%s must be a real number (int, float or numpy scalar), not '%.200s'",
                     name, Py_TYPE(value)->tp_name);
    return converted == 1 ? 0 : -1;
}

// The target is looked up after the conversion, which may run Python code (and compact).
int put_data(PyObject* self, PyObject* value, void*) {
    double x;
    if (set_number(value, "data", &x) < 0) return -1;
    arena().data[as_value(self)->id] = x;
    return 0;
}

int put_grad(PyObject* self, PyObject* value, void*) {
    double x;
    if (set_number(value, "grad", &x) < 0) return -1;
    arena().grad[as_value(self)->id] = x;
    return 0;
}

PyObject* get_label(PyObject* self, void*) {
    PyObject* label = as_value(self)->label;
    return label != nullptr ? Py_NewRef(label) : PyUnicode_FromString("");
}

int put_label(PyObject* self, PyObject* value, void*) { return set_label(as_value(self), value); }

PyObject* get_prev(PyObject* self, void*) {
    PyObject* operands = PySet_New(nullptr);
    if (operands == nullptr) return nullptr;
    CompactionBlocker hold_ids;  // PySet_Add may run the garbage collector
    const NodeId id = as_value(self)->id;
    bool failed = false;
    arena().for_each_operand(id, [&](NodeId operand) {
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
    const NodeId id = as_value(self)->id;
    const Op op = graph.op[id];
    if (op == Op::PowConst || op == Op::PowConstInt) {
        // micrograd's f'**{k}': an int exponent prints as an int
        const double k = graph.data[graph.rhs[id]];
        PyObject* number = op == Op::PowConstInt ? PyLong_FromDouble(k) : PyFloat_FromDouble(k);
        if (number == nullptr) return nullptr;
        PyObject* name = PyUnicode_FromFormat("**%S", number);
        Py_DECREF(number);
        return name;
    }
    return PyUnicode_FromString(op_name(op));
}

PyObject* value_repr(PyObject* self) {
    PyObject* data = get_data(self, nullptr);
    PyObject* grad = get_grad(self, nullptr);
    PyObject* text = (data && grad) ? PyUnicode_FromFormat("Value(data=%R, grad=%R)", data, grad) : nullptr;
    Py_XDECREF(data);
    Py_XDECREF(grad);
    return text;
}

// copy, deepcopy and pickle give a detached leaf with the same data, grad and label (the
// graph behind a Value is not copied; parameters, the usual thing copied, are leaves).
PyObject* value_reduce(PyObject* self, PyObject*) {
    const Arena& graph = arena();
    const NodeId id = as_value(self)->id;
    PyObject* label = get_label(self, nullptr);
    if (label == nullptr) return nullptr;
    return Py_BuildValue("O(d)(dN)", reinterpret_cast<PyObject*>(Py_TYPE(self)), graph.data[id], graph.grad[id],
                         label);
}

PyObject* value_setstate(PyObject* self, PyObject* state) {
    double grad;
    PyObject* label;
    if (!PyTuple_Check(state))  // PyArg_ParseTuple would raise SystemError
        return PyErr_Format(PyExc_TypeError, "__setstate__ expects a (grad, label) tuple, not '%.200s'",
                            Py_TYPE(state)->tp_name);
    if (!PyArg_ParseTuple(state, "dO:__setstate__", &grad, &label)) return nullptr;
    if (set_label(as_value(self), label) < 0) return nullptr;
    arena().grad[as_value(self)->id] = grad;
    Py_RETURN_NONE;
}

PyGetSetDef value_attributes[] = {
    {"data", get_data, put_data, "The forward value (float); writable.", nullptr},
    {"grad", get_grad, put_grad, "d(root)/d(this) accumulated by backward() (float); writable.", nullptr},
    {"label", get_label, put_label, "A name for graph drawing (str).", nullptr},
    {"_prev", get_prev, nullptr, "The operand Values of this node, as a set (micrograd's graph).", nullptr},
    {"_op", get_op, nullptr, "The op that made this node, as a string ('' for leaves).", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMethodDef value_methods[] = {
    {"relu", value_relu, METH_NOARGS, "max(0, x), micrograd's ReLU."},
    {"tanh", value_tanh, METH_NOARGS, "Hyperbolic tangent."},
    {"exp", value_exp, METH_NOARGS, "e ** x."},
    {"log", value_log, METH_NOARGS, "Natural logarithm (-inf at 0, nan below)."},
    {"sigmoid", value_sigmoid, METH_NOARGS, "1 / (1 + exp(-x)), computed without overflow."},
    {"abs", value_abs_method, METH_NOARGS, "|x| (gradient 0 at 0)."},
    {"sqrt", value_sqrt, METH_NOARGS, "Square root (nan below 0)."},
    {"backward", value_backward, METH_NOARGS,
     "Set this Value's grad to 1 and accumulate gradients into every Value it depends on."},
    {"__reduce__", value_reduce, METH_NOARGS, "Pickle/copy support: a detached leaf."},
    {"__setstate__", value_setstate, METH_O, "Pickle/copy support."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot value_slots[] = {
    {Py_tp_doc, const_cast<char*>("Value(data, label='')\n--\n\n"
                                  "A scalar in the autograd graph: micrograd's Value, stored in a native arena.")},
    {Py_tp_new, reinterpret_cast<void*>(value_new)},
    {Py_tp_dealloc, reinterpret_cast<void*>(value_dealloc)},
    {Py_tp_repr, reinterpret_cast<void*>(value_repr)},
    {Py_tp_getset, value_attributes},
    {Py_tp_methods, value_methods},
    {Py_nb_add, reinterpret_cast<void*>(value_add)},
    {Py_nb_subtract, reinterpret_cast<void*>(value_sub)},
    {Py_nb_multiply, reinterpret_cast<void*>(value_mul)},
    {Py_nb_true_divide, reinterpret_cast<void*>(value_div)},
    {Py_nb_negative, reinterpret_cast<void*>(value_neg)},
    {Py_nb_absolute, reinterpret_cast<void*>(value_abs)},
    {Py_nb_power, reinterpret_cast<void*>(value_pow)},
    {0, nullptr},
};

// ---- module functions ---------------------------------------------------------------------

// Reads a sequence whose items are Values or numbers. Numbers are converted first (this may
// run Python code); node ids are read later by `resolve`, once nothing can run in between.
struct Operands {
    PyObject* sequence = nullptr;  // PySequence_Fast result, owned
    std::vector<double> numbers;   // value of item i if it is a number
    std::vector<char> is_number;

    ~Operands() { Py_XDECREF(sequence); }

    bool load(PyObject* items, const char* what, bool numbers_allowed) {
        sequence = PySequence_Fast(items, what);
        if (sequence == nullptr) return false;
        const Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence);
        numbers.assign(std::size_t(n), 0.0);
        is_number.assign(std::size_t(n), 0);
        for (Py_ssize_t i = 0; i < n; ++i) {
            // A __float__ below may have shrunk the list (see unchanged()).
            if (PySequence_Fast_GET_SIZE(sequence) != n) return unchanged(what);
            PyObject* item = PySequence_Fast_GET_ITEM(sequence, i);
            if (is_value(item)) continue;
            Py_INCREF(item);  // its __float__ may drop it from the list
            int converted = numbers_allowed ? to_double(item, &numbers[std::size_t(i)]) : 0;
            if (converted == 0)
                PyErr_Format(PyExc_TypeError, "%s: item %zd must be a Value%s, not '%.200s'", what, i,
                             numbers_allowed ? " or a real number" : "", Py_TYPE(item)->tp_name);
            Py_DECREF(item);
            if (converted <= 0) return false;
            is_number[std::size_t(i)] = 1;
        }
        return true;
    }

    std::size_t size() const { return numbers.size(); }

    // Converting a number may run Python code that changes a list being read (for a list,
    // PySequence_Fast returns the caller's list itself): check, before reading any node id,
    // that every item checked as a Value still is one.
    bool unchanged(const char* what) const {
        bool same = PySequence_Fast_GET_SIZE(sequence) == Py_ssize_t(size());
        for (std::size_t i = 0; same && i < size(); ++i)
            same = is_number[i] || is_value(PySequence_Fast_GET_ITEM(sequence, Py_ssize_t(i)));
        if (!same) PyErr_Format(PyExc_RuntimeError, "%s: the sequence changed while it was read", what);
        return same;
    }

    // Node ids of all items, pushing a leaf per number. Call after maybe_compact().
    void resolve(Arena& graph, std::vector<NodeId>& ids) const {
        ids.resize(size());
        for (std::size_t i = 0; i < size(); ++i) {
            PyObject* item = PySequence_Fast_GET_ITEM(sequence, Py_ssize_t(i));
            ids[i] = is_number[i] ? graph.leaf(numbers[i]) : as_value(item)->id;
        }
    }
};

// Fast path of sum() and linear() for their common callers (nn, losses): a list or tuple
// whose items are all exact Values, or floats where numbers are allowed. Checking those types
// runs no Python code, so the ids can be read straight into the arena after one check pass.
// Anything else takes the general path (Operands).
PyObject** list_or_tuple_items(PyObject* items, Py_ssize_t* n) {
    if (!PyList_CheckExact(items) && !PyTuple_CheckExact(items)) return nullptr;
    *n = PySequence_Fast_GET_SIZE(items);
    return PySequence_Fast_ITEMS(items);
}

bool fast_items(PyObject* const* items, Py_ssize_t n, bool numbers_allowed) {
    for (Py_ssize_t i = 0; i < n; ++i) {
        if (Py_IS_TYPE(items[i], value_type)) continue;
        if (numbers_allowed && PyFloat_CheckExact(items[i])) continue;
        return false;
    }
    return true;
}

// The node of an item accepted by fast_items(): a Value's own, or a new leaf for a float.
NodeId fast_item_id(Arena& graph, PyObject* item) {
    return Py_IS_TYPE(item, value_type) ? as_value(item)->id : graph.leaf(PyFloat_AS_DOUBLE(item));
}

PyObject* module_sum(PyObject*, PyObject* values) {
    Py_ssize_t n = 0;
    PyObject** items = list_or_tuple_items(values, &n);
    if (items != nullptr && fast_items(items, n, true)) {
        Arena& graph = arena();
        try {
            graph.maybe_compact(relocate);
            return wrap_new_node(
                graph.sum(std::size_t(n), [&](std::size_t i) { return fast_item_id(graph, items[i]); }));
        } catch (const std::bad_alloc& error) {
            return raise_graph_full(error);
        }
    }
    Operands operands;
    if (!operands.load(values, "arenagrad.sum()", true) || !operands.unchanged("arenagrad.sum()")) return nullptr;
    Arena& graph = arena();
    try {
        graph.maybe_compact(relocate);
        std::vector<NodeId> ids;
        operands.resolve(graph, ids);
        return wrap_new_node(graph.sum(ids.data(), ids.size()));
    } catch (const std::bad_alloc& error) {
        return raise_graph_full(error);
    }
}

PyObject* module_linear(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 3) return PyErr_Format(PyExc_TypeError, "linear(b, ws, xs) takes 3 arguments (%zd given)", nargs);
    PyObject* bias = args[0];
    double bias_number = 0.0;
    const bool bias_is_value = is_value(bias);
    if (!bias_is_value) {
        int converted = to_double(bias, &bias_number);
        if (converted < 0) return nullptr;
        if (converted == 0) return not_a_number("linear(): b", bias);
    }
    Py_ssize_t nw = 0, nx = 0;
    PyObject** ws = list_or_tuple_items(args[1], &nw);
    PyObject** xs = list_or_tuple_items(args[2], &nx);
    if (ws != nullptr && xs != nullptr && nw == nx && fast_items(ws, nw, false) && fast_items(xs, nx, true)) {
        Arena& graph = arena();
        try {
            graph.maybe_compact(relocate);
            NodeId b = bias_is_value ? as_value(bias)->id : graph.leaf(bias_number);
            return wrap_new_node(graph.linear(
                b, std::size_t(nw), [&](std::size_t i) { return as_value(ws[i])->id; },
                [&](std::size_t i) { return fast_item_id(graph, xs[i]); }));
        } catch (const std::bad_alloc& error) {
            return raise_graph_full(error);
        }
    }
    Operands weights, inputs;
    if (!weights.load(args[1], "linear(): ws", false) || !inputs.load(args[2], "linear(): xs", true)) return nullptr;
    if (!weights.unchanged("linear(): ws") || !inputs.unchanged("linear(): xs")) return nullptr;
    if (weights.size() != inputs.size())
        return PyErr_Format(PyExc_ValueError, "linear(): got %zu weights but %zu inputs", weights.size(),
                            inputs.size());
    Arena& graph = arena();
    try {
        graph.maybe_compact(relocate);
        NodeId b = bias_is_value ? as_value(bias)->id : graph.leaf(bias_number);
        std::vector<NodeId> w, x;
        weights.resolve(graph, w);
        inputs.resolve(graph, x);
        return wrap_new_node(graph.linear(b, w.data(), x.data(), w.size()));
    } catch (const std::bad_alloc& error) {
        return raise_graph_full(error);
    }
}

PyObject* module_zero_grad(PyObject*, PyObject* values) {
    Operands params;
    if (!params.load(values, "zero_grad()", false)) return nullptr;
    Arena& graph = arena();
    for (std::size_t i = 0; i < params.size(); ++i)
        graph.grad[as_value(PySequence_Fast_GET_ITEM(params.sequence, Py_ssize_t(i)))->id] = 0.0;
    Py_RETURN_NONE;
}

PyObject* module_arena_stats(PyObject*, PyObject*) {
    const Arena& graph = arena();
    return Py_BuildValue("{s:n,s:n,s:n,s:n,s:n}", "nodes", Py_ssize_t(graph.size()), "live_values",
                         Py_ssize_t(graph.live_handles()), "nary_operands", Py_ssize_t(graph.nary.size()),
                         "bytes_reserved", Py_ssize_t(graph.bytes_reserved()), "compactions",
                         Py_ssize_t(graph.compactions()));
}

PyObject* module_compact(PyObject*, PyObject*) {
    Arena& graph = arena();
    if (graph.compaction_blocked == 0) {
        graph.truncate_dead_top();
        try {
            graph.compact(relocate);  // allocates; fails before moving anything
        } catch (const std::bad_alloc&) {
            return PyErr_NoMemory();
        }
    }
    Py_RETURN_NONE;
}

// Test hook: the real id limit (2**32 nodes) needs ~150 GB to reach, so tests lower it.
PyObject* module_set_node_limit(PyObject*, PyObject* limit) {
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

PyMethodDef module_functions[] = {
    {"sum", module_sum, METH_O,
     "sum(values) -> Value\n\nOne n-ary node for v0 + v1 + ... (numbers allowed), summed left to right from 0.0."},
    {"linear", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(module_linear)), METH_FASTCALL,
     "linear(b, ws, xs) -> Value\n\nOne fused node for b + w0*x0 + w1*x1 + ..., summed in micrograd's order."},
    {"zero_grad", module_zero_grad, METH_O, "zero_grad(values) -> None\n\nSet .grad = 0.0 on every Value given."},
    {"arena_stats", module_arena_stats, METH_NOARGS,
     "arena_stats() -> dict\n\nNodes in the arena, live Value handles, reserved bytes, compactions so far."},
    {"compact", module_compact, METH_NOARGS,
     "compact() -> None\n\nDrop every node no live Value needs now (normally automatic)."},
    {"_set_node_limit", module_set_node_limit, METH_O,
     "_set_node_limit(n) -> int\n\nTests only: cap the arena at n nodes; returns the previous cap."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

bool is_value(PyObject* obj) { return value_type != nullptr && PyObject_TypeCheck(obj, value_type); }

NodeId value_node(PyObject* obj) { return as_value(obj)->id; }

// The handle of an existing node: its live one if any, so `_prev` returns the very objects
// the user holds (micrograd's graph-drawing code relies on identity).
PyObject* handle_of(NodeId id) {
    void* existing = arena().owner[id];
    if (existing != nullptr) return Py_NewRef(static_cast<PyObject*>(existing));
    return new_handle(id);
}

void relocate_handle(void* owner, NodeId new_id) { relocate(owner, new_id); }

int to_double(PyObject* obj, double* out) {
    if (PyFloat_Check(obj)) {
        *out = PyFloat_AS_DOUBLE(obj);
        return 1;
    }
    if (PyLong_Check(obj)) {
        double x = PyLong_AsDouble(obj);
        if (x == -1.0 && PyErr_Occurred()) return -1;
        *out = x;
        return 1;
    }
    // float(x) would parse strings; a Value is not a number either.
    if (is_value(obj) || PyUnicode_Check(obj) || PyBytes_Check(obj) || PyByteArray_Check(obj)) return 0;
    PyNumberMethods* number = Py_TYPE(obj)->tp_as_number;
    if (number == nullptr || (number->nb_float == nullptr && number->nb_index == nullptr)) return 0;
    double x = PyFloat_AsDouble(obj);  // numpy scalars, Decimal, ... via __float__/__index__
    if (x == -1.0 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) return -1;
        PyErr_Clear();  // e.g. a numpy array of size > 1: not a scalar
        return 0;
    }
    *out = x;
    return 1;
}

CompactionBlocker::CompactionBlocker() { ++arena().compaction_blocked; }
CompactionBlocker::~CompactionBlocker() { --arena().compaction_blocked; }

int add_value_api(PyObject* module) {
    PyType_Spec spec = {"arenagrad.engine.Value", int(sizeof(ValueObject)), 0,
                        Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, value_slots};
    PyObject* type = PyType_FromSpec(&spec);
    if (type == nullptr) return -1;
    // numpy scalars and arrays must defer to our reflected ops (`np.float64(2) * v`).
    if (PyObject_SetAttrString(type, "__array_ufunc__", Py_None) < 0 ||
        PyModule_AddObjectRef(module, "Value", type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    value_type = reinterpret_cast<PyTypeObject*>(type);  // kept alive forever by this reference
    value_type->tp_vectorcall = value_vectorcall;
    return PyModule_AddFunctions(module, module_functions);
}

}  // namespace arenagrad
