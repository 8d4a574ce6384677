// Build configuration and threading: what this build of the extension was compiled with.
#pragma once

#include <pybind11/pybind11.h>

#if defined(ARENAGRAD_WITH_OPENMP)
#include <omp.h>
#endif

namespace arenagrad {

inline bool openmp_enabled() {
#if defined(ARENAGRAD_WITH_OPENMP)
    return true;
#else
    return false;
#endif
}

inline int max_threads() {
#if defined(ARENAGRAD_WITH_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
}

inline void bind_config(pybind11::module_& m) {
    namespace py = pybind11;
    m.attr("openmp") = openmp_enabled();
    m.def("get_num_threads", &max_threads, "Threads native loops use (1 without OpenMP).");
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
