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
//
// Per-node extras: the few nodes that carry something for Python beyond numbers (a label, a
// user-defined op's `_op` and `_backward`, a Value subclass's type and attributes) have an
// entry in a side table sorted by node id, so they keep it when their handle dies. The arena
// moves these entries along with their nodes and hands back the ones of nodes it drops; what
// they hold is the binding's business (ExtrasHooks).
//
// Python code can run in the middle of all this: freeing a dropped node's extras, or calling
// a user's `_backward` in the sweep, may build Values, drop them, or start another backward().
// So the arena is always consistent before such a call, and re-reads its state after it.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <stdexcept>

#include "ops.hpp"
#include "pod_array.hpp"

#if defined(__GNUC__)
#define AG_LIKELY(condition) __builtin_expect(bool(condition), 1)
#define AG_UNLIKELY(condition) __builtin_expect(bool(condition), 0)
#else
#define AG_LIKELY(condition) (condition)
#define AG_UNLIKELY(condition) (condition)
#endif

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

// A node's extras in the side table (`extras`: opaque here, the binding's NodeExtras).
struct NodeExtra {
    NodeId id;
    void* extras;
};

// What the arena asks of the binding about extras; every hook may run Python code.
struct ExtrasHooks {
    // The node is gone: free its extras.
    void (*release)(void* extras) = nullptr;
    // Whether the node's handle `owner` is kept alive by nothing but the node's own extras: a
    // `_backward` closure over its own node, micrograd's pattern. Handle and closure then form
    // a cycle the arena, not the garbage collector, must break: nobody else can reach the node.
    bool (*held_by_own_backward)(void* owner, void* extras) = nullptr;
    // Let go of that closure; the handle dies with it (and release()s its node).
    void (*drop_backward)(void* extras) = nullptr;
    // Run the node's Python `_backward`; false if it raised (the Python error is then set).
    bool (*call_backward)(void* extras) = nullptr;
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
    PodArray<NodeId> nary;    // operand lists of the n-ary ops (Linear: [b, w0, x0, w1, x1, ...])

    // While > 0, maybe_compact() does nothing: set by code that keeps node ids in locals
    // across calls that may run arbitrary Python (which may build Values).
    int compaction_blocked = 0;

    ExtrasHooks hooks;  // set once by the binding

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
               scratch_.capacity() + (extras_.capacity() + dropped_.capacity()) * sizeof(NodeExtra);
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
        for (std::size_t i = 0; i < n; ++i) {
            operands[1 + 2 * i] = weight(i);
            operands[2 + 2 * i] = input(i);
        }
        nary.resize(offset + count);
        // The value is folded after the push, where no call follows it: a value live across a
        // possible call (a leaf push, the push's growth) is kept in memory by GCC, a store and
        // a reload on every addition of the chain.
        const NodeId id = push_nary(Op::Linear, offset, count, 0.0);
        double acc = Rule::start(data[b]);
        for (std::size_t i = 0; i < n; ++i)
            acc = Rule::step(acc, data[operands[1 + 2 * i]], data[operands[2 + 2 * i]]);
        data[id] = acc;
        return id;
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
        for (std::size_t i = 0; i < n; ++i) operands[i] = value(i);
        nary.resize(offset + n);
        const NodeId id = push_nary(Op::Sum, offset, n, 0.0);
        double acc = Rule::start();  // folded after the push, as in linear()
        for (std::size_t i = 0; i < n; ++i) acc = Rule::step(acc, data[operands[i]]);
        data[id] = acc;
        return id;
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

    // A user-defined op whose value is given. Python `_backward` (PyBackward): operands are
    // the children. Given local derivatives (LocalGrads): [v, x0, c0, x1, c1, ...], with
    // leaves v and c_k holding the value and the derivatives (rules::LocalGrads).
    NodeId py_backward(double value, const NodeId* children, std::size_t n) {
        const std::size_t offset = nary.size();
        reserve_nary(n);
        std::copy(children, children + n, nary.data() + offset);
        nary.resize(offset + n);
        const NodeId id = push_nary(Op::PyBackward, offset, n, value);
        ++py_backward_nodes_;
        return id;
    }

    NodeId local_grads(double value, const NodeId* children, const double* grads, std::size_t n) {
        const std::size_t offset = nary.size(), count = 2 * n + 1;
        reserve_nary(count);
        NodeId* operands = nary.data() + offset;  // leaf pushes never move the side table
        operands[0] = leaf(value);
        for (std::size_t i = 0; i < n; ++i) {
            operands[1 + 2 * i] = children[i];
            operands[2 + 2 * i] = leaf(grads[i]);
        }
        nary.resize(offset + count);
        return push_nary(Op::LocalGrads, offset, count, value);
    }

    // ---- the reverse sweep ----------------------------------------------------------
    // micrograd's backward: root.grad = seed (1 for micrograd), then each node reachable from
    // the root adds local_derivative * its grad into its operands, in reverse topological
    // order. False if a Python `_backward` raised: the sweep stops there, its Python error set.
    bool backward(NodeId root, double seed = 1.0) { return sweep<false>(root, seed); }

    // The same sweep without the fast paths (sweep.hpp): tests compare the two on every op.
    bool backward_generic(NodeId root) { return sweep<true>(root, 1.0); }

    // One node's local chain rule, once: micrograd's `node._backward()` (sweep.hpp).
    bool backward_node(NodeId id);

    // The children of a node, in operand order, for `_prev` and `_children`: its operands but
    // the constants (PowConst's exponent, LocalGrads' value and derivatives).
    template <typename Visit>
    void for_each_child(NodeId id, Visit visit) const {
        const Op o = op[id];
        if (o == Op::LocalGrads) {
            for (std::size_t k = 1; k < rhs[id]; k += 2) visit(nary[lhs[id] + k]);
        } else if (is_nary(o)) {
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

    // Drops the dead nodes on top: those without an owner, and those whose only owner is a
    // handle that their own `_backward` closure keeps alive (whose cycle is broken here).
    // This runs after every dropped temporary, so the common case stays inline and short:
    // Python code can only run for nodes with extras (the dropped ones', or the new top's:
    // a micrograd-style node always has extras), and the side table says at once if any.
#if defined(__GNUC__)
    __attribute__((always_inline))
#endif
    void truncate_dead_top() {
        const std::size_t n = drop_unowned_top();
        if (AG_UNLIKELY(has_extras_from(n == 0 ? 0 : n - 1))) {
            // Not from inside that loop (a release() by the Python code it runs): the loop
            // goes on by itself, and nesting it would recurse once per node of a long chain.
            // But the dropped nodes' entries leave the table now, so that a node made before
            // the loop looks again, at one of their ids, does not find them as its own.
            if (!truncating_) {
                truncate_running_python();
            } else {
                move_extras_from(n);
            }
        } else if (memory_unused()) {
            give_back_memory();
        }
    }

    // Gives back now the memory that the nodes and the side table do not use (compact() from
    // Python; the arena itself waits until memory_unused()).
    void give_back_free_memory() { give_back_memory(); }

    // What compaction walks and may free: the nodes plus the n-ary side table's entries. Both
    // count, since a wide `linear` adds one node but thousands of entries (a 20k-input neuron
    // stuck under a kept loss would otherwise grow the side table by 160 kB a step, unseen).
    std::size_t footprint() const { return size() + nary.size(); }

    // Compact only when the footprint has doubled since the last compaction (amortised O(1):
    // a compaction costs O(footprint)). Must be called where no unowned node is pending (i.e.
    // before an op pushes anything), and where Python code may run (see compact()).
    bool compaction_due() const { return footprint() >= compact_at_ && compaction_blocked == 0; }
    void maybe_compact(Relocate relocate) {
        if (compaction_due()) compact(relocate);
    }

    // Slide every needed node down over the dead ones, keeping creation order. First breaks
    // the cycles of dead micrograd-style nodes (break_dead_cycles), which runs Python code.
    void compact(Relocate relocate) {
        if (compaction_blocked > 0) return;
        break_dead_cycles();
        const std::size_t n = size(), footprint_before = footprint();
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
        std::size_t next = 0, nary_next = 0, extra = 0, extras_next = 0;
        for (std::size_t i = 0; i < n; ++i) {
            const bool has_extras = extra < extras_.size() && extras_[extra].id == i;
            if (keep[i] == Mark::No) {
                if (has_extras) dropped_.push_back_unchecked(extras_[extra++]);  // reserved
                if (py_backward_nodes_ > 0) {
                    if (op[i] == Op::PyBackward) --py_backward_nodes_;
                } else {
                    // Nothing left to count: jump the run of dead nodes (most of a dropped
                    // graph) up to the next kept node or the next node with extras.
                    const std::size_t stop = extra < extras_.size() ? std::size_t(extras_[extra].id) : n;
                    const void* kept = std::memchr(keep + i + 1, int(Mark::Yes), stop - (i + 1));
                    i = kept != nullptr ? std::size_t(static_cast<const Mark*>(kept) - keep) - 1 : stop - 1;
                }
                continue;
            }
            new_id[i] = NodeId(next);
            if (has_extras) extras_[extras_next++] = {NodeId(next), extras_[extra++].extras};
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
        extras_.truncate(extras_next);
        compact_at_ = std::max<std::size_t>(kMinCompactSize, 2 * footprint());
        ++compactions_;
        note_dropped(footprint_before);
        if (memory_unused()) give_back_memory();
        ++compaction_blocked;  // a compaction from the Python code that frees extras would recurse
        release_dropped();
        --compaction_blocked;
    }

    // ---- per-node extras ---------------------------------------------------------------
    // The extras of node `id`, or null.
    void* extras_of(NodeId id) const {
        const NodeExtra* begin = extras_.data();
        const NodeExtra* end = begin + extras_.size();
        const NodeExtra* at = std::lower_bound(begin, end, id, [](const NodeExtra& e, NodeId i) { return e.id < i; });
        return at != end && at->id == id ? at->extras : nullptr;
    }

    // Gives node `id` its extras (it had none). A new node's entry is appended; an older
    // node's is inserted in order. Throws ArenaFull, leaving the table unchanged.
    void add_extras(NodeId id, void* extras) {
        const std::size_t n = extras_.size();
        try {
            if (n == extras_.capacity()) extras_.reserve(n < 16 ? 16 : n + n / 2);
            // Every entry of dropped_ came from extras_: room for both, so that dropping
            // entries never allocates (it happens where an exception cannot be thrown).
            const std::size_t both = dropped_.size() + n + 1;
            if (both > dropped_.capacity()) dropped_.reserve(std::max(both, dropped_.capacity() + dropped_.capacity() / 2));
        } catch (const std::bad_alloc&) {
            throw ArenaFull();
        }
        std::size_t at = n;
        while (at > 0 && extras_[at - 1].id > id) --at;
        extras_.resize(n + 1);
        std::memmove(extras_.data() + at + 1, extras_.data() + at, (n - at) * sizeof(NodeExtra));
        extras_[at] = {id, extras};
    }

    std::size_t extras_count() const { return extras_.size(); }

    // micrograd-style nodes, for sweeps other than backward()'s (grad_values.hpp): whether
    // there are any, the highest at or below `top` (or -1), and running one's `_backward`
    // (false if it raised; the Python error is then set).
    bool has_py_backward() const { return py_backward_nodes_ > 0; }
    std::ptrdiff_t highest_py_backward(std::ptrdiff_t top) const;
    bool run_python_backward(NodeId id) { return call_python_backward(id); }

private:
    static constexpr std::size_t kMinCompactSize = std::size_t(1) << 16;

    enum class Mark : std::uint8_t { No, Yes };  // a flag per node
    PodArray<Mark> scratch_;  // reached/keep flags, reused between sweeps

    // The reverse sweep, in sweep.hpp. Generic: no fast paths. Marking: whether it records
    // which nodes it reached (a single node's step does not).
    template <bool Marking>
    struct Sweep;
    struct SweepScope;
    template <bool Generic>
    bool sweep(NodeId root, double seed);
    template <bool Generic>
    std::ptrdiff_t sweep_native(std::size_t top, Mark* reached);
    std::size_t py_backward_nodes_ = 0;  // how many PyBackward nodes the arena holds
    bool call_python_backward(NodeId id) {
        void* extras = extras_of(id);
        return extras == nullptr || hooks.call_backward == nullptr || hooks.call_backward(extras);
    }
    int sweeps_ = 0;  // sweeps running (one may start another from a Python `_backward`)

    // Extras, sorted by node id; and those of dropped nodes, until released (add_extras keeps
    // room in dropped_ for every entry of both).
    PodArray<NodeExtra> extras_;
    PodArray<NodeExtra> dropped_;
    bool truncating_ = false;

    // Frees the extras of dropped nodes (Python code runs). Returns whether there were any.
    bool release_dropped() {
        if (dropped_.size() == 0) return false;
        while (dropped_.size() > 0) {  // one at a time: the code run may drop more
            void* extras = dropped_[dropped_.size() - 1].extras;
            dropped_.truncate(dropped_.size() - 1);
            if (hooks.release != nullptr) hooks.release(extras);
        }
        return true;
    }

    // Truncates the nodes without an owner on top, with their n-ary operand lists; returns
    // the new size.
    std::size_t drop_unowned_top() {
        const std::size_t top = size(), footprint_before = footprint();
        std::size_t n = top;
        while (n > 0 && owner[n - 1] == nullptr) {
            --n;
            // n-ary operand lists were appended in node order, so the lowest popped n-ary
            // node's offset is where the side table ends now.
            if (is_nary(op[n])) {
                nary.truncate(lhs[n]);
                if (op[n] == Op::PyBackward) --py_backward_nodes_;
            }
        }
        if (n < top) {
            truncate_nodes(n);
            if (n == 0) nary.clear();
            note_dropped(footprint_before);
        }
        return n;
    }

    // Memory is given back only once it has gone unused: since the arena last filled a
    // quarter of what it holds, it has dropped (truncated or compacted away) that much again.
    // A loop that builds and drops a graph every step so keeps its memory: giving it back at
    // the end of each step and taking it again cost a page fault per 4 kB of new nodes, every
    // step. A one-off large graph's memory still goes back, once the work after it has shown
    // that it is not needed.
    void note_dropped(std::size_t footprint_before) {
        const std::size_t held = node_capacity_ + nary.capacity();
        if (4 * footprint_before >= held)
            dropped_since_busy_ = 0;
        else
            dropped_since_busy_ += footprint_before - footprint();
    }
    bool memory_unused() const {
        return (op.sparse() || nary.sparse()) && dropped_since_busy_ >= node_capacity_ + nary.capacity();
    }

    // Whether the side table has entries of nodes at or above `n` (dropped nodes').
    bool has_extras_from(std::size_t n) const {
        return extras_.size() > 0 && extras_[extras_.size() - 1].id >= n;
    }

    // Moves the entries of nodes at or above `n` (dropped ones') to dropped_; runs no code.
    void move_extras_from(std::size_t n) {
        while (has_extras_from(n)) {
            dropped_.push_back_unchecked(extras_[extras_.size() - 1]);  // room reserved
            extras_.truncate(extras_.size() - 1);
        }
    }

    // truncate_dead_top when Python code runs: freeing dropped nodes' extras, and breaking the
    // cycle of a top node held only by its own `_backward` (whose handle then dies). Either
    // may change anything, so look at the top again after each.
#if defined(__GNUC__)
    __attribute__((noinline))
#endif
    void truncate_running_python() {
        truncating_ = true;
        ++compaction_blocked;  // that code must not renumber the nodes under this loop
        for (;;) {
            const std::size_t n = drop_unowned_top();
            if (has_extras_from(n) || dropped_.size() > 0) {
                move_extras_from(n);
                release_dropped();
                continue;
            }
            if (!held_by_own_backward(n)) break;
            hooks.drop_backward(extras_of(NodeId(n - 1)));  // the handle dies: look again
        }
        --compaction_blocked;
        truncating_ = false;
        if (memory_unused()) give_back_memory();
    }

    // Whether the top node of an arena of `n` nodes (n - 1) is a micrograd-style node owned
    // only by a handle that its own `_backward` keeps alive.
    bool held_by_own_backward(std::size_t n) const {
        return n > 0 && op[n - 1] == Op::PyBackward && held_by_own_backward_at(NodeId(n - 1));
    }

    bool held_by_own_backward_at(NodeId id) const {
        if (op[id] != Op::PyBackward || owner[id] == nullptr || hooks.held_by_own_backward == nullptr) return false;
        void* extras = extras_of(id);
        return extras != nullptr && hooks.held_by_own_backward(owner[id], extras);
    }

    // micrograd's `out._backward = lambda: ... out.grad ...` is a closure over its own node:
    // the node's handle lives as long as the closure, and the closure as long as the node.
    // Before compacting, break that cycle for every such node nobody else needs: walking from
    // the top down (a closure's other references are to nodes below), each one whose handle
    // only its own closure keeps alive, and that no needed node above uses, lets go of its
    // closure. Stops if the Python code run by that changes the number of nodes.
    void break_dead_cycles() {
        if (py_backward_nodes_ == 0) return;
        const std::size_t n = size();
        PodArray<Mark> needed;  // not scratch_: the Python code run below may start a sweep
        needed.assign(n, Mark::No);
        truncating_ = true;  // no cycle breaking from the releases below: this loop does it
        ++compaction_blocked;
        for (std::size_t i = n; i-- > 0 && size() == n;) {
            if (owner[i] != nullptr && needed[i] == Mark::No && held_by_own_backward_at(NodeId(i))) {
                hooks.drop_backward(extras_of(NodeId(i)));
                if (owner[i] == nullptr) continue;
            }
            if (owner[i] != nullptr) needed[i] = Mark::Yes;
            if (needed[i] == Mark::No) continue;
            const Op o = op[i];
            if (is_nary(o)) {
                for (std::size_t k = 0; k < rhs[i]; ++k) needed[nary[lhs[i] + k]] = Mark::Yes;
            } else if (o != Op::Leaf) {
                needed[lhs[i]] = Mark::Yes;
                needed[rhs[i]] = Mark::Yes;
            }
        }
        --compaction_blocked;
        truncating_ = false;
        truncate_dead_top();
    }

    std::size_t live_handles_ = 0;
    std::size_t compactions_ = 0;
    std::size_t compact_at_ = kMinCompactSize;
    std::size_t dropped_since_busy_ = 0;  // see note_dropped()
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
            // Give back what the arrays that did grow took: the usable capacity is that of the
            // smallest, and what is left of memory may be needed to recover (a backward()).
            const std::size_t usable = std::min(node_capacity(), node_limit_);
            op.shrink_to(usable);
            lhs.shrink_to(usable);
            rhs.shrink_to(usable);
            data.shrink_to(usable);
            grad.shrink_to(usable);
            owner.shrink_to(usable);
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
#if defined(__GNUC__)
    __attribute__((noinline))
#endif
    void give_back_memory() {
        dropped_since_busy_ = 0;
        op.shrink_if_sparse();
        lhs.shrink_if_sparse();
        rhs.shrink_if_sparse();
        data.shrink_if_sparse();
        grad.shrink_if_sparse();
        owner.shrink_if_sparse();
        nary.shrink_if_sparse();
        if (sweeps_ == 0) {  // a running sweep's reached flags live there
            scratch_.clear();
            scratch_.shrink_if_sparse();
        }
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
// A constant pointer rather than a function-local static: every op reaches the arena, and a
// local static costs a guard check per call.
inline Arena* const the_arena = new Arena();
inline Arena& arena() { return *the_arena; }

}  // namespace arenagrad

// Arena::sweep, the reverse sweep behind backward(), in a header of its own.
#include "sweep.hpp"
