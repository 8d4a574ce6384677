// The Value type: construction, number slots, methods, repr and pickling (its attributes are
// in value_attributes.cpp).
// value.hpp says why it uses the C API and which rules keep the arena consistent.
#include <pybind11/pybind11.h>

#include <cmath>
#include <vector>

#include "value.hpp"

namespace arenagrad {

PyTypeObject* value_type = nullptr;

int check_label(PyObject* label) {
    if (PyUnicode_Check(label)) return 0;
    PyErr_Format(PyExc_TypeError, "Value label must be a str, not '%.200s'", Py_TYPE(label)->tp_name);
    return -1;
}

int set_label(ValueObject* self, PyObject* label) {
    if (label == nullptr) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete Value.label (set it to '' instead)");
        return -1;
    }
    if (check_label(label) < 0) return -1;
    Py_XSETREF(self->label, Py_NewRef(label));
    return 0;
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
    self->label = nullptr;
    arena().adopt(id, self);
    return reinterpret_cast<PyObject*>(self);
}

// ---- construction and destruction ----------------------------------------------------

PyObject* value_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
    static const char* keywords[] = {"data", "label", nullptr};
    PyObject* data = nullptr;
    PyObject* label = nullptr;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O:Value", const_cast<char**>(keywords), &data, &label))
        return nullptr;
    double x;
    const int converted = to_double(data, &x);
    if (converted <= 0) return converted < 0 ? nullptr : not_a_number("Value data", data);
    if (label != nullptr && check_label(label) < 0) return nullptr;
    PyObject* obj;
    if (type == value_type) {
        obj = guarded([&] { return wrap_new_node(arena().leaf(x)); });
    } else {
        // A subclass's tp_alloc may run the garbage collector, i.e. arbitrary Python code that
        // builds, drops and compacts Values, and an object it returns is visible to Python
        // (its __del__ runs if we drop it). So the leaf comes first, owned meanwhile by a
        // stand-in that compaction keeps and renumbers like any owner, then passes to the
        // object: no object ever exists without a node, even when the arena is full.
        ValueObject stand_in;
        if (guarded([&] {
                stand_in.id = arena().leaf(x);
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
        self->id = stand_in.id;  // nothing but the stand-in refers to the new leaf yet
        self->label = nullptr;
        arena().owner[self->id] = self;
    }
    if (obj != nullptr && label != nullptr) set_label(as_value(obj), label);  // checked above: cannot fail
    return obj;
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
    if (is_exact_value(obj)) return 1;
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
    return guarded([&] {
        Arena& graph = arena();
        compact_if_due(graph);
        const NodeId lhs = a_kind == 1 ? value_node(a) : graph.leaf(a_number);
        const NodeId rhs = b_kind == 1 ? value_node(b) : graph.leaf(b_number);
        return wrap_new_node(graph.binary(op, lhs, rhs));
    });
}

PyObject* unary_op(Op op, PyObject* a) {
    return guarded([&] {
        Arena& graph = arena();
        compact_if_due(graph);
        return wrap_new_node(graph.unary(op, value_node(a)));
    });
}

PyObject* value_add(PyObject* a, PyObject* b) { return binary_op(Op::Add, a, b); }
PyObject* value_sub(PyObject* a, PyObject* b) { return binary_op(Op::Sub, a, b); }
PyObject* value_mul(PyObject* a, PyObject* b) { return binary_op(Op::Mul, a, b); }
PyObject* value_div(PyObject* a, PyObject* b) { return binary_op(Op::Div, a, b); }
PyObject* value_neg(PyObject* a) { return unary_op(Op::Neg, a); }
PyObject* value_abs(PyObject* a) { return unary_op(Op::Abs, a); }

// Ints of smaller magnitude are exactly doubles.
constexpr double kMaxExactInt = 9007199254740992.0;  // 2**53

// An int exponent past 2**53 is rounded to a double for computing, but micrograd's `_op`
// prints it as written: it is kept as doubles whose exact sum it is (its rounding, the
// rounding of what is left, ...; an int that converts to a double needs at most 20).
// False with a Python error set.
bool int_as_doubles(PyObject* k, std::vector<double>& terms) {
    PyObject* rest = PyNumber_Index(k);
    while (rest != nullptr) {
        const int left = PyObject_IsTrue(rest);
        if (left <= 0) {
            Py_DECREF(rest);
            return left == 0;
        }
        const double term = PyLong_AsDouble(rest);
        PyObject* taken = term == -1.0 && PyErr_Occurred() ? nullptr : PyLong_FromDouble(term);
        Py_SETREF(rest, taken != nullptr ? PyNumber_Subtract(rest, taken) : nullptr);
        Py_XDECREF(taken);
        terms.push_back(term);
    }
    return false;
}

// `a ** k` with a number k keeps micrograd's one-operand node ('**k'); an exponent that is a
// Value (or a number base, `2 ** v`) makes a two-operand '**' node with the exponent's grad.
PyObject* value_pow(PyObject* a, PyObject* b, PyObject* modulo) {
    if (modulo != Py_None) return Py_NewRef(Py_NotImplemented);
    if (!is_value(a) || is_value(b)) return binary_op(Op::Pow, a, b);
    double k;
    const int converted = to_double(b, &k);
    if (converted <= 0) return converted < 0 ? nullptr : Py_NewRef(Py_NotImplemented);
    const bool k_is_int = PyIndex_Check(b);  // int, bool, numpy integers print as ints
    std::vector<double> exact;
    if (k_is_int && std::fabs(k) >= kMaxExactInt && !int_as_doubles(b, exact)) return nullptr;
    return guarded([&] {
        Arena& graph = arena();
        compact_if_due(graph);
        if (exact.size() <= 1) return wrap_new_node(graph.pow_const(value_node(a), k, k_is_int));
        // The exponent node is linear(k rounded; 0 * each remainder): its value is k rounded
        // (acc + 0.0 * x is acc), and its operands add up to k exactly (get_op).
        const NodeId zero = graph.leaf(0.0);
        const NodeId exponent = graph.linear(
            graph.leaf(exact[0]), exact.size() - 1, [&](std::size_t) { return zero; },
            [&](std::size_t i) { return graph.leaf(exact[i + 1]); });
        return wrap_new_node(graph.binary(Op::PowConstInt, value_node(a), exponent));
    });
}

PyObject* value_relu(PyObject* self, PyObject*) { return unary_op(Op::Relu, self); }
PyObject* value_tanh(PyObject* self, PyObject*) { return unary_op(Op::Tanh, self); }
PyObject* value_exp(PyObject* self, PyObject*) { return unary_op(Op::Exp, self); }
PyObject* value_log(PyObject* self, PyObject*) { return unary_op(Op::Log, self); }
PyObject* value_sigmoid(PyObject* self, PyObject*) { return unary_op(Op::Sigmoid, self); }
PyObject* value_abs_method(PyObject* self, PyObject*) { return unary_op(Op::Abs, self); }
PyObject* value_sqrt(PyObject* self, PyObject*) { return unary_op(Op::Sqrt, self); }

PyObject* value_backward(PyObject* self, PyObject*) {
    return guarded([&] {
        arena().backward(value_node(self));  // allocates one flag per node
        Py_RETURN_NONE;
    });
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
    const Arena& graph = arena();
    const NodeId id = value_node(self);
    PyObject* label = value_label(self);
    if (label == nullptr) return nullptr;
    return Py_BuildValue("O(d)(dN)", reinterpret_cast<PyObject*>(Py_TYPE(self)), graph.data[id], graph.grad[id], label);
}

PyObject* value_setstate(PyObject* self, PyObject* state) {
    double grad;
    PyObject* label;
    if (!PyTuple_Check(state))  // PyArg_ParseTuple would raise SystemError
        return PyErr_Format(PyExc_TypeError, "__setstate__ expects a (grad, label) tuple, not '%.200s'",
                            Py_TYPE(state)->tp_name);
    if (!PyArg_ParseTuple(state, "dO:__setstate__", &grad, &label)) return nullptr;
    if (set_label(as_value(self), label) < 0) return nullptr;
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
    return new_handle(id);
}

void bind_value(pybind11::module_& m) {
    PyType_Spec spec = {"arenagrad.engine.Value", int(sizeof(ValueObject)), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
                        value_slots};
    auto type = pybind11::reinterpret_steal<pybind11::object>(PyType_FromSpec(&spec));
    if (!type) throw pybind11::error_already_set();
    // numpy scalars and arrays must defer to our reflected ops (`np.float64(2) * v`).
    type.attr("__array_ufunc__") = pybind11::none();
    m.attr("Value") = type;
    value_type = reinterpret_cast<PyTypeObject*>(type.release().ptr());  // kept alive forever
    value_type->tp_vectorcall = value_vectorcall;
}

}  // namespace arenagrad
