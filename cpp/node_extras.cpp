// The Python side of the arena's per-node extras (node_extras.hpp): making them, freeing them,
// and the cycle between a micrograd-style node and its `_backward` closure.
#include "node_extras.hpp"

namespace arenagrad {
namespace {

// Freeing a Python object can run any Python code (a closure's cells, a dict's values). The
// hooks run where an exception may already be pending (a failed op dropping what it pushed):
// keep it across that code.
class KeepPendingError {
public:
    KeepPendingError() { PyErr_Fetch(&type_, &value_, &traceback_); }
    ~KeepPendingError() { PyErr_Restore(type_, value_, traceback_); }
    KeepPendingError(const KeepPendingError&) = delete;
    KeepPendingError& operator=(const KeepPendingError&) = delete;

private:
    PyObject* type_;
    PyObject* value_;
    PyObject* traceback_;
};

void release(void* extras) {
    NodeExtras* e = static_cast<NodeExtras*>(extras);
    const NodeExtras held = *e;
    delete e;  // first: the node is gone, nothing may reach its extras while Python runs below
    KeepPendingError keep;
    Py_XDECREF(held.label);
    Py_XDECREF(held.op);
    Py_XDECREF(held.backward);
    Py_XDECREF(held.dict);
    Py_XDECREF(reinterpret_cast<PyObject*>(held.type));
}

// micrograd defines an op as
//     out = Value(t, (self,), 'tanh')
//     def _backward(): self.grad += (1 - t**2) * out.grad
//     out._backward = _backward
// The closure holds `out`, and the node holds the closure. When the only references to the
// handle are closure cells of the node's own `_backward`, and nothing but the node holds that
// function, its cells and its closure tuple, dropping the function frees the handle too: the
// two are a cycle that only the node keeps alive. A default argument (`def _backward(out=out)`,
// the usual way to bind a loop's variable) is recognised as a cell is. (Other ways to refer to
// `out`, e.g. a functools.partial, are not: such a node then lives as long as the process.)
bool held_by_own_backward(void* owner, void* extras) {
    PyObject* handle = static_cast<PyObject*>(owner);
    PyObject* fn = static_cast<NodeExtras*>(extras)->backward;
    if (fn == nullptr || !PyFunction_Check(fn) || Py_REFCNT(fn) != 1) return false;
    Py_ssize_t refs_to_it = 0;  // from the function's own cells and defaults
    PyObject* closure = PyFunction_GET_CLOSURE(fn);
    if (closure != nullptr) {
        if (!PyTuple_Check(closure) || Py_REFCNT(closure) != 1) return false;
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(closure); ++k) {
            PyObject* cell = PyTuple_GET_ITEM(closure, k);
            if (!PyCell_Check(cell) || PyCell_GET(cell) != handle) continue;
            if (Py_REFCNT(cell) != 1) return false;  // shared with another closure
            ++refs_to_it;
        }
    }
    PyObject* defaults = PyFunction_GET_DEFAULTS(fn);
    if (defaults != nullptr && PyTuple_Check(defaults) && Py_REFCNT(defaults) == 1)
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(defaults); ++k)
            refs_to_it += PyTuple_GET_ITEM(defaults, k) == handle;
    return refs_to_it > 0 && Py_REFCNT(handle) == refs_to_it;
}

void drop_backward(void* extras) {
    NodeExtras* e = static_cast<NodeExtras*>(extras);
    PyObject* fn = e->backward;
    e->backward = nullptr;
    KeepPendingError keep;
    Py_XDECREF(fn);
}

bool call_backward(void* extras) {
    PyObject* fn = static_cast<NodeExtras*>(extras)->backward;
    if (fn == nullptr) return true;  // micrograd's default `_backward = lambda: None`
    Py_INCREF(fn);  // it may assign another `_backward` to its node while it runs
    PyObject* result = PyObject_CallNoArgs(fn);
    Py_DECREF(fn);
    if (result == nullptr) return false;
    Py_DECREF(result);
    return true;
}

}  // namespace

NodeExtras& extras_for(NodeId id) {
    if (NodeExtras* existing = extras_of(id)) return *existing;
    NodeExtras* made = new NodeExtras();
    try {
        arena().add_extras(id, made);
    } catch (...) {
        delete made;
        throw;
    }
    return *made;
}

void install_extras_hooks() {
    ExtrasHooks& hooks = arena().hooks;
    hooks.release = release;
    hooks.held_by_own_backward = held_by_own_backward;
    hooks.drop_backward = drop_backward;
    hooks.call_backward = call_backward;
}

}  // namespace arenagrad
