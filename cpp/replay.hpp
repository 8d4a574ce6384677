// Replaying a tape: the forward and backward walks over a block of lanes.
//
// A "block" is `n` neighbouring lanes stored node-major: row s holds slot s of every lane in
// the block (value s of lane l is val[s * stride + l]). The CPU driver (replay_cpu.hpp) walks
// tiles of up to 64 lanes whose rows stay in L2; the CUDA kernels (cuda/elementwise.cu) walk a
// block of one lane per thread inside rows that span the whole batch, so neighbouring threads
// touch neighbouring memory. Both call forward_sweep/backward_sweep below, which run a block of
// one lane (every CUDA thread, the invariant part, a batch of one) on scalars and a wider block
// row by row. Either way the arithmetic is the op table's rules (ops.hpp), in the same order as
// the eager arena, so a lane's values and its inputs' gradients are those of evaluating the
// function eagerly on that lane.
//
// Gradients for invariant slots reach a Sink. Eager evaluation differentiates each lane on its
// own and the lanes' parameter gradients are then added up, so the replay does the same: a
// contribution to an invariant *op* (say `p * q`, computed once per forward) stays per lane,
// in a row the sink holds for it, and backward_shared() then carries those rows through the
// invariant part, lane by lane, down to its leaves (parameters and constants). Only a leaf's
// contributions are summed over the lanes: over the block in a fixed order (CPU), or kept per
// lane for a later fixed-order reduction (CUDA). So a lane sum never meets a local derivative
// that eager evaluation applies per lane (an overflow in one would give inf where the other
// is finite).
#pragma once

#include <cstddef>
#include <cstdint>

#include "ops.hpp"
#include "tape.hpp"

namespace arenagrad {

// The memory of one block of lanes.
struct Lanes {
    double* val;        // rows of values, one per lane slot
    double* grad;       // rows of gradients (backward only)
    std::size_t stride;  // distance between rows
    unsigned n;          // lanes in this block
    const double* inv;   // values of the invariant slots, shared by every lane
};

// An operand as seen by a block: a row (one value per lane) or one shared value.
struct Operand {
    const double* p;
    bool lane;
};

AG_HOST_DEVICE inline Operand operand(const Lanes& x, std::uint32_t ref) {
    if (is_invariant(ref)) return {x.inv + slot_of(ref), false};
    return {x.val + std::size_t(ref) * x.stride, true};
}

// f(l, a_l, b_l) for every lane, with a shared operand loaded once: separate loops per case
// so the compiler vectorises each of them.
template <typename F>
AG_HOST_DEVICE inline void for_lanes(Operand a, Operand b, unsigned n, F f) {
    if (a.lane && b.lane) {
        for (unsigned l = 0; l < n; ++l) f(l, a.p[l], b.p[l]);
    } else if (a.lane) {
        const double bv = b.p[0];
        for (unsigned l = 0; l < n; ++l) f(l, a.p[l], bv);
    } else if (b.lane) {
        const double av = a.p[0];
        for (unsigned l = 0; l < n; ++l) f(l, av, b.p[l]);
    } else {
        const double av = a.p[0], bv = b.p[0];
        for (unsigned l = 0; l < n; ++l) f(l, av, bv);
    }
}

// A sink receives the per-lane gradient contributions to invariant slots:
//   add(slot, c, n)             c[l] for each lane l < n
//   add_products(slot, a, b, n) a[l] * b[l] for each lane
//   row(slot)                   an invariant op's gradient row, one entry per lane (the
//                               contributions add() gave it), which backward_shared() reads
// A leaf's contributions may be summed over the lanes on arrival; an op's must stay per lane.

// ---- one lane ------------------------------------------------------------------------
// A block of one lane (the invariant part, a CUDA thread, a batch of one) runs each node on
// scalars: a fold stays in a register and a node costs no lane loops. The same rules in the
// same order as a wider block, so the results are the same bits.

// The slots of a one-lane block. Packed: rows one apart (the invariant part, a CPU batch of
// one), known at compile time, since a multiply by the stride on every operand load cost ~15%
// of a one-lane sweep.
template <bool Packed>
struct OneLane {
    Lanes x;

    AG_HOST_DEVICE std::size_t at(std::uint32_t slot) const { return Packed ? slot : std::size_t(slot) * x.stride; }
    AG_HOST_DEVICE double& value(std::uint32_t slot) const { return x.val[at(slot)]; }
    AG_HOST_DEVICE double& grad(std::uint32_t slot) const { return x.grad[at(slot)]; }
    // An operand: a slot of this block or, with the kInvariant bit, a shared value.
    AG_HOST_DEVICE double operand(std::uint32_t ref) const {
        return is_invariant(ref) ? x.inv[slot_of(ref)] : value(ref);
    }
};

template <Op O, bool Packed>
AG_HOST_DEVICE inline void forward_one(const TapeView& t, const OneLane<Packed>& x, std::uint32_t i) {
    using Info = OpInfo<O>;
    using Rule = typename Info::Rule;
    if constexpr (is_selection<Rule>) {
        const std::uint32_t* ops = t.nary + t.a[i];
        x.value(i) = selected_value<Rule>([&](std::uint32_t k) { return x.operand(ops[k]); }, t.b[i]);
    } else if constexpr (Info::kind == Kind::Nary) {
        const std::uint32_t* ops = t.nary + t.a[i];
        double acc;
        if constexpr (Rule::head == 0)
            acc = Rule::start();
        else
            acc = Rule::start(x.operand(ops[0]));
        for (std::uint32_t k = Rule::head; k + Rule::term <= t.b[i]; k += Rule::term) {
            if constexpr (Rule::term == 1)
                acc = Rule::step(acc, x.operand(ops[k]));
            else
                acc = Rule::step(acc, x.operand(ops[k]), x.operand(ops[k + 1]));
        }
        x.value(i) = acc;
    } else if constexpr (Info::kind != Kind::Leaf) {  // a tape's leaves are its filled slots, never its ops
        x.value(i) = Rule::forward(x.operand(t.a[i]), x.operand(t.b[i]));
    }
}

// grad[ref] += c, in place for a slot of the block, through the sink for a shared one.
template <bool Packed, typename Sink>
AG_HOST_DEVICE inline void accumulate_one(const OneLane<Packed>& x, Sink& sink, std::uint32_t ref, double c) {
    if (is_invariant(ref))
        sink.add(slot_of(ref), &c, 1);
    else
        x.grad(ref) += c;
}

// Node i's backward, its gradient being g.
template <Op O, bool Packed, typename Sink>
AG_HOST_DEVICE inline void backward_one(const TapeView& t, const OneLane<Packed>& x, Sink& sink, std::uint32_t i,
                                        double g) {
    using Info = OpInfo<O>;
    using Rule = typename Info::Rule;
    const double out = x.value(i);
    const std::uint32_t a = t.a[i], b = t.b[i];
    if constexpr (Info::kind == Kind::Unary) {
        accumulate_one(x, sink, a, Rule::derivative(x.operand(a), x.operand(b), out) * g);
    } else if constexpr (Info::kind == Kind::Binary) {
        const Partials d = Rule::derivatives(x.operand(a), x.operand(b), out);
        if (a == b && !is_invariant(a)) {  // `p * p`: both additions in a register, in order
            double& r = x.grad(a);
            r = (r + d.da * g) + d.db * g;
            return;
        }
        accumulate_one(x, sink, a, d.da * g);
        accumulate_one(x, sink, b, d.db * g);
    } else if constexpr (is_selection<Rule>) {
        const std::uint32_t* ops = t.nary + a;  // b operands
        const std::uint32_t chosen = Rule::choose([&](std::uint32_t k) { return x.operand(ops[k]); }, b);
        for (std::uint32_t k = 0; k < b; ++k) accumulate_one(x, sink, ops[k], selection_derivative(k, chosen) * g);
    } else if constexpr (Info::kind == Kind::Nary) {
        const std::uint32_t* ops = t.nary + a;  // b operands
        if constexpr (Rule::head == 1) accumulate_one(x, sink, ops[0], Rule::d_head(x.operand(ops[0]), out) * g);
        for (std::uint32_t k = Rule::head; k + Rule::term <= b; k += Rule::term) {
            if constexpr (Rule::term == 1) {
                accumulate_one(x, sink, ops[k], Rule::d_term(x.operand(ops[k]), out) * g);
            } else {
                const Partials d = Rule::d_term(x.operand(ops[k]), x.operand(ops[k + 1]), out);
                accumulate_one(x, sink, ops[k], d.da * g);
                accumulate_one(x, sink, ops[k + 1], d.db * g);
            }
        }
    }
}

template <Op O, bool Packed, typename Sink>
AG_HOST_DEVICE inline void backward_one(const TapeView& t, const OneLane<Packed>& x, Sink& sink, std::uint32_t i) {
    backward_one<O>(t, x, sink, i, x.grad(i));
}

// ---- blocks of lanes -------------------------------------------------------------------
// Each node over every lane of the block, one operand row at a time, in loops the compiler
// vectorises.

// Unary and binary ops: the rule's forward(a, b) for every lane.
template <typename Rule>
AG_HOST_DEVICE inline void forward_elementwise(double* out, Operand a, Operand b, unsigned n) {
    for_lanes(a, b, n, [&](unsigned l, double av, double bv) { out[l] = Rule::forward(av, bv); });
}

// N-ary ops: the rule's fold, one operand (or term) at a time over all the lanes.
template <typename Rule>
AG_HOST_DEVICE inline void forward_fold(double* out, const Lanes& x, const std::uint32_t* ops, std::uint32_t count) {
    static_assert(Rule::head <= 1 && Rule::term >= 1 && Rule::term <= 2, "a fold shape the replay knows");
    if constexpr (Rule::head == 0) {
        for (unsigned l = 0; l < x.n; ++l) out[l] = Rule::start();
    } else {
        const Operand h = operand(x, ops[0]);
        for_lanes(h, h, x.n, [&](unsigned l, double hv, double) { out[l] = Rule::start(hv); });
    }
    for (std::uint32_t k = Rule::head; k + Rule::term <= count; k += Rule::term) {
        const Operand u = operand(x, ops[k]), v = operand(x, ops[k + Rule::term - 1]);
        if constexpr (Rule::term == 1)
            for_lanes(u, u, x.n, [&](unsigned l, double uv, double) { out[l] = Rule::step(out[l], uv); });
        else
            for_lanes(u, v, x.n, [&](unsigned l, double uv, double vv) { out[l] = Rule::step(out[l], uv, vv); });
    }
}

// Selections: each lane chooses its own operand (a lane's index, a lane's largest value).
template <typename Rule>
AG_HOST_DEVICE inline void forward_select(double* out, const Lanes& x, const std::uint32_t* ops, std::uint32_t count) {
    for (unsigned l = 0; l < x.n; ++l) {
        out[l] = selected_value<Rule>(
            [&](std::uint32_t k) {
                const Operand o = operand(x, ops[k]);
                return o.p[o.lane ? l : 0];
            },
            count);
    }
}

template <Op O>
AG_HOST_DEVICE inline void forward_block(const TapeView& t, const Lanes& x, std::uint32_t i) {
    using Info = OpInfo<O>;
    double* out = x.val + std::size_t(i) * x.stride;
    if constexpr (is_selection<typename Info::Rule>)
        forward_select<typename Info::Rule>(out, x, t.nary + t.a[i], t.b[i]);
    else if constexpr (Info::kind == Kind::Nary)
        forward_fold<typename Info::Rule>(out, x, t.nary + t.a[i], t.b[i]);
    else if constexpr (Info::kind != Kind::Leaf)
        forward_elementwise<typename Info::Rule>(out, operand(x, t.a[i]), operand(x, t.b[i]), x.n);
}


// grad[ref] += contribution, per lane for a lane slot, through the sink for a shared one.
template <typename Sink>
AG_HOST_DEVICE inline void accumulate(const Lanes& x, Sink& sink, std::uint32_t ref, const double* c) {
    if (is_invariant(ref)) {
        sink.add(slot_of(ref), c, x.n);
        return;
    }
    double* g = x.grad + std::size_t(ref) * x.stride;
    for (unsigned l = 0; l < x.n; ++l) g[l] += c[l];
}

// grad[ref] += f(l, a_l, b_l) for every lane: in place for a lane slot; for a shared one
// through a scratch row (W: the most lanes a block can have) and the sink.
template <int W, typename Sink, typename F>
AG_HOST_DEVICE inline void accumulate_each(const Lanes& x, Sink& sink, std::uint32_t ref, Operand a, Operand b, F f) {
    if (is_invariant(ref)) {
        double c[W];
        for_lanes(a, b, x.n, [&](unsigned l, double av, double bv) { c[l] = f(l, av, bv); });
        sink.add(slot_of(ref), c, x.n);
        return;
    }
    double* gr = x.grad + std::size_t(ref) * x.stride;
    for_lanes(a, b, x.n, [&](unsigned l, double av, double bv) { gr[l] += f(l, av, bv); });
}

// Unary and binary ops: each operand's local derivative times the node's grad.
template <typename Info, int W, typename Sink>
AG_HOST_DEVICE inline void backward_elementwise(const Lanes& x, Sink& sink, const double* out, const double* g,
                                                std::uint32_t ra, std::uint32_t rb) {
    using Rule = typename Info::Rule;
    double ca[W], cb[W];
    for_lanes(operand(x, ra), operand(x, rb), x.n, [&](unsigned l, double av, double bv) {
        if constexpr (Info::kind == Kind::Unary) {
            ca[l] = Rule::derivative(av, bv, out[l]) * g[l];
        } else {
            const Partials d = Rule::derivatives(av, bv, out[l]);
            ca[l] = d.da * g[l];
            cb[l] = d.db * g[l];
        }
    });
    accumulate(x, sink, ra, ca);
    if constexpr (Info::kind == Kind::Binary) accumulate(x, sink, rb, cb);
}

// Linear's local derivatives are d_w = x and d_x = w, so a shared weight's gradient over the
// lanes is sum_l x_l * g_l: the sink's add_products, without a scratch row. This is the bulk
// of an MLP's backward; the spot check ties the shortcut to the rule.
static_assert(rules::Linear::d_term(2.0, 3.0, 5.0).da == 3.0 && rules::Linear::d_term(2.0, 3.0, 5.0).db == 2.0,
              "the shared-weight path below assumes Linear's d_w = x and d_x = w");

// N-ary ops: the rule's local derivative of each operand (head, then term by term, in operand
// order) times the node's grad. A derivative that is One passes the grad row itself.
template <typename Info, int W, typename Sink>
AG_HOST_DEVICE inline void backward_fold(const Lanes& x, Sink& sink, const double* out, const double* g,
                                         const std::uint32_t* ops, std::uint32_t count) {
    using Rule = typename Info::Rule;
    if constexpr (Rule::head == 1) {
        const Operand h = operand(x, ops[0]);
        if constexpr (is_one<decltype(Rule::d_head(0.0, 0.0))>)
            accumulate(x, sink, ops[0], g);
        else
            accumulate_each<W>(x, sink, ops[0], h, h,
                               [&](unsigned l, double hv, double) { return Rule::d_head(hv, out[l]) * g[l]; });
    }
    for (std::uint32_t k = Rule::head; k + Rule::term <= count; k += Rule::term) {
        const Operand u = operand(x, ops[k]), v = operand(x, ops[k + Rule::term - 1]);
        if constexpr (Rule::term == 1) {
            if constexpr (is_one<decltype(Rule::d_term(0.0, 0.0))>)
                accumulate(x, sink, ops[k], g);
            else
                accumulate_each<W>(x, sink, ops[k], u, u,
                                   [&](unsigned l, double uv, double) { return Rule::d_term(uv, out[l]) * g[l]; });
        } else {
            if constexpr (Info::op == Op::Linear) {
                if (!u.lane && v.lane) {
                    sink.add_products(slot_of(ops[k]), v.p, g, x.n);
                    accumulate_each<W>(x, sink, ops[k + 1], u, v, [&](unsigned l, double uv, double vv) {
                        return Rule::d_term(uv, vv, out[l]).db * g[l];
                    });
                    continue;
                }
            }
            accumulate_each<W>(x, sink, ops[k], u, v,
                               [&](unsigned l, double uv, double vv) { return Rule::d_term(uv, vv, out[l]).da * g[l]; });
            accumulate_each<W>(x, sink, ops[k + 1], u, v,
                               [&](unsigned l, double uv, double vv) { return Rule::d_term(uv, vv, out[l]).db * g[l]; });
        }
    }
}

// Selections: operand k gets (k == chosen_l ? 1 : 0) * g_l from each lane l, so a shared
// operand (a parameter row picked by a lane's index) gets its lanes' gradients through the
// sink, summed in its fixed order.
template <typename Rule, int W, typename Sink>
AG_HOST_DEVICE inline void backward_select(const Lanes& x, Sink& sink, const double* g, const std::uint32_t* ops,
                                           std::uint32_t count) {
    std::uint32_t chosen[W];
    for (unsigned l = 0; l < x.n; ++l) {
        chosen[l] = Rule::choose(
            [&](std::uint32_t k) {
                const Operand o = operand(x, ops[k]);
                return o.p[o.lane ? l : 0];
            },
            count);
    }
    double c[W];
    for (std::uint32_t k = 0; k < count; ++k) {
        for (unsigned l = 0; l < x.n; ++l) c[l] = selection_derivative(k, chosen[l]) * g[l];
        accumulate(x, sink, ops[k], c);
    }
}

template <Op O, int W, typename Sink>
AG_HOST_DEVICE inline void backward_block(const TapeView& t, const Lanes& x, Sink& sink, std::uint32_t i) {
    using Info = OpInfo<O>;
    const double* out = x.val + std::size_t(i) * x.stride;
    const double* g = x.grad + std::size_t(i) * x.stride;
    if constexpr (is_selection<typename Info::Rule>)
        backward_select<typename Info::Rule, W>(x, sink, g, t.nary + t.a[i], t.b[i]);
    else if constexpr (Info::kind == Kind::Nary)
        backward_fold<Info, W>(x, sink, out, g, t.nary + t.a[i], t.b[i]);
    else if constexpr (Info::kind != Kind::Leaf)
        backward_elementwise<Info, W>(x, sink, out, g, t.a[i], t.b[i]);
}

// ---- sweeps ----------------------------------------------------------------------------

// Values flow from the first n_in rows (filled by the caller) up through the ops; a range
// [first, last) of the slots runs them alone (the CPU runs layers between ranges).
//
// One lane: the switch over ops is written out here, not reached through visit(), and the
// views are copies, so the compiler keeps the whole sweep in one loop without reloading them
// (through visit's lambda it made a call per node, which is most of a node's cost here).
// A run of nodes of one op (`p * p` for every parameter of an L2 term) stays in its case: a
// well-predicted loop instead of an indirect jump per node.
//
// A run that a `sum` of exactly its nodes, in order, follows (`sum([p * p for p in params])`)
// is added up as it is computed: the sum's chain of dependent additions then overlaps the
// run's own work instead of waiting for all of it. The same additions in the same order.

template <Op O, bool Packed>
AG_HOST_DEVICE inline std::uint32_t forward_run(const TapeView& t, const OneLane<Packed>& x, std::uint32_t i,
                                                std::uint32_t last) {
    std::uint32_t end = i + 1;
    while (end < last && t.op[end] == O) ++end;
    using Info = OpInfo<O>;
    if constexpr (Info::kind == Kind::Unary || Info::kind == Kind::Binary) {
        if (end < last && t.sums != nullptr && (t.sums[end] & kSumsRun) && end - t.b[end] == i) {
            double acc = rules::Sum::start();
            for (std::uint32_t j = i; j < end; ++j) {
                const double v = Info::Rule::forward(x.operand(t.a[j]), x.operand(t.b[j]));
                x.value(j) = v;
                acc = rules::Sum::step(acc, v);
            }
            x.value(end) = acc;
            return end;  // the sum
        }
    }
    for (std::uint32_t j = i; j < end; ++j) forward_one<O>(t, x, j);
    return end - 1;  // the run's last node
}

template <bool Packed>
AG_HOST_DEVICE inline void forward_one_lane(const TapeView t, const OneLane<Packed> x, std::uint32_t first,
                                            std::uint32_t last) {
    for (std::uint32_t i = first; i < last; ++i) {
        switch (t.op[i]) {
            case Op::Leaf: break;
#define AG_FORWARD_CASE(E, ...) \
    case Op::E: i = forward_run<Op::E>(t, x, i, last); break;
            AG_OPS(AG_FORWARD_CASE)
#undef AG_FORWARD_CASE
        }
    }
}

AG_HOST_DEVICE inline void forward_blocks(const TapeView& t, const Lanes& x, std::uint32_t first, std::uint32_t last) {
    for (std::uint32_t i = first; i < last; ++i)
        visit(t.op[i], [&](auto info) { forward_block<decltype(info)::op>(t, x, i); });
}

AG_HOST_DEVICE inline void forward_range(const TapeView& t, const Lanes& x, std::uint32_t first, std::uint32_t last) {
    if (x.n > 1)
        forward_blocks(t, x, first, last);
    else if (x.stride == 1)
        forward_one_lane(t, OneLane<true>{x}, first, last);
    else
        forward_one_lane(t, OneLane<false>{x}, first, last);
}

AG_HOST_DEVICE inline void forward_sweep(const TapeView& t, const Lanes& x) { forward_range(t, x, t.n_in, t.n_slots); }

// Gradients flow from the rows already seeded (outputs) down to the first n_in rows (or,
// for a range, from slot last - 1 down to first).
//
// A sum of exactly the run of nodes below it (as in forward_run) whose nodes read nothing in
// the run: each node gets the sum's gradient just before its own backward, in one pass. Every
// node's gradient slot gets the same additions in the same order as one pass after the other,
// since no node in the run adds to another's.
template <Op O, bool Packed, typename Sink>
AG_HOST_DEVICE inline void backward_summed_run(const TapeView& t, const OneLane<Packed>& x, Sink& sink,
                                               std::uint32_t first, std::uint32_t end, double g) {
    for (std::uint32_t j = end; j-- > first;) {
        // (not stored back: nothing reads a node's gradient after its own backward)
        backward_one<O>(t, x, sink, j, x.grad(j) + rules::Sum::d_term(0.0, 0.0) * g);
    }
}

// Whether the sum at slot i has its run fused as above; if so, runs it and returns true.
template <bool Packed, typename Sink>
AG_HOST_DEVICE inline bool backward_sum_of_run(const TapeView& t, const OneLane<Packed>& x, Sink& sink,
                                               std::uint32_t first, std::uint32_t i) {
    if (t.sums == nullptr || !(t.sums[i] & kSumsRunAlone) || t.b[i] > i - first) return false;
    const std::uint32_t run = i - t.b[i];
    const double g = x.grad(i);
    visit(t.op[run], [&](auto info) {
        using Info = decltype(info);
        if constexpr (Info::kind == Kind::Unary || Info::kind == Kind::Binary)
            backward_summed_run<Info::op>(t, x, sink, run, i, g);
    });
    return true;
}

template <Op O, bool Packed, typename Sink>
AG_HOST_DEVICE inline std::uint32_t backward_run(const TapeView& t, const OneLane<Packed>& x, Sink& sink,
                                                 std::uint32_t first, std::uint32_t i) {
    if constexpr (O == Op::Sum) {
        if (backward_sum_of_run(t, x, sink, first, i)) return i - t.b[i];  // the run's first node
    }
    backward_one<O>(t, x, sink, i);
    while (i > first && t.op[i - 1] == O) backward_one<O>(t, x, sink, --i);
    return i;  // the run's first node
}

template <bool Packed, typename Sink>
AG_HOST_DEVICE inline void backward_one_lane(const TapeView t, const OneLane<Packed> x, Sink& sink,
                                             std::uint32_t first, std::uint32_t last) {
    for (std::uint32_t i = last; i-- > first;) {
        switch (t.op[i]) {
            case Op::Leaf: break;
#define AG_BACKWARD_CASE(E, ...) \
    case Op::E: i = backward_run<Op::E>(t, x, sink, first, i); break;
            AG_OPS(AG_BACKWARD_CASE)
#undef AG_BACKWARD_CASE
        }
    }
}

template <int W, typename Sink>
AG_HOST_DEVICE inline void backward_blocks(const TapeView& t, const Lanes& x, Sink& sink, std::uint32_t first,
                                           std::uint32_t last) {
    for (std::uint32_t i = last; i-- > first;)
        visit(t.op[i], [&](auto info) { backward_block<decltype(info)::op, W>(t, x, sink, i); });
}

template <int W, typename Sink>
AG_HOST_DEVICE inline void backward_range(const TapeView& t, const Lanes& x, Sink& sink, std::uint32_t first,
                                          std::uint32_t last) {
    if (x.n > 1)
        backward_blocks<W>(t, x, sink, first, last);
    else if (x.stride == 1)
        backward_one_lane(t, OneLane<true>{x}, sink, first, last);
    else
        backward_one_lane(t, OneLane<false>{x}, sink, first, last);
}

template <int W, typename Sink>
AG_HOST_DEVICE inline void backward_sweep(const TapeView& t, const Lanes& x, Sink& sink) {
    backward_range<W>(t, x, sink, t.n_in, t.n_slots);
}

// ---- backward through the invariant part, per lane -----------------------------------

// One invariant op: its operands and value are shared, so its local derivatives are computed
// once; times each lane's grad (the sink's row for it), into each operand through the sink.
template <Op O, int W, typename Sink>
AG_HOST_DEVICE inline void backward_shared_node(const TapeView& inv, const double* values, Sink& sink, unsigned n,
                                                std::uint32_t i) {
    using Info = OpInfo<O>;
    using Rule = typename Info::Rule;
    const double* g = sink.row(i);
    const double out = values[i];
    double c[W];
    auto send = [&](std::uint32_t slot, auto d) {  // the contributions d * g[l] to `slot`
        if constexpr (is_one<decltype(d)>) {
            sink.add(slot, g, n);
        } else {
            for (unsigned l = 0; l < n; ++l) c[l] = d * g[l];
            sink.add(slot, c, n);
        }
    };
    if constexpr (Info::kind == Kind::Unary) {
        const std::uint32_t a = inv.a[i];
        send(a, Rule::derivative(values[a], values[inv.b[i]], out));
    } else if constexpr (Info::kind == Kind::Binary) {
        const std::uint32_t a = inv.a[i], b = inv.b[i];
        const Partials d = Rule::derivatives(values[a], values[b], out);
        send(a, d.da);
        send(b, d.db);
    } else if constexpr (is_selection<Rule>) {  // one choice, shared by the lanes
        const std::uint32_t* ops = inv.nary + inv.a[i];
        const std::uint32_t count = inv.b[i];
        const std::uint32_t chosen = Rule::choose([&](std::uint32_t k) { return values[ops[k]]; }, count);
        for (std::uint32_t k = 0; k < count; ++k) send(ops[k], selection_derivative(k, chosen));
    } else if constexpr (Info::kind == Kind::Nary) {
        const std::uint32_t* ops = inv.nary + inv.a[i];
        const std::uint32_t count = inv.b[i];
        if constexpr (Rule::head == 1) send(ops[0], Rule::d_head(values[ops[0]], out));
        for (std::uint32_t k = Rule::head; k + Rule::term <= count; k += Rule::term) {
            if constexpr (Rule::term == 1) {
                send(ops[k], Rule::d_term(values[ops[k]], out));
            } else {
                const Partials d = Rule::d_term(values[ops[k]], values[ops[k + 1]], out);
                send(ops[k], d.da);
                send(ops[k + 1], d.db);
            }
        }
    }
}

// After the lane part's backward: the invariant part's ops, from the highest down, each
// passing its per-lane grad row on to its operands (through the sink again: an op operand's
// row, a leaf's sum). `values` are the invariant slots' values of the forward.
template <int W, typename Sink>
AG_HOST_DEVICE inline void backward_shared(const TapeView& inv, const double* values, Sink& sink, unsigned n) {
    for (std::uint32_t i = inv.n_slots; i-- > inv.n_in;)
        visit(inv.op[i], [&](auto info) { backward_shared_node<decltype(info)::op, W>(inv, values, sink, n, i); });
}

}  // namespace arenagrad
