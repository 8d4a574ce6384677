// _core.Replay: a Replay (replay_driver.hpp) whose parameters are Values, with numpy arrays in
// and out. arenagrad.compile records one and wraps it in the public Compiled.
//
// compile.py checks every argument with messages meant for users; the checks here are only
// those that keep a private caller from reading or writing out of bounds. The sweeps run with
// the GIL released (without_gil). The externals' node ids are read afresh at every call, since
// the arena may have compacted (renumbered) since the last one.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "config.hpp"
#include "cuda/elementwise.hpp"
#include "replay_cpu.hpp"
#include "replay_driver.hpp"
#include "value.hpp"

namespace py = pybind11;

namespace arenagrad {
namespace {

using Matrix = py::array_t<double, py::array::c_style>;

NodeId node_of(py::handle obj) {
    if (!is_value(obj.ptr()))
        throw py::type_error("expected a Value, not '" + std::string(Py_TYPE(obj.ptr())->tp_name) + "'");
    return value_node(obj.ptr());
}

// Set by the atexit hook below: from then on native work keeps the GIL.
std::atomic<bool> exiting{false};

// Runs `work`, which must not touch Python, with the GIL released.
//
// While the interpreter finalizes, CPython (before 3.14) ends any other thread that asks for
// the GIL by unwinding its stack (pthread_exit), and that unwind aborts the process when it
// leaves a noexcept function (py::gil_scoped_release's destructor is one) and touches Python
// objects without the GIL in the destructors it runs. So no thread may be waiting for the
// GIL here once finalization starts: the atexit hook, which runs before it, sets `exiting`
// and lets every section in flight take the GIL back; later work runs with the GIL held. The
// GIL orders the hook and the check on entry, so no section starts unseen.
template <typename Work>
void without_gil(Work&& work) {
    if (exiting.load()) return work();
    ++native_sections_running;
    PyThreadState* state = PyEval_SaveThread();
    try {
        work();
    } catch (...) {
        PyEval_RestoreThread(state);
        --native_sections_running;
        throw;
    }
    PyEval_RestoreThread(state);
    --native_sections_running;
}

void let_native_sections_finish() {
    exiting = true;
    if (native_sections_running.load() == 0) return;
    Py_BEGIN_ALLOW_THREADS;
    while (native_sections_running.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    Py_END_ALLOW_THREADS;
}

MakeLaneReplay lane_replay_for(const std::string& device) {
    if (device == "cpu") return make_cpu_lane_replay;
    if (device == "cuda") return cuda::make_lane_replay;
    throw py::value_error("device must be 'cpu' or 'cuda', not '" + device + "'");
}

// Records the tape, and puts into `externals` the Values it reads as parameters: owning them
// keeps their nodes alive and has compaction tell them their new ids.
Tape record_tape(py::handle fence, const py::list& inputs, const py::list& outputs,
                 std::vector<py::object>& externals) {
    CompactionBlocker hold_ids;  // the ids read here must not move until recorded and owned
    const NodeId first = node_of(fence);
    std::vector<NodeId> in, out;
    for (py::handle item : inputs) in.push_back(node_of(item));
    for (py::handle item : outputs) out.push_back(node_of(item));
    Tape tape;
    for (NodeId id : record(arena(), first, in, out, tape)) {
        PyObject* handle = handle_of(id);
        if (handle == nullptr) throw py::error_already_set();
        externals.push_back(py::reinterpret_steal<py::object>(handle));
    }
    return tape;
}

// The loops over a run of parameters, vectorised for each instruction set (AG_HOT): the same
// arithmetic element by element.
AG_HOT void add_into(double* __restrict into, const double* __restrict from, std::size_t n) {
    for (std::size_t j = 0; j < n; ++j) into[j] += from[j];
}
AG_HOT void sgd_update(double* __restrict data, const double* __restrict grad, double learning_rate, std::size_t n) {
    for (std::size_t j = 0; j < n; ++j) data[j] -= learning_rate * grad[j];  // exactly `p.data -= lr * p.grad`
}

class PyReplay {
public:
    PyReplay(py::handle fence, const py::list& inputs, const py::list& outputs, const std::string& device)
        : device_(device), replay_(record_tape(fence, inputs, outputs, externals_), lane_replay_for(device)) {
    }

    // X: (batch, n_inputs) -> (batch, n_outputs).
    Matrix forward(const Matrix& X) {
        Busy busy(busy_);
        const Tape& tape = replay_.tape();
        if (X.ndim() != 2 || std::size_t(X.shape(1)) != tape.n_inputs())
            throw py::value_error("X must have shape (batch, n_inputs)");
        const std::size_t batch = std::size_t(X.shape(0));
        Matrix Y({batch, tape.outputs.size()});  // first: if it fails, the last forward stands
        const double* data = arena().data.data();
        double* params = replay_.parameter_buffer();
        for_runs([&](std::size_t e, NodeId id, std::size_t n) { std::copy(data + id, data + id + n, params + e); });
        const double* x = X.data();
        double* y = Y.mutable_data();
        without_gil([&] { replay_.forward(params, x, batch, y); });
        return Y;
    }

    // seed: (batch, n_outputs) of the last forward, or None for ones -> d(seeded outputs)/dX,
    // (batch, n_inputs). Adds the lane-summed gradient of every external into its .grad.
    Matrix backward(const std::optional<Matrix>& seed) {
        Busy busy(busy_);
        const Tape& tape = replay_.tape();
        const std::size_t batch = replay_.batch();
        if (seed && (seed->ndim() != 2 || std::size_t(seed->shape(0)) != batch ||
                     std::size_t(seed->shape(1)) != tape.outputs.size()))
            throw py::value_error("seed must have shape (batch, n_outputs) of the last forward");
        Matrix input_grads({batch, std::size_t(tape.n_inputs())});
        const double* seeds = seed ? seed->data() : nullptr;
        double* dX = input_grads.mutable_data();
        const double* param_grads = nullptr;
        without_gil([&] { param_grads = replay_.backward(seeds, dX); });
        double* grad = arena().grad.data();
        for_runs([&](std::size_t e, NodeId id, std::size_t n) { add_into(grad + id, param_grads + e, n); });
        return input_grads;
    }

    // The training loop's two loops over parameters, as one native call each.
    void zero_grad() {
        double* grad = arena().grad.data();
        for_runs([&](std::size_t, NodeId id, std::size_t n) { std::fill_n(grad + id, n, 0.0); });
    }
    void sgd_step(double learning_rate) {
        Arena& graph = arena();
        double* data = graph.data.data();
        const double* grad = graph.grad.data();
        for_runs([&](std::size_t, NodeId id, std::size_t n) { sgd_update(data + id, grad + id, learning_rate, n); });
    }

    std::size_t n_inputs() const { return replay_.tape().n_inputs(); }
    std::size_t n_outputs() const { return replay_.tape().outputs.size(); }
    std::size_t n_lane_nodes() const { return replay_.tape().lane.n_ops(); }
    std::size_t n_invariant_nodes() const { return replay_.tape().invariant.n_ops(); }
    py::list externals() const {  // a new list: the caller may change it, ours never changes
        py::list list;
        for (const py::object& p : externals_) list.append(p);
        return list;
    }
    const std::string& device() const { return device_; }

private:
    // Refuses a second call while one runs in another thread (the GIL is released in sweeps).
    // The flag holds the fork generation of the process that set it, plus one (0: free): in a
    // child forked during a call, the thread that made it does not exist, so it counts as free.
    struct Busy {
        std::atomic<unsigned>& flag;
        explicit Busy(std::atomic<unsigned>& f) : flag(f) {
            const unsigned mine = fork_generation() + 1;
            unsigned seen = 0;
            while (!flag.compare_exchange_strong(seen, mine))
                if (seen == mine) throw std::runtime_error("this compiled function is already running in another thread");
        }
        ~Busy() { flag = 0; }
    };

    // The node of external e. externals_ never leaves this object (Python gets copies), so it
    // holds the Values recorded; the check keeps a broken invariant from becoming a wild access.
    NodeId external(std::size_t e) const {
        PyObject* p = externals_[e].ptr();
        if (!is_value(p) || value_node(p) >= arena().size())
            throw std::runtime_error("compiled function: parameter " + std::to_string(e) + " lost its node");
        return value_node(p);
    }

    // Every external's node, read from the Values again only after the arena was compacted
    // (which alone renumbers the nodes of live Values): reading thousands of scattered Python
    // objects costs more than a small replay, four times a training step.
    //
    // Kept as runs of consecutive nodes (a model's parameters are created one after another,
    // so its externals are a few long runs): the loops over them are then plain array loops.
    void refresh_runs() {
        Arena& graph = arena();
        if (runs_valid_ && ids_compactions_ == graph.compactions()) {
            if (ids_end_ > graph.size()) throw std::runtime_error("compiled function: a parameter lost its node");
            return;
        }
        runs_valid_ = false;
        runs_.clear();
        ids_end_ = 0;
        for (std::size_t e = 0; e < externals_.size(); ++e) {
            const NodeId id = external(e);
            if (!runs_.empty() && runs_.back().first_node + runs_.back().count == id)
                ++runs_.back().count;
            else
                runs_.push_back({e, id, 1});
            ids_end_ = std::max<std::size_t>(ids_end_, std::size_t(id) + 1);
        }
        ids_compactions_ = graph.compactions();
        runs_valid_ = true;
    }

    // f(first external, its node, count) for each run of externals on consecutive nodes.
    template <typename F>
    void for_runs(F f) {
        refresh_runs();
        for (const Run& run : runs_) f(run.first_external, run.first_node, run.count);
    }

    std::string device_;
    std::vector<py::object> externals_;  // the externals' Values, in slot order
    Replay replay_;                      // (initialised after externals_, which recording fills)
    struct Run {
        std::size_t first_external;
        NodeId first_node;
        std::size_t count;
    };
    std::vector<Run> runs_;              // the externals' nodes as of compaction ids_compactions_
    bool runs_valid_ = false;
    std::size_t ids_compactions_ = 0, ids_end_ = 0;  // (ids_end_: the highest id + 1)
    std::atomic<unsigned> busy_{0};
};

}  // namespace

void bind_replay(py::module_& m) {
    py::class_<PyReplay>(m, "Replay", "A recorded tape replayed over batches of inputs (arenagrad.compile's engine).")
        .def(py::init<py::handle, const py::list&, const py::list&, const std::string&>(), py::arg("fence"),
             py::arg("inputs"), py::arg("outputs"), py::arg("device") = "cpu",
             "Record the nodes built after `fence` that `outputs` need, with `inputs` as lane inputs.")
        .def("forward", &PyReplay::forward, py::arg("X"), "(batch, n_inputs) float64 -> (batch, n_outputs)")
        .def("backward", &PyReplay::backward, py::arg("seed") = py::none(),
             "Seeded gradients of the last forward: returns d/dX, adds the externals' grads into their .grad.")
        .def("zero_grad", &PyReplay::zero_grad, "Set .grad = 0 on every external.")
        .def("sgd_step", &PyReplay::sgd_step, py::arg("learning_rate"),
             "p.data -= learning_rate * p.grad for every external.")
        .def_property_readonly("n_inputs", &PyReplay::n_inputs)
        .def_property_readonly("n_outputs", &PyReplay::n_outputs)
        .def_property_readonly("n_lane_nodes", &PyReplay::n_lane_nodes)
        .def_property_readonly("n_invariant_nodes", &PyReplay::n_invariant_nodes)
        .def_property_readonly("externals", &PyReplay::externals, "The Values read as parameters (a new list).")
        .def_property_readonly("device", &PyReplay::device);
    py::module_::import("atexit").attr("register")(py::cpp_function(let_native_sections_finish));
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
