// CUDA replay of a tape's lane part: one thread per lane, walking the tape through the same
// functions as the CPU (replay.hpp, over ops.hpp's op table). This file adds only the
// kernels, the transfers, and the lane-sum of the shared (parameter) gradients.
//
// Layout: node-major, row s holds slot s of every lane, so when the threads of a warp all
// read slot s they read neighbouring addresses (coalesced).
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "../replay.hpp"
#include "elementwise.hpp"

namespace arenagrad {
namespace cuda {
namespace {

constexpr unsigned kThreads = 128;     // lanes per block in the sweeps
constexpr unsigned kSumThreads = 256;  // threads per shared slot in the lane-sum

void check(cudaError_t status, const char* what) {
    if (status != cudaSuccess) throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(status));
}

// A device buffer that only grows.
template <typename T>
struct DeviceArray {
    T* p = nullptr;
    std::size_t capacity = 0;

    DeviceArray() = default;
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;
    ~DeviceArray() { release(); }

    void release() {
        if (p != nullptr) cudaFree(p);
        p = nullptr;
        capacity = 0;
    }
    T* reserve(std::size_t n) {
        if (n > capacity) {
            release();
            check(cudaMalloc(reinterpret_cast<void**>(&p), (n > 0 ? n : 1) * sizeof(T)), "cudaMalloc");
            capacity = n;
        }
        return p;
    }
    T* upload(const T* host, std::size_t n) {
        reserve(n);
        if (n > 0) check(cudaMemcpy(p, host, n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy to device");
        return p;
    }
    void download(T* host, std::size_t n) const {
        if (n > 0) check(cudaMemcpy(host, p, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy to host");
    }
};

// Shared gradients stay per lane (row s, column lane) until lane_sum_kernel adds them up.
struct LaneSink {
    double* grads;
    std::size_t stride;
    __device__ void add(std::uint32_t slot, const double* c, unsigned) { grads[slot * stride] += c[0]; }
    __device__ void add_products(std::uint32_t slot, const double* a, const double* b, unsigned) {
        grads[slot * stride] += a[0] * b[0];
    }
};

__global__ void forward_kernel(TapeView t, double* val, const double* shared, const double* X, double* Y,
                               const std::uint32_t* outputs, std::uint32_t m, std::size_t batch) {
    const std::size_t lane = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x;
    if (lane >= batch) return;
    const Lanes x{val + lane, nullptr, batch, 1, shared};
    for (std::uint32_t i = 0; i < t.n_in; ++i) x.val[i * batch] = X[lane * t.n_in + i];
    forward_sweep(t, x);
    for (std::uint32_t j = 0; j < m; ++j) Y[lane * m + j] = operand(x, outputs[j]).p[0];
}

__global__ void backward_kernel(TapeView t, double* val, double* grad, const double* shared, double* shared_lane_grads,
                                std::uint32_t n_shared, const double* seed, double* input_grads,
                                const std::uint32_t* outputs, std::uint32_t m, std::size_t batch) {
    const std::size_t lane = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x;
    if (lane >= batch) return;
    const Lanes x{val + lane, grad + lane, batch, 1, shared};
    LaneSink sink{shared_lane_grads + lane, batch};
    for (std::uint32_t s = 0; s < t.n_slots; ++s) x.grad[s * batch] = 0.0;
    for (std::uint32_t s = 0; s < n_shared; ++s) sink.grads[s * batch] = 0.0;
    for (std::uint32_t j = 0; j < m; ++j) {
        const double c[1] = {seed != nullptr ? seed[lane * m + j] : 1.0};
        accumulate(x, sink, outputs[j], c);
    }
    backward_sweep<1>(t, x, sink);
    for (std::uint32_t i = 0; i < t.n_in; ++i) input_grads[lane * t.n_in + i] = x.grad[i * batch];
}

// One block per shared slot: thread j sums lanes j, j + 256, ... in order, then a fixed tree,
// so the result depends only on the batch size.
__global__ void lane_sum_kernel(const double* lane_grads, std::size_t batch, double* out) {
    __shared__ double part[kSumThreads];
    const double* row = lane_grads + blockIdx.x * batch;
    double acc = 0.0;
    for (std::size_t l = threadIdx.x; l < batch; l += kSumThreads) acc += row[l];
    part[threadIdx.x] = acc;
    __syncthreads();
    for (unsigned width = kSumThreads / 2; width > 0; width /= 2) {
        if (threadIdx.x < width) part[threadIdx.x] += part[threadIdx.x + width];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = part[0];
}

unsigned blocks_for(std::size_t lanes) { return unsigned((lanes + kThreads - 1) / kThreads); }

}  // namespace

bool compiled() { return true; }

int device_count(std::string& why) {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        cudaGetLastError();  // clear it, so later calls do not report it again
        why = cudaGetErrorString(status);
        return 0;
    }
    if (count == 0) why = "no CUDA device found";
    return count;
}

struct Replay::State {
    const Tape* uploaded = nullptr;  // a tape never changes once recorded: upload it once
    DeviceArray<Op> op;
    DeviceArray<std::uint32_t> a, b, nary, outputs;
    DeviceArray<double> values, grads, shared, shared_lane_grads, shared_grads, X, Y, seed, input_grads;
    std::size_t batch = 0;

    TapeView view(const Tape& tape) {
        if (uploaded != &tape) {
            op.upload(tape.lane.op.data(), tape.lane.op.size());
            a.upload(tape.lane.a.data(), tape.lane.a.size());
            b.upload(tape.lane.b.data(), tape.lane.b.size());
            nary.upload(tape.lane.nary.data(), tape.lane.nary.size());
            outputs.upload(tape.outputs.data(), tape.outputs.size());
            uploaded = &tape;
        }
        return TapeView{tape.lane.n_in, tape.lane.n_slots(), op.p, a.p, b.p, nary.p};
    }
};

Replay::Replay() : state_(new State()) {}
Replay::~Replay() { delete state_; }

void Replay::forward(const Tape& tape, const double* X, std::size_t batch, const std::vector<double>& shared, double* Y) {
    State& s = *state_;
    const TapeView t = s.view(tape);
    const std::uint32_t m = std::uint32_t(tape.outputs.size());
    s.batch = batch;
    s.shared.upload(shared.data(), shared.size());
    s.values.reserve(std::size_t(t.n_slots) * batch);
    s.X.upload(X, batch * t.n_in);
    s.Y.reserve(batch * m);
    if (batch > 0) {
        forward_kernel<<<blocks_for(batch), kThreads>>>(t, s.values.p, s.shared.p, s.X.p, s.Y.p, s.outputs.p, m, batch);
        check(cudaGetLastError(), "forward kernel launch");
    }
    s.Y.download(Y, batch * m);
}

void Replay::backward(const Tape& tape, const double* seed, double* input_grads, std::vector<double>& shared_grads) {
    State& s = *state_;
    const TapeView t = s.view(tape);
    const std::uint32_t m = std::uint32_t(tape.outputs.size());
    const std::uint32_t n_shared = tape.invariant.n_slots();
    const std::size_t batch = s.batch;
    s.grads.reserve(std::size_t(t.n_slots) * batch);
    s.shared_lane_grads.reserve(std::size_t(n_shared) * batch);
    s.shared_grads.reserve(n_shared);
    s.input_grads.reserve(batch * t.n_in);
    if (seed != nullptr) s.seed.upload(seed, batch * m);
    shared_grads.assign(n_shared, 0.0);
    if (batch > 0) {
        backward_kernel<<<blocks_for(batch), kThreads>>>(t, s.values.p, s.grads.p, s.shared.p, s.shared_lane_grads.p,
                                                         n_shared, seed != nullptr ? s.seed.p : nullptr,
                                                         s.input_grads.p, s.outputs.p, m, batch);
        check(cudaGetLastError(), "backward kernel launch");
        if (n_shared > 0) {
            lane_sum_kernel<<<n_shared, kSumThreads>>>(s.shared_lane_grads.p, batch, s.shared_grads.p);
            check(cudaGetLastError(), "lane-sum kernel launch");
            s.shared_grads.download(shared_grads.data(), n_shared);
        }
    }
    s.input_grads.download(input_grads, batch * t.n_in);
    check(cudaDeviceSynchronize(), "backward");
}

}  // namespace cuda
}  // namespace arenagrad
