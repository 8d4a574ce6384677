// The Python `Value` handle, as every binding sees it: a Python object holding one node id.
//
// The Value type and the functions that build nodes (value.cpp, bind_functions.cpp) are
// written against the CPython C API rather than pybind11 because they are the hot path:
// every `a + b` in user code lands there. Number slots (nb_add, ...) are plain C functions and
// results are created without pybind11's instance registry, which makes an op several times
// cheaper (docs/architecture.md draws this path). The other bindings use pybind11 and only
// need the helpers below.
//
// Rules that keep the arena consistent, for any code that builds nodes:
//  * Convert every Python number to a double *before* pushing any node: a conversion may run
//    Python code (a `__float__`), which may free Values and truncate the arena, and an
//    unowned node pushed earlier would be truncated with them.
//  * Call compact_if_due() at the start of an op, before reading anything out of its
//    arguments: a compaction renumbers nodes, and it runs Python code (it frees what dropped
//    nodes kept for Python, see node_extras.hpp). Read node ids at the moment of use.
//  * A node pushed but not yet owned sits at the top of the arena; guarded() drops it again
//    when building fails.
#pragma once

#include <Python.h>

#include <new>

#include "arena.hpp"

namespace arenagrad {

// The instance layout of Value (and of its Python subclasses, which extend it). The label and
// everything else a node keeps for Python lives with the node (node_extras.hpp), so that it
// outlives the handle.
struct ValueObject {
    PyObject_HEAD
    NodeId id;
};

// The Value type; null until bind_value() has run.
extern PyTypeObject* value_type;

// Exactly a Value (not a subclass): the common case, checked first on hot paths.
inline bool is_exact_value(PyObject* obj) { return Py_IS_TYPE(obj, value_type); }

inline bool is_value(PyObject* obj) { return value_type != nullptr && PyObject_TypeCheck(obj, value_type); }

// The node `obj` holds now (compaction renumbers nodes: read it at the moment of use).
// `obj` must be a Value.
inline NodeId value_node(PyObject* obj) { return reinterpret_cast<ValueObject*>(obj)->id; }

// The arena's compaction hook: the node of Value `owner` now has id `new_id`.
inline void relocate_value(void* owner, NodeId new_id) { static_cast<ValueObject*>(owner)->id = new_id; }

// Compacts the arena now (out of line: the rare case of compact_if_due). False with a
// Python error set on failure.
bool compact_now();

// Compacts the arena if it has grown enough since the last time (amortised O(1) per node).
// False with a Python error set (MemoryError) if that failed.
inline bool compact_if_due(Arena& graph) { return AG_LIKELY(!graph.compaction_due()) || compact_now(); }

// A new Value for node `id`, just pushed on top of the arena and not yet owned (the node is
// dropped again if this fails). Runs no Python code. Null with a Python error on failure.
// Sets a Value's label (kept with its node): 0, or -1 with TypeError (not a str),
// AttributeError (deleted) or MemoryError.
int set_label(PyObject* self, PyObject* label);
int check_label(PyObject* label);

// A new reference to a Value's label ('' when it has none).
PyObject* value_label(PyObject* self);

// The Value type's attributes (value_attributes.cpp).
extern PyGetSetDef value_attributes[];

PyObject* wrap_new_node(NodeId id);

// A new reference to the Value of node `id`: its live handle if it has one (so identity is
// preserved), else a fresh one, of the Value subclass and with the attributes its last handle
// had. Null with a Python error on failure.
PyObject* handle_of(NodeId id);

// Whether `obj` looks like a micrograd Value (its type has `_prev`): not a number, even when
// float() would convert it. Only asked of unusual operands (not float, int or our Value).
bool is_value_like(PyObject* obj);

// Whether `obj` is a complex number: Python's complex, or a numpy complex scalar, which
// float() would accept, dropping the imaginary part with only a ComplexWarning.
bool is_complex_number(PyObject* obj);

// Converts a Python real number to double: 1 done, 0 not a real number (no error set),
// -1 error set (e.g. an int too large for a float).
inline int to_double(PyObject* obj, double* out) {
    if (PyFloat_Check(obj)) {
        *out = PyFloat_AS_DOUBLE(obj);
        return 1;
    }
    if (PyLong_Check(obj)) {
        const double x = PyLong_AsDouble(obj);
        if (x == -1.0 && PyErr_Occurred()) return -1;
        *out = x;
        return 1;
    }
    // float(x) would parse strings; a Value is not a number either, although float(v) gives
    // its data: neither ours nor another engine's (micrograd's, the oracle's: a `_prev`).
    if (is_value(obj) || PyUnicode_Check(obj) || PyBytes_Check(obj) || PyByteArray_Check(obj)) return 0;
    PyNumberMethods* number = Py_TYPE(obj)->tp_as_number;
    if (number == nullptr || (number->nb_float == nullptr && number->nb_index == nullptr)) return 0;
    if (is_complex_number(obj) || is_value_like(obj)) return 0;
    const double x = PyFloat_AsDouble(obj);  // numpy scalars, Decimal, ... via __float__/__index__
    if (x == -1.0 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) return -1;
        PyErr_Clear();  // e.g. a numpy array of size > 1: not a scalar
        return 0;
    }
    *out = x;
    return 1;
}

// Sets TypeError "<what> must be a real number ..., not '<type>'"; returns null.
inline PyObject* not_a_number(const char* what, PyObject* obj) {
    return PyErr_Format(PyExc_TypeError, "%s must be a real number (int, float or numpy scalar), not '%.200s'", what,
                        Py_TYPE(obj)->tp_name);
}

// The failure path of guarded(): drops the unowned nodes on top of the arena and raises
// MemoryError. Returns null.
PyObject* raise_memory_error(const std::bad_alloc& error) noexcept;

// Runs `build` (which pushes nodes and returns a new reference, or null with a Python error
// set) and turns a full arena or a failed allocation into MemoryError, after dropping the
// unowned nodes `build` pushed. Forced inline: left to itself, the compiler keeps one copy
// per op out of line and every `a.relu()` pays a call and a closure for it.
template <typename Build>
#if defined(__GNUC__)
__attribute__((always_inline))
#endif
inline PyObject* guarded(Build&& build) noexcept {
    try {
        return build();
    } catch (const std::bad_alloc& error) {
        return raise_memory_error(error);
    }
}

// no_grad(): while the calling thread is inside one, ops build leaves and no graph is kept.
// The count of threads inside one is checked first, so ops pay for the thread-local read only
// while some thread is (both change with the GIL held).
struct GradMode {
    static inline int threads_without_grad = 0;
    static inline thread_local int depth = 0;  // this thread's no_grad() nesting
};

inline bool grad_enabled() { return GradMode::threads_without_grad == 0 || GradMode::depth == 0; }

// Forbids compaction while alive, for code that keeps node ids across calls that may run
// Python code.
struct CompactionBlocker {
    CompactionBlocker() { ++arena().compaction_blocked; }
    ~CompactionBlocker() { --arena().compaction_blocked; }
    CompactionBlocker(const CompactionBlocker&) = delete;
    CompactionBlocker& operator=(const CompactionBlocker&) = delete;
};

}  // namespace arenagrad
