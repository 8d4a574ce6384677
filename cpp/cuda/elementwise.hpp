// Host entry points of the CUDA replay (cuda/elementwise.cu), or of its stand-in
// (cuda_stub.cpp) in builds without CUDA: the rest of the module calls only these.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "../tape.hpp"

namespace arenagrad {
namespace cuda {

// Whether this build has the CUDA kernels.
bool compiled();

// The number of usable CUDA devices; when it is 0, `why` says why (no driver, no device, ...).
int device_count(std::string& why);

// The lane part of a tape replayed on the current CUDA device. Keeps the lanes' values on
// the device between forward and backward. Throws std::runtime_error on any CUDA error.
class Replay {
public:
    Replay();
    ~Replay();
    Replay(const Replay&) = delete;
    Replay& operator=(const Replay&) = delete;

    // As CpuReplay::forward/backward (replay_cpu.hpp); all pointers are host memory.
    void forward(const Tape& tape, const double* X, std::size_t batch, const std::vector<double>& shared, double* Y);
    void backward(const Tape& tape, const double* seed, double* input_grads, std::vector<double>& shared_grads);

private:
    struct State;
    State* state_;
};

}  // namespace cuda
}  // namespace arenagrad
