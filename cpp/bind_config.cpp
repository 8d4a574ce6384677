// What this build of the extension was compiled with, and the threads its native loops use
// (config.hpp says what fork() does to them).
#include <pybind11/pybind11.h>

#include <climits>
#include <string>

#if defined(ARENAGRAD_WITH_OPENMP)
#include <omp.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define ARENAGRAD_HAS_FORK 1
#endif

#include "config.hpp"

namespace py = pybind11;

namespace arenagrad {

std::atomic<int> native_sections_running{0};

namespace {

unsigned generation = 0;
bool one_thread_after_fork = false;

#if defined(ARENAGRAD_HAS_FORK)
// omp_pause_resource_all (OpenMP 5.0) shuts down the calling thread's pool; libgomp has it
// since GCC 9 although it reports an older _OPENMP.
#if defined(ARENAGRAD_WITH_OPENMP) && (_OPENMP >= 201811 || (defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 9))
bool release_thread_pool() { return omp_pause_resource_all(omp_pause_soft) == 0; }
#else
bool release_thread_pool() { return false; }
#endif

bool pool_released = false;  // by the forking thread, just before the fork

void before_fork() { pool_released = release_thread_pool(); }

void in_child_after_fork() {
    ++generation;
    if (native_sections_running.load() > 0 || !pool_released) one_thread_after_fork = true;
    native_sections_running.store(0);
}
#endif

int requested_threads() {
#if defined(ARENAGRAD_WITH_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// set_num_threads(n): an int in [1, INT_MAX] (OpenMP counts threads in an int).
void set_num_threads(py::handle n) {
    if (PyBool_Check(n.ptr()) || !PyIndex_Check(n.ptr()))
        throw py::type_error(std::string("set_num_threads(n): n must be an int, not '") + Py_TYPE(n.ptr())->tp_name +
                             "'");
    auto number = py::reinterpret_steal<py::object>(PyNumber_Index(n.ptr()));
    if (!number) throw py::error_already_set();
    int overflow = 0;
    const long long count = PyLong_AsLongLongAndOverflow(number.ptr(), &overflow);
    if (count == -1 && PyErr_Occurred()) throw py::error_already_set();
    if (overflow != 0 || count < 1 || count > INT_MAX) {
        const std::string given = overflow != 0 ? "an int of " + py::str(number.attr("bit_length")()).cast<std::string>() + " bits"
                                                : std::to_string(count);
        throw py::value_error("set_num_threads(n): n must be between 1 and " + std::to_string(INT_MAX) + ", got " +
                              given);
    }
#if defined(ARENAGRAD_WITH_OPENMP)
    omp_set_num_threads(int(count));
#endif
}

}  // namespace

int usable_threads() { return one_thread_after_fork ? 1 : requested_threads(); }

unsigned fork_generation() { return generation; }

void bind_config(py::module_& m) {
#if defined(ARENAGRAD_HAS_FORK)
    static const bool fork_handlers = pthread_atfork(before_fork, nullptr, in_child_after_fork) == 0;
    if (!fork_handlers) throw std::runtime_error("arenagrad: could not register its fork handlers");
#endif
#if defined(ARENAGRAD_WITH_OPENMP)
    m.attr("openmp") = true;
#else
    m.attr("openmp") = false;
#endif
    m.def("get_num_threads", usable_threads,
          "Threads native loops use (1 without OpenMP, and in some forked children: see docs/robustness.md).");
    m.def("set_num_threads", set_num_threads, py::arg("n"),
          "Set the number of threads native loops use (no effect without OpenMP).");
}

}  // namespace arenagrad
