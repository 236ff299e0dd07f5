/* The one error model (errmodel.h; derivation in docs/vectors.md).
 *
 * Notation, per element: σ² the variance proxy of the mean-zero rounding
 * errors (what adds like a random walk), hard the part that does not, ρ(v) =
 * u·|v| + tiny one rounding of v to the format; inside σ every rounding
 * counts at its scale (u, ui, ua)/√3 (uniform errors), in an element's own
 * bound its last rounding counts in full. ui is the operands' round-off
 * (0 at fp32), ua = ue = 2⁻²⁴ the fp32 accumulation and evaluation round-off.
 * Σ|t| is the sum of |terms| of a dot product, ‖t‖₂² the sum of their squares.
 *
 *   H = X·W1ᵀ + b1     σH² = ui²(2‖t‖₂² + b1²) + (ua√(D+1)(Σ|t| + |b1|))² + ρ(H - b1)²
 *                      (operands x, W1, b1 rounded; fp32 sums; the GEMM's output
 *                      rounded before the bias add)        bound λσH + ρ(H)
 *   A = act(H)         gelu, gelu_tanh, silu: σA² = g²σH'² + Ea² + ρ(A)²,  hard = ½M2·BH²,
 *                      g = act'(H), M2 = max|act''| = 0.8, BH the bound of H,
 *                      σH'² = σH² + ρ(H)² (what the next step receives),
 *                      Ea = 8·ue·(|H|·max(s, 1-s) + |A|) + Ef, s = A/H: the terms
 *                      of ½H(1 + erf) or ½H(1 + tanh), which cancel for H ≪ 0;
 *                      Ef = u·(|H|·|s - ½| + |A|), erf or tanh and 1 + it
 *                      rounded to the format. A's bound: |g|·BH + Ea + Ef +
 *                      ½M2·BH² + ρ(A) (Ef twice: half the budget).
 *                      relu: slope 1 where H may cross 0 (|H| ≤ BH) or H > 0.
 *   Y = A·W2ᵀ + b2     σY² = Σ_f W2²(σA'² + ui²A²) + ui²b2² + (ua√(F+1)(Σ|t| + |b2|))² + ρ(Y - b2)²
 *   db2 = Σ_n dY       σ² = ui²Σ dY² + (ua√N Σ|dY|)²
 *   dW2 = dYᵀ·A        σ² = Σ_n dY²(σA'² + ui²A²) + (ua√N Σ|t|)²
 *   dA = dY·W2         σ² = 2ui²‖t‖₂² + (ua√D Σ|t|)²      (its value: one sgemm)
 *   act'               σg² = M2²σH'² + Eg² + ρ(g)², Eg = 8·ue·(max(s,1-s) + |g - s|(1 + H²/2))
 *                      + u·(|s - ½| + s + |g - s|)
 *   dH = dA ⊙ act'(H)  smooth: σ² = g²σdA'² + dA²σg² + ρ(dH)²
 *                      relu: where |H| ≤ BH, H may cross 0 at the λ level and
 *                      dH be off by all of dA: hard = 2(|dA| + BdA), in full
 *                      (twice, as every full-size allowance: half the budget)
 *   db1 = Σ_n dH       σ² = Σ_n σdH'² + (ua√N Σ|dH|)²,         hard = Σ_n hard
 *   dW1 = dHᵀ·X        σ² = Σ_n X²(σdH'² + ui²dH²) + (ua√N Σ|t|)², hard = Σ_n hard·|X|
 *   dX = dH·W1         σ² = Σ_f W1²(σdH'² + ui²dH²) + (ua√F Σ|t|)², hard = Σ_f hard·|W1|
 * Each bound is hard + λσ + ρ(own value). Tensor-parallel partial sums (y.partial,
 * dx.partial) sum over the rank's columns only; the y and dx of a p-way run add
 * the all-reduce's roundings: each partial stored (Σ_r ρ(Y_r)²) and p - 1
 * additions of at most Σ_r|Y_r| each.
 *
 * The random-walk sums Σ c²σ² are float32 GEMMs of squares (exact: tf32, bf16,
 * fp16), or their Cauchy–Schwarz bound ‖c²‖₂‖σ²‖₂ (no GEMM: fp32); Σ|t| is
 * always bounded by Cauchy–Schwarz, ‖row‖₂·‖column‖₂. */
#include "config.h"

#include "errmodel.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "act.h"
#include "util.h"

/* x86-64: the per-row loops of the pass are built for AVX-512, AVX2 and
 * baseline SSE2 and one is picked at load time, as act.c's are. C11 mode
 * keeps FP contraction off and nothing reassociates (sums run in a fixed
 * order of lanes), so every clone performs the same IEEE operations: the
 * bounds do not depend on which one runs. */
#if defined(__x86_64__) && defined(__GNUC__)
#define ERR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define ERR_CLONES
#endif

static const tpmlp_format formats[] = {
    {"fp32", 0x1p-24, 0, 0x1p-150},
    {"tf32", 0x1p-11, 0x1p-11, 0x1p-137},
    {"bf16", 0x1p-8, 0x1p-8, 0x1p-134},
    {"fp16", 0x1p-11, 0x1p-11, 0x1p-25},
};

const tpmlp_format *tpmlp_format_find(const char *name) {
    for (size_t i = 0; i < sizeof formats / sizeof *formats; i++)
        if (strcmp(formats[i].name, name) == 0) return &formats[i];
    return NULL;
}

/* A rounding error is uniform on [-½ulp, ½ulp] (the standard model of
 * probabilistic rounding analysis), so its sub-Gaussian scale is ½ulp/√3 ≤
 * u·|v|/√3: UNI. The element's own last rounding, the activation's evaluation
 * error and the kink crossings are bounded instead, at full size. */
#define UNI 0.57735026918962576 /* 1/√3 */
#define UA (0x1p-24 * UNI)      /* fp32 accumulation */
#define M2 0.8                  /* ≥ max |act''|: 2φ(0) ≈ 0.798 for both GELUs, 2σ'(0) = 0.5 for silu */

/* ρ(v) = u·|v| + tiny, one rounding of v, and its scale; inline, for the
 * vectorised row loops (u, tiny: the format's) */
static inline double rho_(double u, double tiny, double v) { return u * fabs(v) + tiny; }
static inline double sq(double v) { return v * v; }
static double rho(const tpmlp_format *f, double v) { return rho_(f->u, f->tiny, v); }
static double srho(const tpmlp_format *f, double v) { return UNI * rho(f, v); }

static float *alloc_f(size_t n, const char *what) { return tpmlp_alloc(n, sizeof(float), what); }
static double *alloc_d(size_t n, const char *what) { return tpmlp_alloc(n, sizeof(double), what); }
static double *zeros_d(size_t n, const char *what) { return memset(alloc_d(n, what), 0, n * sizeof(double)); }

static void roots(double *v, size_t n) {
    for (size_t i = 0; i < n; i++) v[i] = sqrt(v[i]);
}

/* Σ v² over v[0 .. n), and if s4 is not NULL Σ (v²)² with v² rounded to
 * float32, as the exact GEMMs' squared operands are (the inputs': an array
 * of σ² would square into float32's subnormals, which are slow). Eight
 * interleaved partial sums, added in a fixed order: the same on every vector
 * width. */
ERR_CLONES static void sq_sums(const float *restrict v, int n, double *s2, double *s4) {
    double a2[8] = {0}, a4[8] = {0};
    int c = 0;
    if (s4) {
        for (; c + 8 <= n; c += 8)
#pragma omp simd
            for (int j = 0; j < 8; j++) {
                const float v2 = v[c + j] * v[c + j];
                a2[j] += sq(v[c + j]), a4[j] += sq(v2);
            }
        for (int j = 0; c + j < n; j++) {
            const float v2 = v[c + j] * v[c + j];
            a2[j] += sq(v[c + j]), a4[j] += sq(v2);
        }
        *s4 = ((a4[0] + a4[1]) + (a4[2] + a4[3])) + ((a4[4] + a4[5]) + (a4[6] + a4[7]));
    } else {
        for (; c + 8 <= n; c += 8)
#pragma omp simd
            for (int j = 0; j < 8; j++) a2[j] += sq(v[c + j]);
        for (int j = 0; c + j < n; j++) a2[j] += sq(v[c + j]);
    }
    *s2 = ((a2[0] + a2[1]) + (a2[2] + a2[3])) + ((a2[4] + a2[5]) + (a2[6] + a2[7]));
}

/* Per row r < R of M (row stride ld), over the columns [c0, c1): s2[r] = Σ v²,
 * s4[r] = Σ (v²)² (sq_sums; s4 may be NULL). */
static void row_sums(const float *M, int R, size_t ld, int c0, int c1, double *s2, double *s4) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < R; r++) sq_sums(M + (size_t)r * ld + c0, c1 - c0, &s2[r], s4 ? &s4[r] : NULL);
}

/* Columns [c0, c0 + w) of M (C columns), rows [r0, r1) in order, added to
 * a2 (Σ v²) and where not NULL a1 (Σ|v|) and a4 (Σ (v²)², v² in float32;
 * a1 only with a4). */
ERR_CLONES static void col_block(const float *restrict M, int C, int c0, int w, int r0, int r1, double *restrict a1,
                                 double *restrict a2, double *restrict a4) {
    for (int r = r0; r < r1; r++) {
        const float *restrict m = M + (size_t)r * C + c0;
        if (a1) {
#pragma omp simd
            for (int c = 0; c < w; c++) {
                const float v2 = m[c] * m[c];
                a1[c] += fabs(m[c]), a2[c] += sq(m[c]), a4[c] += sq(v2);
            }
        } else if (a4) {
#pragma omp simd
            for (int c = 0; c < w; c++) {
                const float v2 = m[c] * m[c];
                a2[c] += sq(m[c]), a4[c] += sq(v2);
            }
        } else {
#pragma omp simd
            for (int c = 0; c < w; c++) a2[c] += sq(m[c]);
        }
    }
}

/* Per column c < C of M (R,C), over the rows [r0, r1) in order: s1[c] = Σ|v|,
 * and s2, s4 as row_sums (any may be NULL). Blocks of columns, rows in order:
 * the reads stay contiguous, and the sums do not depend on the threads. */
static void col_sums(const float *M, int C, int r0, int r1, double *s1, double *s2, double *s4) {
    enum { CB = 256 };
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += CB) {
        const int w = C - c0 < CB ? C - c0 : CB;
        double a1[CB] = {0}, a2[CB] = {0}, a4[CB] = {0};
        col_block(M, C, c0, w, r0, r1, s1 ? a1 : NULL, a2, s1 || s4 ? a4 : NULL);
        for (int c = 0; c < w; c++) {
            if (s1) s1[c0 + c] = a1[c];
            if (s2) s2[c0 + c] = a2[c];
            if (s4) s4[c0 + c] = a4[c];
        }
    }
}

/* elementwise v², float32: the exact GEMMs' operands */
static float *squares(const float *v, size_t n, const char *what) {
    float *o = alloc_f(n, what);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) o[i] = v[i] * v[i];
    return o;
}

/* C (M,N) ≥ op(A)·op(B) for non-negative A, B, op(A) (M,K), op(B) (K,N):
 * the float32 GEMM inflated by its own worst-case rounding. */
static float *pos_gemm(int M, int N, int K, const float *A, size_t lda, int ta, const float *B, size_t ldb, int tb,
                       const char *what) {
    float *C = alloc_f((size_t)M * N, what);
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A,
                (int)lda, B, (int)ldb, 0.0f, C, N);
    const float infl = (float)(1.0 + 2.0 * K * 0x1p-24);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < (size_t)M * N; i++) C[i] *= infl;
    return C;
}

/* A random-walk sum Σ_k c²σ² at (m, n) of an (M,N) result: the exact GEMM's
 * element, or the Cauchy–Schwarz bound ‖row m‖₂·‖column n‖₂ of the two
 * factors, inflated by 10⁻⁶ for the roundings of the norms and of the
 * float32 it is kept in (as the GEMM's result is). */
typedef struct {
    const float *gemm; /* (M,N), or NULL */
    const double *rows, *cols;
    int ld; /* N */
} walk;

static double walk_at(const walk *w, int m, int n) {
    return w->gemm ? w->gemm[(size_t)m * w->ld + n] : (float)(w->rows[m] * w->cols[n] * (1 + 1e-6));
}

/* Where the bounds' rows go: the arrays of b, or the caller's row function. */
typedef struct {
    tpmlp_err_bounds *b;
    tpmlp_err_row_fn fn;
    void *ctx;
} rows_out;

static void emit(const rows_out *o, int thread, tpmlp_vec_id which, int r, int width, const double *v,
                 const float *a32) {
    if (o->fn) {
        o->fn(o->ctx, thread, which, r, v, a32);
        return;
    }
    memcpy(o->b->of[which] + (size_t)r * width, v, (size_t)width * sizeof *v);
}

/* ---- the pass over (n, f) ----
 *
 * Every per-element quantity of the (N,F) arrays (the bounds of h and a, the
 * σ² and |value| of A and dH) is found in one pass over the rows, which keeps
 * only what the sums over f and over n read: per row and per column the Σ v²
 * of Cauchy–Schwarz, per column db1's sums. An (N,F) array is stored only
 * where a GEMM or a sparse sum reads it element by element (exact: σ² of A
 * and of dH; relu: the kink crossings). */

/* the Σ v² kept per row and per column */
enum { W_VAR_A, W_ABS_A, W_VAR_DH, W_ABS_DH, W_N }; /* σA'² + ui²A², |A|, σdH'² + ui²dH², |dH| */
enum { K_VAR_DH = W_N, K_ABS_DH, K_HARD, K_N };     /* per column also Σ σdH'², Σ|dH|, Σ hard (db1) */
typedef struct {
    double *row[W_N];      /* (N), over every f */
    double *rank_row[W_N]; /* (N), over the rank's columns [f0, f1); NULL for whole outputs */
    double *col[K_N];      /* (F), over every n */
} nf_sums;

typedef struct {
    const tpmlp_err_inputs *in;
    const tpmlp_format *fm;
    int f0, f1, rank;                       /* rank: row sums over [f0, f1) too */
    const double *nx, *nw1, *dy_norm, *nw2; /* ‖x_n‖, ‖W1_f‖, ‖dY_n‖, ‖W2_:f‖: Σ|t| of H and of dA */
    const float *tsq_h, *tsq_da;            /* (N,F), exact: ‖t‖₂² of H and of dA; NULL at fp32 */
    const float *da;                        /* (N,F): dA = dY·W2 */
    float *var_a, *var_dh;                  /* (N,F) out, exact: σA'² + ui²A², σdH'² + ui²dH²; else NULL */
    double *hard;                           /* (N,F) out, relu: the crossings' allowance in dH; else NULL */
    const rows_out *out;                    /* the bounds of h and a */
} nf_pass;

/* o = (float)v */
ERR_CLONES static void to_f32(float *restrict o, const double *restrict v, int n) {
#pragma omp simd
    for (int i = 0; i < n; i++) o[i] = (float)v[i];
}

/* act(h) and act'(h) in float32, as bias_act_forward_f32 computes them */
ERR_CLONES static void act_row(const float *restrict h, float *restrict a, float *restrict g, int n, tpmlp_act act) {
    switch (act) {
    case TPMLP_GELU:
#pragma omp simd
        for (int j = 0; j < n; j++) act_gelu_both_f32(h[j], &a[j], &g[j]);
        break;
    case TPMLP_GELU_TANH:
#pragma omp simd
        for (int j = 0; j < n; j++) act_gelu_tanh_both_f32(h[j], &a[j], &g[j]);
        break;
    case TPMLP_SILU:
#pragma omp simd
        for (int j = 0; j < n; j++) act_silu_both_f32(h[j], &a[j], &g[j]);
        break;
    default:
#pragma omp simd
        for (int j = 0; j < n; j++) a[j] = act_relu_f32(h[j]), g[j] = act_relu_grad_f32(h[j]);
        break;
    }
}

/* σH² of a row (before its own rounding): sh2 (F). t2: ‖t‖₂² or zeros. */
ERR_CLONES static void row_sh2(double *restrict sh2, const double *restrict h, const float *restrict b1,
                               const double *restrict nw1, const float *restrict t2, double nx, double ch, double u,
                               double tiny, double ui, int F) {
#pragma omp simd
    for (int f = 0; f < F; f++) {
        const double b = b1[f];
        double s = sq(ch * (nx * nw1[f] + fabs(b))) + sq(UNI * rho_(u, tiny, h[f] - b));
        s += sq(ui) * (2.0 * t2[f] + b * b);
        sh2[f] = s;
    }
}

/* One row's pointers in the pass: inputs, then outputs (each F long). */
typedef struct {
    const double *h, *a, *sh2, *bh, *nw2; /* H, A, σH² (before H's own rounding), H's bound, ‖W2_:f‖ */
    const float *g, *da, *tsq_da;         /* act'(H), dA, ‖t‖₂² of dA (or zeros) */
    double dy_norm;                       /* ua√D·‖dY_n‖ */
    double *ba, *hard;                    /* out: A's bound; relu's crossings (or NULL) */
    float *var_a;                         /* out: σA'² + ui²A², what A brings into Y and dW2 */
    float *abs_a;                         /* out: |A| */
    float *var_dh1;                       /* out: σdH'², what dH brings into db1 */
    float *var_dh;                        /* out: σdH'² + ui²dH², what dH brings into dW1 and dX */
    float *abs_dh;                        /* out: |dH| */
} nf_row;

/* The smooth activations (both GELUs, silu): the bound of a, what A brings
 * into Y and dW2, and dH's σ² and size. s = A/H is Φ(H), σ(2u) or σ(H): the
 * terms of each evaluation formula (½H(1 + erf), ½H(1 + tanh), H·σ(H) or
 * H/(1 + e^-H), ½H(1 + tanh(H/2))) are |H|·max(s, 1 - s) and |A|, and those
 * of act' max(s, 1 - s) and |act' - s| (H·φ(H) or H·σ(1-σ)), whose exp
 * carries |H|·u ≤ (1 + H²/2)·u. */
ERR_CLONES static void row_smooth(const nf_row *r, double u, double tiny, double ui, int F) {
    const double *restrict h = r->h, *restrict a = r->a, *restrict sh2 = r->sh2, *restrict bhv = r->bh;
    const double *restrict nw2 = r->nw2;
    const float *restrict g = r->g, *restrict dA = r->da, *restrict t2 = r->tsq_da;
    double *restrict ba = r->ba;
    float *restrict var_a = r->var_a, *restrict abs_a = r->abs_a, *restrict var_dh1_v = r->var_dh1,
                    *restrict var_dh_v = r->var_dh;
    float *restrict abs_dh = r->abs_dh;
    const double ue = TPMLP_ACT_ULPS * 0x1p-24, cd = r->dy_norm, c2 = 2 * sq(ui);
#pragma omp simd
    for (int f = 0; f < F; f++) {
        const double hv = h[f], av = a[f], bh = bhv[f], gv = g[f];
        const double var_h = sh2[f] + sq(UNI * rho_(u, tiny, hv));
        const int h0 = hv == 0; /* s = A/H, ½ at H = 0: picked inputs, no branch */
        const double s = (h0 ? 0.5 : av) / (h0 ? 1 : hv), m = s > 0.5 ? s : 1 - s;
        /* evaluation: TPMLP_ACT_ULPS fp32 ulps of the formula's terms, plus the
         * rounding to the format of its intermediate erf or tanh and of 1 + it
         * (PyTorch's bf16 GELU rounds them): u·(½|H·erf| + |A|). In a's own
         * bound that part counts twice: the roundings reach u·|value| where
         * the value sits just above a power of 2, and a correct implementation
         * must keep half of its budget. */
        const double ef = u * (fabs(hv) * fabs(s - 0.5) + fabs(av));
        const double ea = ue * (fabs(hv) * m + fabs(av)) + ef;
        const double eg = ue * (m + fabs(gv - s) * (1 + 0.5 * hv * hv)) + u * (fabs(s - 0.5) + s + fabs(gv - s));
        ba[f] = fabs(gv) * bh + ea + ef + 0.5 * M2 * bh * bh + rho_(u, tiny, av);
        const double var_a0 = gv * gv * var_h + ea * ea + sq(UNI * rho_(u, tiny, av)) + sq(0.5 * M2 * var_h);
        const float var_g = (float)(M2 * M2 * var_h + eg * eg + sq(UNI * rho_(u, tiny, gv)));
        var_a[f] = (float)(var_a0 + sq(ui * av)), abs_a[f] = (float)fabs(av);
        /* dH = dA ⊙ act'(H); dA's own sgemm error is far below 10⁻⁶ of it */
        const double da = dA[f] * (1 + 1e-6);
        double var_da0 = sq(cd * nw2[f]);
        var_da0 += c2 * t2[f];
        const double var_da = var_da0 + sq(UNI * rho_(u, tiny, da)), dh = da * gv;
        const double var_dh1_ = gv * gv * var_da + da * da * var_g + sq(UNI * rho_(u, tiny, dh));
        var_dh1_v[f] = (float)var_dh1_, abs_dh[f] = (float)fabs(dh), var_dh_v[f] = (float)(var_dh1_ + sq(ui * dh));
    }
}

/* relu: slope 1 where h may cross 0 (|H| ≤ its bound) or H > 0 */
static void row_relu(const nf_row *r, double u, double tiny, double ui, int F) {
    const double lam = TPMLP_LAMBDA, cd = r->dy_norm, c2 = 2 * sq(ui);
    for (int f = 0; f < F; f++) {
        const double hv = r->h[f], av = r->a[f], bh = r->bh[f];
        const double var_h = r->sh2[f] + sq(UNI * rho_(u, tiny, hv));
        const int cross = fabs(hv) <= bh;
        const double slope = (hv > 0 || cross) ? 1.0 : 0.0;
        r->ba[f] = slope * bh + rho_(u, tiny, av);
        const double var_a0 = slope * var_h + sq(UNI * rho_(u, tiny, av));
        r->var_a[f] = (float)(var_a0 + sq(ui * av)), r->abs_a[f] = (float)fabs(av);
        const double da = r->da[f] * (1 + 1e-6);
        double var_da0 = sq(cd * r->nw2[f]);
        var_da0 += c2 * r->tsq_da[f];
        const double bda = lam * sqrt(var_da0) + rho_(u, tiny, da), var_da = var_da0 + sq(UNI * rho_(u, tiny, da));
        /* where h may cross 0 at the λ level, dH may be off by all of dA: a
         * full-size error, added in full (an on/off event is no random walk),
         * and twice, as every full-size allowance: a correct implementation
         * keeps half of its budget */
        const double dh = hv > 0 ? da : 0;
        r->hard[f] = cross ? 2 * (fabs(da) + bda) : 0;
        const double var_dh1_ = (hv > 0 && !cross ? var_da : 0) + sq(UNI * rho_(u, tiny, dh));
        r->var_dh1[f] = (float)var_dh1_, r->abs_dh[f] = (float)fabs(dh), r->var_dh[f] = (float)(var_dh1_ + sq(ui * dh));
    }
}

/* acc (K_N × F): the row's Σ v² and db1's sums added to the columns */
ERR_CLONES static void add_cols(double *restrict acc, const nf_row *r, int F) {
    const float *restrict var_a = r->var_a, *restrict abs_a = r->abs_a, *restrict var_dh = r->var_dh,
                          *restrict abs_dh = r->abs_dh;
    const float *restrict var_dh1 = r->var_dh1;
    double *restrict c0 = acc + (size_t)W_VAR_A * F, *restrict c1 = acc + (size_t)W_ABS_A * F;
    double *restrict c2 = acc + (size_t)W_VAR_DH * F, *restrict c3 = acc + (size_t)W_ABS_DH * F;
    double *restrict c4 = acc + (size_t)K_VAR_DH * F, *restrict c5 = acc + (size_t)K_ABS_DH * F;
#pragma omp simd
    for (int f = 0; f < F; f++) {
        c0[f] += sq(var_a[f]), c1[f] += sq(abs_a[f]), c2[f] += sq(var_dh[f]), c3[f] += sq(abs_dh[f]);
        c4[f] += var_dh1[f], c5[f] += abs_dh[f];
    }
    if (r->hard) {
        const double *restrict hard = r->hard;
        double *restrict c6 = acc + (size_t)K_HARD * F;
#pragma omp simd
        for (int f = 0; f < F; f++) c6[f] += hard[f];
    }
}

/* the row's Σ v² over [c0, c1) (sq_sums) */
static void add_row(double out[W_N], const nf_row *r, int c0, int c1) {
    sq_sums(r->var_a + c0, c1 - c0, &out[W_VAR_A], NULL), sq_sums(r->abs_a + c0, c1 - c0, &out[W_ABS_A], NULL);
    sq_sums(r->var_dh + c0, c1 - c0, &out[W_VAR_DH], NULL), sq_sums(r->abs_dh + c0, c1 - c0, &out[W_ABS_DH], NULL);
}

static void nf_run(nf_sums *S, const nf_pass *p) {
    const tpmlp_err_inputs *in = p->in;
    const int N = in->N, F = in->F;
    const double u = p->fm->u, tiny = p->fm->tiny, ui = p->fm->u_in * UNI, lam = TPMLP_LAMBDA;
    const double ch = UA * sqrt(in->D + 1.0), cda = UA * sqrt((double)in->D);
    for (int k = 0; k < K_N; k++) memset(S->col[k], 0, (size_t)F * sizeof(double));
    double **part = tpmlp_alloc((size_t)omp_get_max_threads(), sizeof *part, "column sums");
#pragma omp parallel
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        enum { B_H, B_A32, B_G, B_VAR_A, B_ABS_A, B_VAR_DH1, B_VAR_DH, B_ABS_DH, B_ZERO, B_N };
        float *fb = alloc_f((size_t)B_N * F, "row buffers");
        double *sh2 = alloc_d((size_t)3 * F, "row buffers"), *acc = zeros_d((size_t)K_N * F, "column sums");
        float *zero = fb + (size_t)B_ZERO * F;
        memset(zero, 0, (size_t)F * sizeof *zero);
        part[t] = acc;
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const size_t k0 = (size_t)n * F;
            nf_row r = {.h = in->h + k0,
                        .a = in->a + k0,
                        .sh2 = sh2,
                        .nw2 = p->nw2,
                        .g = fb + (size_t)B_G * F,
                        .da = p->da + k0,
                        .tsq_da = p->tsq_da ? p->tsq_da + k0 : zero,
                        .dy_norm = cda * p->dy_norm[n],
                        .hard = p->hard ? p->hard + k0 : NULL};
            double *bh = sh2 + F;
            r.bh = bh, r.ba = sh2 + 2 * (size_t)F;
            r.var_a = p->var_a ? p->var_a + k0 : fb + (size_t)B_VAR_A * F,
            r.var_dh = p->var_dh ? p->var_dh + k0 : fb + (size_t)B_VAR_DH * F;
            r.abs_a = fb + (size_t)B_ABS_A * F, r.var_dh1 = fb + (size_t)B_VAR_DH1 * F,
            r.abs_dh = fb + (size_t)B_ABS_DH * F;
            float *hb = fb + (size_t)B_H * F, *a32 = fb + (size_t)B_A32 * F;
            to_f32(hb, r.h, F);
            act_row(hb, a32, fb + (size_t)B_G * F, F, in->act); /* act'(H): a bound needs its size, not its last bits */
            /* H = X·W1ᵀ + b1: σH², then its bound λσH + ρ(H) */
            row_sh2(sh2, r.h, in->b1, p->nw1, p->tsq_h ? p->tsq_h + k0 : zero, p->nx[n], ch, u, tiny, ui, F);
            for (int f = 0; f < F; f++) bh[f] = lam * sqrt(sh2[f]) + rho_(u, tiny, r.h[f]);
            if (in->act == TPMLP_RELU)
                row_relu(&r, u, tiny, ui, F);
            else
                row_smooth(&r, u, tiny, ui, F);
            add_cols(acc, &r, F);
            double sums[W_N];
            add_row(sums, &r, 0, F);
            for (int k = 0; k < W_N; k++) S->row[k][n] = sums[k];
            if (p->rank) {
                add_row(sums, &r, p->f0, p->f1);
                for (int k = 0; k < W_N; k++) S->rank_row[k][n] = sums[k];
            }
            emit(p->out, t, V_H, n, F, r.bh, NULL), emit(p->out, t, V_A, n, F, r.ba, a32);
        }
#pragma omp for schedule(static)
        for (int f = 0; f < F; f++) /* the threads' column sums, added in thread order */
            for (int q = 0; q < nt; q++)
                for (int k = 0; k < K_N; k++) S->col[k][f] += part[q][(size_t)k * F + f];
        free(fb), free(sh2), free(acc);
    }
    free(part);
}

/* ---- the sums over f and over n ---- */

/* What a row of y, dx or a partial adds to its hard + λσ, element by element. */
typedef struct {
    const float *b2;   /* y: σ² gets ui²b2² + ρ(Y - b2)²: the bound becomes √(bound² + λ²·that) */
    const double *ref; /* (N,D): the reference value, for its own rounding */
    const double *sum; /* (N,D) or NULL: Σ_r|partial_r| of a p-way run's all-reduce: p partials
                          stored, p - 1 additions of at most that */
    int p;
} nd_finish;

/* A sum over f ∈ [f0, f1) of per-(n,f) errors through a (D,F)-shaped or
 * (F,D)-shaped weight: Y = A·W2ᵀ (w_df = W2[d,f]) or dX = dH·W1
 * (w_df = W1[f,d]). */
typedef struct {
    tpmlp_vec_id which;    /* whose bounds: V_Y, V_YPART, V_DX, V_DXPART */
    walk wk;               /* Σ_f w²σ² (N,D) */
    const double *nv, *nw; /* (N), (D): ‖·‖₂ over f of the terms' other factor and of the weight, for Σ|t| */
    const float *bias;     /* (D) or NULL: y's running sums are within Σ|t| + |b2| */
    const double *hard;    /* (N,F) or NULL: relu's crossings, carried through |w| */
    const float *w;        /* the weight, (D,F) if w_is_df, else (F,D) */
    int w_is_df, f0, f1;   /* the columns of F summed over */
    nd_finish fin;         /* what each element adds after hard + λσ */
} f_sum;

/* Row by row: hard + λσ, then fin's terms. */
static void over_f(const rows_out *out, const f_sum *s, int N, int D, int F, const tpmlp_format *fm) {
    const double ck = UA * sqrt(s->f1 - s->f0 + 1.0), lam = TPMLP_LAMBDA, ui = fm->u_in * UNI;
    const nd_finish *fin = &s->fin;
#pragma omp parallel
    {
        const int t = omp_get_thread_num();
        double *row = alloc_d((size_t)D, "a row of bounds");
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            for (int d = 0; d < D; d++) {
                const double b = s->bias ? fabs(s->bias[d]) : 0;
                row[d] = lam * sqrt(walk_at(&s->wk, n, d) + sq(ck * (s->nv[n] * s->nw[d] + b)));
            }
            if (s->hard) /* sparse: only relu crossings are non-zero */
                for (int f = s->f0; f < s->f1; f++) {
                    const double hv = s->hard[(size_t)n * F + f];
                    if (hv == 0) continue;
                    for (int d = 0; d < D; d++)
                        row[d] += hv * fabsf(s->w_is_df ? s->w[(size_t)d * F + f] : s->w[(size_t)f * D + d]);
                }
            const double *ref = fin->ref + (size_t)n * D, *sum = fin->sum ? fin->sum + (size_t)n * D : NULL;
            for (int d = 0; d < D; d++) {
                if (fin->b2) {
                    const double b2 = fin->b2[d], s2 = sq(ui * b2) + sq(srho(fm, ref[d] - b2));
                    row[d] = sqrt(sq(row[d]) + lam * lam * s2) + rho(fm, ref[d]);
                } else
                    row[d] += rho(fm, ref[d]);
                if (sum)
                    row[d] +=
                        lam * UNI * sqrt(fin->p * sq(fm->u * sum[d] + fm->tiny) + (fin->p - 1) * sq(fm->u * sum[d]));
            }
            emit(out, t, s->which, n, D, row, NULL);
        }
        free(row);
    }
}

/* A sum over the N rows: Σ_n G[n,r]·V[n,c] (R,C), dW2 = dYᵀ·A or dW1 = dHᵀ·X. */
typedef struct {
    tpmlp_vec_id which;    /* whose bounds: V_DW2, V_DW1 */
    walk wk;               /* σ² (R,C) */
    const double *ng, *nv; /* (R), (C): ‖·‖₂ over n of |G| and |V|, for the fp32 accumulation */
    const double *hard;    /* (N,R) or NULL: carried through |V| */
    const float *v;        /* V (N,C) */
    const double *ref;     /* (R,C): the reference value, for its own rounding */
    int R, C;
} n_sum;

/* Row by row: out ≥ hard + λσ + ρ(ref). */
static void over_n(const rows_out *out, const n_sum *s, int N, const tpmlp_format *fm) {
    const double cn = UA * sqrt((double)N);
    const int R = s->R, C = s->C;
#pragma omp parallel
    {
        const int t = omp_get_thread_num();
        double *row = alloc_d((size_t)C, "a row of bounds");
#pragma omp for schedule(static)
        for (int r = 0; r < R; r++) {
            for (int c = 0; c < C; c++)
                row[c] = TPMLP_LAMBDA * sqrt(walk_at(&s->wk, r, c) + sq(cn * s->ng[r] * s->nv[c]));
            if (s->hard)
                for (int n = 0; n < N; n++) {
                    const double hv = s->hard[(size_t)n * R + r];
                    if (hv == 0) continue;
                    for (int c = 0; c < C; c++) row[c] += hv * fabsf(s->v[(size_t)n * C + c]);
                }
            for (int c = 0; c < C; c++) row[c] += rho(fm, s->ref[(size_t)r * C + c]);
            emit(out, t, s->which, r, C, row, NULL);
        }
        free(row);
    }
}

/* ‖·‖₂ of what the inputs bring into the sums */
typedef struct {
    double *x_r, *w1_r, *dy_r, *w2_c; /* rows of x, W1, dY; per f over d of W2: Σ|t| of H and dA */
    double *w2_r, *w2sq_r;            /* per d over f of W2 and W2²: y */
    double *w1_c, *w1sq_c;            /* per d over f of W1 and W1²: dx */
    double *w2_rr, *w2sq_rr;          /* the same over the rank's columns [f0, f1) */
    double *w1_cr, *w1sq_cr;
    double *dy1, *dy2, *dy_c, *dysq_c; /* per d over n: Σ|dY|, Σ dY² (db2), ‖dY‖, ‖dY²‖ (dW2) */
    double *x_c, *xsq_c;               /* per d over n of x and x²: dW1 */
} in_norms;

static void input_norms(in_norms *m, const tpmlp_err_inputs *in, int rank, int f0, int f1) {
    const int N = in->N, D = in->D, F = in->F;
    memset(m, 0, sizeof *m);
    m->x_r = alloc_d((size_t)N, "‖x_n‖"), m->w1_r = alloc_d((size_t)F, "‖W1_f‖");
    m->dy_r = alloc_d((size_t)N, "‖dY_n‖"), m->w2_c = alloc_d((size_t)F, "‖W2_:f‖");
    row_sums(in->x, N, (size_t)D, 0, D, m->x_r, NULL), roots(m->x_r, (size_t)N);
    row_sums(in->w1, F, (size_t)D, 0, D, m->w1_r, NULL), roots(m->w1_r, (size_t)F);
    row_sums(in->dy, N, (size_t)D, 0, D, m->dy_r, NULL), roots(m->dy_r, (size_t)N);
    col_sums(in->w2, F, 0, D, NULL, m->w2_c, NULL), roots(m->w2_c, (size_t)F);
    m->w2_r = alloc_d((size_t)D, "‖W2_d‖"), m->w2sq_r = alloc_d((size_t)D, "‖W2²_d‖");
    row_sums(in->w2, D, (size_t)F, 0, F, m->w2_r, m->w2sq_r);
    m->w1_c = alloc_d((size_t)D, "‖W1_:d‖"), m->w1sq_c = alloc_d((size_t)D, "‖W1²_:d‖");
    col_sums(in->w1, D, 0, F, NULL, m->w1_c, m->w1sq_c);
    roots(m->w2_r, (size_t)D), roots(m->w2sq_r, (size_t)D), roots(m->w1_c, (size_t)D), roots(m->w1sq_c, (size_t)D);
    if (rank) {
        m->w2_rr = alloc_d((size_t)D, "‖W2_d‖"), m->w2sq_rr = alloc_d((size_t)D, "‖W2²_d‖");
        m->w1_cr = alloc_d((size_t)D, "‖W1_:d‖"), m->w1sq_cr = alloc_d((size_t)D, "‖W1²_:d‖");
        row_sums(in->w2, D, (size_t)F, f0, f1, m->w2_rr, m->w2sq_rr);
        col_sums(in->w1, D, f0, f1, NULL, m->w1_cr, m->w1sq_cr);
        roots(m->w2_rr, (size_t)D), roots(m->w2sq_rr, (size_t)D), roots(m->w1_cr, (size_t)D);
        roots(m->w1sq_cr, (size_t)D);
    }
    m->dy1 = alloc_d((size_t)D, "Σ|dY|"), m->dy2 = alloc_d((size_t)D, "Σ dY²");
    m->dy_c = alloc_d((size_t)D, "‖dY_:d‖"), m->dysq_c = alloc_d((size_t)D, "‖dY²_:d‖");
    col_sums(in->dy, D, 0, N, m->dy1, m->dy2, m->dysq_c);
    for (int d = 0; d < D; d++) m->dy_c[d] = sqrt(m->dy2[d]);
    roots(m->dysq_c, (size_t)D);
    m->x_c = alloc_d((size_t)D, "‖x_:d‖"), m->xsq_c = alloc_d((size_t)D, "‖x²_:d‖");
    col_sums(in->x, D, 0, N, NULL, m->x_c, m->xsq_c), roots(m->x_c, (size_t)D), roots(m->xsq_c, (size_t)D);
}

static void input_norms_free(in_norms *m) {
    double *all[] = {m->x_r,     m->w1_r,  m->dy_r,    m->w2_c, m->w2_r, m->w2sq_r, m->w1_c,   m->w1sq_c, m->w2_rr,
                     m->w2sq_rr, m->w1_cr, m->w1sq_cr, m->dy1,  m->dy2,  m->dy_c,   m->dysq_c, m->x_c,    m->xsq_c};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
}

/* Everything the bounds after the pass over (n, f) read. */
typedef struct {
    const tpmlp_err_inputs *in;
    const tpmlp_format *fm;
    const tpmlp_err_tp *tp; /* NULL: the outputs of one process */
    int exact, f0, f1;      /* exact: the random-walk sums by GEMMs of squares; a rank's columns [f0, f1) */
    const rows_out *out;
    in_norms m;                    /* ‖·‖₂ of the inputs */
    nf_sums S;                     /* the pass's sums per row and per column (square roots taken) */
    float *var_a, *var_dh;         /* (N,F), exact: σA'² + ui²A², σdH'² + ui²dH²; else NULL */
    double *hard;                  /* (N,F), relu: the crossings' allowance in dH; else NULL */
    float *x2, *w1sq, *w2sq, *dy2; /* exact: the operands' squares; else NULL */
} model;

/* h and a, and what the sums below read of A and dH: the pass over (n, f)
 *   H = X·W1ᵀ + b1     bound λσH + ρ(H)
 *   A = act(H)         bound |g|·BH + Ea + Ef + ½M2·BH² + ρ(A)
 *   dH = dA ⊙ act'(H)  its σ² and size, for db1, dW1, dX */
static void bound_h_a(model *M) {
    const tpmlp_err_inputs *in = M->in;
    const int N = in->N, D = in->D, F = in->F, rank = M->tp && (M->tp->yr || M->tp->dxr);
    const size_t nf = (size_t)N * F, nd = (size_t)N * D, fd = (size_t)F * D;
    float *tsq_h = NULL, *tsq_da = NULL; /* ‖t‖₂² of H = X·W1ᵀ and of dA = dY·W2: the operands' roundings */
    if (M->exact) {
        M->x2 = squares(in->x, nd, "x²"), M->w1sq = squares(in->w1, fd, "W1²");
        M->w2sq = squares(in->w2, fd, "W2²"), M->dy2 = squares(in->dy, nd, "dY²");
        if (M->fm->u_in > 0) {
            tsq_h = pos_gemm(N, F, D, M->x2, (size_t)D, 0, M->w1sq, (size_t)D, 1, "‖t‖₂² of H");
            tsq_da = pos_gemm(N, F, D, M->dy2, (size_t)D, 0, M->w2sq, (size_t)F, 0, "‖t‖₂² of dA");
        }
    }
    float *da = alloc_f(nf, "dA"); /* its value: one sgemm */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, F, D, 1.0f, in->dy, D, in->w2, F, 0.0f, da, F);
    for (int k = 0; k < W_N; k++) {
        M->S.row[k] = alloc_d((size_t)N, "row sums");
        M->S.rank_row[k] = rank ? alloc_d((size_t)N, "row sums") : NULL;
    }
    for (int k = 0; k < K_N; k++) M->S.col[k] = alloc_d((size_t)F, "column sums");
    if (M->exact) M->var_a = alloc_f(nf, "σA'² + ui²A²"), M->var_dh = alloc_f(nf, "σdH'² + ui²dH²");
    if (in->act == TPMLP_RELU) M->hard = alloc_d(nf, "crossings");
    const nf_pass p = {.in = in,
                       .fm = M->fm,
                       .f0 = M->f0,
                       .f1 = M->f1,
                       .rank = rank,
                       .nx = M->m.x_r,
                       .nw1 = M->m.w1_r,
                       .dy_norm = M->m.dy_r,
                       .nw2 = M->m.w2_c,
                       .tsq_h = tsq_h,
                       .tsq_da = tsq_da,
                       .da = da,
                       .var_a = M->var_a,
                       .var_dh = M->var_dh,
                       .hard = M->hard,
                       .out = M->out};
    nf_run(&M->S, &p);
    free(da), free(tsq_h), free(tsq_da);
    for (int k = 0; k < W_N; k++) {
        roots(M->S.row[k], (size_t)N);
        if (rank) roots(M->S.rank_row[k], (size_t)N);
        roots(M->S.col[k], (size_t)F);
    }
}

/* y, or a rank's y.partial (part: over its columns [f0, f1), no b2):
 *   Y = A·W2ᵀ + b2     σY² = Σ_f W2²(σA'² + ui²A²) + ui²b2² + (ua√(F+1)(Σ|t| + |b2|))² + ρ(Y - b2)²
 * and for the y of a p-way run the all-reduce's roundings. */
static void bound_y(const model *M, int part) {
    const tpmlp_err_inputs *in = M->in;
    const int N = in->N, D = in->D, F = in->F, c0 = part ? M->f0 : 0, c1 = part ? M->f1 : F;
    const tpmlp_err_tp *tp = M->tp;
    float *g =
        M->exact ? pos_gemm(N, D, c1 - c0, M->var_a + c0, (size_t)F, 0, M->w2sq + c0, (size_t)F, 1, "Σ W2²σ²") : NULL;
    const f_sum s = {
        .which = part ? V_YPART : V_Y,
        .wk = {g, (part ? M->S.rank_row : M->S.row)[W_VAR_A], part ? M->m.w2sq_rr : M->m.w2sq_r, D},
        .nv = (part ? M->S.rank_row : M->S.row)[W_ABS_A],
        .nw = part ? M->m.w2_rr : M->m.w2_r,
        .bias = part ? NULL : in->b2,
        .w = in->w2,
        .w_is_df = 1,
        .f0 = c0,
        .f1 = c1,
        .fin = part ? (nd_finish){.ref = tp->yr}
                    : (nd_finish){.b2 = in->b2, .ref = in->y, .sum = tp ? tp->ysum : NULL, .p = tp ? tp->p : 0}};
    over_f(M->out, &s, N, D, F, M->fm);
    free(g);
}

/*   dW2 = dYᵀ·A        σ² = Σ_n dY²(σA'² + ui²A²) + (ua√N Σ|t|)² */
static void bound_dw2(const model *M) {
    const tpmlp_err_inputs *in = M->in;
    const int N = in->N, D = in->D, F = in->F;
    float *g = M->exact ? pos_gemm(D, F, N, M->dy2, (size_t)D, 1, M->var_a, (size_t)F, 0, "Σ dY²σ²") : NULL;
    const n_sum s = {.which = V_DW2,
                     .wk = {g, M->m.dysq_c, M->S.col[W_VAR_A], F},
                     .ng = M->m.dy_c,
                     .nv = M->S.col[W_ABS_A],
                     .ref = in->dw2,
                     .R = D,
                     .C = F};
    over_n(M->out, &s, N, M->fm);
    free(g);
}

/*   db2 = Σ_n dY       σ² = ui²Σ dY² + (ua√N Σ|dY|)²,  bound λσ + ρ(db2) */
static void bound_db2(const model *M, double *b) {
    const double ui = M->fm->u_in * UNI, cn = UA * sqrt((double)M->in->N);
    for (int d = 0; d < M->in->D; d++)
        b[d] = TPMLP_LAMBDA * sqrt(sq(ui) * M->m.dy2[d] + sq(cn * M->m.dy1[d])) + rho(M->fm, M->in->db2[d]);
}

/*   db1 = Σ_n dH       σ² = Σ_n σdH'² + (ua√N Σ|dH|)²,  hard = Σ_n hard,  bound hard + λσ + ρ(db1) */
static void bound_db1(const model *M, double *b) {
    const double cn = UA * sqrt((double)M->in->N);
    const double *const *col = (const double *const *)M->S.col;
    for (int f = 0; f < M->in->F; f++)
        b[f] = col[K_HARD][f] + TPMLP_LAMBDA * sqrt(col[K_VAR_DH][f] + sq(cn * col[K_ABS_DH][f])) +
               rho(M->fm, M->in->db1[f]);
}

/*   dW1 = dHᵀ·X        σ² = Σ_n X²(σdH'² + ui²dH²) + (ua√N Σ|t|)²,  hard = Σ_n hard·|X| */
static void bound_dw1(const model *M) {
    const tpmlp_err_inputs *in = M->in;
    const int N = in->N, D = in->D, F = in->F;
    float *g = M->exact ? pos_gemm(F, D, N, M->var_dh, (size_t)F, 1, M->x2, (size_t)D, 0, "Σ X²σ²") : NULL;
    const n_sum s = {.which = V_DW1,
                     .wk = {g, M->S.col[W_VAR_DH], M->m.xsq_c, D},
                     .ng = M->S.col[W_ABS_DH],
                     .nv = M->m.x_c,
                     .hard = M->hard,
                     .v = in->x,
                     .ref = in->dw1,
                     .R = F,
                     .C = D};
    over_n(M->out, &s, N, M->fm);
    free(g);
}

/* dx, or a rank's dx.partial (part: over its columns [f0, f1)):
 *   dX = dH·W1         σ² = Σ_f W1²(σdH'² + ui²dH²) + (ua√F Σ|t|)²,  hard = Σ_f hard·|W1|
 * and for the dx of a p-way run the all-reduce's roundings. */
static void bound_dx(const model *M, int part) {
    const tpmlp_err_inputs *in = M->in;
    const int N = in->N, D = in->D, F = in->F, c0 = part ? M->f0 : 0, c1 = part ? M->f1 : F;
    const tpmlp_err_tp *tp = M->tp;
    float *g = M->exact ? pos_gemm(N, D, c1 - c0, M->var_dh + c0, (size_t)F, 0, M->w1sq + (size_t)c0 * D, (size_t)D, 0,
                                   "Σ W1²σ²")
                        : NULL;
    const f_sum s = {.which = part ? V_DXPART : V_DX,
                     .wk = {g, (part ? M->S.rank_row : M->S.row)[W_VAR_DH], part ? M->m.w1sq_cr : M->m.w1sq_c, D},
                     .nv = (part ? M->S.rank_row : M->S.row)[W_ABS_DH],
                     .nw = part ? M->m.w1_cr : M->m.w1_c,
                     .hard = M->hard,
                     .w = in->w1,
                     .w_is_df = 0,
                     .f0 = c0,
                     .f1 = c1,
                     .fin = part ? (nd_finish){.ref = tp->dxr}
                                 : (nd_finish){.ref = in->dx, .sum = tp ? tp->dxsum : NULL, .p = tp ? tp->p : 0}};
    over_f(M->out, &s, N, D, F, M->fm);
    free(g);
}

tpmlp_err_inputs tpmlp_err_inputs_of(int N, int D, int F, tpmlp_act act, const void *const t[V_COUNT]) {
    return (tpmlp_err_inputs){.N = N,
                              .D = D,
                              .F = F,
                              .act = act,
                              .x = t[V_X],
                              .w1 = t[V_W1],
                              .b1 = t[V_B1],
                              .w2 = t[V_W2],
                              .b2 = t[V_B2],
                              .dy = t[V_DY],
                              .h = t[V_H],
                              .a = t[V_A],
                              .y = t[V_Y],
                              .dx = t[V_DX],
                              .dw1 = t[V_DW1],
                              .db1 = t[V_DB1],
                              .dw2 = t[V_DW2],
                              .db2 = t[V_DB2]};
}

void tpmlp_err_bounds_compute(tpmlp_err_bounds *b, const tpmlp_err_inputs *in, const tpmlp_format *fm,
                              const tpmlp_err_tp *tp, int exact, tpmlp_err_row_fn row, void *ctx) {
    const int N = in->N, D = in->D, F = in->F, rank = tp && (tp->yr || tp->dxr);
    memset(b, 0, sizeof *b);
    for (int i = 0; i < V_ALL; i++) { /* the arrays the table's rows ask for (the partials: one rank's check) */
        const tpmlp_vec_spec *sp = &tpmlp_vec_specs[i];
        const int part = sp->role == TPMLP_ROLE_PART, wanted = part ? tp && (i == V_YPART ? tp->yr : tp->dxr) : 1;
        if ((sp->role == TPMLP_ROLE_OUT || part) && wanted && (sp->bound == TPMLP_BOUND_ARRAY || !row))
            b->of[i] = alloc_d(tpmlp_step_numel((tpmlp_vec_id)i, N, D, F), sp->name);
    }
    const rows_out out = {b, row, ctx};
    /* exact is forced where the operands are rounded (u_in > 0): their roundings are summed by the GEMMs of squares
     * only */
    model M = {.in = in,
               .fm = fm,
               .tp = tp,
               .exact = exact || fm->u_in > 0,
               .f0 = rank ? tp->f0 : 0,
               .f1 = rank ? tp->f1 : F,
               .out = &out};
    input_norms(&M.m, in, rank, M.f0, M.f1);
    bound_h_a(&M);
    bound_y(&M, 0);
    if (tp && tp->yr) bound_y(&M, 1);
    bound_dw2(&M);
    bound_db2(&M, b->of[V_DB2]);
    bound_db1(&M, b->of[V_DB1]);
    bound_dw1(&M);
    bound_dx(&M, 0);
    if (tp && tp->dxr) bound_dx(&M, 1);
    free(M.var_a), free(M.var_dh), free(M.hard), free(M.x2), free(M.w1sq), free(M.w2sq), free(M.dy2);
    for (int k = 0; k < W_N; k++) free(M.S.row[k]), free(M.S.rank_row[k]);
    for (int k = 0; k < K_N; k++) free(M.S.col[k]);
    input_norms_free(&M.m);
}

static inline uint64_t bits_of(double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}
static inline double double_of(uint64_t u) {
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* The form test's terms Σ wΔ·e and Σ wΔ² of one element, w = 1/scale²,
 * scale = ba/λ; nothing from an element whose scale is not positive and
 * finite or whose e is NaN or Inf. Such an element enters as 0·0/1 = 0,
 * picked by bit masks: with a compare and a select of the quotients' inputs
 * the compiler keeps a branch, and the loop scalar. */
static inline void form_term(double *num, double *den, float a1, float a2, double e, double ba) {
    const uint64_t inf = 0x7ff0000000000000u, sb = bits_of(ba / TPMLP_LAMBDA), eb = bits_of(e);
    const uint64_t keep = -(uint64_t)(((eb & inf) != inf) & (sb - 1 < inf - 1)); /* all ones or 0 */
    const double sc = double_of((sb & keep) | (bits_of(1.0) & ~keep)), ev = double_of(eb & keep);
    const double dv = double_of(bits_of((double)a2 - (double)a1) & keep);
    *num += dv * ev / (sc * sc), *den += dv * dv / (sc * sc);
}

/* num, den (8 lanes each) += the form test's terms of n elements. Lane j
 * takes the elements j, j + 8, ...: the same sums on every vector width. */
ERR_CLONES static void form_terms(double *restrict num, double *restrict den, const float *restrict a1,
                                  const float *restrict a2, const double *restrict e, const double *restrict ba,
                                  int n) {
    int k0 = 0;
    for (; k0 + 8 <= n; k0 += 8)
#pragma omp simd
        for (int j = 0; j < 8; j++) form_term(&num[j], &den[j], a1[k0 + j], a2[k0 + j], e[k0 + j], ba[k0 + j]);
    for (int j = 0; k0 + j < n; j++) form_term(&num[j], &den[j], a1[k0 + j], a2[k0 + j], e[k0 + j], ba[k0 + j]);
}

int tpmlp_err_has_form_test(tpmlp_act act) { return act == TPMLP_GELU || act == TPMLP_GELU_TANH; }

void tpmlp_err_form_sums(tpmlp_act act, const double *h, const float *a1, const double *e, const double *ba, size_t n,
                         double *num, double *den) {
    if (!tpmlp_err_has_form_test(act)) return;
    const tpmlp_act other = act == TPMLP_GELU ? TPMLP_GELU_TANH : TPMLP_GELU;
    enum { BLK = 1024 };
    float hb[BLK], own[BLK], a2[BLK], g[BLK];
    double nl[8] = {0}, dl[8] = {0};
    for (size_t k0 = 0; k0 < n; k0 += BLK) {
        /* Δ = other(h) - act(h), from the float32 kernels: Δ is about 10⁻⁴ where it
         * matters, their errors about 10⁻⁷ of |a| */
        const int m = (int)(n - k0 < BLK ? n - k0 : BLK);
        to_f32(hb, h + k0, m);
        if (!a1) act_row(hb, own, g, m, act);
        act_row(hb, a2, g, m, other);
        /* β = Σ wΔ·e / Σ wΔ², w = 1/scale²: the least-squares share of Δ in e */
        form_terms(nl, dl, a1 ? a1 + k0 : own, a2, e + k0, ba + k0, m);
    }
    *num += ((nl[0] + nl[1]) + (nl[2] + nl[3])) + ((nl[4] + nl[5]) + (nl[6] + nl[7]));
    *den += ((dl[0] + dl[1]) + (dl[2] + dl[3])) + ((dl[4] + dl[5]) + (dl[6] + dl[7]));
}

double tpmlp_err_form_beta(double num, double den, double *noise) {
    *noise = den > 0 ? TPMLP_LAMBDA / sqrt(den) : INFINITY; /* Σ wΔ·e has scale (Σ w²Δ² scale²)^{1/2} = √den */
    return den > 0 ? num / den : 0;
}

void tpmlp_err_free(tpmlp_err_bounds *b) {
    for (int i = 0; i < V_ALL; i++) free(b->of[i]);
    memset(b, 0, sizeof *b);
}
