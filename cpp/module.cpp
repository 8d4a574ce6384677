// arenagrad._core: one binding unit per concept, each in its own file.
//
// A unit defines `void arenagrad::bind_<name>(pybind11::module_& m)`, which adds its names to
// `m`. Adding a unit takes one line in the list below and its file in CMakeLists.txt.
#include <pybind11/pybind11.h>

// In registration order. The Value type comes first: the other units take and return Values.
#define ARENAGRAD_BINDING_UNITS(X)                                                  \
    X(value)     /* value.cpp: the Value type, its ops and attributes */            \
    X(functions) /* bind_functions.cpp: sum, linear, zero_grad */                   \
    X(ops)       /* bind_ops.cpp: op_table, the op list as Python sees it */        \
    X(arena)     /* bind_arena.cpp: arena_stats, compact, _set_node_limit */        \
    X(params)    /* bind_params.cpp: get/set_data, get/set_grad for optimizers */   \
    X(replay)    /* bind_replay.cpp: Replay (compile's engine), the CUDA queries */ \
    X(grad)      /* bind_grad.cpp: grad, torch.autograd.grad for Values */         \
    X(config)    /* bind_config.cpp: openmp, get/set_num_threads */                 \
    X(select)    /* bind_select.cpp: take, max */                                   \
    X(trace)     /* bind_trace.cpp: the open trace, for compile */

namespace arenagrad {
#define ARENAGRAD_DECLARE(name) void bind_##name(pybind11::module_& m);
ARENAGRAD_BINDING_UNITS(ARENAGRAD_DECLARE)
#undef ARENAGRAD_DECLARE
}  // namespace arenagrad

// pybind11's entry point is renamed (the name it pastes together is macro-expanded again),
// so that ours, below, runs first.
#define PyInit__core arenagrad_pybind11_PyInit__core

PYBIND11_MODULE(_core, m) {
    m.doc() = "arenagrad's native core (private: use the arenagrad package).";
#define ARENAGRAD_BIND(name) arenagrad::bind_##name(m);
    ARENAGRAD_BINDING_UNITS(ARENAGRAD_BIND)
#undef ARENAGRAD_BIND
}

#undef PyInit__core

// The entry point: refuses sub-interpreters. The arena, the Value type and the thread pools
// are process-wide, and pybind11 would deadlock before any of our code ran: it takes the GIL
// through PyGILState, which knows only the main interpreter's thread states.
extern "C" PYBIND11_EXPORT PyObject* PyInit__core() {
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_ImportError,
                        "arenagrad cannot be imported in a sub-interpreter: its graph and threads are shared by the "
                        "whole process (import it in the main interpreter)");
        return nullptr;
    }
    return arenagrad_pybind11_PyInit__core();
}
