// Stand-in for cuda/elementwise.cu in builds without CUDA: reports that, and refuses to run.
#include <stdexcept>

#include "cuda/elementwise.hpp"

namespace arenagrad {
namespace cuda {

namespace {
[[noreturn]] void unavailable() {
    throw std::runtime_error("arenagrad was built without CUDA (rebuild with a CUDA toolkit and ARENAGRAD_CUDA=ON)");
}
}  // namespace

bool compiled() { return false; }

int device_count(std::string& why) {
    why = "arenagrad was built without CUDA";
    return 0;
}

struct Replay::State {};
Replay::Replay() : state_(nullptr) {}
Replay::~Replay() = default;
void Replay::forward(const Tape&, const double*, std::size_t, const std::vector<double>&, double*) { unavailable(); }
void Replay::backward(const Tape&, const double*, double*, std::vector<double>&) { unavailable(); }

}  // namespace cuda
}  // namespace arenagrad
