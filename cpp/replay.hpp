// Replaying a tape: the forward and backward walks over a block of lanes.
//
// A "block" is `n` neighbouring lanes stored node-major: row s holds slot s of every lane in
// the block (value s of lane l is val[s * stride + l]). The CPU driver (replay_cpu.hpp) walks
// tiles of up to 64 lanes whose rows stay in L2; the CUDA kernels (cuda/elementwise.cu) walk a
// block of one lane per thread inside rows that span the whole batch, so neighbouring threads
// touch neighbouring memory. Both call the functions below, which reach each node's code
// through the op table's visit(): the per-lane arithmetic is the table's rules (ops.hpp), in
// the same order as the eager arena, so a lane's values and its inputs' gradients are those of
// evaluating the function eagerly on that lane.
//
// Gradients for invariant slots (parameters, constants) are one number shared by all lanes:
// each node hands its per-lane contributions to a Sink, which sums them over the block (CPU)
// or keeps them per lane for a later reduction (CUDA).
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

// ---- forward -------------------------------------------------------------------------

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

template <Op O>
AG_HOST_DEVICE inline void forward_node(const TapeView& t, const Lanes& x, std::uint32_t i) {
    using Info = OpInfo<O>;
    double* out = x.val + std::size_t(i) * x.stride;
    if constexpr (Info::kind == Kind::Nary)
        forward_fold<typename Info::Rule>(out, x, t.nary + t.a[i], t.b[i]);
    else if constexpr (Info::kind != Kind::Leaf)  // a tape's leaves are its filled slots, never its ops
        forward_elementwise<typename Info::Rule>(out, operand(x, t.a[i]), operand(x, t.b[i]), x.n);
}

AG_HOST_DEVICE inline void forward_sweep(const TapeView& t, const Lanes& x) {
    for (std::uint32_t i = t.n_in; i < t.n_slots; ++i)
        visit(t.op[i], [&](auto info) { forward_node<decltype(info)::op>(t, x, i); });
}

// ---- backward ------------------------------------------------------------------------

// A sink takes, for a shared slot, per-lane contributions c (add) or a[l] * b[l] (add_products).
// A part with no invariant operands (the invariant part itself) never calls its sink.
struct NoSink {
    AG_HOST_DEVICE void add(std::uint32_t, const double*, unsigned) {}
    AG_HOST_DEVICE void add_products(std::uint32_t, const double*, const double*, unsigned) {}
};

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

template <Op O, int W, typename Sink>
AG_HOST_DEVICE inline void backward_node(const TapeView& t, const Lanes& x, Sink& sink, std::uint32_t i) {
    using Info = OpInfo<O>;
    const double* out = x.val + std::size_t(i) * x.stride;
    const double* g = x.grad + std::size_t(i) * x.stride;
    if constexpr (Info::kind == Kind::Nary)
        backward_fold<Info, W>(x, sink, out, g, t.nary + t.a[i], t.b[i]);
    else if constexpr (Info::kind != Kind::Leaf)
        backward_elementwise<Info, W>(x, sink, out, g, t.a[i], t.b[i]);
}

// Gradients flow from the rows already seeded (outputs) down to the first n_in rows.
template <int W, typename Sink>
AG_HOST_DEVICE inline void backward_sweep(const TapeView& t, const Lanes& x, Sink& sink) {
    for (std::uint32_t i = t.n_slots; i-- > t.n_in;)
        visit(t.op[i], [&](auto info) { backward_node<decltype(info)::op, W>(t, x, sink, i); });
}

}  // namespace arenagrad
