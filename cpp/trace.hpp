// What the native side knows while arenagrad.compile traces a function.
//
// compile() opens a trace with the fence Value (everything created after it is the traced
// graph) and the placeholder inputs. While it is open, take() notes each index that lives
// above the fence: in a replay such an index may differ from lane to lane, so compile() adds
// it to the tape's outputs and checks every lane's index after each forward (a selection
// that chose nothing would otherwise be a silent nan).
#pragma once

#include <Python.h>

#include <cstddef>

namespace arenagrad {

// Appends (index, count) to the open trace's list when `index` (a Value) was created above
// its fence; does nothing when no trace is open. 0, or -1 with a Python error.
int note_take_index(PyObject* index, std::size_t count);

}  // namespace arenagrad
