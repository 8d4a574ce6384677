// arenagrad.grad without create_graph: gradients as numbers, into a scratch buffer.
//
// The reverse sweep of backward() (sweep.hpp), with three differences that make it
// torch.autograd.grad: several outputs, each seeded with its own number; the gradients go into
// a scratch buffer, so no node's .grad changes; and the sweep stops at the lowest input, since
// no node below it can lead to one. Local derivatives and the order of additions are the op
// table's, as in backward(), so a leaf's gradient is the .grad backward() would give it, bit
// for bit (for one output seeded with 1.0, on zeroed grads).
//
// A micrograd-style node (a Python `_backward`, which reads its node's `.grad` and adds into
// its children's) is run as backward() runs it, on the scratch values: for the call, its node's
// and its children's grads hold their scratch values (0.0 for a child not reached yet), and
// afterwards the children's are read back into the scratch buffer and every grad is put back.
// That Python code may build or drop Values: compaction is blocked meanwhile (ids stay put),
// the arena's arrays are read afresh after each call, and a grad() it starts uses a
// GradientValues of its own (the caller sees to that).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "arena.hpp"
#include "ops.hpp"
#include "sweep.hpp"

namespace arenagrad {

class GradientValues {
public:
    // The gradient of every `inputs[k]` into result[k], and whether any output depends on it
    // into used[k] (unused inputs get 0.0). False if a Python `_backward` raised (the Python
    // error is set). The caller keeps the outputs' handles alive. Allocates; throws
    // std::bad_alloc.
    bool compute(Arena& graph, const NodeId* outputs, const double* seeds, std::size_t n_outputs,
                 const NodeId* inputs, std::size_t n_inputs, double* result, bool* used) {
        std::fill_n(result, n_inputs, 0.0);
        std::fill_n(used, n_inputs, false);
        if (n_outputs == 0 || n_inputs == 0) return true;
        const NodeId top = *std::max_element(outputs, outputs + n_outputs);
        const NodeId lowest = *std::min_element(inputs, inputs + n_inputs);
        if (lowest > top) return true;

        // Ids [0, top]: like backward()'s flags, so the node steps index them directly. A
        // gradient is written when its node is first reached, so only the flags are cleared.
        grads_.resize(std::size_t(top) + 1);
        reached_.assign(std::size_t(top) + 1, Reached::No);
        for (std::size_t k = 0; k < n_outputs; ++k) step_over(graph).add(outputs[k], seeds[k]);
        if (!graph.has_py_backward()) {
            sweep(graph.op.data(), step_over(graph), top, lowest);
        } else if (!sweep_calling_python(graph, top, lowest)) {
            return false;
        }

        for (std::size_t k = 0; k < n_inputs; ++k) {
            if (inputs[k] > top || reached_[inputs[k]] == Reached::No) continue;
            result[k] = grads_[inputs[k]];
            used[k] = true;
        }
        // After a big graph, keep no big buffers around.
        grads_.shrink_if_sparse();
        reached_.shrink_if_sparse();
        return true;
    }

private:
    // Not a char type, which may alias anything (see Arena::Sweep).
    enum class Reached : std::uint8_t { No, Yes };

    PodArray<double> grads_;
    PodArray<Reached> reached_;

    // Arena::Sweep's arrays, with this scratch buffer for the grads (local pointers, for the
    // same reason), for chain_rule().
    struct Step {
        const NodeId* first;
        const NodeId* second;
        const NodeId* operand_lists;
        const double* values;
        double* grads;
        Reached* reached;

        // grad += contribution, the grad starting at 0.0 when the node is first reached
        // (0.0 + c, not c: -0.0 becomes 0.0 as in backward() on zeroed grads).
        void add(NodeId operand, double contribution) const {
            if (reached[operand] == Reached::Yes) {
                grads[operand] += contribution;
            } else {
                grads[operand] = 0.0 + contribution;
                reached[operand] = Reached::Yes;
            }
        }

        template <Op O>
        void step(std::size_t i) const {
            chain_rule<O>(*this, i);  // sweep.hpp (no PyBackward node comes here: python_step runs those)
        }
    };

    Step step_over(Arena& graph) {
        return {graph.lhs.data(), graph.rhs.data(), graph.nary.data(), graph.data.data(), grads_.data(),
                reached_.data()};
    }

    // The sweep in stretches of native nodes, each down to the next micrograd-style node, whose
    // `_backward` runs between them (as in Arena::sweep).
    bool sweep_calling_python(Arena& graph, NodeId top, NodeId lowest) {
        struct Blocked {  // no compaction while Python code may run: ids stay put
            Arena& graph;
            explicit Blocked(Arena& g) : graph(g) { ++graph.compaction_blocked; }
            ~Blocked() { --graph.compaction_blocked; }
            Blocked(const Blocked&) = delete;
            Blocked& operator=(const Blocked&) = delete;
        } blocked(graph);
        std::ptrdiff_t from = std::ptrdiff_t(top);
        while (from >= std::ptrdiff_t(lowest)) {
            const std::ptrdiff_t next = graph.highest_py_backward(from);
            const std::ptrdiff_t stop = std::max(next, std::ptrdiff_t(lowest) - 1);
            if (from > stop) sweep(graph.op.data(), step_over(graph), std::size_t(from), std::size_t(stop + 1));
            if (next < std::ptrdiff_t(lowest)) break;
            if (reached_[std::size_t(next)] == Reached::Yes && !python_step(graph, NodeId(next))) return false;
            from = next - 1;
        }
        return true;
    }

    // Node i's Python `_backward`, on the scratch values (see the top of this file). Every grad
    // is read and written through the arena at the moment of use: the call may move its arrays.
    bool python_step(Arena& graph, NodeId i) {
        std::vector<NodeId> children(graph.nary.data() + graph.lhs[i],
                                     graph.nary.data() + graph.lhs[i] + graph.rhs[i]);
        std::sort(children.begin(), children.end());  // each once: a repeated child adds twice
        children.erase(std::unique(children.begin(), children.end()), children.end());
        std::vector<double> saved(children.size());
        const double saved_own = graph.grad[i];
        graph.grad[i] = grads_[i];
        for (std::size_t k = 0; k < children.size(); ++k) {
            const NodeId c = children[k];
            saved[k] = graph.grad[c];
            graph.grad[c] = reached_[c] == Reached::Yes ? grads_[c] : 0.0;
        }
        const bool ok = graph.run_python_backward(i);
        for (std::size_t k = 0; k < children.size(); ++k) {
            const NodeId c = children[k];
            if (ok) {
                grads_[c] = graph.grad[c];
                reached_[c] = Reached::Yes;
            }
            graph.grad[c] = saved[k];
        }
        graph.grad[i] = saved_own;
        return ok;
    }

    // Arena::sweep's loop, from `top` down to `lowest`.
    static void sweep(const Op* ops, const Step& s, std::size_t top, std::size_t lowest) {
        for (std::size_t i = top + 1; i-- > lowest;) {
            const Op o = ops[i];
            if (o == Op::Leaf || s.reached[i] == Reached::No) continue;
            step_node(s, o, i);  // never a micrograd-style node: the caller runs those
        }
    }
};

}  // namespace arenagrad
