// A recorded tape: the graph a function built once on placeholder inputs, cut out of the
// arena so it can be replayed on many inputs ("lanes") with fresh parameter values.
//
// The tape is split in two parts, each a plain list of op records in creation order (so each
// part is already topologically sorted, like the arena):
//
//   invariant part  slots [externals | constants | ops that use nothing but these]
//                   One value per replay, whatever the number of lanes: parameters (Values
//                   the function closed over, read fresh from the arena at every forward),
//                   numbers mixed into ops (`1 + x`), and terms like `p * p` in an L2 penalty.
//   lane part       slots [inputs | ops that depend on an input]
//                   One value per lane. Operands that live in the invariant part carry the
//                   kInvariant bit: they are read as one number shared by every lane.
//
// Both parts have the same shape (`n_in` slots filled from outside, then ops), so one walk
// (replay.hpp) runs both: the lane part over blocks of lanes, the invariant part as one lane.
// Replay (replay_driver.hpp) drives the two over a batch.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "arena.hpp"

namespace arenagrad {

// An operand reference in the lane part: a lane slot, or (with this bit) an invariant slot.
constexpr std::uint32_t kInvariant = 0x80000000u;

AG_HOST_DEVICE inline bool is_invariant(std::uint32_t ref) { return (ref & kInvariant) != 0; }
AG_HOST_DEVICE inline std::uint32_t slot_of(std::uint32_t ref) { return ref & ~kInvariant; }

// A non-owning view of one part, cheap to copy to a GPU kernel.
struct TapeView {
    std::uint32_t n_in = 0;     // slots [0, n_in) are filled from outside (inputs/externals/constants)
    std::uint32_t n_slots = 0;  // slots [n_in, n_slots) are ops
    const Op* op = nullptr;
    const std::uint32_t* a = nullptr;  // first operand; n-ary: offset into `nary`
    const std::uint32_t* b = nullptr;  // second operand (unary: repeats a); n-ary: count
    const std::uint32_t* nary = nullptr;
    // Per slot, for the one-lane walks (replay.hpp): kSumsRun if the slot is a sum of exactly
    // the run of nodes below it; null: none is marked.
    const std::uint8_t* sums = nullptr;
};

// A sum of exactly the slots [i - count, i), in order, all of one unary or binary op
// (`sum([p * p for p in params])`) ...
constexpr std::uint8_t kSumsRun = 1;
// ... whose nodes read nothing in that run.
constexpr std::uint8_t kSumsRunAlone = 2;

struct TapePart {
    std::uint32_t n_in = 0;
    std::vector<Op> op;  // one per slot; Op::Leaf for the first n_in
    std::vector<std::uint32_t> a, b, nary;
    std::vector<std::uint8_t> sums;  // per slot: kSumsRun, kSumsRunAlone (mark_sums)

    std::uint32_t n_slots() const { return std::uint32_t(op.size()); }
    std::uint32_t n_ops() const { return n_slots() - n_in; }

    void add_input() {
        op.push_back(Op::Leaf);
        a.push_back(0);
        b.push_back(0);
    }
    TapeView view() const {
        return {n_in, n_slots(), op.data(), a.data(), b.data(), nary.data(), sums.empty() ? nullptr : sums.data()};
    }

    // Marks the sums of runs (kSumsRun, kSumsRunAlone).
    void mark_sums() {
        sums.assign(n_slots(), 0);
        for (std::uint32_t i = n_in; i < n_slots(); ++i) {
            const std::uint32_t count = b[i];
            if (op[i] != Op::Sum || count == 0 || count > i - n_in) continue;
            const std::uint32_t run = i - count;
            const Op o = op[run];
            if (!is_unary(o) && !is_binary(o)) continue;
            bool exact = true, alone = true;
            for (std::uint32_t k = 0; k < count && exact; ++k) {
                const std::uint32_t j = run + k;
                exact = nary[a[i] + k] == j && op[j] == o;
                alone = alone && (is_invariant(a[j]) || a[j] < run) && (is_invariant(b[j]) || b[j] < run);
            }
            if (exact) sums[i] = std::uint8_t(kSumsRun | (alone ? kSumsRunAlone : 0));
        }
    }
};

struct Tape {
    TapePart invariant;               // slots: [externals | constants | ops]
    TapePart lane;                    // slots: [inputs | ops]
    std::uint32_t n_externals = 0;
    std::vector<double> constants;    // values of invariant slots [n_externals, invariant.n_in)
    std::vector<std::uint32_t> outputs;  // refs, as in the lane part
    std::uint32_t n_inputs() const { return lane.n_in; }
};

// Cuts the graph out of the arena: every node reachable from `outputs` that was created after
// `fence` (the nodes the traced function built), with `inputs` (created after the fence) as
// lane inputs. Nodes created before the fence that those nodes use are externals. Returns the
// externals' ids in slot order (ascending id, so the order parameters were created in).
// Throws std::invalid_argument for an input that is not above the fence.
inline std::vector<NodeId> record(const Arena& graph, NodeId fence, const std::vector<NodeId>& inputs,
                                  const std::vector<NodeId>& outputs, Tape& tape) {
    const std::size_t base = std::size_t(fence) + 1;
    std::size_t top = base;  // one past the highest traced id
    for (NodeId id : inputs) {
        if (id < base) throw std::invalid_argument("record: an input was created before the fence");
        top = std::max(top, std::size_t(id) + 1);
    }
    for (NodeId id : outputs) top = std::max(top, std::size_t(id) + 1);
    const std::size_t span = top - base;

    // Which traced nodes the outputs need (ids are topological, so one reverse pass).
    std::vector<std::uint8_t> reached(span, 0);
    std::vector<NodeId> externals;
    auto need = [&](NodeId id) {
        if (id >= base)
            reached[id - base] = 1;
        else
            externals.push_back(id);
    };
    for (NodeId id : outputs) need(id);
    for (std::size_t i = top; i-- > base;) {
        if (!reached[i - base] || graph.op[i] == Op::Leaf) continue;
        if (is_nary(graph.op[i])) {
            for (std::size_t k = 0; k < graph.rhs[i]; ++k) need(graph.nary[graph.lhs[i] + k]);
        } else {
            need(graph.lhs[i]);
            need(graph.rhs[i]);  // unary ops repeat lhs; PowConst's exponent leaf is a constant
        }
    }
    std::sort(externals.begin(), externals.end());
    externals.erase(std::unique(externals.begin(), externals.end()), externals.end());

    // Slot of every traced node, as a ref. Inputs first, then externals and constants (the
    // invariant part's filled slots), then ops in id order.
    constexpr std::uint32_t kNone = 0xFFFFFFFFu;
    std::vector<std::uint32_t> ref(span, kNone);
    tape = Tape();
    for (std::size_t k = 0; k < inputs.size(); ++k) {
        if (ref[inputs[k] - base] != kNone) throw std::invalid_argument("record: the same input twice");
        ref[inputs[k] - base] = std::uint32_t(k);
        tape.lane.add_input();
    }
    tape.lane.n_in = std::uint32_t(inputs.size());
    tape.n_externals = std::uint32_t(externals.size());
    for (std::size_t e = 0; e < externals.size(); ++e) tape.invariant.add_input();
    for (std::size_t i = base; i < top; ++i) {
        if (!reached[i - base] || ref[i - base] != kNone || graph.op[i] != Op::Leaf) continue;
        ref[i - base] = kInvariant | tape.invariant.n_slots();
        tape.invariant.add_input();
        tape.constants.push_back(graph.data[i]);
    }
    tape.invariant.n_in = tape.invariant.n_slots();

    auto ref_of = [&](NodeId id) -> std::uint32_t {
        if (id >= base) return ref[id - base];
        auto at = std::lower_bound(externals.begin(), externals.end(), id);
        return kInvariant | std::uint32_t(at - externals.begin());
    };
    std::vector<std::uint32_t> operands;
    for (std::size_t i = base; i < top; ++i) {
        if (!reached[i - base] || ref[i - base] != kNone) continue;
        const Op o = graph.op[i];
        operands.clear();
        if (is_nary(o)) {
            for (std::size_t k = 0; k < graph.rhs[i]; ++k) operands.push_back(ref_of(graph.nary[graph.lhs[i] + k]));
        } else {
            operands.push_back(ref_of(graph.lhs[i]));
            operands.push_back(ref_of(graph.rhs[i]));
        }
        const bool invariant =
            std::all_of(operands.begin(), operands.end(), [](std::uint32_t r) { return is_invariant(r); });
        TapePart& part = invariant ? tape.invariant : tape.lane;
        ref[i - base] = (invariant ? kInvariant : 0u) | part.n_slots();
        part.op.push_back(o);
        if (invariant)  // inside its own part, invariant slots are plain refs
            for (std::uint32_t& r : operands) r = slot_of(r);
        if (is_nary(o)) {
            part.a.push_back(std::uint32_t(part.nary.size()));
            part.b.push_back(std::uint32_t(operands.size()));
            part.nary.insert(part.nary.end(), operands.begin(), operands.end());
        } else {
            part.a.push_back(operands[0]);
            part.b.push_back(operands[1]);
        }
    }
    for (NodeId id : outputs) tape.outputs.push_back(ref_of(id));
    tape.invariant.mark_sums();
    tape.lane.mark_sums();
    if (tape.lane.n_slots() >= kInvariant || tape.invariant.n_slots() >= kInvariant)
        throw std::length_error("record: the traced graph is too large for a tape");
    return externals;
}

}  // namespace arenagrad
