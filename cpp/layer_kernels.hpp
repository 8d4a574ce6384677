// A layer (layers.hpp) over one tile of lanes, as register-blocked matrix products: the
// forward, h = W x + b (and relu), and the backward, dx = W^T g, dW = g x^T, db = sum g.
//
// Every number is what the generic walk (replay.hpp) computes, bit for bit; only which numbers
// are computed together changes. The kernels vectorise across lanes (8 per Vec8) and block
// across neurons or inputs, never within one sum:
//   forward   acc = b_n; acc = acc + w_nk * x_k for k = 0, 1, ...     (Linear's fold, per lane)
//             relu(acc) as the rule writes it
//   g_n       the linear node's gradient: its row (or 0.0) + relu'(out_n) * g_relu_n
//   dx_k      its row (or 0.0, if this layer adds to it first); then + w_nk * g_n for
//             n = N-1 down to 0 (the reverse sweep meets the neurons from the last)
//   dw_nk     lane_sum of x_k * g_n (simd.hpp's fixed order), db_n lane_sum of g_n, added to
//             the tile's sums in the generic walk's order: neuron N-1 first, bias then
//             weights in term order
// The tile's lanes are computed in whole vectors: rows are padded to a multiple of 8 lanes,
// the lanes past the tile's last one hold stale numbers that stay there (the sums over lanes
// mask them out).
//
// Block shapes are template parameters, so each instruction set gets its own
// (replay_cpu.hpp): they change the speed, never the results.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "layers.hpp"
#include "replay.hpp"
#include "simd.hpp"

// The block loops below (over r, v, c: template bounds) must be unrolled for their
// accumulators to live in registers. Without the annotation GCC 12 at -O2 (a RelWithDebInfo
// build) keeps some in memory, a load and a store per multiply-add; at -O3 it unrolls most
// of them itself (the annotation measured 1-2% faster there).
#if defined(__clang__)
#define AG_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define AG_UNROLL _Pragma("GCC unroll 16")
#else
#define AG_UNROLL
#endif

namespace arenagrad {

// ---- packing: the weights in the order the kernels read them --------------------------

// Calls pack(weight), where weight(n, k) is neuron n's k-th weight in `shared`: read from
// the matrix of slots where the layer has one (no index to read per weight), else through
// the layer's index of slots.
template <typename Pack>
inline void with_weights(const Layer& layer, const double* shared, Pack pack) {
    if (layer.weight_matrix) {
        const double* m = shared + layer.weight_base;
        const std::size_t row = layer.weight_row;
        pack([m, row](std::uint32_t n, std::uint32_t k) { return m[n * row + k]; });
    } else {
        const std::uint32_t* slot = layer.weight.data();
        const std::size_t K = layer.inputs;
        pack([shared, slot, K](std::uint32_t n, std::uint32_t k) { return shared[slot[n * K + k]]; });
    }
}

// Forward: [neuron block of NR][input k][neuron in block], bias [neuron] (padding: 0).
template <int NR>
inline void pack_forward(const Layer& layer, const double* shared, double* w, double* bias) {
    const std::uint32_t N = layer.neurons, K = layer.inputs, blocks = (N + NR - 1) / NR;
    with_weights(layer, shared, [&](auto weight) {
        for (std::uint32_t nb = 0; nb < blocks; ++nb)
            for (std::uint32_t k = 0; k < K; ++k)
                for (std::uint32_t r = 0; r < NR; ++r) {
                    const std::uint32_t n = nb * NR + r;
                    w[(std::size_t(nb) * K + k) * NR + r] = n < N ? weight(n, k) : 0.0;
                }
    });
    for (std::uint32_t n = 0; n < blocks * NR; ++n) bias[n] = n < N ? shared[layer.bias[n]] : 0.0;
}

// Backward: [input block of KR][neuron n][input in block] (padding: 0).
template <int KR>
inline void pack_backward(const Layer& layer, const double* shared, double* w) {
    const std::uint32_t N = layer.neurons, K = layer.inputs, blocks = (K + KR - 1) / KR;
    with_weights(layer, shared, [&](auto weight) {
        for (std::uint32_t kb = 0; kb < blocks; ++kb)
            for (std::uint32_t n = 0; n < N; ++n)
                for (std::uint32_t r = 0; r < KR; ++r) {
                    const std::uint32_t k = kb * KR + r;
                    w[(std::size_t(kb) * N + n) * KR + r] = k < K ? weight(n, k) : 0.0;
                }
    });
}

template <int NR>
inline std::size_t forward_pack_size(const Layer& layer) {
    return std::size_t((layer.neurons + NR - 1) / NR) * NR * layer.inputs;
}
template <int NR>
inline std::size_t bias_pack_size(const Layer& layer) {
    return std::size_t((layer.neurons + NR - 1) / NR) * NR;
}
template <int KR>
inline std::size_t backward_pack_size(const Layer& layer) {
    return std::size_t((layer.inputs + KR - 1) / KR) * KR * layer.neurons;
}

// ---- forward ---------------------------------------------------------------------------

// Neurons [n0, n0 + NR) over lane vectors [v0, v0 + LV); w: their weights, w[k * P + r].
template <int NR, int LV, int P>
AG_INLINE void forward_block(const Layer& layer, const double* w, const double* bias, const Lanes& x,
                             std::uint32_t n0, unsigned v0) {
    const std::size_t S = x.stride, l0 = std::size_t(v0) * 8;
    Vec8 acc[NR][LV];
    AG_UNROLL
    for (int r = 0; r < NR; ++r)
        AG_UNROLL
        for (int v = 0; v < LV; ++v) acc[r][v] = splat8(bias[r]);
    for (std::uint32_t k = 0; k < layer.inputs; ++k) {
        const double* row = x.val + layer.x[k] * S + l0;
        Vec8 xv[LV];
        AG_UNROLL
        for (int v = 0; v < LV; ++v) xv[v] = load8(row + 8 * v);
        AG_UNROLL
        for (int r = 0; r < NR; ++r) {
            const double wk = w[std::size_t(k) * P + r];
            AG_UNROLL
            for (int v = 0; v < LV; ++v) acc[r][v] = acc[r][v] + wk * xv[v];
        }
    }
    for (int r = 0; r < NR && n0 + r < layer.neurons; ++r) {
        double* out = x.val + layer.linear_slot(n0 + r) * S + l0;
        if (layer.keep_linear) {
            AG_UNROLL
            for (int v = 0; v < LV; ++v) store8(out + 8 * v, acc[r][v]);
        }
        if (layer.relu) {
            AG_UNROLL
            for (int v = 0; v < LV; ++v) store8(out + S + 8 * v, relu8(acc[r][v]));
        }
    }
}

// Lane vectors [v0, v0 + LV) of every neuron: blocks of NR, then the neurons left one by one.
template <int NR, int LV>
AG_INLINE void forward_lanes(const Layer& layer, const double* w, const double* bias, const Lanes& x, unsigned v0) {
    const std::uint32_t N = layer.neurons, whole = N / NR * NR;
    for (std::uint32_t n0 = 0; n0 < whole; n0 += NR)
        forward_block<NR, LV, NR>(layer, w + std::size_t(n0) * layer.inputs, bias + n0, x, n0, v0);
    for (std::uint32_t n = whole; n < N; ++n)
        forward_block<1, LV, NR>(layer, w + std::size_t(whole) * layer.inputs + (n - whole), bias + n, x, n, v0);
}

template <int NR, int LV>
inline void layer_forward(const Layer& layer, const double* w, const double* bias, const Lanes& x) {
    const unsigned vectors = (x.n + 7) / 8, whole = vectors / LV * LV;
    for (unsigned v0 = 0; v0 < whole; v0 += LV) forward_lanes<NR, LV>(layer, w, bias, x, v0);
    for (unsigned v = whole; v < vectors; ++v) forward_lanes<NR, 1>(layer, w, bias, x, v);
}

// ---- backward --------------------------------------------------------------------------

// Inputs [k0, k0 + KR) over lane vectors [v0, v0 + LV): dx_k (+)= sum over n, last first;
// w: their weights, w[n * P + r].
template <int KR, int LV, int P>
AG_INLINE void input_grad_block(const Layer& layer, const double* w, const Lanes& x, std::uint32_t k0, unsigned v0) {
    const std::size_t S = x.stride, l0 = std::size_t(v0) * 8;
    Vec8 acc[KR][LV];
    AG_UNROLL
    for (int r = 0; r < KR; ++r) {
        const double* row = x.grad + layer.x[k0 + r] * S + l0;
        AG_UNROLL
        for (int v = 0; v < LV; ++v) acc[r][v] = layer.x_fresh[k0 + r] ? splat8(0.0) : load8(row + 8 * v);
    }
    for (std::uint32_t n = layer.neurons; n-- > 0;) {
        const double* g = x.grad + layer.linear_slot(n) * S + l0;
        Vec8 gv[LV];
        AG_UNROLL
        for (int v = 0; v < LV; ++v) gv[v] = load8(g + 8 * v);
        AG_UNROLL
        for (int r = 0; r < KR; ++r) {
            const double wk = w[std::size_t(n) * P + r];
            AG_UNROLL
            for (int v = 0; v < LV; ++v) acc[r][v] = acc[r][v] + wk * gv[v];
        }
    }
    AG_UNROLL
    for (int r = 0; r < KR; ++r) {
        double* row = x.grad + layer.x[k0 + r] * S + l0;
        AG_UNROLL
        for (int v = 0; v < LV; ++v) store8(row + 8 * v, acc[r][v]);
    }
}

// Lane vectors [v0, v0 + LV) of every input's gradient: blocks of KR, then one by one.
template <int KR, int LV>
AG_INLINE void input_grad_lanes(const Layer& layer, const double* w, const Lanes& x, unsigned v0) {
    const std::uint32_t K = layer.inputs, whole = K / KR * KR;
    for (std::uint32_t k0 = 0; k0 < whole; k0 += KR)
        input_grad_block<KR, LV, KR>(layer, w + std::size_t(k0) * layer.neurons, x, k0, v0);
    for (std::uint32_t k = whole; k < K; ++k)
        input_grad_block<1, LV, KR>(layer, w + std::size_t(whole) * layer.neurons + (k - whole), x, k, v0);
}

// Neurons [n0, n0 + NW) x inputs [k0, k0 + KW): this tile's lane sums of x_k * g_n, into
// dw[n * K + k].
template <int NW, int KW>
AG_INLINE void weight_grad_block(const Layer& layer, const Lanes& x, std::uint32_t n0, std::uint32_t k0, double* dw) {
    const std::size_t S = x.stride;
    const std::uint32_t K = layer.inputs;
    const double* g[NW];
    const double* in[KW];
    AG_UNROLL
    for (int r = 0; r < NW; ++r) g[r] = x.grad + layer.linear_slot(n0 + r) * S;
    AG_UNROLL
    for (int c = 0; c < KW; ++c) in[c] = x.val + layer.x[k0 + c] * S;
    Vec8 acc[NW][KW];
    AG_UNROLL
    for (int r = 0; r < NW; ++r)
        AG_UNROLL
        for (int c = 0; c < KW; ++c) acc[r][c] = splat8(0.0);
    const unsigned whole = x.n / 8 * 8, rest = x.n - whole;
    for (unsigned l = 0; l < whole; l += 8) {
        Vec8 gv[NW], xv[KW];
        AG_UNROLL
        for (int r = 0; r < NW; ++r) gv[r] = load8(g[r] + l);
        AG_UNROLL
        for (int c = 0; c < KW; ++c) xv[c] = load8(in[c] + l);
        AG_UNROLL
        for (int r = 0; r < NW; ++r)
            AG_UNROLL
            for (int c = 0; c < KW; ++c) acc[r][c] = acc[r][c] + xv[c] * gv[r];
    }
    if (rest > 0) {
        AG_UNROLL
        for (int r = 0; r < NW; ++r)
            AG_UNROLL
            for (int c = 0; c < KW; ++c)
                acc[r][c] = acc[r][c] + first_lanes8(load8(in[c] + whole) * load8(g[r] + whole), rest);
    }
    if constexpr (NW * KW % 8 == 0) {  // 8 sums at a time (simd.hpp)
        double sums[NW * KW];
        AG_UNROLL
        for (int j = 0; j < NW * KW; j += 8) pairwise8x8(&acc[0][0] + j, sums + j);
        AG_UNROLL
        for (int r = 0; r < NW; ++r)
            AG_UNROLL
            for (int c = 0; c < KW; ++c) dw[std::size_t(n0 + r) * K + k0 + c] = sums[r * KW + c];
    } else {
        AG_UNROLL
        for (int r = 0; r < NW; ++r)
            AG_UNROLL
            for (int c = 0; c < KW; ++c) dw[std::size_t(n0 + r) * K + k0 + c] = pairwise8(acc[r][c]);
    }
}

// Every weight's lane sum: blocks of NW x KW, the neurons and inputs left over in thinner ones.
template <int NW, int KW>
AG_INLINE void weight_grads(const Layer& layer, const Lanes& x, double* dw) {
    const std::uint32_t N = layer.neurons, K = layer.inputs, n_whole = N / NW * NW, k_whole = K / KW * KW;
    for (std::uint32_t n0 = 0; n0 < n_whole; n0 += NW) {
        for (std::uint32_t k0 = 0; k0 < k_whole; k0 += KW) weight_grad_block<NW, KW>(layer, x, n0, k0, dw);
        for (std::uint32_t k = k_whole; k < K; ++k) weight_grad_block<NW, 1>(layer, x, n0, k, dw);
    }
    for (std::uint32_t n = n_whole; n < N; ++n) {
        for (std::uint32_t k0 = 0; k0 < k_whole; k0 += KW) weight_grad_block<1, KW>(layer, x, n, k0, dw);
        for (std::uint32_t k = k_whole; k < K; ++k) weight_grad_block<1, 1>(layer, x, n, k, dw);
    }
}

// This tile's lane sum of g_n, into db[n].
AG_INLINE void bias_grad(const Layer& layer, const Lanes& x, double* db) {
    const unsigned whole = x.n / 8 * 8, rest = x.n - whole;
    for (std::uint32_t n = 0; n < layer.neurons; ++n) {
        const double* g = x.grad + layer.linear_slot(n) * x.stride;
        Vec8 acc = splat8(0.0);
        for (unsigned l = 0; l < whole; l += 8) acc = acc + load8(g + l);
        if (rest > 0) acc = acc + first_lanes8(load8(g + whole), rest);
        db[n] = pairwise8(acc);
    }
}

// The layer's backward over one tile. partial: the tile's sums per invariant slot; scratch:
// room for N * K + N numbers.
template <int KR, int LV, int NW, int KW>
inline void layer_backward(const Layer& layer, const double* w, const Lanes& x, double* partial, double* scratch) {
    const std::size_t S = x.stride;
    const std::uint32_t N = layer.neurons, K = layer.inputs;
    const unsigned vectors = (x.n + 7) / 8;

    // Each linear node's gradient, in its own row: relu's contribution added to what is there.
    if (layer.relu) {
        for (std::uint32_t n = 0; n < N; ++n) {
            double* g = x.grad + layer.linear_slot(n) * S;
            const double* out = x.val + (layer.linear_slot(n) + 1) * S;
            const double* g_relu = g + S;
            if (layer.keep_linear) {
                for (unsigned v = 0; v < vectors; ++v)
                    store8(g + 8 * v, load8(g + 8 * v) + relu_slope8(load8(out + 8 * v)) * load8(g_relu + 8 * v));
            } else {
                for (unsigned v = 0; v < vectors; ++v)
                    store8(g + 8 * v, splat8(0.0) + relu_slope8(load8(out + 8 * v)) * load8(g_relu + 8 * v));
            }
        }
    }

    const unsigned whole = vectors / LV * LV;
    for (unsigned v0 = 0; v0 < whole; v0 += LV) input_grad_lanes<KR, LV>(layer, w, x, v0);
    for (unsigned v = whole; v < vectors; ++v) input_grad_lanes<KR, 1>(layer, w, x, v);

    double* dw = scratch;
    double* db = scratch + std::size_t(N) * K;
    weight_grads<NW, KW>(layer, x, dw);
    bias_grad(layer, x, db);
    for (std::uint32_t n = N; n-- > 0;) {
        partial[layer.bias[n]] += db[n];
        const double* d = dw + std::size_t(n) * K;
        if (layer.weight_matrix) {  // a row of distinct slots: in vectors
            double* into = partial + layer.weight_base + std::size_t(n) * layer.weight_row;
            for (std::uint32_t k = 0; k < K; ++k) into[k] += d[k];
        } else {
            for (std::uint32_t k = 0; k < K; ++k) partial[layer.weight[std::size_t(n) * K + k]] += d[k];
        }
    }
}

// ---- one lane ----------------------------------------------------------------------------
// A batch of one lane (rows one apart): the same sums on scalars, NR neurons (forward) or KR
// inputs (input gradients) at a time, so that NR independent sums are in flight instead of
// one chain of dependent additions per neuron. The weights' gradients go to `grads`, one per
// invariant slot (the one-lane batch's sink), in the generic walk's order.

template <int NR>
AG_INLINE void forward_one_block(const Layer& layer, const double* w, const double* bias, double* val,
                                 std::uint32_t n0, int rows) {
    double acc[NR];
    AG_UNROLL
    for (int r = 0; r < NR; ++r) acc[r] = bias[r];
    for (std::uint32_t k = 0; k < layer.inputs; ++k) {
        const double xk = val[layer.x[k]];
        AG_UNROLL
        for (int r = 0; r < NR; ++r) acc[r] = acc[r] + w[std::size_t(k) * NR + r] * xk;
    }
    for (int r = 0; r < rows; ++r) {
        double* out = val + layer.linear_slot(n0 + r);
        if (layer.keep_linear) out[0] = acc[r];
        if (layer.relu) out[1] = rules::Relu::forward(acc[r], acc[r]);
    }
}

template <int NR>
inline void layer_forward_one(const Layer& layer, const double* w, const double* bias, const Lanes& x) {
    for (std::uint32_t n0 = 0; n0 < layer.neurons; n0 += NR)
        forward_one_block<NR>(layer, w + std::size_t(n0) * layer.inputs, bias + n0, x.val, n0,
                              int(std::min<std::uint32_t>(NR, layer.neurons - n0)));
}

template <int KR>
AG_INLINE void input_grad_one_block(const Layer& layer, const double* w, double* grad, std::uint32_t k0, int rows) {
    double acc[KR];
    AG_UNROLL
    for (int r = 0; r < KR; ++r) acc[r] = r < rows ? grad[layer.x[k0 + r]] : 0.0;
    for (std::uint32_t n = layer.neurons; n-- > 0;) {
        const double g = grad[layer.linear_slot(n)];
        AG_UNROLL
        for (int r = 0; r < KR; ++r) acc[r] = acc[r] + w[std::size_t(n) * KR + r] * g;
    }
    for (int r = 0; r < rows; ++r) grad[layer.x[k0 + r]] = acc[r];
}

template <int KR>
inline void layer_backward_one(const Layer& layer, const double* w, const Lanes& x, double* grads) {
    const std::uint32_t N = layer.neurons, K = layer.inputs;
    if (layer.relu) {
        for (std::uint32_t n = 0; n < N; ++n) {
            const std::uint32_t s = layer.linear_slot(n);
            const double out = x.val[s + 1], slope = rules::Relu::derivative(out, out, out);
            x.grad[s] = (layer.keep_linear ? x.grad[s] : 0.0) + slope * x.grad[s + 1];
        }
    }
    for (std::uint32_t k0 = 0; k0 < K; k0 += KR)
        input_grad_one_block<KR>(layer, w + std::size_t(k0) * N, x.grad, k0, int(std::min<std::uint32_t>(KR, K - k0)));
    for (std::uint32_t n = N; n-- > 0;) {
        const double g = x.grad[layer.linear_slot(n)];
        grads[layer.bias[n]] += g;
        const std::uint32_t* weight = layer.weight.data() + std::size_t(n) * K;
        for (std::uint32_t k = 0; k < K; ++k) grads[weight[k]] += x.val[layer.x[k]] * g;
    }
}

// A batch of one lane whose layer has a weight matrix (layers.hpp) reads the weights where
// they are, in the invariant slots: packing them would cost more than the products. The same
// sums again: the forward NR neurons at a time on scalars; the input gradients 8 * KV inputs
// at a time, one vector lane per input (a weight row's neighbours are neighbouring inputs);
// the weights' gradients a row at a time.

template <int NR>
AG_INLINE void forward_in_place_block(const Layer& layer, const double* shared, double* val, std::uint32_t n0) {
    const double* w = shared + layer.weight_base + std::size_t(n0) * layer.weight_row;
    const std::size_t row = layer.weight_row;
    double acc[NR];
    AG_UNROLL
    for (int r = 0; r < NR; ++r) acc[r] = shared[layer.bias[n0 + r]];
    for (std::uint32_t k = 0; k < layer.inputs; ++k) {
        const double xk = val[layer.x[k]];
        AG_UNROLL
        for (int r = 0; r < NR; ++r) acc[r] = acc[r] + w[r * row + k] * xk;
    }
    AG_UNROLL
    for (int r = 0; r < NR; ++r) {
        double* out = val + layer.linear_slot(n0 + r);
        if (layer.keep_linear) out[0] = acc[r];
        if (layer.relu) out[1] = rules::Relu::forward(acc[r], acc[r]);
    }
}

template <int NR>
inline void layer_forward_in_place(const Layer& layer, const Lanes& x) {
    const std::uint32_t N = layer.neurons, whole = N / NR * NR;
    for (std::uint32_t n0 = 0; n0 < whole; n0 += NR) forward_in_place_block<NR>(layer, x.inv, x.val, n0);
    for (std::uint32_t n = whole; n < N; ++n) forward_in_place_block<1>(layer, x.inv, x.val, n);
}

// Inputs [k0, k0 + 8 * KV): dx_k (+)= w_nk * g_n for n = N-1 down to 0.
template <int KV>
AG_INLINE void input_grad_in_place_block(const Layer& layer, const double* w, double* grad, std::uint32_t k0) {
    const std::size_t row = layer.weight_row;
    double lanes[8 * KV];
    AG_UNROLL
    for (int j = 0; j < 8 * KV; ++j) lanes[j] = grad[layer.x[k0 + j]];
    Vec8 acc[KV];
    AG_UNROLL
    for (int v = 0; v < KV; ++v) acc[v] = load8(lanes + 8 * v);
    for (std::uint32_t n = layer.neurons; n-- > 0;) {
        const Vec8 g = splat8(grad[layer.linear_slot(n)]);
        const double* wn = w + n * row + k0;
        AG_UNROLL
        for (int v = 0; v < KV; ++v) acc[v] = acc[v] + load8(wn + 8 * v) * g;
    }
    AG_UNROLL
    for (int v = 0; v < KV; ++v) store8(lanes + 8 * v, acc[v]);
    AG_UNROLL
    for (int j = 0; j < 8 * KV; ++j) grad[layer.x[k0 + j]] = lanes[j];
}

// scratch: room for K numbers.
template <int KV>
inline void layer_backward_in_place(const Layer& layer, const Lanes& x, double* grads, double* scratch) {
    const std::uint32_t N = layer.neurons, K = layer.inputs;
    const std::size_t row = layer.weight_row;
    const double* w = x.inv + layer.weight_base;
    if (layer.relu) {
        for (std::uint32_t n = 0; n < N; ++n) {
            const std::uint32_t s = layer.linear_slot(n);
            const double out = x.val[s + 1], slope = rules::Relu::derivative(out, out, out);
            x.grad[s] = (layer.keep_linear ? x.grad[s] : 0.0) + slope * x.grad[s + 1];
        }
    }
    const std::uint32_t whole = K / (8 * KV) * (8 * KV);
    for (std::uint32_t k0 = 0; k0 < whole; k0 += 8 * KV) input_grad_in_place_block<KV>(layer, w, x.grad, k0);
    for (std::uint32_t k = whole; k < K; ++k) {
        double acc = x.grad[layer.x[k]];
        for (std::uint32_t n = N; n-- > 0;) acc = acc + w[n * row + k] * x.grad[layer.linear_slot(n)];
        x.grad[layer.x[k]] = acc;
    }
    double* in = scratch;
    for (std::uint32_t k = 0; k < K; ++k) in[k] = x.val[layer.x[k]];
    for (std::uint32_t n = N; n-- > 0;) {
        const double g = x.grad[layer.linear_slot(n)];
        grads[layer.bias[n]] += g;
        double* dw = grads + layer.weight_base + n * row;
        const std::uint32_t vectors = K / 8 * 8;
        for (std::uint32_t k = 0; k < vectors; k += 8) store8(dw + k, load8(dw + k) + load8(in + k) * splat8(g));
        for (std::uint32_t k = vectors; k < K; ++k) dw[k] += in[k] * g;
    }
}

// ---- one set of kernels per instruction set -------------------------------------------

// A layer's weights packed for the kernels of its replay, refreshed at every forward.
struct PackedLayer {
    std::vector<double> forward, bias, backward;
};

// The kernels of one instruction set, with the block shapes they were compiled for.
struct LayerKernels {
    const char* name;
    void (*pack)(const Layer&, const double* shared, PackedLayer&);
    void (*forward)(const Layer&, const PackedLayer&, const Lanes&);
    void (*backward)(const Layer&, const PackedLayer&, const Lanes&, double* partial, double* scratch);
    void (*forward_one)(const Layer&, const PackedLayer&, const Lanes&);
    // A batch of one lane. The packed weights are read only for a layer without a weight
    // matrix; scratch: room for K numbers.
    void (*backward_one)(const Layer&, const PackedLayer&, const Lanes&, double* grads, double* scratch);
};

// Forward: NR neurons x LV vectors of lanes per block; backward: KR inputs x LB vectors (dx),
// NW neurons x KW inputs (dw).
template <int NR, int LV, int KR, int LB, int NW, int KW>
struct Blocked {
    static void pack(const Layer& layer, const double* shared, PackedLayer& p) {
        p.forward.resize(forward_pack_size<NR>(layer));
        p.bias.resize(bias_pack_size<NR>(layer));
        p.backward.resize(backward_pack_size<KR>(layer));
        pack_forward<NR>(layer, shared, p.forward.data(), p.bias.data());
        pack_backward<KR>(layer, shared, p.backward.data());
    }
    AG_INLINE static void forward(const Layer& layer, const PackedLayer& p, const Lanes& x) {
        layer_forward<NR, LV>(layer, p.forward.data(), p.bias.data(), x);
    }
    AG_INLINE static void backward(const Layer& layer, const PackedLayer& p, const Lanes& x, double* partial,
                                   double* scratch) {
        layer_backward<KR, LB, NW, KW>(layer, p.backward.data(), x, partial, scratch);
    }
    AG_INLINE static void forward_one(const Layer& layer, const PackedLayer& p, const Lanes& x) {
        if (layer.weight_matrix)
            layer_forward_in_place<8>(layer, x);
        else
            layer_forward_one<NR>(layer, p.forward.data(), p.bias.data(), x);
    }
    AG_INLINE static void backward_one(const Layer& layer, const PackedLayer& p, const Lanes& x, double* grads,
                                       double* scratch) {
        if (layer.weight_matrix)
            layer_backward_in_place<KR>(layer, x, grads, scratch);
        else
            layer_backward_one<KR>(layer, p.backward.data(), x, grads);
    }
};

// Registers: AVX-512 has 32 of 8 lanes, AVX2 16 of 4, SSE2 16 of 2 (a Vec8 takes 1, 2, 4).
using BlockedAvx512 = Blocked<4, 4, 4, 4, 4, 4>;
using BlockedAvx2 = Blocked<2, 2, 2, 2, 2, 2>;
using BlockedBaseline = Blocked<2, 1, 2, 1, 1, 2>;

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(ARENAGRAD_NO_TARGET_CLONES)
#define AG_LAYER_TARGET(isa) __attribute__((target(isa), flatten))
#define AG_LAYER_DISPATCH 1
#else
#define AG_LAYER_TARGET(isa)
#define AG_LAYER_DISPATCH 0
#endif

AG_LAYER_TARGET("avx512f")
inline void forward_avx512(const Layer& l, const PackedLayer& p, const Lanes& x) { BlockedAvx512::forward(l, p, x); }
AG_LAYER_TARGET("avx512f")
inline void backward_avx512(const Layer& l, const PackedLayer& p, const Lanes& x, double* partial, double* scratch) {
    BlockedAvx512::backward(l, p, x, partial, scratch);
}
AG_LAYER_TARGET("avx2")
inline void forward_avx2(const Layer& l, const PackedLayer& p, const Lanes& x) { BlockedAvx2::forward(l, p, x); }
AG_LAYER_TARGET("avx2")
inline void backward_avx2(const Layer& l, const PackedLayer& p, const Lanes& x, double* partial, double* scratch) {
    BlockedAvx2::backward(l, p, x, partial, scratch);
}
AG_LAYER_TARGET("avx512f")
inline void forward_one_avx512(const Layer& l, const PackedLayer& p, const Lanes& x) {
    BlockedAvx512::forward_one(l, p, x);
}
AG_LAYER_TARGET("avx512f")
inline void backward_one_avx512(const Layer& l, const PackedLayer& p, const Lanes& x, double* grads,
                                double* scratch) {
    BlockedAvx512::backward_one(l, p, x, grads, scratch);
}
AG_LAYER_TARGET("avx2")
inline void forward_one_avx2(const Layer& l, const PackedLayer& p, const Lanes& x) { BlockedAvx2::forward_one(l, p, x); }
AG_LAYER_TARGET("avx2")
inline void backward_one_avx2(const Layer& l, const PackedLayer& p, const Lanes& x, double* grads,
                                double* scratch) {
    BlockedAvx2::backward_one(l, p, x, grads, scratch);
}
inline void forward_one_baseline(const Layer& l, const PackedLayer& p, const Lanes& x) {
    BlockedBaseline::forward_one(l, p, x);
}
inline void backward_one_baseline(const Layer& l, const PackedLayer& p, const Lanes& x, double* grads,
                                double* scratch) {
    BlockedBaseline::backward_one(l, p, x, grads, scratch);
}
inline void forward_baseline(const Layer& l, const PackedLayer& p, const Lanes& x) {
    BlockedBaseline::forward(l, p, x);
}
inline void backward_baseline(const Layer& l, const PackedLayer& p, const Lanes& x, double* partial,
                              double* scratch) {
    BlockedBaseline::backward(l, p, x, partial, scratch);
}

// The widest kernels this CPU runs.
inline LayerKernels layer_kernels() {
#if AG_LAYER_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return {"avx512f",       BlockedAvx512::pack, forward_avx512,
                backward_avx512, forward_one_avx512,  backward_one_avx512};
    if (__builtin_cpu_supports("avx2"))
        return {"avx2", BlockedAvx2::pack, forward_avx2, backward_avx2, forward_one_avx2, backward_one_avx2};
#endif
    return {"baseline",        BlockedBaseline::pack, forward_baseline,
            backward_baseline, forward_one_baseline,  backward_one_baseline};
}

}  // namespace arenagrad
