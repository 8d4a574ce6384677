// arenagrad.grad with create_graph=True: gradients as nodes of the graph.
//
// The reverse sweep of backward(), but where backward() adds numbers, this one pushes nodes:
// each op's rule builds `d * grad` from ops of the table (its grad_a/grad_b/grad_head/
// grad_term functions in ops.hpp), so the gradients it returns are ordinary nodes that can be
// differentiated again, compiled into a replay, or drawn. Their values are what backward()
// computes, bit for bit, since the rules use the same operations in the same order and the
// contributions to a node are added in the sweep's order: one linear node
// 0.0 + d_1 * g_1 + d_2 * g_2 + ..., whose fold is the sweep's `grad += d * g`. A rule's
// product d * g is therefore not pushed as a mul node when it is made, only its factors are
// kept; a neuron's derivative, like the neuron, is then one node per operand, not one per term.
//
// Only nodes on a path from an output to an input are visited, and only operands on such a
// path get contributions (torch.autograd.grad does the same): the nodes built are the ones
// the gradients need, and nothing else.
//
// The sweep pushes nodes while it walks the arena: pushes may move the arena's arrays, so it
// keeps ids, never pointers, and reads every node through the arena at the moment of use.
// New nodes get ids above every node the sweep visits, so it never walks them. The caller
// makes sure no compaction runs meanwhile (none can: no Python code runs during the sweep).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "arena.hpp"
#include "ops.hpp"

namespace arenagrad {

// A contribution d * grad not built yet (see the top of this file).
struct Product {
    NodeId factor, grad;
};

// Thrown by the rule of an op whose derivative is not made of ops (a Python callback): the
// binding reports the node's `_op` (docs/higher_order.md).
struct NoDerivativeGraph {
    NodeId node;
};

// The `nodes` argument of the rules' derivative-graph functions: pushes table ops.
class GraphBuilder {
public:
    explicit GraphBuilder(Arena& graph) : graph_(graph) {}

    Product times(NodeId d, NodeId grad) const { return {d, grad}; }
    // For a rule that cannot build its derivative: `return nodes.refuse(out);`.
    [[noreturn]] NodeId refuse(NodeId node) const { throw NoDerivativeGraph{node}; }

    NodeId add(NodeId x, NodeId y) { return graph_.binary(Op::Add, x, y); }
    NodeId sub(NodeId x, NodeId y) { return graph_.binary(Op::Sub, x, y); }
    NodeId mul(NodeId x, NodeId y) { return graph_.binary(Op::Mul, x, y); }
    NodeId div(NodeId x, NodeId y) { return graph_.binary(Op::Div, x, y); }
    NodeId pow(NodeId x, NodeId y) { return graph_.binary(Op::Pow, x, y); }
    NodeId unary(Op o, NodeId x) { return graph_.unary(o, x); }  // any other unary op
    NodeId neg(NodeId x) { return graph_.unary(Op::Neg, x); }
    NodeId log(NodeId x) { return graph_.unary(Op::Log, x); }
    NodeId abs(NodeId x) { return graph_.unary(Op::Abs, x); }
    NodeId relu(NodeId x) { return graph_.unary(Op::Relu, x); }
    NodeId step(NodeId x) { return graph_.unary(Op::Step, x); }
    NodeId sign(NodeId x) { return graph_.unary(Op::Sign, x); }
    // x where `condition` is nonzero, else 0; the condition is read, not differentiated.
    NodeId mask(NodeId x, NodeId condition) { return graph_.binary(Op::Mask, x, condition); }
    // x ** k for a number k, as a PowConst or PowConstInt node (`power`), its exponent leaf
    // one of the constants.
    NodeId pow_const(NodeId x, double k, Op power) { return graph_.binary(power, x, constant(k)); }
    double value(NodeId x) const { return graph_.data[x]; }

    // A leaf holding v; one per value and per sweep (a graph needs many 1.0s).
    NodeId constant(double v) {
        const auto known = constants_.find(bits_of(v));
        if (known != constants_.end()) return known->second;
        const NodeId id = graph_.leaf(v);
        constants_.emplace(bits_of(v), id);
        return id;
    }

private:
    Arena& graph_;
    std::unordered_map<std::uint64_t, NodeId> constants_;  // by bit pattern: -0.0 is not 0.0

    static std::uint64_t bits_of(double v) {
        std::uint64_t bits;
        std::memcpy(&bits, &v, sizeof bits);
        return bits;
    }
};

// The gradient of an input that no output depends on: none.
constexpr NodeId kNoGradient = 0xFFFFFFFFu;

class GradientGraph {
public:
    // Pushes the nodes of d(outputs)/d(inputs), seeded with the nodes `seeds` (one per output),
    // and returns each input's gradient node, or kNoGradient where no output depends on it.
    // `nodes` must build into `graph`. Throws std::bad_alloc (ArenaFull) with the pushed
    // nodes left unowned on top of the arena.
    static std::vector<NodeId> build(Arena& graph, GraphBuilder& nodes, const std::vector<NodeId>& outputs,
                                     const std::vector<NodeId>& seeds, const std::vector<NodeId>& inputs) {
        std::vector<NodeId> result(inputs.size(), kNoGradient);
        if (outputs.empty() || inputs.empty()) return result;
        const NodeId top = *std::max_element(outputs.begin(), outputs.end());
        const NodeId lowest = *std::min_element(inputs.begin(), inputs.end());
        if (lowest > top) return result;
        GradientGraph sweep(graph, nodes, lowest, top);
        sweep.mark_paths(inputs);
        for (std::size_t k = 0; k < outputs.size(); ++k)
            if (sweep.wants(outputs[k])) sweep.contribute(outputs[k], seeds[k]);
        sweep.run();
        for (std::size_t k = 0; k < inputs.size(); ++k)
            if (inputs[k] <= top) result[k] = sweep.total_[inputs[k] - lowest];
        return result;
    }

private:
    // Contributions to a node's gradient, in the order the sweep makes them: a linked list per
    // node, in one array. A node, or (grad != kNode) the product node * grad.
    struct Contribution {
        NodeId node, grad;
        std::uint32_t next;
    };
    static constexpr std::uint32_t kEnd = 0xFFFFFFFFu;
    static constexpr NodeId kNode = 0xFFFFFFFFu;

    Arena& graph_;
    GraphBuilder& nodes_;
    const NodeId lowest_, top_;       // the sweep's range of ids; arrays below are indexed id - lowest_
    std::vector<std::uint8_t> on_path_;  // leads to an input
    std::vector<std::uint32_t> first_, last_;
    std::vector<NodeId> total_;       // the gradient node, once the sweep has passed the node
    std::vector<Contribution> contributions_;
    std::vector<Contribution> terms_;  // one node's contributions, while its total is built

    GradientGraph(Arena& graph, GraphBuilder& nodes, NodeId lowest, NodeId top)
        : graph_(graph),
          nodes_(nodes),
          lowest_(lowest),
          top_(top),
          on_path_(std::size_t(top - lowest) + 1, 0),
          first_(std::size_t(top - lowest) + 1, kEnd),
          last_(std::size_t(top - lowest) + 1, kEnd),
          total_(std::size_t(top - lowest) + 1, kNoGradient) {}

    // Which nodes lead to an input: the inputs, and every node with an operand that does (ids
    // are topological, so one upward pass). Only operands that receive gradients count (not
    // PowConst's exponent or Mask's condition).
    void mark_paths(const std::vector<NodeId>& inputs) {
        for (NodeId id : inputs)
            if (id <= top_) on_path_[id - lowest_] = 1;
        for (std::size_t i = lowest_; i <= top_; ++i) {
            if (on_path_[i - lowest_] != 0) continue;
            graph_.for_each_child(NodeId(i), [&](NodeId operand) {
                if (operand >= lowest_ && on_path_[operand - lowest_] != 0) on_path_[i - lowest_] = 1;
            });
        }
    }

    bool wants(NodeId id) const { return id >= lowest_ && on_path_[id - lowest_] != 0; }

    void contribute(NodeId id, NodeId contribution) { add(id, {contribution, kNode, kEnd}); }
    void contribute(NodeId id, Product product) { add(id, {product.factor, product.grad, kEnd}); }

    void add(NodeId id, Contribution contribution) {
        const std::size_t at = id - lowest_;
        const auto index = std::uint32_t(contributions_.size());
        contributions_.push_back(contribution);
        if (first_[at] == kEnd)
            first_[at] = index;
        else
            contributions_[last_[at]].next = index;
        last_[at] = index;
    }

    // The node's gradient: its one contribution (a product as a mul node), or its
    // contributions added in order from 0.0, as the sweep adds them into a zeroed grad: a sum
    // node if they are all nodes, else a linear node 0.0 + d_1 * g_1 + ..., where a node c
    // is the term c * 1.0 (exactly c).
    NodeId total(std::size_t at) {
        terms_.clear();
        bool products = false;
        for (std::uint32_t c = first_[at]; c != kEnd; c = contributions_[c].next) {
            terms_.push_back(contributions_[c]);
            products = products || contributions_[c].grad != kNode;
        }
        const Contribution only = terms_[0];
        if (terms_.size() == 1) return only.grad == kNode ? only.node : nodes_.mul(only.node, only.grad);
        if (!products) return graph_.sum(terms_.size(), [&](std::size_t k) { return terms_[k].node; });
        const NodeId zero = nodes_.constant(0.0);
        const NodeId one = nodes_.constant(1.0);
        return graph_.linear(
            zero, terms_.size(), [&](std::size_t k) { return terms_[k].node; },
            [&](std::size_t k) { return terms_[k].grad == kNode ? one : terms_[k].grad; });
    }

    void run() {
        for (std::size_t i = std::size_t(top_) + 1; i-- > lowest_;) {
            const std::size_t at = i - lowest_;
            if (first_[at] == kEnd) continue;  // no path from an output, or none to an input
            const NodeId grad = total(at);
            total_[at] = grad;
            const Op o = graph_.op[i];
            if (o != Op::Leaf) visit(o, [&](auto info) { step<decltype(info)::op>(NodeId(i), grad); });
        }
    }

    // Node i's rule builds, for each operand on a path to an input, its local derivative times
    // `grad`, in the eager sweep's operand order. Operands are read through the arena each
    // time: pushes may move its arrays (n-ary lists are read by index for the same reason).
    template <Op O>
    void step(NodeId i, NodeId grad) {
        using Info = OpInfo<O>;
        using Rule = typename Info::Rule;
        const NodeId a = graph_.lhs[i], b = graph_.rhs[i];
        if constexpr (Info::kind == Kind::Unary) {
            if (wants(a)) contribute(a, Rule::grad_a(nodes_, a, b, i, grad));
        } else if constexpr (Info::kind == Kind::Binary) {
            if (wants(a)) contribute(a, Rule::grad_a(nodes_, a, b, i, grad));
            if (wants(b)) contribute(b, Rule::grad_b(nodes_, a, b, i, grad));
        } else if constexpr (O == Op::Take) {
            // d_v_k = take(one-hot at k, index): the choice stays a node, so a replay makes it
            // per lane; the index gets 0 * grad
            const std::size_t offset = a;
            const std::uint32_t count = b;
            for (std::uint32_t k = 0; k < count; ++k) {
                const NodeId v = graph_.nary[offset + k];
                if (!wants(v)) continue;
                if (k == 0) {
                    contribute(v, nodes_.times(nodes_.constant(0.0), grad));
                    continue;
                }
                const NodeId one = nodes_.constant(1.0), zero = nodes_.constant(0.0);
                const NodeId d = graph_.select(Op::Take, count, [&](std::size_t j) {
                    return j == 0 ? graph_.nary[offset] : j == k ? one : zero;
                });
                contribute(v, nodes_.times(d, grad));
            }
        } else if constexpr (O == Op::Max) {
            // d_v_k = tie_k * (1 - d_v_0 - ... - d_v_k-1), tie_k = 1 - step(out - v_k): 1 for the
            // first operand equal to out. (Where an operand is nan every tie_k is 1, so the
            // first operand gets the 1: exact only without nan.)
            const std::size_t offset = a;
            const std::uint32_t count = b;
            NodeId rest = nodes_.constant(1.0);
            for (std::uint32_t k = 0; k < count; ++k) {
                const NodeId v = graph_.nary[offset + k];
                const NodeId gap = nodes_.sub(i, v);
                const NodeId above = nodes_.step(gap);
                const NodeId tie = nodes_.sub(nodes_.constant(1.0), above);
                const NodeId d = nodes_.mul(tie, rest);
                if (k + 1 < count) rest = nodes_.sub(rest, d);
                if (wants(v)) contribute(v, nodes_.times(d, grad));
            }
        } else if constexpr (Info::kind == Kind::Nary) {
            static_assert(Rule::head <= 1 && Rule::term >= 1 && Rule::term <= 2, "a fold shape the sweep knows");
            const std::size_t offset = a, count = b;
            if constexpr (Rule::head == 1) {
                const NodeId h = graph_.nary[offset];
                if (wants(h)) contribute(h, Rule::grad_head(nodes_, h, i, grad));
            }
            for (std::size_t k = Rule::head; k + Rule::term <= count; k += Rule::term) {
                if constexpr (Rule::term == 1) {
                    const NodeId v = graph_.nary[offset + k];
                    if (wants(v)) contribute(v, Rule::grad_term(nodes_, v, i, grad));
                } else {
                    const NodeId u = graph_.nary[offset + k], v = graph_.nary[offset + k + 1];
                    if (wants(u)) contribute(u, Rule::grad_term_a(nodes_, u, v, i, grad));
                    if (wants(v)) contribute(v, Rule::grad_term_b(nodes_, u, v, i, grad));
                }
            }
        }
    }
};

}  // namespace arenagrad
