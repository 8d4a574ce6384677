// Replay: runs a recorded Tape (tape.hpp) over a batch of inputs, on any device.
//
// A tape has two parts. The invariant part (parameters, constants and what depends on them
// alone) has one value per replay, so its forward runs here, on the host, before the lanes.
// The lane part is the bulk of the work and runs on a device, behind the LaneReplay
// interface: CpuLaneReplay (replay_cpu.hpp: tiles on a thread pool, replay_pool.hpp) or the CUDA one
// (cuda/elementwise.hpp). A lane replay's backward also carries each lane's gradient through
// the invariant part's ops (replay.hpp, backward_shared) before summing over the lanes, as
// eager evaluation lane by lane would. Both devices walk the tape with the same functions
// (replay.hpp), so a device changes where lanes run, never what they compute.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#include "replay.hpp"
#include "tape.hpp"

namespace arenagrad {

// The lane part of one Tape, replayed over a batch on one device. Keeps what backward needs
// (the lanes' values) from the last forward. Throws std::runtime_error on device errors.
class LaneReplay {
public:
    virtual ~LaneReplay() = default;

    // X: batch x n_inputs (row-major). shared: the invariant slots' values, valid until the
    // next forward (backward reads them too). Y: batch x n_outputs.
    virtual void forward(const double* X, std::size_t batch, const double* shared, double* Y) = 0;

    // For the last forward. seed: batch x n_outputs, or null for ones. Writes d(seeded
    // outputs)/d(inputs) into input_grads (batch x n_inputs), and into shared_grads (one per
    // invariant slot) the gradient that reaches each invariant leaf (external or constant),
    // differentiated through the invariant ops lane by lane and then summed over the lanes
    // (entries of invariant ops: unspecified).
    virtual void backward(const double* seed, double* input_grads, double* shared_grads) = 0;
};

// Makes the lane replay of `tape` (which must outlive it) for one device.
using MakeLaneReplay = std::unique_ptr<LaneReplay> (*)(const Tape& tape);

class Replay {
public:
    Replay(Tape tape, MakeLaneReplay make_lanes) : tape_(std::move(tape)), lanes_(make_lanes(tape_)) {}
    Replay(const Replay&) = delete;  // lanes_ refers to tape_
    Replay& operator=(const Replay&) = delete;

    const Tape& tape() const { return tape_; }

    // Where a caller may gather the externals' values for forward() to read in place. The last
    // forward's values live there too: writing into it ends that forward (no backward through
    // it until the next forward has succeeded).
    double* parameter_buffer() {
        ready_ = false;
        shared_.resize(tape_.invariant.n_slots());
        return shared_.data();
    }

    // params: the externals' current values (tape().n_externals of them), or
    // parameter_buffer(); X: batch x n_inputs; Y: batch x n_outputs (all row-major).
    void forward(const double* params, const double* X, std::size_t batch, double* Y) {
        ready_ = false;  // until this forward has succeeded
        const TapeView inv = tape_.invariant.view();
        shared_.resize(inv.n_slots);
        if (params != shared_.data()) std::copy(params, params + tape_.n_externals, shared_.begin());
        std::copy(tape_.constants.begin(), tape_.constants.end(), shared_.begin() + tape_.n_externals);
        forward_sweep(inv, Lanes{shared_.data(), nullptr, 1, 1, nullptr});
        lanes_->forward(X, batch, shared_.data(), Y);
        batch_ = batch;
        ready_ = true;
    }

    // The batch of the last forward; throws std::runtime_error if there was none (or it failed).
    std::size_t batch() const {
        if (!ready_) throw std::runtime_error("backward() needs a forward() first");
        return batch_;
    }

    // Seeded gradients of the last forward. seed: batch x n_outputs, or null for ones;
    // input_grads: batch x n_inputs. Returns the externals' gradients summed over the lanes
    // (tape().n_externals of them), valid until the next call.
    const double* backward(const double* seed, double* input_grads) {
        batch();  // there must be a forward to go back through
        shared_grads_.resize(shared_.size());
        lanes_->backward(seed, input_grads, shared_grads_.data());
        return shared_grads_.data();  // externals first
    }

private:
    Tape tape_;
    std::unique_ptr<LaneReplay> lanes_;
    std::vector<double> shared_, shared_grads_;  // invariant slots: values, gradients
    std::size_t batch_ = 0;
    bool ready_ = false;
};

}  // namespace arenagrad
