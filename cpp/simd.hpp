// Vectors of 8 doubles for the CPU replay's hand-blocked loops, and the one fixed-order sum
// over lanes that every lane-summed gradient uses.
//
// GCC and Clang have vector types (`vector_size`): arithmetic on them is the scalar arithmetic
// lane by lane, with the same rounding, so code written with them computes exactly what the
// scalar rules compute. The compiler maps a Vec8 onto whatever the target has (one AVX-512
// register, two AVX registers, four SSE2 ones). Other compilers get a plain struct with the
// same operations, correct and slower. Nothing here reorders an operation within a lane, and
// -ffp-contract=off keeps every `a + b * c` a multiply and an add.
#pragma once

#include <cstddef>
#include <cstring>
#include <new>
#include <vector>

#if defined(__GNUC__) && !defined(__clang__)
// GCC warns that a Vec8 is passed and returned differently with and without AVX-512. The
// functions that take or return one are always inlined into their callers, so no call crosses
// that boundary. (Not popped: the warning comes where templates are instantiated, at the end
// of the translation unit.)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace arenagrad {

// An allocator of 64-byte aligned memory (a cache line, an AVX-512 vector), so that rows a
// multiple of 8 doubles apart start on a line: a Vec8 load then never straddles two lines.
// With malloc's 16-byte alignment the same replay ran at one of two speeds (up to 2x apart)
// depending on where its buffers happened to land.
template <typename T>
struct Aligned64 {
    using value_type = T;
    Aligned64() = default;
    template <typename U>
    Aligned64(const Aligned64<U>&) {}
    T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64))); }
    void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t(64)); }
    template <typename U>
    bool operator==(const Aligned64<U>&) const { return true; }
    template <typename U>
    bool operator!=(const Aligned64<U>&) const { return false; }
};
using AlignedDoubles = std::vector<double, Aligned64<double>>;

#if defined(__GNUC__)
#define AG_INLINE inline __attribute__((always_inline))

typedef double Vec8 __attribute__((vector_size(64)));
typedef long long Bits8 __attribute__((vector_size(64)));

AG_INLINE Vec8 load8(const double* p) {
    Vec8 v;
    std::memcpy(&v, p, sizeof v);
    return v;
}
AG_INLINE void store8(double* p, const Vec8& v) { std::memcpy(p, &v, sizeof v); }
AG_INLINE Vec8 splat8(double s) { return Vec8{s, s, s, s, s, s, s, s}; }
AG_INLINE double lane8(const Vec8& v, unsigned l) { return v[l]; }

// v where keep is all ones, +0.0 where it is all zeros (bitwise, so nan and -0.0 pass as they are)
template <typename Mask>
AG_INLINE Vec8 select8(const Mask& keep, const Vec8& v) {
    return (Vec8)((Bits8)v & (Bits8)keep);
}
// micrograd's relu, `0 if a < 0 else a`: nan and -0.0 are kept
AG_INLINE Vec8 relu8(const Vec8& a) { return select8(~(a < splat8(0.0)), a); }
// relu's local derivative from its output, `1.0 if out > 0 else 0.0`
AG_INLINE Vec8 relu_slope8(const Vec8& out) { return select8(out > splat8(0.0), splat8(1.0)); }
// v with lanes [n, 8) set to +0.0
AG_INLINE Vec8 first_lanes8(const Vec8& v, unsigned n) {
    const Vec8 index = {0, 1, 2, 3, 4, 5, 6, 7};
    return select8(index < splat8(double(n)), v);
}
#else
#define AG_INLINE inline

struct Vec8 {
    double v[8];
    double operator[](unsigned l) const { return v[l]; }
};
inline Vec8 load8(const double* p) {
    Vec8 r;
    std::memcpy(r.v, p, sizeof r.v);
    return r;
}
inline void store8(double* p, Vec8 v) { std::memcpy(p, v.v, sizeof v.v); }
inline Vec8 splat8(double s) { return Vec8{{s, s, s, s, s, s, s, s}}; }
inline double lane8(Vec8 v, unsigned l) { return v.v[l]; }
inline Vec8 operator+(Vec8 a, Vec8 b) {
    for (unsigned l = 0; l < 8; ++l) a.v[l] = a.v[l] + b.v[l];
    return a;
}
inline Vec8 operator*(Vec8 a, Vec8 b) {
    for (unsigned l = 0; l < 8; ++l) a.v[l] = a.v[l] * b.v[l];
    return a;
}
inline Vec8 operator*(double s, Vec8 b) {
    for (unsigned l = 0; l < 8; ++l) b.v[l] = s * b.v[l];
    return b;
}
inline Vec8 relu8(Vec8 a) {
    for (unsigned l = 0; l < 8; ++l) a.v[l] = a.v[l] < 0 ? 0.0 : a.v[l];
    return a;
}
inline Vec8 relu_slope8(Vec8 out) {
    for (unsigned l = 0; l < 8; ++l) out.v[l] = out.v[l] > 0 ? 1.0 : 0.0;
    return out;
}
inline Vec8 first_lanes8(Vec8 v, unsigned n) {
    for (unsigned l = n; l < 8; ++l) v.v[l] = 0.0;
    return v;
}
#endif

// The lane sum's final step: its 8 running sums combined pairwise.
AG_INLINE double pairwise8(const Vec8& s) {
    return ((lane8(s, 0) + lane8(s, 1)) + (lane8(s, 2) + lane8(s, 3))) +
           ((lane8(s, 4) + lane8(s, 5)) + (lane8(s, 6) + lane8(s, 7)));
}

// pairwise8 of 8 vectors at once, out[j] = pairwise8(s[j]): the same additions in the same
// pairs, done for all 8 by shuffling pairs of vectors together (7 vector additions instead of
// 56 scalar ones).
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
AG_INLINE Vec8 adjacent_sums8(const Vec8& a, const Vec8& b) {  // (a0+a1, a2+a3, ..., b6+b7)
    return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14) +
           __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15);
}
AG_INLINE void pairwise8x8(const Vec8* s, double* out) {
    const Vec8 quarters0 = adjacent_sums8(adjacent_sums8(s[0], s[1]), adjacent_sums8(s[2], s[3]));
    const Vec8 quarters1 = adjacent_sums8(adjacent_sums8(s[4], s[5]), adjacent_sums8(s[6], s[7]));
    store8(out, adjacent_sums8(quarters0, quarters1));
}
#else
AG_INLINE void pairwise8x8(const Vec8* s, double* out) {
    for (unsigned j = 0; j < 8; ++j) out[j] = pairwise8(s[j]);
}
#endif

// Sums n per-lane contributions to a shared gradient (c[l], or a[l] * b[l]) in a fixed order
// that depends only on n: 8 running sums, sum j taking lanes j, j + 8, j + 16, ... in order,
// then combined pairwise. (The compiler does not vectorise a reduction by itself: it may not
// reorder floating-point sums. Here the order is ours, and fixed.) The running sums start at
// +0.0 and a sum that starts there never becomes -0.0, so adding +0.0 for a lane past n (see
// first_lanes8) leaves them as they are: the layer kernels, which sum whole vectors, give the
// same bits.
template <bool Products>
AG_INLINE double lane_sum(const double* a, const double* b, unsigned n) {
    if (n == 1) return 0.0 + (Products ? a[0] * b[0] : a[0]);  // the same bits, for one-lane tiles
    Vec8 s = splat8(0.0);
    unsigned l = 0;
    for (; l + 8 <= n; l += 8) s = s + (Products ? load8(a + l) * load8(b + l) : load8(a + l));
    if (l < n) {
        double last_a[8] = {0, 0, 0, 0, 0, 0, 0, 0}, last_b[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        std::memcpy(last_a, a + l, (n - l) * sizeof(double));
        if (Products) std::memcpy(last_b, b + l, (n - l) * sizeof(double));
        s = s + first_lanes8(Products ? load8(last_a) * load8(last_b) : load8(last_a), n - l);
    }
    return pairwise8(s);
}

}  // namespace arenagrad
