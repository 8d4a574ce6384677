// The lane part of a replay on the CPU: lanes in tiles of up to 64, tiles split over OpenMP
// threads.
//
// Why tiles: a tile's rows (every slot of 64 lanes) stay in L2 while the walk sweeps the
// tape, and the inner loops run over 64 neighbouring lanes, which the compiler vectorises.
// The tiling is fixed by the batch size alone; threads take contiguous runs of tiles. Each
// tile sums its lanes' contributions to the shared (invariant) gradients in a fixed order, and
// the tiles' sums are added in tile order, so results are bit-identical for any thread count.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#if defined(ARENAGRAD_WITH_OPENMP)
#include <omp.h>
#endif

#include "config.hpp"
#include "replay.hpp"
#include "replay_driver.hpp"
#include "tape.hpp"

// Hot loops are compiled for several instruction sets and picked at load time, so a portable
// wheel still uses AVX2/AVX-512 where the CPU has them. -ffp-contract=off keeps every clone's
// rounding identical (no fused multiply-add), hence results do not depend on the CPU.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(ARENAGRAD_NO_TARGET_CLONES)
#define AG_HOT __attribute__((target_clones("avx512f", "avx2", "default"), flatten))
#else
#define AG_HOT
#endif

namespace arenagrad {

constexpr unsigned kTileLanes = 256;

// A thread is worth starting for at least this many node-lanes (~20-50 us of work): below it,
// waking and joining threads costs more than it saves (and far more on a busy machine).
constexpr std::size_t kMinNodeLanesPerThread = 32768;

// Sums a tile's per-lane contributions to a shared gradient (c[l], or a[l] * b[l]): 8 running
// sums combined pairwise, an order that depends only on the number of lanes. Written with
// vector types because the compiler does not vectorise a reduction by itself (it may not
// reorder floating-point sums; here the order is ours, and fixed).
#if defined(__GNUC__)
typedef double Sums4 __attribute__((vector_size(32)));

template <bool Products>
inline double lane_sum(const double* a, const double* b, unsigned n) {
    Sums4 lo = {0, 0, 0, 0}, hi = {0, 0, 0, 0};
    unsigned l = 0;
    for (; l + 8 <= n; l += 8) {
        Sums4 a0, a1;
        std::memcpy(&a0, a + l, sizeof a0);
        std::memcpy(&a1, a + l + 4, sizeof a1);
        if (Products) {
            Sums4 b0, b1;
            std::memcpy(&b0, b + l, sizeof b0);
            std::memcpy(&b1, b + l + 4, sizeof b1);
            a0 = a0 * b0;
            a1 = a1 * b1;
        }
        lo += a0;
        hi += a1;
    }
    double s[8] = {lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]};
#else
template <bool Products>
inline double lane_sum(const double* a, const double* b, unsigned n) {
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    unsigned l = 0;
    for (; l + 8 <= n; l += 8)
        for (unsigned j = 0; j < 8; ++j) s[j] += Products ? a[l + j] * b[l + j] : a[l + j];
#endif
    for (unsigned j = 0; l < n; ++l, ++j) s[j] += Products ? a[l] * b[l] : a[l];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// A tile's sink: an invariant leaf's contributions are summed over the tile's lanes on
// arrival (partial, one number per invariant slot); an invariant op's stay per lane, in its row
// of `rows`, for backward_shared to carry on.
struct TileSink {
    double* partial;        // this tile's sum per invariant slot
    double* rows;           // gradient rows of the invariant ops, `stride` apart
    std::size_t stride;
    std::uint32_t first_op;  // invariant slots [0, first_op) are leaves, the rest ops

    double* row(std::uint32_t slot) const { return rows + std::size_t(slot - first_op) * stride; }
    void add(std::uint32_t slot, const double* c, unsigned n) {
        if (slot < first_op) {
            partial[slot] += lane_sum<false>(c, c, n);
        } else {
            double* r = row(slot);
            for (unsigned l = 0; l < n; ++l) r[l] += c[l];
        }
    }
    void add_products(std::uint32_t slot, const double* a, const double* b, unsigned n) {
        if (slot < first_op) {
            partial[slot] += lane_sum<true>(a, b, n);
        } else {
            double* r = row(slot);
            for (unsigned l = 0; l < n; ++l) r[l] += a[l] * b[l];
        }
    }
};

// The lanes of every tile but the last: all of a small batch (below one vector of 8 lanes),
// else the batch rounded up to whole vectors, at most kTileLanes. It depends on the batch
// alone, which fixes the order of the lane sums: results do not depend on the thread count.
inline unsigned tile_width(std::size_t batch) {
    if (batch < 8) return unsigned(std::max<std::size_t>(batch, 1));
    return unsigned(std::min<std::size_t>(kTileLanes, (batch + 7) / 8 * 8));
}

// The walks over one tile, compiled for each instruction set (AG_HOT).
AG_HOT inline void forward_tile(const TapeView& t, const Lanes& x) { forward_sweep(t, x); }
AG_HOT inline void backward_tile(const TapeView& t, const TapeView& inv, const Lanes& x, TileSink& sink) {
    backward_sweep<kTileLanes>(t, x, sink);
    if (inv.n_slots > inv.n_in) backward_shared<kTileLanes>(inv, x.inv, sink, x.n);
}

class CpuLaneReplay final : public LaneReplay {
public:
    explicit CpuLaneReplay(const Tape& tape) : tape_(tape) {}

    void forward(const double* X, std::size_t batch, const double* shared, double* Y) override {
        shared_ = shared;
        width_ = tile_width(batch);
        tiles_ = (batch + width_ - 1) / width_;
        const TapeView lane = tape_.lane.view();
        const std::size_t tile_size = std::size_t(lane.n_slots) * width_;
        values_.resize(tiles_ * tile_size);
        const std::uint32_t k = lane.n_in, m = std::uint32_t(tape_.outputs.size());
        const std::int64_t tiles = std::int64_t(tiles_);
        [[maybe_unused]] const int threads = threads_for(lane, batch);  // read only by OpenMP
#if defined(ARENAGRAD_WITH_OPENMP)
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
#endif
        for (std::int64_t tile = 0; tile < tiles; ++tile) {
            const std::size_t first = std::size_t(tile) * width_;
            const Lanes x = block(values_.data() + std::size_t(tile) * tile_size, nullptr, first, batch);
            for (std::uint32_t i = 0; i < k; ++i)
                for (unsigned l = 0; l < x.n; ++l) x.val[i * x.stride + l] = X[(first + l) * k + i];
            forward_tile(lane, x);
            for (std::uint32_t j = 0; j < m; ++j) {
                const Operand out = operand(x, tape_.outputs[j]);
                for (unsigned l = 0; l < x.n; ++l) Y[(first + l) * m + j] = out.p[out.lane ? l : 0];
            }
        }
        batch_ = batch;
    }

    void backward(const double* seed, double* input_grads, double* shared_grads) override {
        const TapeView lane = tape_.lane.view(), inv = tape_.invariant.view();
        const std::size_t tile_size = std::size_t(lane.n_slots) * width_;
        const std::size_t n_shared = inv.n_slots;
        // per tile: the lane slots' gradient rows, then the invariant ops' (see TileSink)
        const std::size_t grads_size = std::size_t(lane.n_slots + inv.n_slots - inv.n_in) * width_;
        partial_.assign(tiles_ * n_shared, 0.0);
        const int threads = threads_for(lane, batch_);
        scratch_.resize(std::size_t(threads));
        for (auto& grads : scratch_) grads.resize(grads_size);
        const std::uint32_t k = lane.n_in, m = std::uint32_t(tape_.outputs.size());
        const std::int64_t tiles = std::int64_t(tiles_);
        const std::size_t batch = batch_;
#if defined(ARENAGRAD_WITH_OPENMP)
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1)
#endif
        for (std::int64_t tile = 0; tile < tiles; ++tile) {
            int me = 0;
#if defined(ARENAGRAD_WITH_OPENMP)
            me = omp_get_thread_num();
#endif
            std::vector<double>& grads = scratch_[std::size_t(me)];
            std::fill(grads.begin(), grads.end(), 0.0);
            const std::size_t first = std::size_t(tile) * width_;
            const Lanes x = block(values_.data() + std::size_t(tile) * tile_size, grads.data(), first, batch);
            TileSink sink{partial_.data() + std::size_t(tile) * n_shared, grads.data() + tile_size, width_, inv.n_in};
            double c[kTileLanes];
            for (std::uint32_t j = 0; j < m; ++j) {
                for (unsigned l = 0; l < x.n; ++l) c[l] = seed != nullptr ? seed[(first + l) * m + j] : 1.0;
                accumulate(x, sink, tape_.outputs[j], c);
            }
            backward_tile(lane, inv, x, sink);
            for (std::uint32_t i = 0; i < k; ++i)
                for (unsigned l = 0; l < x.n; ++l) input_grads[(first + l) * k + i] = x.grad[i * x.stride + l];
        }
        // The tiles' sums, added in tile order.
        std::fill_n(shared_grads, n_shared, 0.0);
        for (std::size_t tile = 0; tile < tiles_; ++tile) {
            const double* p = partial_.data() + tile * n_shared;
            for (std::size_t s = 0; s < n_shared; ++s) shared_grads[s] += p[s];
        }
    }

private:
    const Tape& tape_;
    std::size_t batch_ = 0, tiles_ = 0;
    unsigned width_ = 1;
    const double* shared_ = nullptr;             // the invariant values of the last forward
    std::vector<double> values_;                 // lane part: [tile][slot][lane in tile]
    std::vector<double> partial_;                // [tile][invariant slot]
    std::vector<std::vector<double>> scratch_;   // per thread: a tile's gradient rows

    // Threads for a sweep: as many as allowed, but not more than tiles or than the work
    // pays for. (Which thread runs a tile never changes the results.)
    int threads_for(const TapeView& lane, std::size_t batch) const {
        int threads = 1;
#if defined(ARENAGRAD_WITH_OPENMP)
        const std::size_t work = std::size_t(lane.n_slots) * batch / kMinNodeLanesPerThread;
        threads =
            int(std::min<std::size_t>({std::size_t(usable_threads()), tiles_, std::max<std::size_t>(work, 1)}));
#else
        (void)lane;
        (void)batch;
#endif
        return threads;
    }

    Lanes block(double* values, double* grads, std::size_t first, std::size_t batch) const {
        const unsigned n = unsigned(std::min<std::size_t>(width_, batch - first));
        return Lanes{values, grads, width_, n, shared_};
    }
};

inline std::unique_ptr<LaneReplay> make_cpu_lane_replay(const Tape& tape) {
    return std::make_unique<CpuLaneReplay>(tape);
}

}  // namespace arenagrad
