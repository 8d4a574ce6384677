// The op table: every op a graph can hold, with its forward formula and local derivatives.
//
// AG_OPS is the one list of ops. Everything that depends on the set of ops is generated from
// it: the Op enum, the arity predicates, forward(), derivatives(), op_name(), the switches
// through which the eager sweep and the replays reach per-op code (visit() below, and the
// one-lane replay's loops) and Python's arenagrad._core.op_table. Each row names its rule, a struct in `rules` below holding the
// formulas; a row without a rule, or a rule without the functions its kind needs, does not
// compile. So an op cannot be half-added: it is computed everywhere or nowhere.
//
// docs/semantics.md is the human-readable contract of this table, reference.py's OPS its
// pure-Python twin, and docs/architecture.md walks through adding an op.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#if defined(__CUDACC__)
#define AG_HOST_DEVICE __host__ __device__
// For host-device templates that host-only code also instantiates with host-only callables.
#define AG_ANY_CALLABLE _Pragma("nv_exec_check_disable")
#else
#define AG_HOST_DEVICE
#define AG_ANY_CALLABLE
#endif

namespace arenagrad {

// How a node holds its operands (the arena's lhs/rhs, a tape's a/b):
//   Unary   one operand that receives a gradient, in lhs; rhs repeats it, except for PowConst,
//           whose rhs is its exponent: a leaf that is read but, as in micrograd's `x ** k`,
//           never receives a gradient; and Mask, whose rhs is its condition (read, no gradient)
//   Binary  two operands, lhs and rhs
//   Nary    an operand list in the side table: lhs is its offset, rhs its length
enum class Kind : std::uint8_t { Leaf, Unary, Binary, Nary };

// X(Enum, kind, name, symbol): Op::Enum, of that kind, computed by rules::Enum. `name` is its
// identifier in arenagrad._core.op_table, reference.OPS and the tests' tables; `symbol` is
// micrograd's `_op` string (for PowConst the binding appends the exponent; user-defined ops,
// the last two rows, show the `_op` their author gave, '' by default).
// clang-format off
#define AG_OPS(X)                                      \
    X(Add,         Binary, "add",           "+")       \
    X(Sub,         Binary, "sub",           "-")       \
    X(Mul,         Binary, "mul",           "*")       \
    X(Div,         Binary, "div",           "/")       \
    X(Neg,         Unary,  "neg",           "neg")     \
    X(PowConst,    Unary,  "pow_const",     "**")      \
    X(PowConstInt, Unary,  "pow_const_int", "**")      \
    X(Pow,         Binary, "pow",           "**")      \
    X(Relu,        Unary,  "relu",          "ReLU")    \
    X(Tanh,        Unary,  "tanh",          "tanh")    \
    X(Exp,         Unary,  "exp",           "exp")     \
    X(Log,         Unary,  "log",           "log")     \
    X(Sigmoid,     Unary,  "sigmoid",       "sigmoid") \
    X(Abs,         Unary,  "abs",           "abs")     \
    X(Sqrt,        Unary,  "sqrt",          "sqrt")    \
    X(Step,        Unary,  "step",          "step")    \
    X(Sign,        Unary,  "sign",          "sign")    \
    X(Mask,        Unary,  "mask",          "mask")    \
    X(Linear,      Nary,   "linear",        "linear")  \
    X(Sum,         Nary,   "sum",           "sum")     \
    X(LocalGrads,  Nary,   "local_grads",   "local_grads") \
    X(PyBackward,  Nary,   "py_backward",   "py_backward") \
    X(Take,        Nary,   "take",          "take")    \
    X(Max,         Nary,   "max",           "max")     \
    X(Detach,      Unary,  "detach",        "detach")
// clang-format on

enum class Op : std::uint8_t {
    Leaf,  // an input or a parameter: no operands
#define AG_ENUMERATOR(E, ...) E,
    AG_OPS(AG_ENUMERATOR)
#undef AG_ENUMERATOR
};

// ---- the rules -----------------------------------------------------------------------------

// The local derivatives of a two-operand op or term.
struct Partials {
    double da, db;
};

// A local derivative that is exactly 1: the sweeps pass the upstream gradient through
// unchanged (1.0 * g == g for every double, nan and infinities included), and the replays
// need no scratch row for it.
struct One {};
AG_HOST_DEVICE constexpr double operator*(One, double g) { return g; }

AG_HOST_DEVICE inline double stable_sigmoid(double a) {
    // Two branches so exp never overflows: for a < 0, exp(-a) could be inf.
    if (a >= 0) return 1.0 / (1.0 + std::exp(-a));
    const double e = std::exp(a);
    return e / (1.0 + e);
}

// relu's derivative (the step op's forward): 1 above 0; 0 at 0, below, and for nan.
AG_HOST_DEVICE constexpr double step_of(double a) { return a > 0 ? 1.0 : 0.0; }

// abs's derivative (the sign op's forward): 0 at 0, nan stays nan.
AG_HOST_DEVICE constexpr double sign_of(double a) { return a > 0 ? 1.0 : a < 0 ? -1.0 : a == 0 ? 0.0 : a; }

namespace rules {

// Unary and binary ops: forward(a, b) gives the node's value `out`; the local derivatives come
// from the operands and `out`: derivative(a, b, out) -> d(out)/da for unary ops,
// derivatives(a, b, out) -> {d(out)/da, d(out)/db} for binary ones. A unary op's b is its
// operand again (PowConst's: the exponent; Mask's: the condition). The sweeps then do
// `grad_a += d * grad_out`, as micrograd does.
//
// Derivative graphs (arenagrad.grad with create_graph=True, grad_graph.hpp): each rule also
// builds `d * grad` from nodes, one function per operand that receives a gradient:
// grad_a / grad_b (unary, binary), grad_head / grad_term (n-ary; grad_term_a / grad_term_b for
// two-operand terms). They take a node builder `nodes`, the operand nodes, the node `out` and
// the node `grad` (its upstream gradient), and return the sweep's `d * grad` with the same
// operations in the same order, so the same bits: a node (`grad` itself for a derivative
// of 1), or `nodes.times(d, grad)`, a product the builder keeps unbuilt so that all the
// products added into one operand become one linear node (as a fused neuron is one node in
// the forward graph). Being nodes of the table, those can be differentiated again.
// The builder (GraphBuilder in grad_graph.hpp; reference.py's twins build the same nodes):
//   nodes.add(x, y), sub, mul, div, pow, neg(x), log, abs, relu, step, sign, mask(x, c),
//   unary(op, x) (any other unary op), pow_const(x, k, op), constant(v) (a leaf), value(x)
//   (x's data, for a constant exponent), times(d, grad) (the product d * grad, as a
//   contribution).
// C++ leaves the order of a call's arguments unspecified, so no call below gets two arguments
// that push nodes: the order of nodes fixes the order in which the next sweep adds, and it
// must be the oracle's.

struct Add {
    AG_HOST_DEVICE static double forward(double a, double b) { return a + b; }
    AG_HOST_DEVICE static Partials derivatives(double, double, double) { return {1.0, 1.0}; }
    template <typename G, typename N>
    static N grad_a(G&, N, N, N, N grad) { return grad; }
    template <typename G, typename N>
    static N grad_b(G&, N, N, N, N grad) { return grad; }
};

struct Sub {
    AG_HOST_DEVICE static double forward(double a, double b) { return a - b; }
    AG_HOST_DEVICE static Partials derivatives(double, double, double) { return {1.0, -1.0}; }
    template <typename G, typename N>
    static N grad_a(G&, N, N, N, N grad) { return grad; }
    template <typename G, typename N>
    static N grad_b(G& nodes, N, N, N, N grad) { return nodes.neg(grad); }  // -1.0 * g is -g
};

struct Mul {
    AG_HOST_DEVICE static double forward(double a, double b) { return a * b; }
    AG_HOST_DEVICE static Partials derivatives(double a, double b, double) { return {b, a}; }
    template <typename G, typename N>
    static auto grad_a(G& nodes, N, N b, N, N grad) { return nodes.times(b, grad); }
    template <typename G, typename N>
    static auto grad_b(G& nodes, N a, N, N, N grad) { return nodes.times(a, grad); }
};

struct Div {
    AG_HOST_DEVICE static double forward(double a, double b) { return a / b; }
    // d_b = -a / b**2 as -(a / b) / b, PyTorch's form: b * b neither overflows nor, as a node,
    // makes 0 * inf of the second derivative of 1 / b at 0 (PyTorch: inf)
    AG_HOST_DEVICE static Partials derivatives(double, double b, double out) { return {1.0 / b, -out / b}; }
    template <typename G, typename N>
    static auto grad_a(G& nodes, N, N b, N, N grad) {
        const N d = nodes.div(nodes.constant(1.0), b);
        return nodes.times(d, grad);
    }
    template <typename G, typename N>
    static auto grad_b(G& nodes, N, N b, N out, N grad) {
        const N d = nodes.div(nodes.neg(out), b);
        return nodes.times(d, grad);
    }
};

struct Neg {
    AG_HOST_DEVICE static double forward(double a, double) { return -a; }
    AG_HOST_DEVICE static double derivative(double, double, double) { return -1.0; }
    template <typename G, typename N>
    static N grad_a(G& nodes, N, N, N, N grad) { return nodes.neg(grad); }
};

struct PowConst {  // a ** k, with k a number
    AG_HOST_DEVICE static double forward(double a, double k) { return std::pow(a, k); }
    // k * a ** (k - 1); for k == 0, 0 (PyTorch's choice: a ** 0 is constant, even at a == 0
    // where k * a ** -1 would be 0 * inf), which keeps every derivative of x ** n finite at 0
    AG_HOST_DEVICE static double derivative(double a, double k, double) {
        return k == 0 ? 0.0 : k * std::pow(a, k - 1.0);
    }
    template <typename G, typename N>
    static auto grad_a(G& nodes, N a, N k, N, N grad) { return power_rule(nodes, a, nodes.value(k), Op::PowConst, grad); }

protected:
    // The derivative's power is a node of the same op, so an int exponent stays an int in `_op`.
    template <typename G, typename N>
    static auto power_rule(G& nodes, N a, double k, Op power, N grad) {
        if (k == 0) return nodes.times(nodes.constant(0.0), grad);
        const N factor = nodes.constant(k);
        // pow(a, 1) is a for every double, so x ** 2's derivative is 2 * x, without a node
        const N lower = k == 2 ? a : nodes.pow_const(a, k - 1.0, power);
        const N d = nodes.mul(factor, lower);
        return nodes.times(d, grad);
    }
};

struct PowConstInt : PowConst {  // the same op; only remembers that k was an int, for `_op`
    template <typename G, typename N>
    static auto grad_a(G& nodes, N a, N k, N, N grad) {
        return power_rule(nodes, a, nodes.value(k), Op::PowConstInt, grad);
    }
};

struct Pow {  // a ** b, both Values
    AG_HOST_DEVICE static double forward(double a, double b) { return std::pow(a, b); }
    AG_HOST_DEVICE static Partials derivatives(double a, double b, double out) {
        // PyTorch's choices: d/da a^b = b a^(b-1), but 0 where b == 0 (a ** 0 is constant);
        // d/db a^b = a^b ln a, but 0 where a == 0 and b >= 0 (the limit from b's side)
        return {b != 0.0 ? b * std::pow(a, b - 1.0) : 0.0, (a == 0.0 && b >= 0.0) ? 0.0 : out * std::log(a)};
    }
    template <typename G, typename N>
    static auto grad_a(G& nodes, N a, N b, N, N grad) {
        const N b_minus_1 = nodes.sub(b, nodes.constant(1.0));
        const N power = nodes.pow(a, b_minus_1);
        const N d = nodes.mul(b, power);
        return nodes.times(nodes.mask(d, b), grad);  // 0 where b == 0
    }
    template <typename G, typename N>
    static auto grad_b(G& nodes, N a, N b, N out, N grad) {
        const N log_a = nodes.log(a);
        const N d = nodes.mul(out, log_a);
        // |a| + relu(-b) is 0 exactly where a == 0 and b >= 0 (nan, never 0, where b is nan)
        const N size_of_a = nodes.abs(a);
        const N minus_b = nodes.neg(b);
        const N below_zero = nodes.relu(minus_b);
        const N keep = nodes.add(size_of_a, below_zero);
        return nodes.times(nodes.mask(d, keep), grad);
    }
};

struct Relu {
    // micrograd's `0 if x < 0 else x`, which keeps nan and -0.0
    AG_HOST_DEVICE static double forward(double a, double) { return a < 0 ? 0.0 : a; }
    AG_HOST_DEVICE static double derivative(double, double, double out) { return step_of(out); }
    template <typename G, typename N>
    static auto grad_a(G& nodes, N, N, N out, N grad) { return nodes.times(nodes.step(out), grad); }
};

struct Tanh {
    AG_HOST_DEVICE static double forward(double a, double) { return std::tanh(a); }
    AG_HOST_DEVICE static double derivative(double, double, double out) { return 1.0 - out * out; }
    template <typename G, typename N>
    static auto grad_a(G& nodes, N, N, N out, N grad) {
        const N out_squared = nodes.mul(out, out);
        const N d = nodes.sub(nodes.constant(1.0), out_squared);
        return nodes.times(d, grad);
    }
};

struct Exp {
    AG_HOST_DEVICE static double forward(double a, double) { return std::exp(a); }
    AG_HOST_DEVICE static double derivative(double, double, double out) { return out; }
    template <typename G, typename N>
    static auto grad_a(G& nodes, N, N, N out, N grad) { return nodes.times(out, grad); }
};

struct Log {
    AG_HOST_DEVICE static double forward(double a, double) { return std::log(a); }
    AG_HOST_DEVICE static double derivative(double a, double, double) { return 1.0 / a; }
    template <typename G, typename N>
    static auto grad_a(G& nodes, N a, N, N, N grad) {
        const N d = nodes.div(nodes.constant(1.0), a);
        return nodes.times(d, grad);
    }
};

struct Sigmoid {
    AG_HOST_DEVICE static double forward(double a, double) { return stable_sigmoid(a); }
    AG_HOST_DEVICE static double derivative(double, double, double out) { return out * (1.0 - out); }
    template <typename G, typename N>
    static auto grad_a(G& nodes, N, N, N out, N grad) {
        const N one_minus_out = nodes.sub(nodes.constant(1.0), out);
        const N d = nodes.mul(out, one_minus_out);
        return nodes.times(d, grad);
    }
};

struct Abs {
    AG_HOST_DEVICE static double forward(double a, double) { return std::fabs(a); }
    AG_HOST_DEVICE static double derivative(double a, double, double) { return sign_of(a); }
    template <typename G, typename N>
    static auto grad_a(G& nodes, N a, N, N, N grad) { return nodes.times(nodes.sign(a), grad); }
};

struct Sqrt {
    AG_HOST_DEVICE static double forward(double a, double) { return std::sqrt(a); }
    AG_HOST_DEVICE static double derivative(double, double, double out) { return 0.5 / out; }
    template <typename G, typename N>
    static auto grad_a(G& nodes, N, N, N out, N grad) {
        const N d = nodes.div(nodes.constant(0.5), out);
        return nodes.times(d, grad);
    }
};

// Ops that derivative graphs need: relu's and abs's derivatives, and PyTorch's `where` for the
// cases where a derivative is 0 although its formula is not (pow). Their own derivatives are
// 0, or Mask's 0/1, times the upstream gradient, as for any op (so 0 * inf is nan).

struct Step {  // 1 if a > 0 else 0: relu's derivative
    AG_HOST_DEVICE static double forward(double a, double) { return step_of(a); }
    AG_HOST_DEVICE static double derivative(double, double, double) { return 0.0; }
    template <typename G, typename N>
    static auto grad_a(G& nodes, N, N, N, N grad) { return nodes.times(nodes.constant(0.0), grad); }
};

struct Sign {  // 1, -1 or 0 (nan for nan): abs's derivative
    AG_HOST_DEVICE static double forward(double a, double) { return sign_of(a); }
    AG_HOST_DEVICE static double derivative(double, double, double) { return 0.0; }
    template <typename G, typename N>
    static auto grad_a(G& nodes, N, N, N, N grad) { return nodes.times(nodes.constant(0.0), grad); }
};

struct Mask {  // a where the condition c is nonzero (or nan), else 0; c gets no gradient
    AG_HOST_DEVICE static double forward(double a, double c) { return c != 0 ? a : 0.0; }
    AG_HOST_DEVICE static double derivative(double, double c, double) { return c != 0 ? 1.0 : 0.0; }
    template <typename G, typename N>
    static auto grad_a(G& nodes, N, N c, N, N grad) {
        const N d = nodes.mask(nodes.constant(1.0), c);
        return nodes.times(d, grad);
    }
};

// N-ary ops: operands [head..., term_0..., term_1..., ...]: `head` leading operands (0 or 1),
// then terms of `term` operands (1 or 2) each. The forward value is a fold in operand order,
//   acc = start(head...); acc = step(acc, term...) for each term,
// so its rounding is fixed by the table. The local derivatives are d_head(head..., out) and
// d_term(term..., out) (Partials for two-operand terms).

// [b, w0, x0, w1, x1, ...] -> b + w0 * x0 + w1 * x1 + ...: micrograd's Neuron,
// `sum((wi * xi for ...), b)`, fused into one node with the same rounding.
struct Linear {
    static constexpr unsigned head = 1, term = 2;
    AG_HOST_DEVICE static constexpr double start(double b) { return b; }
    AG_HOST_DEVICE static constexpr double step(double acc, double w, double x) { return acc + w * x; }
    AG_HOST_DEVICE static constexpr One d_head(double, double) { return {}; }
    AG_HOST_DEVICE static constexpr Partials d_term(double w, double x, double) { return {x, w}; }
    template <typename G, typename N>
    static N grad_head(G&, N, N, N grad) { return grad; }
    template <typename G, typename N>
    static auto grad_term_a(G& nodes, N, N x, N, N grad) { return nodes.times(x, grad); }
    template <typename G, typename N>
    static auto grad_term_b(G& nodes, N w, N, N, N grad) { return nodes.times(w, grad); }
};

// [v0, v1, ...] -> 0.0 + v0 + v1 + ..., in the order of Python's sum().
struct Sum {
    static constexpr unsigned head = 0, term = 1;
    AG_HOST_DEVICE static constexpr double start() { return 0.0; }
    AG_HOST_DEVICE static constexpr double step(double acc, double v) { return acc + v; }
    AG_HOST_DEVICE static constexpr One d_term(double, double) { return {}; }
    template <typename G, typename N>
    static N grad_term(G&, N, N, N grad) { return grad; }
};

// User-defined ops: the user's Python code gives the node's value and its local derivatives.
// Neither can be replayed: compile() refuses a traced graph holding one (`replayable`).

// microgpt's `Value(data, children, local_grads)`: operands [v, x0, c0, x1, c1, ...], where
// the leaves v and c_k hold the given value and local derivatives. Like PowConst's exponent,
// they are constants, not children: only the x_k are (`_prev`), and their own gradients are
// never read. The fold returns v; d(out)/d(x_k) = c_k.
struct LocalGrads {
    static constexpr unsigned head = 1, term = 2;
    // v and c_k are numbers computed from `.data` when the node was built: a trace would
    // freeze them, so a replay would give every lane the traced lane's numbers.
    static constexpr bool replayable = false;
    AG_HOST_DEVICE static constexpr double start(double v) { return v; }
    AG_HOST_DEVICE static constexpr double step(double acc, double, double) { return acc; }
    AG_HOST_DEVICE static constexpr double d_head(double, double) { return 0.0; }
    AG_HOST_DEVICE static constexpr Partials d_term(double, double c, double) { return {c, 0.0}; }
    // c_k * grad, c_k being the constant leaf: differentiated again, the derivative through
    // c_k is 0 (the user's local gradients are numbers, docs/higher_order.md)
    template <typename G, typename N>
    static auto grad_head(G& nodes, N, N, N grad) { return nodes.times(nodes.constant(0.0), grad); }
    template <typename G, typename N>
    static auto grad_term_a(G& nodes, N, N c, N, N grad) { return nodes.times(c, grad); }
    template <typename G, typename N>
    static auto grad_term_b(G& nodes, N, N, N, N grad) { return nodes.times(nodes.constant(0.0), grad); }
};

// micrograd's own way: `out = Value(data, _children, _op)` plus a Python `out._backward`
// closure that applies the chain rule itself. Operands: the children. The eager sweep calls
// the closure at the node's place (sweep.hpp); no native formula exists, so these give nan,
// and a misuse shows instead of passing for a number.
struct PyBackward {
    static constexpr unsigned head = 0, term = 1;
    static constexpr bool replayable = false;  // a replay runs no Python
    AG_HOST_DEVICE static double start() { return std::nan(""); }
    AG_HOST_DEVICE static double step(double, double) { return std::nan(""); }
    AG_HOST_DEVICE static double d_term(double, double) { return std::nan(""); }
    // Python code, not ops: create_graph=True refuses it (RuntimeError naming its `_op`)
    template <typename G, typename N>
    static N grad_term(G& nodes, N, N out, N) { return nodes.refuse(out); }
};

// a's value, through which no gradient flows on (0 * g): Value.detach() while compile()
// traces, where a frozen leaf would hold the placeholders' value (a replay computes this per
// lane and per forward).
struct Detach {
    AG_HOST_DEVICE static double forward(double a, double) { return a; }
    AG_HOST_DEVICE static double derivative(double, double, double) { return 0.0; }
    template <typename G, typename N>
    static auto grad_a(G& nodes, N, N, N, N grad) { return nodes.times(nodes.constant(0.0), grad); }
};

// Selections: n-ary ops whose value is one of their operands, picked by the operands' values
// at a position a fold cannot know. choose(value, count) returns the position of the chosen
// operand (value(k) is operand k's value), or `count` when there is none: the node's value is
// then nan. The chosen operand's local derivative is 1, every other operand's 0, so each sweep
// does `grad += (k == chosen ? 1 : 0) * g` for every operand k in order (0 * g is nan for a
// nan or infinite g, as for relu below 0). Their derivative graphs are grad itself for the
// chosen operand and 0 * grad for the others, the choice made where the graph is built.

// [index, v0, v1, ...] -> v_index: `values[int(index)]`; the index gets no gradient (0 * g).
// An index that is not an integer in [0, n) chooses nothing (the binding raises on it
// eagerly; compile() checks lane indices after each forward).
struct Take {
    static constexpr bool selects = true;
    AG_ANY_CALLABLE
    template <typename V>
    AG_HOST_DEVICE static std::uint32_t choose(V value, std::uint32_t count) {
        const double index = value(0);
        // nan fails every comparison, so it chooses nothing too
        if (index >= 0.0 && index < double(count) - 1.0 && index == std::floor(index))
            return 1u + std::uint32_t(index);
        return count;
    }
};

// [v0, v1, ...] -> the largest; the first of equal largest ones (0.0 and -0.0 are equal) is
// chosen, and the first nan if there is one (nan propagates, as in PyTorch).
struct Max {
    static constexpr bool selects = true;
    AG_ANY_CALLABLE
    template <typename V>
    AG_HOST_DEVICE static std::uint32_t choose(V value, std::uint32_t count) {
        if (count == 0) return 0;
        std::uint32_t best = 0;
        double top = value(0);
        for (std::uint32_t k = 1; k < count && top == top; ++k) {
            const double v = value(k);
            if (v > top || v != v) {
                best = k;
                top = v;
            }
        }
        return best;
    }
};

struct Leaf {};

}  // namespace rules

// Whether a rule is a selection (see rules::Take).
template <typename R, typename = void>
struct IsSelection : std::false_type {};
template <typename R>
struct IsSelection<R, std::void_t<decltype(R::selects)>> : std::bool_constant<R::selects> {};
template <typename R>
constexpr bool is_selection = IsSelection<R>::value;

// A selection's value: its chosen operand's, nan if it chose none.
AG_ANY_CALLABLE
template <typename Rule, typename V>
AG_HOST_DEVICE inline double selected_value(V value, std::uint32_t count) {
    const std::uint32_t chosen = Rule::choose(value, count);
    return chosen < count ? value(chosen) : std::nan("");
}

// A selection's local derivative for operand k.
AG_HOST_DEVICE constexpr double selection_derivative(std::uint32_t k, std::uint32_t chosen) {
    return k == chosen ? 1.0 : 0.0;
}

// ---- generated from the table ----------------------------------------------------------------

// What code instantiated per op needs to know about op O at compile time.
template <Op O>
struct OpInfo;

template <>
struct OpInfo<Op::Leaf> {
    static constexpr Op op = Op::Leaf;
    static constexpr Kind kind = Kind::Leaf;
    using Rule = rules::Leaf;
};

#define AG_OP_INFO(E, K, ...)                  \
    template <>                                \
    struct OpInfo<Op::E> {                     \
        static constexpr Op op = Op::E;        \
        static constexpr Kind kind = Kind::K;  \
        using Rule = rules::E;                 \
    };
AG_OPS(AG_OP_INFO)
#undef AG_OP_INFO

// Calls f(OpInfo<op>{}) and returns its result: the one switch over ops, through which code
// instantiated per op (the sweeps' and replays' node steps) is reached.
AG_ANY_CALLABLE
template <typename F>
AG_HOST_DEVICE inline decltype(auto) visit(Op op, F&& f) {
    switch (op) {
        case Op::Leaf: return f(OpInfo<Op::Leaf>{});
#define AG_VISIT_CASE(E, ...) \
    case Op::E: return f(OpInfo<Op::E>{});
        AG_OPS(AG_VISIT_CASE)
#undef AG_VISIT_CASE
    }
    return f(OpInfo<Op::Leaf>{});  // unreachable: every enumerator has its case
}

AG_HOST_DEVICE constexpr Kind kind_of(Op op) {
    switch (op) {
        case Op::Leaf: return Kind::Leaf;
#define AG_KIND_CASE(E, K, ...) \
    case Op::E: return Kind::K;
        AG_OPS(AG_KIND_CASE)
#undef AG_KIND_CASE
    }
    return Kind::Leaf;
}

AG_HOST_DEVICE constexpr bool is_nary(Op op) { return kind_of(op) == Kind::Nary; }
AG_HOST_DEVICE constexpr bool is_unary(Op op) { return kind_of(op) == Kind::Unary; }
AG_HOST_DEVICE constexpr bool is_binary(Op op) { return kind_of(op) == Kind::Binary; }

// Whether an op can be recorded on a tape and replayed: every op whose rule does not say
// otherwise (`static constexpr bool replayable = false`).
template <typename Rule, typename = void>
struct RuleReplayable : std::true_type {};
template <typename Rule>
struct RuleReplayable<Rule, std::void_t<decltype(Rule::replayable)>> : std::bool_constant<Rule::replayable> {};

AG_HOST_DEVICE constexpr bool is_replayable(Op op) {
    switch (op) {
        case Op::Leaf: return true;
#define AG_REPLAYABLE_CASE(E, ...) \
    case Op::E: return RuleReplayable<rules::E>::value;
        AG_OPS(AG_REPLAYABLE_CASE)
#undef AG_REPLAYABLE_CASE
    }
    return true;
}

// Whether a local derivative's type says it is exactly 1 (see One).
template <typename D>
constexpr bool is_one = std::is_same<D, One>::value;

// The forward value of a unary or binary op (b: see the rules). Leaves and n-ary ops have no
// two-operand form: nan, so a misuse shows instead of passing for a number.
template <typename I>
AG_HOST_DEVICE inline double forward_of(double a, double b) {
    if constexpr (I::kind == Kind::Unary || I::kind == Kind::Binary)
        return I::Rule::forward(a, b);
    else
        return std::nan("");
}

AG_HOST_DEVICE inline double forward(Op op, double a, double b) {
    return visit(op, [&](auto info) { return forward_of<decltype(info)>(a, b); });
}

// Local derivatives d(out)/da and d(out)/db of a unary or binary op (db = 0 for unary ops);
// nan for leaves and n-ary ops, as forward(). The caller does `grad_a += da * grad_out`.
template <typename I>
AG_HOST_DEVICE inline Partials derivatives_of(double a, double b, double out) {
    if constexpr (I::kind == Kind::Unary)
        return {I::Rule::derivative(a, b, out), 0.0};
    else if constexpr (I::kind == Kind::Binary)
        return I::Rule::derivatives(a, b, out);
    else
        return {std::nan(""), std::nan("")};
}

AG_HOST_DEVICE inline void derivatives(Op op, double a, double b, double out, double& da, double& db) {
    const Partials d = visit(op, [&](auto info) { return derivatives_of<decltype(info)>(a, b, out); });
    da = d.da;
    db = d.db;
}

// The table's rows, for code that lists the ops (the Python binding).
struct OpRow {
    Kind kind;
    const char* name;
    const char* symbol;
};

#define AG_OP_ROW(E, K, NAME, SYMBOL) OpRow{Kind::K, NAME, SYMBOL},
inline constexpr OpRow kOpRows[] = {AG_OPS(AG_OP_ROW)};
#undef AG_OP_ROW

// micrograd's `_op` string of an op ('' for a leaf; PowConst's exponent is appended by the
// binding).
inline const char* op_name(Op op) {
    switch (op) {
        case Op::Leaf: return "";
#define AG_SYMBOL_CASE(E, K, NAME, SYMBOL) \
    case Op::E: return SYMBOL;
        AG_OPS(AG_SYMBOL_CASE)
#undef AG_SYMBOL_CASE
    }
    return "";
}

}  // namespace arenagrad
