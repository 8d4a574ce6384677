// Host entry points of the CUDA lane replay (cuda/elementwise.cu), or of its stand-in
// (cuda_stub.cpp) in builds without CUDA: the rest of the module calls only these.
#pragma once

#include <memory>
#include <string>

#include "../replay_driver.hpp"

namespace arenagrad {
namespace cuda {

// Whether this build has the CUDA kernels.
bool compiled();

// The number of usable CUDA devices; when it is 0, `why` says why (no driver, no device, ...).
int device_count(std::string& why);

// The lane part of `tape` replayed on the current CUDA device, one thread per lane; the lanes'
// values stay on the device between forward and backward. Throws std::runtime_error on any
// CUDA error (without a usable device: at the first allocation, which uploads the tape).
std::unique_ptr<LaneReplay> make_lane_replay(const Tape& tape);

}  // namespace cuda
}  // namespace arenagrad
