// What this build of the extension was compiled with, and the threads its native loops use.
#include <pybind11/pybind11.h>

#include <string>

#if defined(ARENAGRAD_WITH_OPENMP)
#include <omp.h>
#endif

namespace py = pybind11;

namespace arenagrad {

void bind_config(py::module_& m) {
#if defined(ARENAGRAD_WITH_OPENMP)
    m.attr("openmp") = true;
    m.def("get_num_threads", [] { return omp_get_max_threads(); }, "Threads native loops use (1 without OpenMP).");
#else
    m.attr("openmp") = false;
    m.def("get_num_threads", [] { return 1; }, "Threads native loops use (1 without OpenMP).");
#endif
    m.def(
        "set_num_threads",
        [](int n) {
            if (n < 1) throw py::value_error("set_num_threads: n must be >= 1, got " + std::to_string(n));
#if defined(ARENAGRAD_WITH_OPENMP)
            omp_set_num_threads(n);
#endif
        },
        py::arg("n"), "Set the number of threads native loops use (no effect without OpenMP).");
}

}  // namespace arenagrad
