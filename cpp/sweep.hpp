// The reverse sweep of the eager graph: micrograd's backward() over the arena's arrays.
//
// root.grad = 1, then every node reachable from the root, from the highest id down (a reverse
// topological order, see arena.hpp), adds local derivative * its grad into its operands. The
// local derivatives are the op table's (ops.hpp) in either of its two forms: the commonest ops
// take fast paths, the rules instantiated for that op; every other op goes through the table's
// run-time derivatives(). Arena::backward_generic sends every op through the latter, so tests
// can compare the two forms on every op.
//
// A micrograd-style user op (PyBackward) has no formula here: the sweep calls its Python
// `_backward` at the node's place. That code may build Values (growing, so moving, every
// array), drop them, or start another backward(); so compaction is blocked while a sweep runs
// (node ids stay put), the sweep re-reads every array after the call, and a sweep started
// from inside one gets reached flags of its own.
#pragma once

#include <algorithm>
#include <cstddef>

#include "arena.hpp"
#include "ops.hpp"

namespace arenagrad {

// Node i's local derivatives times its gradient, into its operands through s.add(), in operand
// order: the op table's chain rule, for both sweeps that add numbers (backward()'s below, and
// grad()'s in grad_values.hpp, which differ only in where the sums go). `s` holds the arrays as
// local pointers: first, second, operand_lists, values, grads.
template <Op O, typename S>
inline void chain_rule(const S& s, std::size_t i) {
    using Info = OpInfo<O>;
    using Rule = typename Info::Rule;
    const NodeId* const operand_lists = s.operand_lists;
    const double* const values = s.values;
    const double g = s.grads[i], out = values[i];
    const NodeId a = s.first[i], b = s.second[i];
    if constexpr (Info::kind == Kind::Unary) {
        s.add(a, Rule::derivative(values[a], values[b], out) * g);
    } else if constexpr (Info::kind == Kind::Binary) {
        const Partials d = Rule::derivatives(values[a], values[b], out);
        s.add(a, d.da * g);
        s.add(b, d.db * g);
    } else if constexpr (is_selection<Rule>) {
        const NodeId* operands = operand_lists + a;  // b of them
        const std::uint32_t chosen = Rule::choose([&](std::uint32_t k) { return values[operands[k]]; }, b);
        for (std::uint32_t k = 0; k < b; ++k) s.add(operands[k], selection_derivative(k, chosen) * g);
    } else if constexpr (Info::kind == Kind::Nary) {
        static_assert(Rule::head <= 1 && Rule::term >= 1 && Rule::term <= 2, "a fold shape the sweep knows");
        const NodeId* operands = operand_lists + a;  // b of them
        if constexpr (Rule::head == 1) s.add(operands[0], Rule::d_head(values[operands[0]], out) * g);
        for (std::size_t k = Rule::head; k + Rule::term <= b; k += Rule::term) {
            if constexpr (Rule::term == 1) {
                s.add(operands[k], Rule::d_term(values[operands[k]], out) * g);
            } else {
                const NodeId u = operands[k], v = operands[k + 1];
                const Partials d = Rule::d_term(values[u], values[v], out);
                s.add(u, d.da * g);
                s.add(v, d.db * g);
            }
        }
    }
}

// The arrays a sweep reads and writes, as raw pointers in a local object: a flag store is a
// byte store, which C++ lets alias any object, so with members the compiler would reload every
// array's pointer at every node.
template <bool Marking>
struct Arena::Sweep {
    const NodeId* first;
    const NodeId* second;
    const NodeId* operand_lists;
    const double* values;
    double* grads;
    Mark* reached;  // unused unless Marking

    Sweep(Arena& a, Mark* flags)
        : first(a.lhs.data()), second(a.rhs.data()), operand_lists(a.nary.data()), values(a.data.data()),
          grads(a.grad.data()), reached(flags) {}

    void add(NodeId operand, double contribution) const {
        grads[operand] += contribution;
        if constexpr (Marking) reached[operand] = Mark::Yes;
    }

    // Node i's local derivatives times its grad, into its operands, in operand order.
    template <Op O>
    void step(std::size_t i) const {
        // PyBackward has no formula: its Python `_backward` is run by the caller (Arena::sweep)
        if constexpr (O != Op::PyBackward) chain_rule<O>(*this, i);
    }
};

// One reached node's chain rule, by its op, for a sweep `s` that has step<O>(i) (Arena::Sweep,
// GradientValues::Step). False, doing nothing, for a micrograd-style node: the caller runs its
// Python. The commonest ops come first, in order of frequency: through the switch alone every
// node takes an indirect jump, which the CPU predicts worse than a branch (~0.6 ns per node
// more on the benchmark graph); without the hint GCC turns this whole chain back into one jump
// table.
template <typename S>
inline bool step_node(const S& s, Op o, std::size_t i) {
    if (AG_LIKELY(o == Op::Add)) {
        s.template step<Op::Add>(i);
    } else if (o == Op::Mul) {
        s.template step<Op::Mul>(i);
    } else if (o == Op::Linear) {
        s.template step<Op::Linear>(i);
    } else if (o == Op::Relu) {
        s.template step<Op::Relu>(i);
    } else if (o == Op::Sum) {
        s.template step<Op::Sum>(i);
    } else if (o == Op::Sub) {
        s.template step<Op::Sub>(i);
    } else if (is_nary(o)) {
        if (o == Op::PyBackward) return false;
        // By value: a reference would let `s` escape, and its pointers be reloaded.
        visit(o, [s, i](auto info) { s.template step<decltype(info)::op>(i); });
    } else {
        // The table's run-time form: one small switch, inlined here, for every other op.
        // (A jump table over every op here would take the chain above into it.)
        const NodeId a = s.first[i], b = s.second[i];
        double da, db;
        derivatives(o, s.values[a], s.values[b], s.values[i], da, db);
        const double g = s.grads[i];
        s.add(a, da * g);
        if (is_binary(o)) s.add(b, db * g);
    }
    return true;
}

// The reached flags of a sweep, and the arena's state while it runs.
struct Arena::SweepScope {
    Arena& arena;
    PodArray<Mark> own;  // flags of a sweep started while another runs
    Mark* reached;

    SweepScope(Arena& a, std::size_t n) : arena(a) {
        PodArray<Mark>& flags = a.sweeps_ == 0 ? a.scratch_ : own;
        flags.assign(n, Mark::No);  // may throw: before anything changes
        reached = flags.data();
        ++a.sweeps_;
        ++a.compaction_blocked;
    }
    ~SweepScope() {
        --arena.sweeps_;
        --arena.compaction_blocked;
    }
    SweepScope(const SweepScope&) = delete;
    SweepScope& operator=(const SweepScope&) = delete;
};

template <bool Generic>
bool Arena::sweep(NodeId root, double seed) {
    SweepScope scope(*this, std::size_t(root) + 1);  // reached[i]: is node i reachable?
    scope.reached[root] = Mark::Yes;
    grad[root] = seed;
    // The native nodes run in sweep_native, down to the next micrograd-style node it
    // reaches, whose Python `_backward` runs here; then on below it, every array read afresh.
    std::size_t top = std::size_t(root);
    for (;;) {
        const std::ptrdiff_t at = sweep_native<Generic>(top, scope.reached);
        if (at < 0) return true;
        const std::size_t i = std::size_t(at);
        const NodeId* children = nary.data() + lhs[i];
        for (std::size_t k = 0; k < rhs[i]; ++k) scope.reached[children[k]] = Mark::Yes;  // micrograd visits them
        if (!call_python_backward(NodeId(i))) return false;
        if (i == 0) return true;
        top = i - 1;
    }
}

// Nodes top, top - 1, ..., down to 0, or up to the first reached micrograd-style node, whose
// id it returns (-1 if none: the sweep is done). GCC 12 turns the array reads of
// this loop into one pointer per array, stepped at every node, even for the nodes it skips
// (~3 more instructions per node, ~10% of the sweep); without induction-variable
// optimisation it indexes them, as here, and with a signed index counting down to 0 the loop
// costs two instructions per node (`sub; jns`; an unsigned `i-- > 0` costs four here).
// fp-contract=off is the build's own setting, repeated so that no compiler reading the
// attribute as a reset of the options fuses `g += d * g_out`.
template <bool Generic>
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((noinline, optimize("no-ivopts", "fp-contract=off")))
#endif
std::ptrdiff_t Arena::sweep_native(std::size_t top, Mark* reached) {
    const Sweep<true> s(*this, reached);
    const Op* const ops = op.data();
    for (std::ptrdiff_t n = std::ptrdiff_t(top); n >= 0; --n) {
        const std::size_t i = std::size_t(n);
        const Op o = ops[i];
        if (o == Op::Leaf || s.reached[i] == Mark::No) continue;
        if (Generic) {
            // The table's run-time form: one small switch (tests compare it with the other).
            if (is_nary(o)) {
                if (o == Op::PyBackward) return std::ptrdiff_t(i);
                visit(o, [s, i](auto info) { s.template step<decltype(info)::op>(i); });
                continue;
            }
            const NodeId a = s.first[i], b = s.second[i];
            double da, db;
            derivatives(o, s.values[a], s.values[b], s.values[i], da, db);
            const double g = s.grads[i];
            s.add(a, da * g);
            if (is_binary(o)) s.add(b, db * g);
        } else if (!step_node(s, o, i)) {
            return std::ptrdiff_t(i);
        }
    }
    return -1;
}

// The highest PyBackward node at or below `top`, or -1.
inline std::ptrdiff_t Arena::highest_py_backward(std::ptrdiff_t top) const {
    const NodeExtra* begin = extras_.data();
    const NodeExtra* at = std::upper_bound(begin, begin + extras_.size(), top,
                                           [](std::ptrdiff_t id, const NodeExtra& e) { return id < std::ptrdiff_t(e.id); });
    while (at != begin) {
        --at;
        if (op[at->id] == Op::PyBackward) return std::ptrdiff_t(at->id);
    }
    return -1;
}

inline bool Arena::backward_node(NodeId id) {
    const Op o = op[id];
    if (o == Op::PyBackward) return call_python_backward(id);
    const Sweep<false> s(*this, nullptr);
    visit(o, [&s, id](auto info) { s.template step<decltype(info)::op>(id); });
    return true;
}

}  // namespace arenagrad
