// Python binding of tapes: _core.Tape (recorded by arenagrad.compile) and the CUDA queries.
//
// Arrays cross the boundary as C-contiguous float64 numpy arrays; the sweeps run with the GIL
// released. Parameters are Value handles: their node ids are read afresh at every call, since
// the arena may have compacted (renumbered) since the last one.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "cuda/elementwise.hpp"
#include "replay_cpu.hpp"
#include "tape.hpp"
#include "value.hpp"

namespace py = pybind11;

namespace arenagrad {
namespace {

using Matrix = py::array_t<double, py::array::c_style>;

NodeId node_of(py::handle obj, const char* what) {
    if (!is_value(obj.ptr()))
        throw py::type_error(std::string(what) + " must be a Value, not '" + Py_TYPE(obj.ptr())->tp_name + "'");
    return value_node(obj.ptr());
}

// A float64 matrix with `cols` columns (any strides: made contiguous here).
Matrix as_matrix(py::handle obj, std::size_t cols, const char* what) {
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(what) + " must be a numpy array of float64, not '" +
                             Py_TYPE(obj.ptr())->tp_name + "'");
    auto array = py::reinterpret_borrow<py::array>(obj);
    if (!array.dtype().is(py::dtype::of<double>()))
        throw py::type_error(std::string(what) + " must have dtype float64, not " +
                             std::string(py::str(array.dtype())));
    if (array.ndim() != 2 || std::size_t(array.shape(1)) != cols)
        throw py::value_error(std::string(what) + " must have shape (batch, " + std::to_string(cols) +
                              "), not " + std::string(py::str(obj.attr("shape"))));
    return Matrix::ensure(array);
}

class TapeObject {
public:
    TapeObject(py::handle fence, const py::list& inputs, const py::list& outputs, const std::string& device) {
        if (device != "cpu" && device != "cuda")
            throw py::value_error("device must be 'cpu' or 'cuda', not '" + device + "'");
        if (device == "cuda") {
            std::string why;
            if (cuda::device_count(why) == 0) throw std::runtime_error("device='cuda' is not available: " + why);
            gpu_ = std::make_unique<cuda::Replay>();
        }
        CompactionBlocker hold_ids;  // the ids read here must not move until recorded
        const NodeId first = node_of(fence, "fence");
        std::vector<NodeId> in, out;
        for (py::handle item : inputs) in.push_back(node_of(item, "every input"));
        for (py::handle item : outputs) out.push_back(node_of(item, "every output"));
        for (NodeId id : record(arena(), first, in, out, tape_)) {
            PyObject* handle = handle_of(id);  // keeps the node alive and tracked by compaction
            if (handle == nullptr) throw py::error_already_set();
            externals_.append(py::reinterpret_steal<py::object>(handle));
        }
    }

    // X: (batch, n_inputs) -> (batch, n_outputs).
    Matrix forward(py::handle X_obj) {
        Busy busy(busy_);
        const Matrix X = as_matrix(X_obj, tape_.n_inputs(), "X");
        const std::size_t batch = std::size_t(X.shape(0)), m = tape_.outputs.size();
        std::vector<double> parameters(tape_.n_externals);
        for (std::size_t e = 0; e < parameters.size(); ++e) parameters[e] = arena().data[external(e)];
        ready_ = false;
        invariant_forward(tape_, parameters.data(), shared_);
        Matrix Y({batch, m});
        {
            py::gil_scoped_release unlocked;
            if (gpu_)
                gpu_->forward(tape_, X.data(), batch, shared_, Y.mutable_data());
            else
                cpu_.forward(tape_, X.data(), batch, shared_.data(), Y.mutable_data());
        }
        batch_ = batch;
        ready_ = true;
        return Y;
    }

    // seed: (batch, n_outputs) or None for ones -> d(sum of seeded outputs)/dX, (batch, n_inputs).
    // Adds the lane-summed gradient of every external into its .grad.
    Matrix backward(py::handle seed_obj) {
        Busy busy(busy_);
        if (!ready_) throw std::runtime_error("backward() needs a forward() first");
        const std::size_t k = tape_.n_inputs(), m = tape_.outputs.size();
        Matrix seed;
        const double* seeds = nullptr;
        if (!seed_obj.is_none()) {
            seed = as_matrix(seed_obj, m, "seed");
            if (std::size_t(seed.shape(0)) != batch_)
                throw py::value_error("seed must have shape (" + std::to_string(batch_) + ", " + std::to_string(m) +
                                      ") like the last forward's output, not " +
                                      std::string(py::str(seed_obj.attr("shape"))));
            seeds = seed.data();
        }
        Matrix input_grads({batch_, k});
        {
            py::gil_scoped_release unlocked;
            if (gpu_)
                gpu_->backward(tape_, seeds, input_grads.mutable_data(), shared_grads_);
            else
                cpu_.backward(tape_, seeds, input_grads.mutable_data(), shared_grads_);
            invariant_backward(tape_, shared_, shared_grads_);
        }
        for (std::size_t e = 0; e < tape_.n_externals; ++e) arena().grad[external(e)] += shared_grads_[e];
        return input_grads;
    }

    // The training loop's two loops over parameters, as one native call each.
    void zero_grad() {
        for (std::size_t e = 0; e < tape_.n_externals; ++e) arena().grad[external(e)] = 0.0;
    }
    void sgd_step(double learning_rate) {
        Arena& graph = arena();
        for (std::size_t e = 0; e < tape_.n_externals; ++e) {
            const NodeId id = external(e);
            graph.data[id] -= learning_rate * graph.grad[id];  // exactly `p.data -= lr * p.grad`
        }
    }

    std::size_t n_inputs() const { return tape_.n_inputs(); }
    std::size_t n_outputs() const { return tape_.outputs.size(); }
    std::size_t n_lane_nodes() const { return tape_.lane.n_ops(); }
    std::size_t n_invariant_nodes() const { return tape_.invariant.n_ops(); }
    std::size_t n_constants() const { return tape_.constants.size(); }
    py::list externals() const { return py::list(externals_); }
    std::string device() const { return gpu_ ? "cuda" : "cpu"; }

private:
    // Refuses a second call while one runs in another thread (the GIL is released in sweeps).
    struct Busy {
        std::atomic<bool>& flag;
        explicit Busy(std::atomic<bool>& f) : flag(f) {
            if (flag.exchange(true)) throw std::runtime_error("this compiled function is already running in another thread");
        }
        ~Busy() { flag = false; }
    };

    // The node of external e now (compaction may have moved it since the last call).
    NodeId external(std::size_t e) const { return value_node(PyList_GET_ITEM(externals_.ptr(), Py_ssize_t(e))); }

    Tape tape_;
    py::list externals_;  // Value handles of the externals, in slot order
    CpuReplay cpu_;
    std::unique_ptr<cuda::Replay> gpu_;
    std::vector<double> shared_, shared_grads_;  // invariant slots: values, gradients
    std::size_t batch_ = 0;
    bool ready_ = false;
    std::atomic<bool> busy_{false};
};

}  // namespace

void bind_tape(py::module_& m) {
    py::class_<TapeObject>(m, "Tape", "A recorded graph replayed over a batch of inputs (see arenagrad.compile).")
        .def(py::init<py::handle, const py::list&, const py::list&, const std::string&>(), py::arg("fence"),
             py::arg("inputs"), py::arg("outputs"), py::arg("device") = "cpu",
             "Record the nodes built after `fence` that `outputs` need, with `inputs` as lane inputs.")
        .def("forward", &TapeObject::forward, py::arg("X"), "(batch, n_inputs) float64 -> (batch, n_outputs)")
        .def("backward", &TapeObject::backward, py::arg("seed") = py::none(),
             "Seeded gradients of the last forward: returns d/dX, adds parameter grads into their .grad.")
        .def("zero_grad", &TapeObject::zero_grad, "Set .grad = 0 on every external.")
        .def("sgd_step", &TapeObject::sgd_step, py::arg("learning_rate"),
             "p.data -= learning_rate * p.grad for every external.")
        .def_property_readonly("n_inputs", &TapeObject::n_inputs)
        .def_property_readonly("n_outputs", &TapeObject::n_outputs)
        .def_property_readonly("n_lane_nodes", &TapeObject::n_lane_nodes)
        .def_property_readonly("n_invariant_nodes", &TapeObject::n_invariant_nodes)
        .def_property_readonly("n_constants", &TapeObject::n_constants)
        .def_property_readonly("externals", &TapeObject::externals)
        .def_property_readonly("device", &TapeObject::device);
    m.attr("cuda_compiled") = cuda::compiled();
    m.def(
        "cuda_devices",
        [] {
            std::string why;
            const int count = cuda::device_count(why);
            return py::make_tuple(count, why);
        },
        "(number of usable CUDA devices, why there are none or '')");
}

}  // namespace arenagrad
