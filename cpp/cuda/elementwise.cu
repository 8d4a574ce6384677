// The lane part of a replay on a CUDA device: one thread per lane, walking the tape through
// the same functions as the CPU (replay.hpp, over ops.hpp's op table). This file adds only the
// kernels, the transfers, and the lane-sum of the shared (parameter) gradients; the invariant
// part's forward runs on the host (replay_driver.hpp), as for the CPU, and its backward here,
// per lane, before the lane-sum.
//
// Layout: node-major, row s holds slot s of every lane, so when the threads of a warp all
// read slot s they read neighbouring addresses (coalesced).
#include <cuda_runtime.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>

#include "../replay.hpp"
#include "elementwise.hpp"

namespace arenagrad {
namespace cuda {
namespace {

constexpr unsigned kThreads = 128;     // lanes per block in the sweeps
constexpr unsigned kSumThreads = 256;  // threads per shared slot in the lane-sum

// A CUDA version number (1000 * major + 10 * minor) as "major.minor".
std::string version_text(int version) { return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10); }

// What a CUDA error means, in words a user can act on. Without any driver the runtime reports
// cudaErrorInsufficientDriver ("CUDA driver version is insufficient for CUDA runtime version")
// as for a driver that is too old; cudaDriverGetVersion tells the two apart (0: no driver).
std::string describe(cudaError_t status) {
    if (status == cudaErrorInsufficientDriver) {
        int driver = 0;
        if (cudaDriverGetVersion(&driver) != cudaSuccess || driver == 0)
            return "no NVIDIA driver found: the CUDA driver library (libcuda) could not be loaded";
        return "the NVIDIA driver is too old: it supports CUDA " + version_text(driver) +
               ", and arenagrad was built with CUDA " + version_text(CUDART_VERSION);
    }
    if (status == cudaErrorNoDevice) return "no CUDA device found";
    return cudaGetErrorString(status);
}

void check(cudaError_t status, const char* what) {
    if (status != cudaSuccess) throw std::runtime_error(std::string("CUDA error in ") + what + ": " + describe(status));
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

// Shared gradients stay per lane (row s, column lane) until lane_sum_kernel adds them up; the
// rows of invariant ops are also what backward_shared reads.
struct LaneSink {
    double* grads;
    std::size_t stride;
    __device__ void add(std::uint32_t slot, const double* c, unsigned) { grads[slot * stride] += c[0]; }
    __device__ void add_products(std::uint32_t slot, const double* a, const double* b, unsigned) {
        grads[slot * stride] += a[0] * b[0];
    }
    __device__ const double* row(std::uint32_t slot) const { return grads + slot * stride; }
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

__global__ void backward_kernel(TapeView t, TapeView inv, double* val, double* grad, const double* shared,
                                double* shared_lane_grads, const double* seed, double* input_grads,
                                const std::uint32_t* outputs, std::uint32_t m, std::size_t batch) {
    const std::size_t lane = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x;
    if (lane >= batch) return;
    const Lanes x{val + lane, grad + lane, batch, 1, shared};
    LaneSink sink{shared_lane_grads + lane, batch};
    for (std::uint32_t s = 0; s < t.n_slots; ++s) x.grad[s * batch] = 0.0;
    for (std::uint32_t s = 0; s < inv.n_slots; ++s) sink.grads[s * batch] = 0.0;
    for (std::uint32_t j = 0; j < m; ++j) {
        const double c[1] = {seed != nullptr ? seed[lane * m + j] : 1.0};
        accumulate(x, sink, outputs[j], c);
    }
    backward_sweep<1>(t, x, sink);
    backward_shared<1>(inv, shared, sink, 1);
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

class CudaLaneReplay final : public LaneReplay {
public:
    // A tape never changes once recorded: it is uploaded once, here.
    explicit CudaLaneReplay(const Tape& tape) : tape_(tape) {
        op_.upload(tape.lane.op.data(), tape.lane.op.size());
        a_.upload(tape.lane.a.data(), tape.lane.a.size());
        b_.upload(tape.lane.b.data(), tape.lane.b.size());
        nary_.upload(tape.lane.nary.data(), tape.lane.nary.size());
        inv_op_.upload(tape.invariant.op.data(), tape.invariant.op.size());
        inv_a_.upload(tape.invariant.a.data(), tape.invariant.a.size());
        inv_b_.upload(tape.invariant.b.data(), tape.invariant.b.size());
        inv_nary_.upload(tape.invariant.nary.data(), tape.invariant.nary.size());
        outputs_.upload(tape.outputs.data(), tape.outputs.size());
    }

    void forward(const double* X, std::size_t batch, const double* shared, double* Y) override {
        const TapeView t = view();
        const std::uint32_t m = std::uint32_t(tape_.outputs.size());
        batch_ = batch;
        shared_.upload(shared, tape_.invariant.n_slots());
        values_.reserve(std::size_t(t.n_slots) * batch);
        X_.upload(X, batch * t.n_in);
        Y_.reserve(batch * m);
        if (batch > 0) {
            forward_kernel<<<blocks_for(batch), kThreads>>>(t, values_.p, shared_.p, X_.p, Y_.p, outputs_.p, m, batch);
            check(cudaGetLastError(), "forward kernel launch");
        }
        Y_.download(Y, batch * m);
    }

    void backward(const double* seed, double* input_grads, double* shared_grads) override {
        const TapeView t = view();
        const std::uint32_t m = std::uint32_t(tape_.outputs.size());
        const std::uint32_t n_shared = tape_.invariant.n_slots();
        const std::size_t batch = batch_;
        grads_.reserve(std::size_t(t.n_slots) * batch);
        shared_lane_grads_.reserve(std::size_t(n_shared) * batch);
        shared_grads_.reserve(n_shared);
        input_grads_.reserve(batch * t.n_in);
        if (seed != nullptr) seed_.upload(seed, batch * m);
        std::fill_n(shared_grads, n_shared, 0.0);
        if (batch > 0) {
            backward_kernel<<<blocks_for(batch), kThreads>>>(t, invariant_view(), values_.p, grads_.p, shared_.p,
                                                             shared_lane_grads_.p, seed != nullptr ? seed_.p : nullptr,
                                                             input_grads_.p, outputs_.p, m, batch);
            check(cudaGetLastError(), "backward kernel launch");
            if (n_shared > 0) {
                lane_sum_kernel<<<n_shared, kSumThreads>>>(shared_lane_grads_.p, batch, shared_grads_.p);
                check(cudaGetLastError(), "lane-sum kernel launch");
                shared_grads_.download(shared_grads, n_shared);
            }
        }
        input_grads_.download(input_grads, batch * t.n_in);
        check(cudaDeviceSynchronize(), "backward");
    }

private:
    const Tape& tape_;
    DeviceArray<Op> op_;
    DeviceArray<std::uint32_t> a_, b_, nary_, outputs_;
    DeviceArray<Op> inv_op_;
    DeviceArray<std::uint32_t> inv_a_, inv_b_, inv_nary_;
    DeviceArray<double> values_, grads_, shared_, shared_lane_grads_, shared_grads_, X_, Y_, seed_, input_grads_;
    std::size_t batch_ = 0;

    TapeView view() const { return TapeView{tape_.lane.n_in, tape_.lane.n_slots(), op_.p, a_.p, b_.p, nary_.p}; }
    TapeView invariant_view() const {
        return TapeView{tape_.invariant.n_in, tape_.invariant.n_slots(), inv_op_.p, inv_a_.p, inv_b_.p, inv_nary_.p};
    }
};

}  // namespace

bool compiled() { return true; }

int device_count(std::string& why) {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        cudaGetLastError();  // clear it, so later calls do not report it again
        why = describe(status);
        return 0;
    }
    if (count == 0) why = "no CUDA device found";
    return count;
}

std::unique_ptr<LaneReplay> make_lane_replay(const Tape& tape) { return std::make_unique<CudaLaneReplay>(tape); }

}  // namespace cuda
}  // namespace arenagrad
