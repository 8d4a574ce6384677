// The node arena: the whole autograd graph as a struct of flat arrays.
//
// Node ids grow in creation order and every operand is created before the node that uses it,
// so iterating ids from high to low is a valid reverse topological order: backward() is a
// plain loop, with no recursion, no sort and no hash set, whatever the graph's depth.
//
// Lifetime: each node has at most one Python handle (`owner`, an opaque pointer: the arena
// knows nothing of Python). A node is needed while it has an owner or while a needed node
// above it uses it as an operand. So
//   * when the topmost node loses its owner, the arena is truncated down to the highest node
//     that still has one (the common case: a training step's graph dies all at once);
//   * when dead nodes get stuck under a live one (a loss kept alive while the next step is
//     built), compact() slides the needed nodes down, keeping their order, and tells each
//     owner its new id. It runs when the arena has doubled since the last compaction, so its
//     cost is amortised O(1) per node and memory stays flat.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <new>
#include <stdexcept>

#include "ops.hpp"
#include "pod_array.hpp"

namespace arenagrad {

using NodeId = std::uint32_t;

// Ids are 32-bit: at ~37 bytes a node, 2^32 nodes would need ~160 GB, far more than any
// machine we target, and the arena refuses to grow past this limit instead of wrapping.
constexpr std::size_t kMaxNodes = 0xFFFFFFF0u;

// Raised when the graph cannot grow (id space or memory exhausted); the binding turns it
// into Python's MemoryError.
struct ArenaFull : std::bad_alloc {
    const char* what() const noexcept override {
        return "arenagrad: the graph is too large (out of memory or past 2**32 nodes)";
    }
};

class Arena {
public:
    // Called by compact() for every node that has an owner, with the node's new id.
    using Relocate = void (*)(void* owner, NodeId new_id);

    // Struct of arrays, one entry per node.
    PodArray<Op> op;
    PodArray<NodeId> lhs;     // first operand; for n-ary ops: offset into `nary`
    PodArray<NodeId> rhs;     // second operand (unary ops repeat lhs); n-ary: operand count
    PodArray<double> data;    // forward value, computed when the node is pushed
    PodArray<double> grad;
    PodArray<void*> owner;    // the Python handle of this node, or null
    PodArray<NodeId> nary;    // operand lists of Linear ([b, w0, x0, w1, x1, ...]) and Sum

    // While > 0, maybe_compact() does nothing: set by code that keeps node ids in locals
    // across calls that may run arbitrary Python (which may build Values).
    int compaction_blocked = 0;

    std::size_t size() const { return op.size(); }
    std::size_t node_limit() const { return node_limit_; }
    // Lowers the id limit (tests only: reaching the real one needs ~150 GB). Clamped to
    // [1, kMaxNodes]; nodes already above a lowered limit stay valid.
    void set_node_limit(std::size_t n) {
        node_limit_ = std::min(std::max<std::size_t>(n, 1), kMaxNodes);
        node_capacity_ = std::min(node_capacity(), node_limit_);
    }
    std::size_t live_handles() const { return live_handles_; }
    std::size_t compactions() const { return compactions_; }
    std::size_t bytes_reserved() const {
        return op.capacity() * sizeof(Op) + (lhs.capacity() + rhs.capacity()) * sizeof(NodeId) +
               (data.capacity() + grad.capacity()) * sizeof(double) +
               owner.capacity() * sizeof(void*) + nary.capacity() * sizeof(NodeId) +
               scratch_.capacity();
    }

    // ---- building nodes -------------------------------------------------------------
    NodeId leaf(double value) { return push(Op::Leaf, 0, 0, value); }

    NodeId unary(Op o, NodeId a) {
        NodeId id = push(o, a, a, 0.0);
        data[id] = forward(o, data[a], data[a]);
        return id;
    }

    NodeId binary(Op o, NodeId a, NodeId b) {
        NodeId id = push(o, a, b, 0.0);
        data[id] = forward(o, data[a], data[b]);
        return id;
    }

    // a ** k for a constant k: the exponent is stored in its own leaf (rhs) but, as in
    // micrograd, it is not an operand for gradients.
    NodeId pow_const(NodeId a, double k, bool k_is_int) {
        NodeId exponent = leaf(k);
        return binary(k_is_int ? Op::PowConstInt : Op::PowConst, a, exponent);
    }

    // Linear ([b, w0, x0, ...]) and Sum nodes, their values folded in operand order by the
    // op table's rules (so with micrograd's rounding).
    NodeId linear(NodeId b, const NodeId* w, const NodeId* x, std::size_t n) {
        return linear(b, n, [w](std::size_t i) { return w[i]; }, [x](std::size_t i) { return x[i]; });
    }

    // The same with operand ids produced on the fly by weight(i) and input(i), which may push
    // leaves (for numbers) but must run no Python code: the ids go straight to the side table.
    template <typename WeightId, typename InputId>
    NodeId linear(NodeId b, std::size_t n, WeightId weight, InputId input) {
        using Rule = rules::Linear;
        const std::size_t offset = nary.size(), count = 2 * n + 1;
        reserve_nary(count);
        NodeId* operands = nary.data() + offset;  // leaf pushes never move the side table
        operands[0] = b;
        double acc = Rule::start(data[b]);
        for (std::size_t i = 0; i < n; ++i) {
            const NodeId w = weight(i), x = input(i);
            operands[1 + 2 * i] = w;
            operands[2 + 2 * i] = x;
            acc = Rule::step(acc, data[w], data[x]);
        }
        nary.resize(offset + count);
        return push_nary(Op::Linear, offset, count, acc);
    }

    NodeId sum(const NodeId* v, std::size_t n) {
        return sum(n, [v](std::size_t i) { return v[i]; });
    }

    template <typename ValueId>
    NodeId sum(std::size_t n, ValueId value) {
        using Rule = rules::Sum;
        const std::size_t offset = nary.size();
        reserve_nary(n);
        NodeId* operands = nary.data() + offset;
        double acc = Rule::start();
        for (std::size_t i = 0; i < n; ++i) {
            const NodeId v = value(i);
            operands[i] = v;
            acc = Rule::step(acc, data[v]);
        }
        nary.resize(offset + n);
        return push_nary(Op::Sum, offset, n, acc);
    }

    // A selection node (Take, Max: see rules::Take) over the operands produced by value(i),
    // which must run no Python code; its value is the chosen operand's.
    template <typename ValueId>
    NodeId select(Op o, std::size_t n, ValueId value) {
        const std::size_t offset = nary.size();
        reserve_nary(n);
        NodeId* operands = nary.data() + offset;
        for (std::size_t i = 0; i < n; ++i) operands[i] = value(i);
        nary.resize(offset + n);
        const auto value_of = [&](std::uint32_t k) { return data[nary[offset + k]]; };
        double out = 0.0;
        visit(o, [&](auto info) {
            using Rule = typename decltype(info)::Rule;
            if constexpr (is_selection<Rule>) out = selected_value<Rule>(value_of, std::uint32_t(n));
        });
        return push_nary(o, offset, n, out);
    }

    // ---- the reverse sweep ----------------------------------------------------------
    // micrograd's backward: root.grad = 1, then each node reachable from the root adds
    // local_derivative * its grad into its operands, in reverse topological order.
    void backward(NodeId root) { sweep<false>(root); }

    // The same sweep without the fast paths (sweep.hpp): tests compare the two on every op.
    void backward_generic(NodeId root) { sweep<true>(root); }

    // Operands of a node, for `_prev` (PowConst's exponent leaf is not one).
    template <typename Visit>
    void for_each_operand(NodeId id, Visit visit) const {
        const Op o = op[id];
        if (is_nary(o)) {
            for (std::size_t k = 0; k < rhs[id]; ++k) visit(nary[lhs[id] + k]);
        } else if (is_binary(o)) {
            visit(lhs[id]);
            visit(rhs[id]);
        } else if (is_unary(o)) {
            visit(lhs[id]);
        }
    }

    // ---- lifetime -------------------------------------------------------------------
    void adopt(NodeId id, void* handle) {
        owner[id] = handle;
        ++live_handles_;
    }

    // The handle of `id` died: drop the node, and every dead node above it, if it was on top.
    void release(NodeId id) {
        owner[id] = nullptr;
        --live_handles_;
        if (std::size_t(id) + 1 == size()) truncate_dead_top();
    }

    // The node of `id` changes hands: its handle lets go, and a new one adopts it at once.
    void disown(NodeId id) {
        owner[id] = nullptr;
        --live_handles_;
    }

    void truncate_dead_top() {
        const std::size_t top = size();
        std::size_t n = top;
        while (n > 0 && owner[n - 1] == nullptr) {
            --n;
            // n-ary operand lists were appended in node order, so the lowest popped n-ary
            // node's offset is where the side table ends now.
            if (is_nary(op[n])) nary.truncate(lhs[n]);
        }
        if (n == top) return;
        truncate_nodes(n);
        if (n == 0) nary.clear();
        // This runs after every dropped temporary: only look at memory when there is some
        // to give back.
        if (op.sparse() || nary.sparse()) give_back_memory();
    }

    // What compaction walks and may free: the nodes plus the n-ary side table's entries. Both
    // count, since a wide `linear` adds one node but thousands of entries (a 20k-input neuron
    // stuck under a kept loss would otherwise grow the side table by 160 kB a step, unseen).
    std::size_t footprint() const { return size() + nary.size(); }

    // Compact only when the footprint has doubled since the last compaction (amortised O(1):
    // a compaction costs O(footprint)). Must be called where no unowned node is pending (i.e.
    // before an op pushes anything).
    void maybe_compact(Relocate relocate) {
        if (footprint() >= compact_at_ && compaction_blocked == 0) compact(relocate);
    }

    // Slide every needed node down over the dead ones, keeping creation order.
    void compact(Relocate relocate) {
        const std::size_t n = size();
        scratch_.assign(n, Mark::No);  // keep[i]
        Mark* keep = scratch_.data();
        for (std::size_t i = n; i-- > 0;) {
            if (owner[i] != nullptr) keep[i] = Mark::Yes;
            if (keep[i] == Mark::No) continue;
            const Op o = op[i];
            if (is_nary(o)) {
                for (std::size_t k = 0; k < rhs[i]; ++k) keep[nary[lhs[i] + k]] = Mark::Yes;
            } else if (o != Op::Leaf) {
                keep[lhs[i]] = Mark::Yes;
                keep[rhs[i]] = Mark::Yes;  // also PowConst's exponent leaf
            }
        }
        // A node's new id is the number of kept nodes below it. Every operand has a smaller
        // id than its node, so it is already renumbered when the node is moved.
        PodArray<NodeId> new_id;
        new_id.resize(n);
        std::size_t next = 0, nary_next = 0;
        for (std::size_t i = 0; i < n; ++i) {
            if (keep[i] == Mark::No) continue;
            new_id[i] = NodeId(next);
            const Op o = op[i];
            op[next] = o;
            if (is_nary(o)) {
                const std::size_t from = lhs[i], count = rhs[i];
                for (std::size_t k = 0; k < count; ++k) nary[nary_next + k] = new_id[nary[from + k]];
                lhs[next] = NodeId(nary_next);
                rhs[next] = NodeId(count);
                nary_next += count;
            } else if (o == Op::Leaf) {
                lhs[next] = rhs[next] = 0;
            } else {
                lhs[next] = new_id[lhs[i]];
                rhs[next] = new_id[rhs[i]];
            }
            data[next] = data[i];
            grad[next] = grad[i];
            owner[next] = owner[i];
            if (owner[next] != nullptr) relocate(owner[next], NodeId(next));
            ++next;
        }
        truncate_nodes(next);
        nary.truncate(nary_next);
        compact_at_ = std::max<std::size_t>(kMinCompactSize, 2 * footprint());
        ++compactions_;
        give_back_memory();  // what the dropped nodes held, if most of it
    }

private:
    static constexpr std::size_t kMinCompactSize = std::size_t(1) << 16;

    enum class Mark : std::uint8_t { No, Yes };  // a flag per node
    PodArray<Mark> scratch_;  // reached/keep flags, reused between sweeps

    // The reverse sweep, in sweep.hpp. Generic: no fast paths.
    struct Sweep;
    template <bool Generic>
    void sweep(NodeId root);

    std::size_t live_handles_ = 0;
    std::size_t compactions_ = 0;
    std::size_t compact_at_ = kMinCompactSize;
    std::size_t node_capacity_ = 0;  // min of the node arrays' capacities and node_limit_
    std::size_t node_limit_ = kMaxNodes;

    // Append a node. The hot path checks one cached capacity and stores; growing is out of
    // line. All arrays grow together, so a failed allocation leaves them consistent.
    NodeId push(Op o, NodeId a, NodeId b, double value) {
        const std::size_t id = size();
        if (id >= node_capacity_) grow(id);
        op.push_back_unchecked(o);
        lhs.push_back_unchecked(a);
        rhs.push_back_unchecked(b);
        data.push_back_unchecked(value);
        grad.push_back_unchecked(0.0);
        owner.push_back_unchecked(nullptr);
        return NodeId(id);
    }

    // node_capacity_ never exceeds node_limit_, so this is also where the id limit is enforced.
    void grow(std::size_t id) {
        if (id >= node_limit_) throw ArenaFull();
        const std::size_t cap = std::min(node_limit_, id < 1024 ? 1024 : id + id / 2);
        try {
            op.reserve(cap);
            lhs.reserve(cap);
            rhs.reserve(cap);
            data.reserve(cap);
            grad.reserve(cap);
            owner.reserve(cap);
        } catch (const std::bad_alloc&) {
            node_capacity_ = std::min(node_capacity(), node_limit_);
            throw ArenaFull();
        }
        node_capacity_ = std::min(node_capacity(), node_limit_);
    }

    NodeId push_nary(Op o, std::size_t offset, std::size_t count, double value) {
        if (offset > kMaxNodes || count > kMaxNodes) throw ArenaFull();
        try {
            return push(o, NodeId(offset), NodeId(count), value);
        } catch (...) {
            nary.resize(offset);  // keep the side table consistent with the nodes
            throw;
        }
    }

    void reserve_nary(std::size_t extra) {
        try {
            const std::size_t needed = nary.size() + extra;
            if (needed > nary.capacity())
                nary.reserve(std::max(needed, nary.capacity() + nary.capacity() / 2));
        } catch (const std::bad_alloc&) {
            throw ArenaFull();
        }
    }

    // After a big graph dies, return most of its memory (hysteresis: only when < 1/4 used).
    void give_back_memory() {
        op.shrink_if_sparse();
        lhs.shrink_if_sparse();
        rhs.shrink_if_sparse();
        data.shrink_if_sparse();
        grad.shrink_if_sparse();
        owner.shrink_if_sparse();
        nary.shrink_if_sparse();
        scratch_.clear();
        scratch_.shrink_if_sparse();
        node_capacity_ = std::min(node_capacity(), node_limit_);
    }

    std::size_t node_capacity() const {
        return std::min({op.capacity(), lhs.capacity(), rhs.capacity(), data.capacity(), grad.capacity(),
                         owner.capacity()});
    }

    void truncate_nodes(std::size_t n) {
        op.truncate(n);
        lhs.truncate(n);
        rhs.truncate(n);
        data.truncate(n);
        grad.truncate(n);
        owner.truncate(n);
    }
};

// The process-wide arena. Allocated once and never destroyed, so Values that outlive the
// interpreter's module teardown can still release their nodes safely.
inline Arena& arena() {
    static Arena* instance = new Arena();
    return *instance;
}

}  // namespace arenagrad

// Arena::sweep, the reverse sweep behind backward(), in a header of its own.
#include "sweep.hpp"
