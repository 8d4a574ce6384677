// arenagrad._core: wires the bindings together; each area lives in its own file.
#include <pybind11/pybind11.h>

#include "config.hpp"
#include "value.hpp"

namespace py = pybind11;

namespace arenagrad {
void bind_ops(py::module_& m);  // bind_ops.cpp: the op table, for the tests
void bind_params(py::module_& m);  // bind_params.cpp: gather/scatter for optimizers
void bind_tape(py::module_& m);  // bind_tape.cpp
}

PYBIND11_MODULE(_core, m) {
    m.doc() = "arenagrad's native core (private: use the arenagrad package).";
    if (arenagrad::add_value_api(m.ptr()) < 0) throw py::error_already_set();
    arenagrad::bind_config(m);
    arenagrad::bind_ops(m);
    arenagrad::bind_params(m);
    arenagrad::bind_tape(m);
}
