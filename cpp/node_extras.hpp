// What a node keeps for Python besides its numbers: its label, a user-defined op's `_op` and
// `_backward`, and, for a node made as a Value subclass, that type and the instance's
// attributes. They live with the node, not with its handle: a node outlives its handle when a
// node above still uses it, and `_prev` then makes a new handle that must look the same (the
// same label in a graph drawing, the same subclass, the same attributes).
//
// Only the few nodes that have any of these have an entry, in the arena's side table (sorted
// by node id, moved along with the nodes; see arena.hpp). The arena stays free of Python: it
// holds each entry as an opaque pointer and calls back (ExtrasHooks) when a node is dropped,
// when the cycle between a micrograd-style node and its own `_backward` closure must be
// broken, and when the sweep reaches a `_backward` to call.
#pragma once

#include <Python.h>

#include "arena.hpp"

namespace arenagrad {

struct NodeExtras {
    PyObject* label = nullptr;     // str, or null for ''
    PyObject* op = nullptr;        // a user-defined op's `_op` (str), or null for ''
    PyObject* backward = nullptr;  // a micrograd-style op's `_backward` callable, or null
    PyTypeObject* type = nullptr;  // the Value subclass this node's handles are, or null
    PyObject* dict = nullptr;      // its instance attributes, shared by its handles, or null
};

// The extras of node `id`, or null.
inline NodeExtras* extras_of(NodeId id) { return static_cast<NodeExtras*>(arena().extras_of(id)); }

// The extras of node `id`, made empty if it has none. Throws std::bad_alloc.
NodeExtras& extras_for(NodeId id);

// Points the arena's hooks at this file's functions (once, when the module loads).
void install_extras_hooks();

}  // namespace arenagrad
