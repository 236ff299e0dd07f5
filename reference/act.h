/* Activations and their derivatives as inline scalar code, written so that
 * GCC vectorises the row loops in act.c (no libm calls, no branches: selects).
 *
 * float32 (the fast path). No -ffast-math: every operation is IEEE; the
 * accuracy below comes from the algorithm, not from compiler licence.
 *
 *   gelu(x)  = x·Φ(x),  Φ(x) = erfc(-x/√2)/2.
 *     For z = |x|/√2:  erfc(z) = t·R(t)·exp(-z²),  t = 1/(1 + 0.4·z),
 *     R a degree-9 polynomial fitted (Chebyshev nodes, relative weight) on
 *     z ∈ [0, 10]; fit error ≤ 9.1e-9 relative (0.15 ulp).
 *     exp(-z²) = exp(-x²/2) is computed from x itself: x = xh + xl with xh the
 *     top 12 bits, so -xh²/2 is exact and only the small part -(x-xh)(x+xh)/2
 *     is rounded; rounding z² instead would cost z²·u of relative error.
 *     x > 0: x·(1 - erfc/2), x ≤ 0: x·erfc/2, so the tail keeps relative accuracy.
 *   gelu'(x) = Φ(x) + x·φ(x),  φ(x) = exp(-x²/2)/√(2π): the same pieces.
 *   gelu_tanh(x) = x·σ(2u),  u = √(2/π)(x + 0.044715x³)   (= x/2·(1 + tanh u))
 *     σ(2u) from e = exp(-2|u|) ≤ 1: u ≥ 0: 1/(1+e), u < 0: e/(1+e), so
 *     nothing overflows; σ(1-σ) = e/(1+e)² for either sign.
 *   gelu_tanh'(x) = σ + x·σ(1-σ)·2u'(x).
 *   relu(x) = x > 0 ? x : 0;  relu'(x) = x > 0 ? 1 : 0 (0 at the kink, as PyTorch).
 *   silu(x) = x·σ(x)  (PyTorch F.silu, the "Swish" of SwiGLU), σ from
 *     e = exp(-|x|) ≤ 1 as for gelu_tanh: x ≥ 0: 1/(1+e), x < 0: e/(1+e);
 *   silu'(x) = σ + x·σ(1-σ).
 *     (For x in about [-92, -87] e is subnormal and silu(x) ≈ 1e-37 loses
 *     relative accuracy, below 2^-140 in absolute terms; gelu_tanh shares it.)
 *
 * The measured error (tests/test_act.c against long double) is a few ulp on
 * top of the function's own condition number. */
#ifndef TPMLP_ACT_H
#define TPMLP_ACT_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* The row loops in act.c only vectorise if these are inlined into them.
 * kernels/kernels.cu defines it first, to compile the same code for the GPU. */
#ifndef ACT_INLINE
#define ACT_INLINE static inline __attribute__((always_inline))
#endif

ACT_INLINE float act_bits2f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
ACT_INLINE uint32_t act_f2bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* exp(a + b) for a ≤ 0 exact and |b| ≪ 1. Cody–Waite reduction
 * a + b = n·ln2 + r with ln2 = L1 + L2, L1 having 8 significant bits so that
 * n·L1 is exact and a - n·L1 is exact (Sterbenz); then e^r by a degree-7
 * Taylor polynomial (|r| ≤ 0.347: truncation ≤ 5.3e-9) and 2^n applied in two
 * halves so results down in the subnormal range underflow gradually. */
ACT_INLINE float act_exp2part_f32(float a, float b) {
    a = a < -120.0f ? -120.0f : a; /* e^-120 underflows to 0 anyway */
    const float shift = 0x1.8p23f; /* adding it rounds to an integer */
    float k = (a + b) * 0x1.715476p0f + shift;
    float n = k - shift;
    float r = (a - n * 0x1.62p-1f) - n * 0x1.c85fep-10f + b;
    float p =
        1.0f + r * (1.0f + r * (0.5f + r * (0x1.555556p-3f +
                                            r * (0x1.555556p-5f +
                                                 r * (0x1.111112p-7f + r * (0x1.6c16c2p-10f + r * 0x1.a01a02p-13f))))));
    int32_t ni = (int32_t)act_f2bits(k) - (int32_t)act_f2bits(shift);
    int32_t n1 = ni / 2, n2 = ni - n1;
    return p * act_bits2f((uint32_t)(n1 + 127) << 23) * act_bits2f((uint32_t)(n2 + 127) << 23);
}

/* Φ(x)·x and Φ(x), φ(x) for the erf GeLU. */
ACT_INLINE void act_gelu_parts_f32(float x, float *gelu, float *cdf, float *pdf) {
    float ax = fabsf(x);
    ax = ax > 16.0f ? 16.0f : ax; /* beyond, e below is 0 */
    float z = ax * 0.70710678f;
    z = z > 10.0f ? 10.0f : z; /* the fit's range; e is below 2^-144 there */
    float t = 1.0f / (1.0f + 0.4f * z);
    float q =
        0.22570866f +
        t * (0.22491550f +
             t * (0.21524424f +
                  t * (0.12805953f +
                       t * (0.27704966f +
                            t * (-0.29419632f +
                                 t * (0.55989307f + t * (-0.50861563f + t * (0.20237118f + t * -0.030429896f))))))));
    float xh = act_bits2f(act_f2bits(ax) & 0xfffff000u);
    float e = act_exp2part_f32(-0.5f * xh * xh, -0.5f * (ax - xh) * (ax + xh)); /* exp(-x²/2) */
    float half_erfc = 0.5f * t * q;                                             /* ·e below */
    float xc = copysignf(ax, x);      /* x, clamped: keeps inf·0 out when e is 0 */
    float xhe = (xc * half_erfc) * e; /* multiply by e last: it may be subnormal */
    *gelu = x > 0.0f ? x - xhe : xhe;
    float he = half_erfc * e;
    *cdf = x > 0.0f ? 1.0f - he : he;
    *pdf = 0.39894228f * e;
}

ACT_INLINE float act_gelu_f32(float x) {
    float g, c, p;
    act_gelu_parts_f32(x, &g, &c, &p);
    return g;
}
/* gelu and gelu' from one evaluation of the shared parts. */
ACT_INLINE void act_gelu_both_f32(float x, float *value, float *grad) {
    float c, p;
    act_gelu_parts_f32(x, value, &c, &p);
    float ax = fabsf(x);
    *grad = c + copysignf(ax > 16.0f ? 16.0f : ax, x) * p; /* p is 0 beyond 16: keep inf·0 out */
}
ACT_INLINE float act_gelu_grad_f32(float x) {
    float g, d;
    act_gelu_both_f32(x, &g, &d);
    return d;
}

/* σ(z) and σ(1-σ) from e = exp(-|z|) ≤ 1: z ≥ 0: 1/(1+e), z < 0: e/(1+e), so
 * nothing overflows; both sides computed, a plain select vectorises. */
ACT_INLINE void act_sigmoid_parts_f32(float z, float *sig, float *s1ms) {
    float az = fabsf(z);
    az = az > 120.0f ? 120.0f : az; /* e^-120 is 0 in float */
    float e = act_exp2part_f32(-az, 0.0f);
    float inv = 1.0f / (1.0f + e), einv = e * inv;
    *sig = z >= 0.0f ? inv : einv;
    *s1ms = einv * inv;
}

ACT_INLINE void act_gelu_tanh_parts_f32(float x, float *sig, float *e_over) {
    float u = 0.79788456f * (x + 0.044715f * x * x * x);
    act_sigmoid_parts_f32(2.0f * u, sig, e_over); /* σ(2u); 2u is exact */
}
ACT_INLINE float act_gelu_tanh_f32(float x) {
    float s, d;
    act_gelu_tanh_parts_f32(x, &s, &d);
    return x * s;
}
/* gelu_tanh and gelu_tanh' from one evaluation of σ. */
ACT_INLINE void act_gelu_tanh_both_f32(float x, float *value, float *grad) {
    float s, d;
    act_gelu_tanh_parts_f32(x, &s, &d);
    *value = x * s;
    /* σ(1-σ) is below 2^-149 for |x| > 10: clamping x keeps inf·0 out */
    float ax = fabsf(x);
    float xc = copysignf(ax > 16.0f ? 16.0f : ax, x);             /* (fminf would be a libm call: no vectors) */
    float du = 0.79788456f * (1.0f + 3.0f * 0.044715f * xc * xc); /* u'(x) */
    *grad = s + xc * d * 2.0f * du;
}
ACT_INLINE float act_gelu_tanh_grad_f32(float x) {
    float g, d;
    act_gelu_tanh_both_f32(x, &g, &d);
    return d;
}

ACT_INLINE float act_silu_f32(float x) {
    float s, d;
    act_sigmoid_parts_f32(x, &s, &d); /* σ(x), σ(1-σ) */
    return x * s;
}
/* silu and silu' from one evaluation of σ. */
ACT_INLINE void act_silu_both_f32(float x, float *value, float *grad) {
    float s, d;
    act_sigmoid_parts_f32(x, &s, &d); /* σ(x), σ(1-σ) */
    *value = x * s;
    float ax = fabsf(x);
    float xc = copysignf(ax > 120.0f ? 120.0f : ax, x); /* σ(1-σ) is 0 beyond: keep inf·0 out */
    *grad = s + xc * d;
}
ACT_INLINE float act_silu_grad_f32(float x) {
    float v, g;
    act_silu_both_f32(x, &v, &g);
    return g;
}

ACT_INLINE float act_relu_f32(float x) { return x > 0.0f ? x : 0.0f; }
ACT_INLINE float act_relu_grad_f32(float x) { return x > 0.0f ? 1.0f : 0.0f; }

/* float64 oracle: libm, written for accuracy, not speed. */
ACT_INLINE double act_gelu_f64(double x) { return x * 0.5 * erfc(-x * 0.70710678118654752440); }
ACT_INLINE double act_gelu_grad_f64(double x) {
    return 0.5 * erfc(-x * 0.70710678118654752440) + x * 0.39894228040143267794 * exp(-0.5 * x * x);
}
ACT_INLINE double act_gelu_tanh_sig_f64(double x, double *s1ms) {
    double u = 0.79788456080286535588 * (x + 0.044715 * x * x * x);
    double e = exp(-2.0 * fabs(u));
    double inv = 1.0 / (1.0 + e);
    *s1ms = e * inv * inv;
    return u >= 0.0 ? inv : e * inv;
}
ACT_INLINE double act_gelu_tanh_f64(double x) {
    double d;
    return x * act_gelu_tanh_sig_f64(x, &d);
}
ACT_INLINE double act_gelu_tanh_grad_f64(double x) {
    double d, s = act_gelu_tanh_sig_f64(x, &d);
    return s + x * d * 2.0 * 0.79788456080286535588 * (1.0 + 3.0 * 0.044715 * x * x);
}
ACT_INLINE double act_silu_sig_f64(double x, double *s1ms) {
    double e = exp(-fabs(x));
    double inv = 1.0 / (1.0 + e);
    *s1ms = e * inv * inv;
    return x >= 0.0 ? inv : e * inv;
}
ACT_INLINE double act_silu_f64(double x) {
    double d;
    return x * act_silu_sig_f64(x, &d);
}
ACT_INLINE double act_silu_grad_f64(double x) {
    double d, s = act_silu_sig_f64(x, &d);
    return s + x * d;
}
ACT_INLINE double act_relu_f64(double x) { return x > 0.0 ? x : 0.0; }
ACT_INLINE double act_relu_grad_f64(double x) { return x > 0.0 ? 1.0 : 0.0; }

#endif
