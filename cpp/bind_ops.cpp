// Python's view of the op table: arenagrad._core.op_table, from which the oracle's and the
// tests' tables are checked; a test hook that runs the eager sweep without its fast paths; and
// one that builds a node of any op by name (the ops derivative graphs use have no method).
#include <pybind11/pybind11.h>

#include <iterator>
#include <string>

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

    m.def(
        "_op_node",
        [](const std::string& name, const py::args& operands) {
            std::size_t row = 0;
            while (row < std::size(kOpRows) && name != kOpRows[row].name) ++row;
            if (row == std::size(kOpRows)) throw py::value_error("_op_node(): no op named '" + name + "'");
            const Op op = Op(row + 1);  // the rows follow the enum, after Leaf
            const std::size_t arity = kOpRows[row].kind == Kind::Binary || op == Op::Mask ? 2 : 1;
            if (kOpRows[row].kind == Kind::Nary || op == Op::PowConst || op == Op::PowConstInt)
                throw py::value_error("_op_node(): '" + name + "' is built by its own function or operator");
            if (operands.size() != arity)
                throw py::type_error("_op_node(): '" + name + "' takes " + std::to_string(arity) + " operand(s)");
            for (py::handle operand : operands)
                if (!is_value(operand.ptr())) throw py::type_error("_op_node(): operands must be Values");
            if (!compact_if_due(arena())) throw py::error_already_set();
            PyObject* node = guarded([&] {
                Arena& graph = arena();
                const NodeId a = value_node(operands[0].ptr());
                const NodeId b = arity == 2 ? value_node(operands[1].ptr()) : a;
                // under no_grad(), a leaf holding the op's value, as every op gives
                if (!grad_enabled()) return wrap_new_node(graph.leaf(forward(op, graph.data[a], graph.data[b])));
                return wrap_new_node(arity == 2 ? graph.binary(op, a, b) : graph.unary(op, a));
            });
            if (node == nullptr) throw py::error_already_set();
            return py::reinterpret_steal<py::object>(node);
        },
        py::arg("name"),
        "Tests only: a node of op `name` (unary or binary; mask takes (x, condition)) over Values.");
}

}  // namespace arenagrad
