// Replaying a tape: the forward and backward walks over a block of lanes.
//
// A "block" is `n` neighbouring lanes stored node-major: row s holds slot s of every lane in
// the block (value s of lane l is val[s * stride + l]). The CPU driver (replay_cpu.hpp) walks
// tiles of up to 64 lanes whose rows stay in L2; the CUDA kernels (cuda/elementwise.cu) walk a
// block of one lane per thread inside rows that span the whole batch, so neighbouring threads
// touch neighbouring memory. Both call the functions below: the per-lane arithmetic is the op
// table's forward()/derivatives(), in the same order as the eager arena, so a lane's values
// and its inputs' gradients are those of evaluating the function eagerly on that lane.
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

// The ops computed by forward()/derivatives() (everything but Leaf and the n-ary ops).
#define AG_ELEMENTWISE_OPS(X) \
    X(Add) X(Sub) X(Mul) X(Div) X(Neg) X(PowConst) X(PowConstInt) X(Pow) X(Relu) X(Tanh) X(Exp) X(Log) \
    X(Sigmoid) X(Abs) X(Sqrt)

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

template <Op O>
AG_HOST_DEVICE inline void forward_op(double* out, Operand a, Operand b, unsigned n) {
    for_lanes(a, b, n, [&](unsigned l, double av, double bv) { out[l] = forward(O, av, bv); });
}

AG_HOST_DEVICE inline void forward_node(const TapeView& t, const Lanes& x, std::uint32_t i) {
    double* out = x.val + std::size_t(i) * x.stride;
    const unsigned n = x.n;
    const Op o = t.op[i];
    if (o == Op::Linear) {  // acc = b; acc = acc + w_k * x_k, in micrograd's order
        const std::uint32_t* ops = t.nary + t.a[i];
        const Operand bias = operand(x, ops[0]);
        for_lanes(bias, bias, n, [&](unsigned l, double bv, double) { out[l] = bv; });
        for (std::uint32_t k = 1; k + 1 < t.b[i]; k += 2)
            for_lanes(operand(x, ops[k]), operand(x, ops[k + 1]), n,
                      [&](unsigned l, double w, double v) { out[l] = out[l] + w * v; });
        return;
    }
    if (o == Op::Sum) {  // acc = 0.0; acc = acc + v_k
        const std::uint32_t* ops = t.nary + t.a[i];
        for (unsigned l = 0; l < n; ++l) out[l] = 0.0;
        for (std::uint32_t k = 0; k < t.b[i]; ++k) {
            const Operand v = operand(x, ops[k]);
            for_lanes(v, v, n, [&](unsigned l, double a, double) { out[l] = out[l] + a; });
        }
        return;
    }
    const Operand a = operand(x, t.a[i]), b = operand(x, t.b[i]);
    switch (o) {
#define AG_FORWARD_CASE(name) \
    case Op::name: forward_op<Op::name>(out, a, b, n); break;
        AG_ELEMENTWISE_OPS(AG_FORWARD_CASE)
#undef AG_FORWARD_CASE
        default: break;
    }
}

AG_HOST_DEVICE inline void forward_sweep(const TapeView& t, const Lanes& x) {
    for (std::uint32_t i = t.n_in; i < t.n_slots; ++i) forward_node(t, x, i);
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

// W: the most lanes a block can have (sizes the per-node scratch rows).
template <Op O, int W, typename Sink>
AG_HOST_DEVICE inline void backward_op(const Lanes& x, Sink& sink, const double* out, const double* g,
                                       std::uint32_t ra, std::uint32_t rb) {
    double ca[W], cb[W];
    for_lanes(operand(x, ra), operand(x, rb), x.n, [&](unsigned l, double av, double bv) {
        double da, db;
        derivatives(O, av, bv, out[l], da, db);
        ca[l] = da * g[l];
        cb[l] = db * g[l];
    });
    accumulate(x, sink, ra, ca);
    if (is_binary(O)) accumulate(x, sink, rb, cb);
}

template <int W, typename Sink>
AG_HOST_DEVICE inline void backward_node(const TapeView& t, const Lanes& x, Sink& sink, std::uint32_t i) {
    const double* out = x.val + std::size_t(i) * x.stride;
    const double* g = x.grad + std::size_t(i) * x.stride;
    const Op o = t.op[i];
    if (o == Op::Linear) {  // d/db = 1, d/dw_k = x_k, d/dx_k = w_k
        const std::uint32_t* ops = t.nary + t.a[i];
        accumulate(x, sink, ops[0], g);
        double cw[W], cx[W];
        for (std::uint32_t k = 1; k + 1 < t.b[i]; k += 2) {
            const Operand w = operand(x, ops[k]), v = operand(x, ops[k + 1]);
            if (!w.lane && v.lane) {  // the usual case (a weight, an activation), without scratch rows
                sink.add_products(slot_of(ops[k]), v.p, g, x.n);
                double* gv = x.grad + std::size_t(ops[k + 1]) * x.stride;
                const double wk = w.p[0];
                for (unsigned l = 0; l < x.n; ++l) gv[l] += wk * g[l];
                continue;
            }
            for_lanes(w, v, x.n, [&](unsigned l, double wl, double vl) {
                cw[l] = vl * g[l];
                cx[l] = wl * g[l];
            });
            accumulate(x, sink, ops[k], cw);
            accumulate(x, sink, ops[k + 1], cx);
        }
        return;
    }
    if (o == Op::Sum) {
        const std::uint32_t* ops = t.nary + t.a[i];
        for (std::uint32_t k = 0; k < t.b[i]; ++k) accumulate(x, sink, ops[k], g);
        return;
    }
    switch (o) {
#define AG_BACKWARD_CASE(name) \
    case Op::name: backward_op<Op::name, W>(x, sink, out, g, t.a[i], t.b[i]); break;
        AG_ELEMENTWISE_OPS(AG_BACKWARD_CASE)
#undef AG_BACKWARD_CASE
        default: break;
    }
}

// Gradients flow from the rows already seeded (outputs) down to the first n_in rows.
template <int W, typename Sink>
AG_HOST_DEVICE inline void backward_sweep(const TapeView& t, const Lanes& x, Sink& sink) {
    for (std::uint32_t i = t.n_slots; i-- > t.n_in;) backward_node<W>(t, x, sink, i);
}

}  // namespace arenagrad
