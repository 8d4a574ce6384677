// The Python `Value` type: a handle (node id) into the arena.
//
// It is written against the CPython C API rather than pybind11 because it is the hot path:
// every `a + b` in user code lands here. Number slots (nb_add, ...) are plain C functions and
// result objects are created without pybind11's instance registry, which makes an op ~5x
// cheaper (see ARCHITECTURE.md). Everything else in the module uses pybind11.
#pragma once

#include <Python.h>

#include "arena.hpp"

namespace arenagrad {

// Creates the Value type and the Value-level functions (sum, linear, zero_grad, ...) and
// adds them to `module`. Returns 0, or -1 with a Python error set.
int add_value_api(PyObject* module);

// For other bindings (tapes, optimizers): is `obj` a Value, and which node does it hold?
bool is_value(PyObject* obj);
NodeId value_node(PyObject* obj);

// A new reference to the Value handle of node `id`: its live handle if it has one (so
// identity is preserved), else a fresh one. Null with a Python error on failure.
PyObject* handle_of(NodeId id);

// Compaction hook for code that calls Arena::maybe_compact() itself.
void relocate_handle(void* owner, NodeId new_id);

// Converts a Python real number to double: 1 done, 0 not a real number (no error set),
// -1 error set (e.g. an int too large for a float).
int to_double(PyObject* obj, double* out);

// Temporarily forbids compaction, for code that holds node ids across Python calls.
struct CompactionBlocker {
    CompactionBlocker();
    ~CompactionBlocker();
};

}  // namespace arenagrad
