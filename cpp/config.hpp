// The threads native loops may use, and what becomes of them across fork().
//
// OpenMP's thread pool (libgomp's) does not survive fork(): a child inherits the pool's
// bookkeeping but not its threads, and its first parallel loop waits for them forever. So
// the pool of the thread that forks is shut down just before each fork (it restarts on the
// next parallel loop), and a child forked while another thread was replaying, whose
// OpenMP team may have been half-way through a loop, runs its loops on one thread.
// (bind_config.cpp registers the fork handlers and defines these functions.)
#pragma once

#include <atomic>

namespace arenagrad {

// How many threads a parallel loop may use now: set_num_threads's count, or 1 in a child
// forked while OpenMP threads may have been busy (and 1 without OpenMP).
int usable_threads();

// The number of forks between the process that imported arenagrad and this one (0 there).
// A flag stamped with an older generation was set by a thread that does not exist here.
unsigned fork_generation();

// Native work running with the GIL released, process-wide: a fork from Python always
// happens with the GIL held, so other threads' OpenMP loops are in flight exactly when
// this is > 0. Reset to 0 in a forked child (those threads were not copied).
extern std::atomic<int> native_sections_running;

}  // namespace arenagrad
