// The lane part of a replay on the CPU: lanes in tiles, tiles handed out to threads
// (replay_pool.hpp; set_num_threads sets how many).
//
// Why tiles: a tile's rows (every slot of its lanes) stay in L2 while the walk sweeps the
// tape, and the inner loops run over neighbouring lanes, which vectorise. The tile width is
// fixed by the batch size alone (tile_width); threads take tiles one at a time, so a thread
// that the OS descheduled delays only the tile it holds. Each tile sums its lanes'
// contributions to the shared (invariant) gradients in a fixed order, and the tiles' sums are
// added in tile order, so results are bit-identical for any thread count.
//
// The walk over a tile follows a plan (layers.hpp): the dense layers of the tape run as
// register-blocked kernels (layer_kernels.hpp), everything else node by node through the op
// table (replay.hpp). Both compute the same bits; ARENAGRAD_LAYER_KERNELS=0 in the environment
// (read when a function is compiled) turns the kernels off, to compare.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "config.hpp"
#include "layer_kernels.hpp"
#include "layers.hpp"
#include "replay.hpp"
#include "replay_driver.hpp"
#include "replay_pool.hpp"
#include "simd.hpp"
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

// The most lanes in a tile. Wide enough that a layer kernel's sums over a tile's lanes are
// long (each ends in a horizontal add); narrow enough that a tile of the demo's 64-wide model
// (~260 rows of values and as many of gradients) stays within L2.
constexpr unsigned kTileLanes = 256;

// A thread is worth starting for this much work, counted in operand-lanes (an n-ary node of
// 33 operands over 256 lanes is 8448): ~100-150 us. Below it, waking a helper and waiting for
// its tiles costs about what it saves (MLP 2-16-16-1, B = 1,024, ~0.7M: 2 threads measured no
// faster than 1 on a quiet machine), and more on a busy one.
constexpr std::size_t kMinWorkPerThread = std::size_t(1) << 20;

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

// A one-lane batch's sink: every invariant slot's gradient in one array, leaves and ops alike
// (the lane sum of one lane is its contribution).
struct OneLaneSink {
    double* grads;  // per invariant slot

    void add(std::uint32_t slot, const double* c, unsigned) { grads[slot] += c[0]; }
    void add_products(std::uint32_t slot, const double* a, const double* b, unsigned) { grads[slot] += a[0] * b[0]; }
};

// The lanes of every tile but the last: all of a small batch (below one vector of 8 lanes),
// else the batch rounded up to whole vectors, at most kTileLanes. It depends on the batch
// alone, which fixes the order of the lane sums: results do not depend on the thread count.
inline unsigned tile_width(std::size_t batch) {
    if (batch < 8) return unsigned(std::max<std::size_t>(batch, 1));
    return unsigned(std::min<std::size_t>(kTileLanes, (batch + 7) / 8 * 8));
}

// The distance between a tile's rows: its width, plus a vector of padding when that would
// make rows a multiple of 128 bytes apart. Rows a power of two apart all fall in the same few
// sets of the L1 cache, and a layer kernel reading 64 of them at one offset thrashes it (2x
// slower at 256 lanes); an odd number of 64-byte lines apart, they spread over every set.
inline unsigned row_stride(unsigned width) {
    if (width < 8) return width;
    return width / 8 % 2 == 0 ? width + 8 : width;
}

// The generic walks, compiled for each instruction set (AG_HOT).
AG_HOT inline void forward_slots(const TapeView& t, const Lanes& x, std::uint32_t first, std::uint32_t end) {
    forward_range(t, x, first, end);
}
AG_HOT inline void backward_slots(const TapeView& t, const Lanes& x, TileSink& sink, std::uint32_t first,
                                  std::uint32_t end) {
    backward_range<kTileLanes>(t, x, sink, first, end);
}
AG_HOT inline void backward_invariant(const TapeView& inv, const Lanes& x, TileSink& sink) {
    backward_shared<kTileLanes>(inv, x.inv, sink, x.n);
}

AG_HOT inline void backward_one(const TapeView& t, const Lanes& x, OneLaneSink& sink, std::uint32_t first,
                                std::uint32_t end) {
    backward_one_lane(t, OneLane<true>{x}, sink, first, end);
}

// f(tile, worker) for every tile in [0, tiles), on up to `threads` threads (replay_pool.hpp).
template <typename F>
void for_tiles(std::size_t tiles, int threads, F&& f) {
    using Body = std::remove_reference_t<F>;
    TilePool::instance().run(
        tiles, threads, [](void* body, std::size_t tile, int worker) noexcept { (*static_cast<Body*>(body))(tile, worker); },
        &f);
}

inline bool layer_kernels_enabled() {
    const char* flag = std::getenv("ARENAGRAD_LAYER_KERNELS");
    return flag == nullptr || std::strcmp(flag, "0") != 0;
}

class CpuLaneReplay final : public LaneReplay {
public:
    explicit CpuLaneReplay(const Tape& tape)
        : tape_(tape), plan_(layer_kernels_enabled() ? plan_lanes(tape) : LanePlan{}), kernels_(layer_kernels()) {
        const TapePart& lane = tape.lane;
        for (std::uint32_t i = lane.n_in; i < lane.n_slots(); ++i)
            work_per_lane_ += is_nary(lane.op[i]) ? lane.b[i] : 2;
        for (const Layer& layer : plan_.layers) scratch_size_ = std::max<std::size_t>(scratch_size_, std::size_t(layer.neurons) * (layer.inputs + 1));
        packed_.resize(plan_.layers.size());
        if (plan_.layers.empty()) plan_.steps = {PlanStep{lane.n_in, lane.n_slots(), -1}};
    }

    void forward(const double* X, std::size_t batch, const double* shared, double* Y) override {
        shared_ = shared;
        width_ = tile_width(batch);
        stride_ = row_stride(width_);
        tiles_ = (batch + width_ - 1) / width_;
        // The kernels work in whole vectors of 8 lanes, or on one lane.
        layers_ = (width_ >= 8 || batch == 1) && !plan_.layers.empty();
        if (layers_)
            for (std::size_t i = 0; i < plan_.layers.size(); ++i)
                if (batch > 1 || !plan_.layers[i].weight_matrix) kernels_.pack(plan_.layers[i], shared, packed_[i]);
        const TapeView lane = tape_.lane.view();
        const std::size_t tile_size = std::size_t(lane.n_slots) * stride_;
        values_.resize(tiles_ * tile_size);
        const std::uint32_t k = lane.n_in, m = std::uint32_t(tape_.outputs.size());
        for_tiles(tiles_, threads_for(batch), [&](std::size_t tile, int) {
            const std::size_t first = std::size_t(tile) * width_;
            const Lanes x = block(values_.data() + std::size_t(tile) * tile_size, nullptr, first, batch);
            for (std::uint32_t i = 0; i < k; ++i)
                for (unsigned l = 0; l < x.n; ++l) x.val[i * x.stride + l] = X[(first + l) * k + i];
            forward_tile(lane, x);
            for (std::uint32_t j = 0; j < m; ++j) {
                const Operand out = operand(x, tape_.outputs[j]);
                for (unsigned l = 0; l < x.n; ++l) Y[(first + l) * m + j] = out.p[out.lane ? l : 0];
            }
        });
        batch_ = batch;
    }

    void backward(const double* seed, double* input_grads, double* shared_grads) override {
        if (batch_ == 1) return backward_one_lane_batch(seed, input_grads, shared_grads);
        const TapeView lane = tape_.lane.view(), inv = tape_.invariant.view();
        const std::size_t tile_size = std::size_t(lane.n_slots) * stride_;
        const std::size_t n_shared = inv.n_slots;
        // per tile: the lane slots' gradient rows, then the invariant ops' (see TileSink)
        const std::size_t grads_size = std::size_t(lane.n_slots + inv.n_slots - inv.n_in) * stride_;
        // Each tile's sums of the shared gradients, added below in tile order. A single
        // tile's sums are the result itself: adding them to 0.0 changes none of them (a sum
        // that starts at +0.0 is never -0.0).
        // (Each tile's are zeroed by the thread that runs it, just before it adds to them.)
        const bool one_tile = tiles_ == 1;
        double* partials = shared_grads;
        if (!one_tile) {
            partial_.resize(tiles_ * n_shared);
            partials = partial_.data();
        }
        const int threads = threads_for(batch_);
        scratch_.resize(std::size_t(threads));
        for (auto& s : scratch_) {
            s.grads.resize(grads_size);
            s.layer.resize(scratch_size_);
        }
        const std::uint32_t k = lane.n_in, m = std::uint32_t(tape_.outputs.size());
        const std::size_t batch = batch_;
        for_tiles(tiles_, threads, [&](std::size_t tile, int worker) {
            Scratch& scratch = scratch_[std::size_t(worker)];
            const std::size_t first = std::size_t(tile) * width_;
            const Lanes x = block(values_.data() + std::size_t(tile) * tile_size, scratch.grads.data(), first, batch);
            if (layers_) {
                for (const auto& rows : plan_.zero_rows)
                    std::fill(x.grad + rows.first * x.stride, x.grad + rows.second * x.stride, 0.0);
            } else {
                std::fill(scratch.grads.begin(), scratch.grads.end(), 0.0);
            }
            std::fill_n(partials + std::size_t(tile) * n_shared, n_shared, 0.0);
            TileSink sink{partials + std::size_t(tile) * n_shared, x.grad + tile_size, stride_, inv.n_in};
            double c[kTileLanes];
            for (std::uint32_t j = 0; j < m; ++j) {
                for (unsigned l = 0; l < x.n; ++l) c[l] = seed != nullptr ? seed[(first + l) * m + j] : 1.0;
                accumulate(x, sink, tape_.outputs[j], c);
            }
            backward_tile(lane, inv, x, sink, scratch.layer.data());
            for (std::uint32_t i = 0; i < k; ++i)
                for (unsigned l = 0; l < x.n; ++l) input_grads[(first + l) * k + i] = x.grad[i * x.stride + l];
        });
        // The tiles' sums, added in tile order.
        if (one_tile) return;
        std::fill_n(shared_grads, n_shared, 0.0);
        for (std::size_t tile = 0; tile < tiles_; ++tile) {
            const double* p = partial_.data() + tile * n_shared;
            for (std::size_t s = 0; s < n_shared; ++s) shared_grads[s] += p[s];
        }
    }

private:
    struct Scratch {  // per thread
        AlignedDoubles grads;  // a tile's gradient rows
        std::vector<double> layer;  // a layer kernel's weight gradients over a tile
    };

    const Tape& tape_;
    LanePlan plan_;
    LayerKernels kernels_;
    std::vector<PackedLayer> packed_;            // per layer: its weights at the last forward
    std::size_t work_per_lane_ = 0, scratch_size_ = 0;
    std::size_t batch_ = 0, tiles_ = 0;
    unsigned width_ = 1, stride_ = 1;  // lanes per tile, distance between a tile's rows
    bool layers_ = false;                        // whether the last forward ran the layer kernels
    const double* shared_ = nullptr;             // the invariant values of the last forward
    AlignedDoubles values_;                      // lane part: [tile][slot][lane in tile]
    std::vector<double> partial_;                // [tile][invariant slot]
    std::vector<Scratch> scratch_;

    void forward_tile(const TapeView& lane, const Lanes& x) const {
        if (!layers_) return forward_slots(lane, x, lane.n_in, lane.n_slots);
        for (const PlanStep& step : plan_.steps) {
            if (step.layer < 0)
                forward_slots(lane, x, step.first, step.end);
            else if (x.stride == 1)
                kernels_.forward_one(plan_.layers[std::size_t(step.layer)], packed_[std::size_t(step.layer)], x);
            else
                kernels_.forward(plan_.layers[std::size_t(step.layer)], packed_[std::size_t(step.layer)], x);
        }
    }

    void backward_tile(const TapeView& lane, const TapeView& inv, const Lanes& x, TileSink& sink,
                       double* scratch) const {
        if (!layers_) {
            backward_slots(lane, x, sink, lane.n_in, lane.n_slots);
        } else {
            for (std::size_t s = plan_.steps.size(); s-- > 0;) {
                const PlanStep& step = plan_.steps[s];
                if (step.layer < 0)
                    backward_slots(lane, x, sink, step.first, step.end);
                else
                    kernels_.backward(plan_.layers[std::size_t(step.layer)], packed_[std::size_t(step.layer)], x,
                                      sink.partial, scratch);
            }
        }
        if (inv.n_slots > inv.n_in) backward_invariant(inv, x, sink);
    }

    // A batch of one lane: each invariant slot's gradient is one number, so the lane part's
    // contributions go straight into shared_grads (OneLaneSink) and the invariant part runs
    // backward as a one-lane block of its own. The same bits as the tiled path: there, a
    // leaf's one-lane sum starts at 0.0 and is added to a total that starts at 0.0, and an
    // op's row of one entry is this entry.
    void backward_one_lane_batch(const double* seed, double* input_grads, double* shared_grads) {
        const TapeView lane = tape_.lane.view(), inv = tape_.invariant.view();
        scratch_.resize(1);
        scratch_[0].layer.resize(scratch_size_);
        AlignedDoubles& grads = scratch_[0].grads;
        grads.assign(lane.n_slots, 0.0);
        std::fill_n(shared_grads, inv.n_slots, 0.0);
        const Lanes x = block(values_.data(), grads.data(), 0, 1);
        OneLaneSink sink{shared_grads};
        const std::uint32_t m = std::uint32_t(tape_.outputs.size());
        for (std::uint32_t j = 0; j < m; ++j) {
            const double c[1] = {seed != nullptr ? seed[j] : 1.0};
            accumulate(x, sink, tape_.outputs[j], c);
        }
        if (!layers_) {
            backward_one(lane, x, sink, lane.n_in, lane.n_slots);
        } else {
            for (std::size_t s = plan_.steps.size(); s-- > 0;) {
                const PlanStep& step = plan_.steps[s];
                if (step.layer < 0)
                    backward_one(lane, x, sink, step.first, step.end);
                else
                    kernels_.backward_one(plan_.layers[std::size_t(step.layer)], packed_[std::size_t(step.layer)], x,
                                          shared_grads, scratch_[0].layer.data());
            }
        }
        // The invariant part's slots are its own (no shared operands): its sink is never used.
        const Lanes shared{const_cast<double*>(shared_), shared_grads, 1, 1, nullptr};
        backward_one(inv, shared, sink, inv.n_in, inv.n_slots);
        for (std::uint32_t i = 0; i < lane.n_in; ++i) input_grads[i] = grads[i];
    }

    // Threads for a sweep: as many as allowed, but not more than tiles or than the work
    // pays for. (Which thread runs a tile never changes the results.)
    int threads_for(std::size_t batch) const {
        const std::size_t work = (work_per_lane_ + 1) * batch / kMinWorkPerThread;
        return int(std::min<std::size_t>({std::size_t(usable_threads()), tiles_, std::max<std::size_t>(work, 1)}));
    }

    Lanes block(double* values, double* grads, std::size_t first, std::size_t batch) const {
        const unsigned n = unsigned(std::min<std::size_t>(width_, batch - first));
        return Lanes{values, grads, stride_, n, shared_};
    }
};

inline std::unique_ptr<LaneReplay> make_cpu_lane_replay(const Tape& tape) {
    return std::make_unique<CpuLaneReplay>(tape);
}

}  // namespace arenagrad
