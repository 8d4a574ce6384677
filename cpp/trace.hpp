// What the native side knows while arenagrad.compile traces a function.
//
// compile() opens a trace with the fence Value (everything created after it is the traced
// graph) and the number of placeholder inputs (created right after the fence). While it is
// open:
//  * take() notes each index that lives above the fence: in a replay such an index may differ
//    from lane to lane, so compile() adds it to the tape's outputs and checks every lane's
//    index after each forward (a selection that chose nothing would otherwise be a silent nan);
//  * reading a number out of a Value that the inputs or the parameters flow into (its .data,
//    float(), item(), bool(), a comparison) raises: the number is the placeholders' one, and
//    Python code that used it would be frozen into the tape, the same for every lane.
#pragma once

#include <Python.h>

#include <cstddef>

namespace arenagrad {

// Whether a trace is open in this thread (set by _core._trace_begin, cleared by
// _core._trace_end). Per thread: another thread building and reading Values meanwhile is not
// tracing.
inline thread_local bool trace_open = false;

// How many threads have a trace open (changed under the GIL). Reading a thread_local from a
// shared library is a call; this plain counter lets every op skip that call when no thread
// traces, which is almost always.
inline int threads_tracing = 0;

// Whether a trace is open in this thread.
inline bool tracing() { return threads_tracing > 0 && trace_open; }

// Appends (index, count) to the open trace's list when `index` (a Value) was created above
// its fence; does nothing when no trace is open. 0, or -1 with a Python error.
int note_take_index(PyObject* index, std::size_t count);

// Whether `index` (a Value) is part of the open trace's graph (created above its fence).
bool traced(PyObject* value);

// Refuses, with RuntimeError explaining what to write instead, to read `what` (".data",
// "float()", ...) of Value `value` while a trace is open, if the inputs or the parameters flow
// into it. 0 when the read is fine (no trace open, a parameter, a constant).
int refuse_traced_read(PyObject* value, const char* what);

inline int check_read(PyObject* value, const char* what) {
    return tracing() ? refuse_traced_read(value, what) : 0;
}

}  // namespace arenagrad
