// The Value type: construction, number slots, methods, repr and pickling (its attributes are
// in value_attributes.cpp).
// value.hpp says why it uses the C API and which rules keep the arena consistent.
#include <pybind11/pybind11.h>

#include <cmath>
#include <vector>

#include "node_extras.hpp"
#include "trace.hpp"
#include "value.hpp"

namespace arenagrad {

PyTypeObject* value_type = nullptr;

int check_label(PyObject* label) {
    if (PyUnicode_Check(label)) return 0;
    PyErr_Format(PyExc_TypeError, "Value label must be a str, not '%.200s'", Py_TYPE(label)->tp_name);
    return -1;
}

int set_label(PyObject* self, PyObject* label) {
    if (label == nullptr) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete Value.label (set it to '' instead)");
        return -1;
    }
    if (check_label(label) < 0) return -1;
    const NodeId id = value_node(self);
    NodeExtras* extras = extras_of(id);
    if (PyUnicode_GET_LENGTH(label) == 0) {
        if (extras != nullptr) Py_CLEAR(extras->label);  // a str: freeing it runs no code
        return 0;
    }
    PyObject* done = guarded([&] {
        Py_XSETREF(extras_for(id).label, Py_NewRef(label));
        Py_RETURN_NONE;
    });
    Py_XDECREF(done);
    return done == nullptr ? -1 : 0;
}

namespace {

// The id of a handle whose node was handed to another (never a real id: > kMaxNodes).
constexpr NodeId kNoNode = 0xFFFFFFFFu;

ValueObject* as_value(PyObject* obj) { return reinterpret_cast<ValueObject*>(obj); }

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
    arena().adopt(id, self);
    return reinterpret_cast<PyObject*>(self);
}

// ---- construction and destruction ----------------------------------------------------

// What a node keeps for Python (node_extras.hpp): a label, a user-defined op's `_op`, and for
// a handle of a Value subclass its type and its attribute dict, which the node shares with
// every later handle. Call right after the handle owns its node. Throws std::bad_alloc.
void give_extras(PyObject* obj, PyObject* label, PyObject* op) {
    const bool subclass = Py_TYPE(obj) != value_type;
    const bool has_label = label != nullptr && PyUnicode_GET_LENGTH(label) > 0;
    const bool has_op = op != nullptr && PyUnicode_GET_LENGTH(op) > 0;
    // A micrograd-style node always has extras (for its `_backward`; the arena relies on it).
    const bool user_op = arena().op[value_node(obj)] == Op::PyBackward;
    if (!subclass && !has_label && !has_op && !user_op) return;
    NodeExtras& extras = extras_for(value_node(obj));
    if (has_label) Py_XSETREF(extras.label, Py_NewRef(label));
    if (has_op) Py_XSETREF(extras.op, Py_NewRef(op));
    if (subclass && extras.type == nullptr) {
        PyTypeObject* type = Py_TYPE(obj);
        extras.type = reinterpret_cast<PyTypeObject*>(Py_NewRef(reinterpret_cast<PyObject*>(type)));
        if (type->tp_dictoffset != 0) extras.dict = PyObject_GenericGetDict(obj, nullptr);  // null: none
        PyErr_Clear();
    }
}

// The node a new Value gets: a leaf, or a user-defined op over `children` (node ids read here,
// with no Python code run between reading them and pushing the node).
struct NodeRecipe {
    double data = 0.0;
    PyObject* children = nullptr;  // a tuple of Values (ours), or null for a leaf
    std::vector<double> local_grads;
    bool given_grads = false;  // microgpt's LocalGrads, else micrograd's PyBackward

    NodeRecipe() = default;
    NodeRecipe(const NodeRecipe&) = delete;
    NodeRecipe& operator=(const NodeRecipe&) = delete;
    ~NodeRecipe() { Py_XDECREF(children); }

    NodeId push(Arena& graph) const {
        const Py_ssize_t n = children == nullptr ? 0 : PyTuple_GET_SIZE(children);
        if (n == 0 || !grad_enabled()) return graph.leaf(data);
        std::vector<NodeId> ids(static_cast<std::size_t>(n));
        for (Py_ssize_t k = 0; k < n; ++k) ids[std::size_t(k)] = value_node(PyTuple_GET_ITEM(children, k));
        if (given_grads) return graph.local_grads(data, ids.data(), local_grads.data(), ids.size());
        return graph.py_backward(data, ids.data(), ids.size());
    }
};

// Reads Value(data, _children, _op, label, local_grads=) into `recipe`; false with an error set.
// `op` is micrograd's `_op` string, or, positionally, microgpt's local gradients.
bool read_recipe(PyObject* data, PyObject* children, PyObject*& op, PyObject* label, PyObject* local_grads,
                 NodeRecipe& recipe) {
    const int converted = to_double(data, &recipe.data);
    if (converted <= 0) {
        if (converted == 0) not_a_number("Value data", data);
        return false;
    }
    if (label != nullptr && check_label(label) < 0) return false;
    if (op != nullptr && !PyUnicode_Check(op)) {
        if (local_grads != nullptr) {
            PyErr_Format(PyExc_TypeError, "Value(): _op must be a str when local_grads is given, not '%.200s'",
                         Py_TYPE(op)->tp_name);
            return false;
        }
        local_grads = op;  // microgpt's Value(data, children, local_grads)
        op = nullptr;
    }
    if (children != nullptr) {
        if (PyUnicode_Check(children) || PyBytes_Check(children)) {
            PyErr_Format(PyExc_TypeError,
                         "Value(): _children must be an iterable of Values, not '%.200s' (give a label as label=...)",
                         Py_TYPE(children)->tp_name);
            return false;
        }
        recipe.children = PySequence_Tuple(children);  // our own: nothing can change it
        if (recipe.children == nullptr) {
            if (!PyErr_ExceptionMatches(PyExc_TypeError)) return false;  // e.g. an iterator that raised
            PyErr_Format(PyExc_TypeError, "Value(): _children must be an iterable of Values, not '%.200s'",
                         Py_TYPE(children)->tp_name);
            return false;
        }
    }
    const Py_ssize_t n = recipe.children == nullptr ? 0 : PyTuple_GET_SIZE(recipe.children);
    if (local_grads != nullptr) {
        recipe.given_grads = true;
        PyObject* grads = PySequence_Tuple(local_grads);  // ours too: a __float__ cannot change it
        if (grads == nullptr) {
            if (!PyErr_ExceptionMatches(PyExc_TypeError)) return false;
            PyErr_Format(PyExc_TypeError,
                         "Value(): local_grads must be a sequence of real numbers (or _op a str), not '%.200s'",
                         Py_TYPE(local_grads)->tp_name);
            return false;
        }
        bool ok = PyTuple_GET_SIZE(grads) == n;
        if (!ok)
            PyErr_Format(PyExc_ValueError, "Value(): %zd children but %zd local_grads", n, PyTuple_GET_SIZE(grads));
        for (Py_ssize_t k = 0; ok && k < n; ++k) {
            PyObject* item = PyTuple_GET_ITEM(grads, k);
            double d = 0.0;
            const int done = to_double(item, &d);
            if (done == 0)
                PyErr_Format(PyExc_TypeError, "Value(): local_grads[%zd] must be a real number, not '%.200s'", k,
                             Py_TYPE(item)->tp_name);
            ok = done == 1;
            if (ok) recipe.local_grads.push_back(d);
        }
        Py_DECREF(grads);
        if (!ok) return false;
    }
    for (Py_ssize_t k = 0; k < n; ++k) {
        PyObject* child = PyTuple_GET_ITEM(recipe.children, k);
        if (!is_value(child)) {
            PyErr_Format(PyExc_TypeError, "Value(): child %zd must be a Value, not '%.200s'", k, Py_TYPE(child)->tp_name);
            return false;
        }
    }
    return true;
}

// Value(data, _children=(), _op='', label='', *, local_grads=None): a leaf, or one of the two
// kinds of user-defined op (docs/api.md).
PyObject* value_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
    static const char* keywords[] = {"data", "_children", "_op", "label", "local_grads", nullptr};
    PyObject* data = nullptr;
    PyObject* children = nullptr;
    PyObject* op = nullptr;
    PyObject* label = nullptr;
    PyObject* local_grads = nullptr;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|OOO$O:Value", const_cast<char**>(keywords), &data, &children,
                                     &op, &label, &local_grads))
        return nullptr;
    if (!compact_if_due(arena())) return nullptr;
    NodeRecipe recipe;
    if (!read_recipe(data, children, op, label, local_grads, recipe)) return nullptr;
    if (!grad_enabled()) op = nullptr;  // a leaf: no graph, nothing of the op kept
    PyObject* obj;
    if (type == value_type) {
        obj = guarded([&] { return wrap_new_node(recipe.push(arena())); });
    } else {
        // A subclass's tp_alloc may run the garbage collector, i.e. arbitrary Python code that
        // builds, drops and compacts Values, and an object it returns is visible to Python
        // (its __del__ runs if we drop it). So the node comes first, owned meanwhile by a
        // stand-in that compaction keeps and renumbers like any owner, then passes to the
        // object: no object ever exists without a node, even when the arena is full.
        ValueObject stand_in;
        if (guarded([&] {
                stand_in.id = recipe.push(arena());
                arena().adopt(stand_in.id, &stand_in);
                return Py_None;
            }) == nullptr)
            return nullptr;
        obj = type->tp_alloc(type, 0);
        if (obj == nullptr) {
            arena().release(stand_in.id);
            return nullptr;
        }
        ValueObject* self = as_value(obj);
        self->id = stand_in.id;  // nothing but the stand-in refers to the new node yet
        arena().owner[self->id] = self;
    }
    if (obj == nullptr) return nullptr;
    PyObject* done = guarded([&] {
        give_extras(obj, label, op);
        return obj;
    });
    if (done == nullptr) Py_DECREF(obj);
    return done;
}

// `Value(x)` by vectorcall: micrograd code wraps every input number in a Value, and the
// generic type call (an argument tuple, keyword parsing) costs more than the node itself.
// Only `Value` itself is called this way (tp_vectorcall is not inherited by subclasses).
PyObject* value_vectorcall(PyObject* type, PyObject* const* args, std::size_t nargsf, PyObject* kwnames) {
    const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs == 1 && kwnames == nullptr && type == reinterpret_cast<PyObject*>(value_type)) {
        double x;
        const int converted = to_double(args[0], &x);
        if (converted <= 0) return converted < 0 ? nullptr : not_a_number("Value data", args[0]);
        return guarded([&] { return wrap_new_node(arena().leaf(x)); });
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
    // Only its node's owner releases it (a handle can hand its node over, see handle_of).
    if (self->id != kNoNode && arena().owner[self->id] == self) arena().release(self->id);
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
    if (is_exact_value(obj)) return 1;
    if (PyFloat_CheckExact(obj)) {
        *number = PyFloat_AS_DOUBLE(obj);
        return 0;
    }
    if (is_value(obj)) return 1;
    const int converted = to_double(obj, number);
    return converted == 1 ? 0 : converted == 0 ? 2 : -1;
}

// Under no_grad(): a leaf holding the op's value. Out of line, so that each op's hot path
// keeps one use of forward(), which the compiler then inlines for that op.
#if defined(__GNUC__)
__attribute__((noinline, cold))
#endif
PyObject* leaf_of(Op op, double a, double b) {
    return guarded([&] { return wrap_new_node(arena().leaf(forward(op, a, b))); });
}

// `a op b` where either side may be a number: Python numbers become leaf nodes, as in
// micrograd. Anything else returns NotImplemented, so Python raises its usual TypeError.
// Under no_grad() the result is a leaf holding the op's value (numbers get no leaves).
PyObject* binary_op(Op op, PyObject* a, PyObject* b) {
    Arena& graph = arena();
    if (!compact_if_due(graph)) return nullptr;
    double a_number = 0.0, b_number = 0.0;
    const int a_kind = classify_operand(a, &a_number);
    if (a_kind < 0) return nullptr;
    const int b_kind = a_kind == 2 ? 2 : classify_operand(b, &b_number);
    if (b_kind < 0) return nullptr;
    if (a_kind == 2 || b_kind == 2) return Py_NewRef(Py_NotImplemented);
    if (AG_UNLIKELY(!grad_enabled()))
        return leaf_of(op, a_kind == 1 ? graph.data[value_node(a)] : a_number,
                       b_kind == 1 ? graph.data[value_node(b)] : b_number);
    return guarded([&] {
        const NodeId lhs = a_kind == 1 ? value_node(a) : graph.leaf(a_number);
        const NodeId rhs = b_kind == 1 ? value_node(b) : graph.leaf(b_number);
        return wrap_new_node(graph.binary(op, lhs, rhs));
    });
}

PyObject* unary_op(Op op, PyObject* a) {
    Arena& graph = arena();
    if (!compact_if_due(graph)) return nullptr;
    if (AG_UNLIKELY(!grad_enabled())) {
        const double x = graph.data[value_node(a)];
        return leaf_of(op, x, x);
    }
    return guarded([&] { return wrap_new_node(graph.unary(op, value_node(a))); });
}

PyObject* value_add(PyObject* a, PyObject* b) { return binary_op(Op::Add, a, b); }
PyObject* value_sub(PyObject* a, PyObject* b) { return binary_op(Op::Sub, a, b); }
PyObject* value_mul(PyObject* a, PyObject* b) { return binary_op(Op::Mul, a, b); }
PyObject* value_div(PyObject* a, PyObject* b) { return binary_op(Op::Div, a, b); }
PyObject* value_neg(PyObject* a) { return unary_op(Op::Neg, a); }
PyObject* value_abs(PyObject* a) { return unary_op(Op::Abs, a); }

// Ints of smaller magnitude are exactly doubles.
constexpr double kMaxExactInt = 9007199254740992.0;  // 2**53

// `a ** k` with a number k keeps micrograd's one-operand node ('**k'); an exponent that is a
// Value (or a number base, `2 ** v`) makes a two-operand '**' node with the exponent's grad.
PyObject* value_pow(PyObject* a, PyObject* b, PyObject* modulo) {
    if (modulo != Py_None) return Py_NewRef(Py_NotImplemented);
    if (!is_value(a) || is_value(b)) return binary_op(Op::Pow, a, b);
    double k;
    const int converted = to_double(b, &k);
    if (converted <= 0) return converted < 0 ? nullptr : Py_NewRef(Py_NotImplemented);
    const bool k_is_int = PyIndex_Check(b);  // int, bool, numpy integers print as ints
    Arena& graph = arena();
    if (!compact_if_due(graph)) return nullptr;
    if (AG_UNLIKELY(!grad_enabled())) return leaf_of(Op::PowConst, graph.data[value_node(a)], k);
    if (!k_is_int || std::fabs(k) < kMaxExactInt)
        return guarded([&] { return wrap_new_node(graph.pow_const(value_node(a), k, k_is_int)); });
    // An int past 2**53 is rounded to a double for computing (as Python's float ** int does),
    // but micrograd's f'**{k}' prints it as written: that `_op` is kept with the node.
    PyObject* exact = PyNumber_Index(b);
    PyObject* name = exact != nullptr ? PyUnicode_FromFormat("**%S", exact) : nullptr;
    Py_XDECREF(exact);
    if (name == nullptr) return nullptr;
    PyObject* node = guarded([&] { return wrap_new_node(graph.pow_const(value_node(a), k, true)); });
    PyObject* done = node != nullptr ? guarded([&] {
        give_extras(node, nullptr, name);
        return node;
    })
                                     : nullptr;
    if (done == nullptr) Py_XDECREF(node);
    Py_DECREF(name);
    return done;
}

PyObject* value_relu(PyObject* self, PyObject*) { return unary_op(Op::Relu, self); }
PyObject* value_tanh(PyObject* self, PyObject*) { return unary_op(Op::Tanh, self); }
PyObject* value_exp(PyObject* self, PyObject*) { return unary_op(Op::Exp, self); }
PyObject* value_log(PyObject* self, PyObject*) { return unary_op(Op::Log, self); }
PyObject* value_sigmoid(PyObject* self, PyObject*) { return unary_op(Op::Sigmoid, self); }
PyObject* value_abs_method(PyObject* self, PyObject*) { return unary_op(Op::Abs, self); }
PyObject* value_sqrt(PyObject* self, PyObject*) { return unary_op(Op::Sqrt, self); }

// backward(gradient=1.0): micrograd's, seeded with `gradient` (PyTorch's name) instead of 1.
PyObject* value_backward(PyObject* self, PyObject* args, PyObject* kwargs) {
    static const char* keywords[] = {"gradient", nullptr};
    PyObject* gradient = nullptr;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O:backward", const_cast<char**>(keywords), &gradient))
        return nullptr;
    double seed = 1.0;
    if (gradient != nullptr) {
        const int converted = to_double(gradient, &seed);
        if (converted <= 0) return converted < 0 ? nullptr : not_a_number("backward(): gradient", gradient);
    }
    // The root keeps its node owned throughout, even if Python code in a `_backward` drops
    // every other reference to it.
    Py_INCREF(self);
    PyObject* result = guarded([&]() -> PyObject* {
        if (!arena().backward(value_node(self), seed)) return nullptr;  // allocates one flag per node
        Py_RETURN_NONE;
    });
    Py_DECREF(self);
    return result;
}

// While compile() traces, numbers read out of traced Values are refused (trace.hpp).
PyObject* value_float(PyObject* self) {
    if (check_read(self, "float()") < 0) return nullptr;
    return PyFloat_FromDouble(arena().data[value_node(self)]);
}

PyObject* value_item(PyObject* self, PyObject*) {
    if (check_read(self, "item()") < 0) return nullptr;
    return PyFloat_FromDouble(arena().data[value_node(self)]);
}

// Truthy, as any object (micrograd's Value has no __bool__); but while compile() traces, an
// `if` on a traced Value would freeze the branch the placeholders take.
int value_bool(PyObject* self) { return check_read(self, "bool() (an `if` or `while` on it)") < 0 ? -1 : 1; }

// A new leaf with the same data, outside any graph. While compile() traces, a detach node
// instead (the same value, gradient 0): a leaf would freeze the placeholders' value.
PyObject* value_detach(PyObject* self, PyObject*) {
    return guarded([&] {
        Arena& graph = arena();
        if (tracing()) return wrap_new_node(graph.unary(Op::Detach, value_node(self)));
        return wrap_new_node(graph.leaf(graph.data[value_node(self)]));
    });
}

// < <= > >= compare the data (so max(), sorted() and `if loss < tol` work) and return bool;
// == and != stay identity, as in micrograd: Values are hashable by identity, sets of them work.
PyObject* value_richcompare(PyObject* a, PyObject* b, int op) {
    if (op == Py_EQ || op == Py_NE) return Py_NewRef(Py_NotImplemented);
    double x = 0.0, y = 0.0;
    for (auto [side, out] : {std::pair{a, &x}, std::pair{b, &y}}) {
        if (is_value(side)) {
            if (check_read(side, "a comparison (<, <=, >, >=; builtins max, min, sorted)") < 0) return nullptr;
            *out = arena().data[value_node(side)];
            continue;
        }
        const int converted = to_double(side, out);
        if (converted < 0) return nullptr;
        if (converted == 0) return Py_NewRef(Py_NotImplemented);
    }
    bool result = false;
    switch (op) {
        case Py_LT: result = x < y; break;
        case Py_LE: result = x <= y; break;
        case Py_GT: result = x > y; break;
        case Py_GE: result = x >= y; break;
        default: return Py_NewRef(Py_NotImplemented);
    }
    return PyBool_FromLong(result);
}

PyObject* value_repr(PyObject* self) {
    PyObject* data = PyFloat_FromDouble(arena().data[value_node(self)]);
    PyObject* grad = PyFloat_FromDouble(arena().grad[value_node(self)]);
    PyObject* text = (data && grad) ? PyUnicode_FromFormat("Value(data=%R, grad=%R)", data, grad) : nullptr;
    Py_XDECREF(data);
    Py_XDECREF(grad);
    return text;
}

// copy, deepcopy and pickle give a detached leaf with the same data, grad and label (the
// graph behind a Value is not copied; parameters, the usual thing copied, are leaves).
PyObject* value_reduce(PyObject* self, PyObject*) {
    if (check_read(self, "a copy (copy, deepcopy, pickle)") < 0) return nullptr;  // a leaf: frozen
    const Arena& graph = arena();
    const NodeId id = value_node(self);
    PyObject* label = value_label(self);
    if (label == nullptr) return nullptr;
    return Py_BuildValue("O(d)(dN)", reinterpret_cast<PyObject*>(Py_TYPE(self)), graph.data[id], graph.grad[id], label);
}

PyObject* value_setstate(PyObject* self, PyObject* state) {
    PyObject* grad_number;
    PyObject* label;
    if (!PyTuple_Check(state))  // PyArg_ParseTuple would raise SystemError
        return PyErr_Format(PyExc_TypeError, "__setstate__ expects a (grad, label) tuple, not '%.200s'",
                            Py_TYPE(state)->tp_name);
    if (!PyArg_ParseTuple(state, "OO:__setstate__", &grad_number, &label)) return nullptr;
    double grad;
    const int converted = to_double(grad_number, &grad);
    if (converted <= 0) return converted < 0 ? nullptr : not_a_number("__setstate__: grad", grad_number);
    if (set_label(self, label) < 0) return nullptr;
    arena().grad[value_node(self)] = grad;
    Py_RETURN_NONE;
}

PyMethodDef value_methods[] = {
    {"relu", value_relu, METH_NOARGS, "max(0, x), micrograd's ReLU."},
    {"tanh", value_tanh, METH_NOARGS, "Hyperbolic tangent."},
    {"exp", value_exp, METH_NOARGS, "e ** x."},
    {"log", value_log, METH_NOARGS, "Natural logarithm (-inf at 0, nan below)."},
    {"sigmoid", value_sigmoid, METH_NOARGS, "1 / (1 + exp(-x)), computed without overflow."},
    {"abs", value_abs_method, METH_NOARGS, "|x| (gradient 0 at 0)."},
    {"sqrt", value_sqrt, METH_NOARGS, "Square root (nan below 0)."},
    {"backward", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(value_backward)),
     METH_VARARGS | METH_KEYWORDS,
     "backward($self, /, gradient=1.0)\n--\n\nSet this Value's grad to `gradient` and accumulate gradients into every "
     "Value it depends on."},
    {"item", value_item, METH_NOARGS, "The data, as a float (PyTorch's tensor.item())."},
    {"detach", value_detach, METH_NOARGS, "A new leaf Value with the same data, outside this graph."},
    {"__reduce__", value_reduce, METH_NOARGS, "Pickle/copy support: a detached leaf."},
    {"__setstate__", value_setstate, METH_O, "Pickle/copy support."},
    {nullptr, nullptr, 0, nullptr},
};

PyType_Slot value_slots[] = {
    {Py_tp_doc, const_cast<char*>("Value(data, _children=(), _op='', label='', *, local_grads=None)\n--\n\n"
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
    {Py_nb_float, reinterpret_cast<void*>(value_float)},
    {Py_nb_bool, reinterpret_cast<void*>(value_bool)},
    {Py_tp_richcompare, reinterpret_cast<void*>(value_richcompare)},
    {Py_tp_hash, nullptr},  // object's identity hash, set in bind_value (richcompare alone would drop it)
    {0, nullptr},
};

}  // namespace

PyObject* raise_memory_error(const std::bad_alloc& error) noexcept {
    arena().truncate_dead_top();
    if (dynamic_cast<const ArenaFull*>(&error) != nullptr)
        PyErr_SetString(PyExc_MemoryError, error.what());  // says which limit was hit
    else
        PyErr_NoMemory();
    return nullptr;
}

bool is_complex_number(PyObject* obj) {
    if (PyComplex_Check(obj)) return true;  // also numpy's complex128, a subclass
    // numpy's other complex scalars (complex64, clongdouble) have the base class
    // numpy.complexfloating, looked up once numpy is imported (before that there are none).
    static PyObject* numpy_complex = nullptr;  // a strong reference, kept for good
    if (numpy_complex == nullptr) {
        static PyObject* name = PyUnicode_InternFromString("numpy");
        PyObject* numpy = name != nullptr ? PyImport_GetModule(name) : nullptr;
        PyObject* base = numpy != nullptr ? PyObject_GetAttrString(numpy, "complexfloating") : nullptr;
        Py_XDECREF(numpy);
        if (base == nullptr || !PyType_Check(base)) {
            Py_XDECREF(base);
            PyErr_Clear();  // no numpy (or not a numpy we know): no numpy complex either
            return false;
        }
        numpy_complex = base;
    }
    return PyObject_TypeCheck(obj, reinterpret_cast<PyTypeObject*>(numpy_complex));
}

PyObject* wrap_new_node(NodeId id) {
    PyObject* obj = new_handle(id);
    if (obj == nullptr) arena().truncate_dead_top();
    return obj;
}

// The live handle if any, so `_prev` returns the very objects the user holds (micrograd's
// graph-drawing code relies on identity).
//
// A handle whose reference count is 0 is being deallocated: a Value subclass instance runs
// its weakref callbacks and clears its __dict__ (finalisers, arbitrary Python) before our
// value_dealloc releases its node. Handing it out would resurrect an object that is freed
// anyway, so the node is detached from it (its dealloc then has nothing to release) and
// gets a fresh handle.
PyObject* handle_of(NodeId id) {
    void* existing = arena().owner[id];
    if (existing != nullptr) {
        PyObject* handle = static_cast<PyObject*>(existing);
        if (Py_REFCNT(handle) > 0) return Py_NewRef(handle);
        as_value(handle)->id = kNoNode;
        arena().disown(id);
    }
    const NodeExtras* extras = extras_of(id);
    PyObject* handle = new_handle(id);
    if (handle == nullptr || extras == nullptr || extras->type == nullptr) return handle;
    // A node made as a Value subclass: a handle of that type, sharing the attributes its last
    // one had. Allocating it may run Python code (the garbage collector) that builds, drops or
    // compacts Values, or asks for this very node's handle: meanwhile the plain handle above
    // owns the node (compaction renumbers it like any owner), and is what that code gets.
    PyTypeObject* type = extras->type;
    PyObject* obj = type->tp_alloc(type, 0);
    const NodeId now = value_node(handle);
    if (obj == nullptr || Py_REFCNT(handle) > 1) {  // no memory, or the plain one was handed out
        if (obj != nullptr) {
            CompactionBlocker hold_id;  // its __del__ may read its data: through the right id
            as_value(obj)->id = now;    // not its owner: its dealloc releases nothing
            Py_DECREF(obj);
            return handle;
        }
        Py_DECREF(handle);
        return nullptr;
    }
    as_value(obj)->id = now;
    arena().owner[now] = obj;  // handed over: the plain handle's dealloc releases nothing
    Py_DECREF(handle);
    PyObject* dict = extras_of(now)->dict;
    if (dict != nullptr && PyObject_GenericSetDict(obj, dict, nullptr) < 0) Py_CLEAR(obj);
    return obj;
}

bool compact_now() {
    PyObject* done = guarded([] {
        arena().compact(relocate_value);
        Py_RETURN_NONE;
    });
    Py_XDECREF(done);
    return done != nullptr;
}

bool is_value_like(PyObject* obj) {
    static PyObject* name = PyUnicode_InternFromString("_prev");
    return name != nullptr && PyObject_HasAttr(reinterpret_cast<PyObject*>(Py_TYPE(obj)), name) > 0;
}

void bind_value(pybind11::module_& m) {
    for (PyType_Slot& slot : value_slots)
        if (slot.slot == Py_tp_hash) slot.pfunc = reinterpret_cast<void*>(PyBaseObject_Type.tp_hash);
    PyType_Spec spec = {"arenagrad.engine.Value", int(sizeof(ValueObject)), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
                        value_slots};
    auto type = pybind11::reinterpret_steal<pybind11::object>(PyType_FromSpec(&spec));
    if (!type) throw pybind11::error_already_set();
    // numpy scalars and arrays must defer to our reflected ops (`np.float64(2) * v`).
    type.attr("__array_ufunc__") = pybind11::none();
    m.attr("Value") = type;
    install_extras_hooks();
    value_type = reinterpret_cast<PyTypeObject*>(type.release().ptr());  // kept alive forever
    value_type->tp_vectorcall = value_vectorcall;
}

}  // namespace arenagrad
