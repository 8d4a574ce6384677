// The op table: every op's forward formula and local derivatives, written once.
//
// The eager arena (arena.hpp), the batched replay (replay.hpp) and the CUDA kernels
// (cuda/elementwise.cu) all call these functions, so an op is defined in exactly one place.
// docs/semantics.md is the human-readable version of this file, and
// python/arenagrad/reference.py is its pure-Python twin: change all three together.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define AG_HOST_DEVICE __host__ __device__
#else
#define AG_HOST_DEVICE
#endif

namespace arenagrad {

enum class Op : std::uint8_t {
    Leaf,         // an input or a parameter: no operands
    Add,          // a + b
    Sub,          // a - b
    Mul,          // a * b
    Div,          // a / b
    Neg,          // -a
    PowConst,     // a ** k, k a float constant stored in a leaf (no gradient flows to it)
    PowConstInt,  // same formula; only remembers that k was a Python int, for `_op`
    Pow,          // a ** b, both Values
    Relu,
    Tanh,
    Exp,
    Log,
    Sigmoid,
    Abs,
    Sqrt,
    Linear,       // b + sum_i w_i * x_i, operands in the n-ary side table: [b, w0, x0, w1, x1, ...]
    Sum,          // sum_i v_i, operands in the n-ary side table
};

// Ops whose operands live in the n-ary side table instead of lhs/rhs.
AG_HOST_DEVICE inline bool is_nary(Op op) { return op == Op::Linear || op == Op::Sum; }

// Ops with exactly one differentiable operand (lhs). PowConst reads rhs but never
// sends it a gradient, exactly like micrograd's `x ** k`.
AG_HOST_DEVICE inline bool is_unary(Op op) {
    switch (op) {
        case Op::Neg: case Op::PowConst: case Op::PowConstInt: case Op::Relu: case Op::Tanh:
        case Op::Exp: case Op::Log: case Op::Sigmoid: case Op::Abs: case Op::Sqrt:
            return true;
        default:
            return false;
    }
}

AG_HOST_DEVICE inline bool is_binary(Op op) {
    return op == Op::Add || op == Op::Sub || op == Op::Mul || op == Op::Div || op == Op::Pow;
}

AG_HOST_DEVICE inline double stable_sigmoid(double a) {
    // Two branches so exp never overflows: for a < 0, exp(-a) could be inf.
    if (a >= 0) return 1.0 / (1.0 + std::exp(-a));
    double e = std::exp(a);
    return e / (1.0 + e);
}

// Forward value of a unary or binary op (b is ignored by unary ops other than PowConst).
AG_HOST_DEVICE inline double forward(Op op, double a, double b) {
    switch (op) {
        case Op::Add: return a + b;
        case Op::Sub: return a - b;
        case Op::Mul: return a * b;
        case Op::Div: return a / b;
        case Op::Neg: return -a;
        case Op::PowConst:
        case Op::PowConstInt:
        case Op::Pow: return std::pow(a, b);
        case Op::Relu: return a < 0 ? 0.0 : a;  // micrograd: 0 if x < 0 else x (keeps nan and -0.0)
        case Op::Tanh: return std::tanh(a);
        case Op::Exp: return std::exp(a);
        case Op::Log: return std::log(a);
        case Op::Sigmoid: return stable_sigmoid(a);
        case Op::Abs: return std::fabs(a);
        case Op::Sqrt: return std::sqrt(a);
        default: return 0.0;  // Leaf, Linear, Sum are not computed here
    }
}

// Local derivatives d(out)/da and d(out)/db of a unary or binary op. The caller does
// `grad_a += da * grad_out`, as micrograd does.
AG_HOST_DEVICE inline void derivatives(Op op, double a, double b, double out, double& da,
                                       double& db) {
    da = 0.0;
    db = 0.0;
    switch (op) {
        case Op::Add: da = 1.0; db = 1.0; break;
        case Op::Sub: da = 1.0; db = -1.0; break;
        case Op::Mul: da = b; db = a; break;
        case Op::Div: da = 1.0 / b; db = -a / (b * b); break;
        case Op::Neg: da = -1.0; break;
        case Op::PowConst:
        case Op::PowConstInt: da = b * std::pow(a, b - 1.0); break;
        case Op::Pow:
            da = b * std::pow(a, b - 1.0);
            // d/db a^b = a^b ln a; at a == 0 with b >= 0 the limit is 0 (PyTorch's choice too)
            db = (a == 0.0 && b >= 0.0) ? 0.0 : out * std::log(a);
            break;
        case Op::Relu: da = out > 0 ? 1.0 : 0.0; break;
        case Op::Tanh: da = 1.0 - out * out; break;
        case Op::Exp: da = out; break;
        case Op::Log: da = 1.0 / a; break;
        case Op::Sigmoid: da = out * (1.0 - out); break;
        case Op::Abs: da = a > 0 ? 1.0 : a < 0 ? -1.0 : a == 0 ? 0.0 : a; break;  // nan stays nan
        case Op::Sqrt: da = 0.5 / out; break;
        default: break;
    }
}

// micrograd's `_op` strings (PowConst's is built from its exponent by the binding).
inline const char* op_name(Op op) {
    switch (op) {
        case Op::Leaf: return "";
        case Op::Add: return "+";
        case Op::Sub: return "-";
        case Op::Mul: return "*";
        case Op::Div: return "/";
        case Op::Neg: return "neg";
        case Op::PowConst: case Op::PowConstInt: case Op::Pow: return "**";
        case Op::Relu: return "ReLU";
        case Op::Tanh: return "tanh";
        case Op::Exp: return "exp";
        case Op::Log: return "log";
        case Op::Sigmoid: return "sigmoid";
        case Op::Abs: return "abs";
        case Op::Sqrt: return "sqrt";
        case Op::Linear: return "linear";
        case Op::Sum: return "sum";
    }
    return "?";
}

}  // namespace arenagrad
