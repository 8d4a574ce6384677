// Stand-in for cuda/elementwise.cu in builds without CUDA: reports that, and refuses to run.
#include <stdexcept>

#include "cuda/elementwise.hpp"

namespace arenagrad {
namespace cuda {

bool compiled() { return false; }

int device_count(std::string& why) {
    why = "arenagrad was built without CUDA";
    return 0;
}

std::unique_ptr<LaneReplay> make_lane_replay(const Tape&) {
    throw std::runtime_error("arenagrad was built without CUDA (rebuild with a CUDA toolkit and ARENAGRAD_CUDA=ON)");
}

}  // namespace cuda
}  // namespace arenagrad
