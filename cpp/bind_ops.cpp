// Python's view of the op table: arenagrad._core.op_table, from which the oracle's and the
// tests' tables are checked, and a test hook that runs the eager sweep without its fast paths.
#include <pybind11/pybind11.h>

#include "arena.hpp"
#include "value.hpp"

namespace py = pybind11;

namespace arenagrad {

void bind_ops(py::module_& m) {
    py::list rows;
    for (const OpRow& row : kOpRows) {
        py::object arity = py::none();
        if (row.kind == Kind::Unary) arity = py::int_(1);
        if (row.kind == Kind::Binary) arity = py::int_(2);
        rows.append(py::make_tuple(row.name, row.symbol, arity));
    }
    m.attr("op_table") = py::tuple(rows);

    m.def(
        "_backward_generic",
        [](py::handle value) {
            if (!is_value(value.ptr()))
                throw py::type_error(std::string("_backward_generic() takes a Value, not '") +
                                     Py_TYPE(value.ptr())->tp_name + "'");
            // std::bad_alloc -> MemoryError; false: a Python `_backward` raised
            if (!arena().backward_generic(value_node(value.ptr()))) throw py::error_already_set();
        },
        py::arg("value"),
        "Tests only: value.backward(), with every node dispatched through the op table (no fast paths).");
}

}  // namespace arenagrad
