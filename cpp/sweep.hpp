// The reverse sweep of the eager graph: micrograd's backward() over the arena's arrays.
//
// root.grad = 1, then every node reachable from the root, from the highest id down (a reverse
// topological order, see arena.hpp), adds local derivative * its grad into its operands. The
// local derivatives are the op table's (ops.hpp) in either of its two forms: the commonest ops
// take fast paths, the rules instantiated for that op; every other op goes through the table's
// run-time derivatives(). Arena::backward_generic sends every op through the latter, so tests
// can compare the two forms on every op.
#pragma once

#include <cstddef>

#include "arena.hpp"
#include "ops.hpp"

#if defined(__GNUC__)
#define AG_LIKELY(condition) __builtin_expect(bool(condition), 1)
#else
#define AG_LIKELY(condition) (condition)
#endif

namespace arenagrad {

// The arrays a sweep reads and writes, as raw pointers in a local object: a flag store is a
// byte store, which C++ lets alias any object, so with members the compiler would reload every
// array's pointer at every node.
struct Arena::Sweep {
    const NodeId* first;
    const NodeId* second;
    const NodeId* operand_lists;
    const double* values;
    double* grads;
    Mark* reached;

    void add(NodeId operand, double contribution) const {
        grads[operand] += contribution;
        reached[operand] = Mark::Yes;
    }

    // Node i's local derivatives times its grad, into its operands, in operand order.
    template <Op O>
    void step(std::size_t i) const {
        using Info = OpInfo<O>;
        using Rule = typename Info::Rule;
        const double g = grads[i], out = values[i];
        const NodeId a = first[i], b = second[i];
        if constexpr (Info::kind == Kind::Unary) {
            add(a, Rule::derivative(values[a], values[b], out) * g);
        } else if constexpr (Info::kind == Kind::Binary) {
            const Partials d = Rule::derivatives(values[a], values[b], out);
            add(a, d.da * g);
            add(b, d.db * g);
        } else if constexpr (is_selection<Rule>) {
            const NodeId* operands = operand_lists + a;  // b of them
            const std::uint32_t chosen = Rule::choose([&](std::uint32_t k) { return values[operands[k]]; }, b);
            for (std::uint32_t k = 0; k < b; ++k) add(operands[k], selection_derivative(k, chosen) * g);
        } else if constexpr (Info::kind == Kind::Nary) {
            static_assert(Rule::head <= 1 && Rule::term >= 1 && Rule::term <= 2, "a fold shape the sweep knows");
            const NodeId* operands = operand_lists + a;  // b of them
            if constexpr (Rule::head == 1) add(operands[0], Rule::d_head(values[operands[0]], out) * g);
            for (std::size_t k = Rule::head; k + Rule::term <= b; k += Rule::term) {
                if constexpr (Rule::term == 1) {
                    add(operands[k], Rule::d_term(values[operands[k]], out) * g);
                } else {
                    const NodeId u = operands[k], v = operands[k + 1];
                    const Partials d = Rule::d_term(values[u], values[v], out);
                    add(u, d.da * g);
                    add(v, d.db * g);
                }
            }
        }
    }
};

template <bool Generic>
void Arena::sweep(NodeId root) {
    scratch_.assign(std::size_t(root) + 1, Mark::No);  // reached[i]: is node i reachable?
    const Sweep s{lhs.data(), rhs.data(), nary.data(), data.data(), grad.data(), scratch_.data()};
    const Op* const ops = op.data();
    s.reached[root] = Mark::Yes;
    s.grads[root] = 1.0;
    for (std::size_t i = std::size_t(root) + 1; i-- > 0;) {
        const Op o = ops[i];
        if (o == Op::Leaf || s.reached[i] == Mark::No) continue;
        // The commonest ops first, in order of frequency. Through the switch alone every node
        // takes an indirect jump, which the CPU predicts worse than a branch (~1 ns per node
        // more on the benchmark graph); without the hint GCC turns this whole chain back into
        // one jump table.
        if (!Generic && AG_LIKELY(o == Op::Add)) {
            s.step<Op::Add>(i);
        } else if (!Generic && o == Op::Mul) {
            s.step<Op::Mul>(i);
        } else if (!Generic && o == Op::Linear) {
            s.step<Op::Linear>(i);
        } else if (!Generic && o == Op::Relu) {
            s.step<Op::Relu>(i);
        } else if (!Generic && o == Op::Sum) {
            s.step<Op::Sum>(i);
        } else if (!Generic && o == Op::Sub) {
            s.step<Op::Sub>(i);
        } else if (is_nary(o)) {
            // by value: a reference would let `s` escape, and its pointers be reloaded
            visit(o, [s, i](auto info) { s.step<decltype(info)::op>(i); });
        } else {
            // The table's run-time form: one small switch, inlined here, for every other op.
            const NodeId a = s.first[i], b = s.second[i];
            double da, db;
            derivatives(o, s.values[a], s.values[b], s.values[i], da, db);
            const double g = s.grads[i];
            s.add(a, da * g);
            if (is_binary(o)) s.add(b, db * g);
        }
    }
}

}  // namespace arenagrad
