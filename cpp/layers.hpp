// Layers in a tape: the dense layers an MLP is made of, found among the lane part's nodes so
// the CPU replay can run each one as a small matrix product over a tile of lanes
// (layer_kernels.hpp) instead of node by node.
//
// A layer is a run of consecutive slots holding `linear` nodes (each optionally followed by
// `relu` of it, all or none) that
//   - read the same lane slots as inputs, in the same order, each input once;
//   - take their weights and bias from invariant leaves (parameters or constants), so a
//     weight's gradient is a plain sum over the lanes;
// which is what nn.Layer builds: neuron n is `linear(b_n, w_n, x)`, then `.relu()`.
//
// Because a layer is a run of consecutive slots, the reverse sweep meets no other node in the
// middle of it: running it as a block changes no order in which anything is added up, as long
// as the kernels keep the order of each node's own sums (layer_kernels.hpp says how).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "ops.hpp"
#include "tape.hpp"

namespace arenagrad {

struct Layer {
    std::uint32_t first = 0;    // slot of neuron 0's linear node
    std::uint32_t neurons = 0;  // N
    std::uint32_t inputs = 0;   // K
    bool relu = false;          // each linear node is followed by relu of it
    // Whether the linear nodes' values are read by anything but their relu (another node, an
    // output): otherwise they are not stored, and only relu writes their gradient rows.
    bool keep_linear = true;
    std::vector<std::uint32_t> x;       // the K input slots, in term order
    std::vector<std::uint8_t> x_fresh;  // per input: this layer adds to its gradient first
    std::vector<std::uint32_t> weight;  // invariant slots, weight[n * K + k]
    std::vector<std::uint32_t> bias;    // invariant slots, one per neuron
    // Whether the weights' slots form a matrix, weight[n * K + k] = weight_base +
    // n * weight_row + k with weight_row >= K (a model's parameters, created neuron by neuron,
    // do): then a batch of one lane reads them in place instead of packing them first, and a
    // tile adds their gradients a row at a time (each neuron's bias still before its row).
    bool weight_matrix = false;
    std::uint32_t weight_base = 0, weight_row = 0;

    std::uint32_t stride() const { return relu ? 2 : 1; }
    std::uint32_t linear_slot(std::uint32_t n) const { return first + n * stride(); }
    std::uint32_t end() const { return first + neurons * stride(); }  // one past its last slot
};

// One step of a walk over the lane part: a layer, or the generic walk over slots [first, end).
struct PlanStep {
    std::uint32_t first, end;
    int layer;  // index into the layers, or -1
};

struct LanePlan {
    std::vector<Layer> layers;
    std::vector<PlanStep> steps;  // covering [n_in, n_slots) in order
    // Gradient rows that no kernel writes first: zeroed before each tile's backward (rows
    // [0, n_slots) of the lane part, then the invariant ops' rows after them).
    std::vector<std::pair<std::uint32_t, std::uint32_t>> zero_rows;
};

namespace detail {

// The linear node at slot i as a neuron of a layer: its terms' inputs all lane slots, its
// weights and bias invariant leaves. Returns false otherwise.
inline bool neuron_form(const TapePart& lane, std::uint32_t invariant_leaves, std::uint32_t i) {
    if (lane.op[i] != Op::Linear || lane.b[i] < 3 || lane.b[i] % 2 == 0) return false;
    const std::uint32_t* ops = lane.nary.data() + lane.a[i];
    auto leaf = [&](std::uint32_t ref) { return is_invariant(ref) && slot_of(ref) < invariant_leaves; };
    if (!leaf(ops[0])) return false;
    for (std::uint32_t k = 1; k < lane.b[i]; k += 2)
        if (!leaf(ops[k]) || is_invariant(ops[k + 1])) return false;
    return true;
}

// Whether neuron j reads the same inputs, in the same order, as neuron i.
inline bool same_inputs(const TapePart& lane, std::uint32_t i, std::uint32_t j) {
    if (lane.b[i] != lane.b[j]) return false;
    const std::uint32_t *u = lane.nary.data() + lane.a[i], *v = lane.nary.data() + lane.a[j];
    for (std::uint32_t k = 2; k < lane.b[i]; k += 2)
        if (u[k] != v[k]) return false;
    return true;
}

inline bool relu_of(const TapePart& lane, std::uint32_t r, std::uint32_t i) {
    return r < lane.n_slots() && lane.op[r] == Op::Relu && lane.a[r] == i;
}

// Sets layer.weight_matrix (and its base and row) when the weights' slots form a matrix.
inline void find_weight_matrix(Layer& layer) {
    const std::uint32_t N = layer.neurons, K = layer.inputs, base = layer.weight[0];
    const std::uint32_t row = N > 1 ? layer.weight[K] - base : K;
    if (N > 1 && layer.weight[K] < base + K) return;  // rows out of order, or overlapping
    for (std::uint32_t n = 0; n < N; ++n)
        for (std::uint32_t k = 0; k < K; ++k)
            if (layer.weight[std::size_t(n) * K + k] != std::uint64_t(base) + std::uint64_t(n) * row + k) return;
    layer.weight_matrix = true;
    layer.weight_base = base;
    layer.weight_row = row;
}

}  // namespace detail

// Finds the layers of `tape`'s lane part and the plan of its walks.
inline LanePlan plan_lanes(const Tape& tape) {
    const TapePart& lane = tape.lane;
    const std::uint32_t n_slots = lane.n_slots(), leaves = tape.invariant.n_in;
    LanePlan plan;

    // Per lane slot: the highest slot reading it (a reverse sweep meets that reader first),
    // how many nodes read it, and whether it is an output (seeded before the sweep).
    std::vector<std::uint32_t> last_reader(n_slots, 0), readers(n_slots, 0);
    std::vector<std::uint8_t> output(n_slots, 0);
    for (std::uint32_t i = lane.n_in; i < n_slots; ++i) {
        auto read = [&](std::uint32_t ref) {
            if (is_invariant(ref)) return;
            last_reader[ref] = std::max(last_reader[ref], i);
            ++readers[ref];
        };
        if (is_nary(lane.op[i])) {
            for (std::uint32_t k = 0; k < lane.b[i]; ++k) read(lane.nary[lane.a[i] + k]);
        } else {
            read(lane.a[i]);
            if (is_binary(lane.op[i]) || lane.b[i] != lane.a[i]) read(lane.b[i]);
        }
    }
    for (std::uint32_t ref : tape.outputs)
        if (!is_invariant(ref)) output[ref] = 1;

    std::vector<std::uint8_t> fresh(n_slots, 0);  // gradient rows a kernel writes first
    std::uint32_t generic_from = lane.n_in;
    for (std::uint32_t i = lane.n_in; i < n_slots;) {
        if (!detail::neuron_form(lane, leaves, i)) {
            ++i;
            continue;
        }
        Layer layer;
        layer.first = i;
        layer.relu = detail::relu_of(lane, i + 1, i);
        const std::uint32_t step = layer.stride();
        std::uint32_t n = 1;
        for (std::uint32_t j = i + step; j < n_slots; j += step, ++n) {
            if (!detail::neuron_form(lane, leaves, j) || !detail::same_inputs(lane, i, j)) break;
            if (layer.relu != detail::relu_of(lane, j + 1, j)) break;
        }
        const std::uint32_t* ops = lane.nary.data() + lane.a[i];
        layer.neurons = n;
        layer.inputs = (lane.b[i] - 1) / 2;
        for (std::uint32_t k = 0; k < layer.inputs; ++k) layer.x.push_back(ops[2 + 2 * k]);
        std::vector<std::uint32_t> sorted = layer.x;
        std::sort(sorted.begin(), sorted.end());
        if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
            ++i;  // an input read twice by a neuron: its gradient is the generic walk's
            continue;
        }
        for (std::uint32_t m = 0; m < n; ++m) {
            const std::uint32_t* neuron = lane.nary.data() + lane.a[layer.linear_slot(m)];
            layer.bias.push_back(slot_of(neuron[0]));
            for (std::uint32_t k = 0; k < layer.inputs; ++k) layer.weight.push_back(slot_of(neuron[1 + 2 * k]));
        }
        detail::find_weight_matrix(layer);
        layer.keep_linear = !layer.relu;
        for (std::uint32_t m = 0; m < n && !layer.keep_linear; ++m) {
            const std::uint32_t s = layer.linear_slot(m);
            layer.keep_linear = readers[s] > 1 || output[s];
        }
        for (std::uint32_t m = 0; m < n && !layer.keep_linear; ++m) fresh[layer.linear_slot(m)] = 1;
        for (std::uint32_t x : layer.x) {
            const bool first_writer = !output[x] && last_reader[x] < layer.end();
            layer.x_fresh.push_back(first_writer ? 1 : 0);
            if (first_writer) fresh[x] = 1;
        }
        if (generic_from < i) plan.steps.push_back({generic_from, i, -1});
        plan.steps.push_back({i, layer.end(), int(plan.layers.size())});
        i = generic_from = layer.end();
        plan.layers.push_back(std::move(layer));
    }
    if (generic_from < n_slots) plan.steps.push_back({generic_from, n_slots, -1});

    const std::uint32_t rows = n_slots + (tape.invariant.n_slots() - tape.invariant.n_in);
    for (std::uint32_t r = 0; r < rows;) {
        if (r < n_slots && fresh[r]) {
            ++r;
            continue;
        }
        std::uint32_t e = r + 1;
        while (e < rows && !(e < n_slots && fresh[e])) ++e;
        plan.zero_rows.push_back({r, e});
        r = e;
    }
    return plan;
}

}  // namespace arenagrad
