// Gather/scatter between a list of parameter Values and numpy vectors.
//
// An optimizer step over n parameters would otherwise be 2n Python attribute accesses (read
// .grad, write .data) per step; here it is one native call each way, and the update rule itself
// is plain numpy in python/arenagrad/optim.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "value.hpp"

namespace py = pybind11;

namespace arenagrad {
namespace {

// The Values of `params` (any sequence), checked once: TypeError names the first non-Value.
struct Params {
    py::object sequence;  // a list or tuple (PySequence_Fast), owned
    Py_ssize_t n = 0;

    Params(py::handle params, const char* what) {
        PyObject* fast = PySequence_Fast(params.ptr(), "");
        if (fast == nullptr) {
            PyErr_Clear();
            throw py::type_error(std::string(what) + ": params must be a sequence of Values, not '" +
                                 Py_TYPE(params.ptr())->tp_name + "'");
        }
        sequence = py::reinterpret_steal<py::object>(fast);
        n = PySequence_Fast_GET_SIZE(fast);
        for (Py_ssize_t i = 0; i < n; ++i) {
            PyObject* item = PySequence_Fast_GET_ITEM(fast, i);
            if (!is_value(item))
                throw py::type_error(std::string(what) + ": item " + std::to_string(i) + " must be a Value, not '" +
                                     Py_TYPE(item)->tp_name + "'");
        }
    }

    // Node ids are read at the moment of use: no Python code runs between reading an id and
    // touching the arena, so a compaction cannot move a node under our feet.
    NodeId node(Py_ssize_t i) const { return value_node(PySequence_Fast_GET_ITEM(sequence.ptr(), i)); }
};

using Vector = py::array_t<double, py::array::c_style | py::array::forcecast>;

Vector gather(py::handle params, const char* what, const PodArray<double> Arena::*field) {
    Params ps(params, what);
    Vector out(ps.n);
    double* dst = out.mutable_data();
    const PodArray<double>& src = arena().*field;
    for (Py_ssize_t i = 0; i < ps.n; ++i) dst[i] = src[ps.node(i)];
    return out;
}

void scatter(py::handle params, py::handle values, const char* what, PodArray<double> Arena::*field) {
    // float(v) gives a Value's data: refuse Values instead of reading them as numbers.
    bool holds_values = is_value(values.ptr());
    if (PyList_Check(values.ptr()) || PyTuple_Check(values.ptr()))
        for (py::handle item : values) holds_values = holds_values || is_value(item.ptr());
    if (holds_values) throw py::type_error(std::string(what) + ": values must be numbers, not Values");
    // Convert first (this may run arbitrary Python code), then check the Values and write
    // with no Python in between. numpy casts complex to float dropping the imaginary parts,
    // with only a warning: refused, as for a single number.
    if (py::array given = py::array::ensure(values); given && given.dtype().kind() == 'c')
        throw py::type_error(std::string(what) + ": values must be real numbers, not complex (" +
                             py::str(given.dtype()).cast<std::string>() + ")");
    Vector vec = Vector::ensure(values);
    if (!vec) {
        PyErr_Clear();
        throw py::type_error(std::string(what) + ": values must be convertible to a float array, not '" +
                             Py_TYPE(values.ptr())->tp_name + "'");
    }
    Params ps(params, what);
    if (vec.ndim() != 1 || vec.shape(0) != ps.n) {
        std::string shape;
        for (py::ssize_t d = 0; d < vec.ndim(); ++d) shape += (d ? ", " : "") + std::to_string(vec.shape(d));
        if (vec.ndim() == 1) shape += ",";
        throw py::value_error(std::string(what) + ": got " + std::to_string(ps.n) + " parameters but values of shape (" +
                              shape + ")");
    }
    const double* src = vec.data();
    PodArray<double>& dst = arena().*field;
    for (Py_ssize_t i = 0; i < ps.n; ++i) dst[ps.node(i)] = src[i];
}

}  // namespace

void bind_params(py::module_& m) {
    m.def(
        "get_data", [](py::handle params) { return gather(params, "get_data()", &Arena::data); },
        py::arg("params"), "get_data(params) -> numpy array of every Value's .data, in order.");
    m.def(
        "get_grad", [](py::handle params) { return gather(params, "get_grad()", &Arena::grad); },
        py::arg("params"), "get_grad(params) -> numpy array of every Value's .grad, in order.");
    m.def(
        "set_data", [](py::handle params, py::handle values) { scatter(params, values, "set_data()", &Arena::data); },
        py::arg("params"), py::arg("values"), "set_data(params, values): params[i].data = values[i] for all i.");
    m.def(
        "set_grad", [](py::handle params, py::handle values) { scatter(params, values, "set_grad()", &Arena::grad); },
        py::arg("params"), py::arg("values"), "set_grad(params, values): params[i].grad = values[i] for all i.");
}

}  // namespace arenagrad
