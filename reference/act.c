/* The elementwise passes of the MLP: bias + activation forward, activation
 * backward fused with the bias-gradient reduction; plus the small bias passes.
 * Math in act.h. */
#include "config.h"

#include <string.h>

#include "act.h"
#include "mlp.h"

/* x86-64: build each row kernel for AVX-512, AVX2 and baseline SSE2 and pick
 * one at load time, so a generic binary still runs the wide vectors. The
 * results do not depend on the clone: C11 mode keeps FP contraction off, so
 * every clone performs the same IEEE operations. */
#if defined(__x86_64__) && defined(__GNUC__)
#define TPMLP_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TPMLP_CLONES
#endif

static const char *const act_names[TPMLP_NUM_ACTS] = {"gelu", "gelu_tanh", "relu", "silu"};

int tpmlp_act_parse(const char *name, tpmlp_act *out) {
    for (int i = 0; i < TPMLP_NUM_ACTS; i++)
        if (strcmp(name, act_names[i]) == 0) {
            *out = (tpmlp_act)i;
            return 0;
        }
    return -1;
}

const char *tpmlp_act_name(tpmlp_act act) { return (unsigned)act < TPMLP_NUM_ACTS ? act_names[act] : "?"; }

float tpmlp_act_f32(tpmlp_act act, float x) {
    switch (act) {
    case TPMLP_GELU: return act_gelu_f32(x);
    case TPMLP_GELU_TANH: return act_gelu_tanh_f32(x);
    case TPMLP_SILU: return act_silu_f32(x);
    default: return act_relu_f32(x);
    }
}
float tpmlp_act_grad_f32(tpmlp_act act, float x) {
    switch (act) {
    case TPMLP_GELU: return act_gelu_grad_f32(x);
    case TPMLP_GELU_TANH: return act_gelu_tanh_grad_f32(x);
    case TPMLP_SILU: return act_silu_grad_f32(x);
    default: return act_relu_grad_f32(x);
    }
}
double tpmlp_act_f64(tpmlp_act act, double x) {
    switch (act) {
    case TPMLP_GELU: return act_gelu_f64(x);
    case TPMLP_GELU_TANH: return act_gelu_tanh_f64(x);
    case TPMLP_SILU: return act_silu_f64(x);
    default: return act_relu_f64(x);
    }
}
double tpmlp_act_grad_f64(tpmlp_act act, double x) {
    switch (act) {
    case TPMLP_GELU: return act_gelu_grad_f64(x);
    case TPMLP_GELU_TANH: return act_gelu_tanh_grad_f64(x);
    case TPMLP_SILU: return act_silu_grad_f64(x);
    default: return act_relu_grad_f64(x);
    }
}

/* ---------------------------------------------------------------- float32 */

/* One row: h = h + b; a = act(h); dact = act'(h) if dact is not NULL.
 * h, a, dact, b (n). The derivative shares most of its work with the value
 * (erfc, exp), so saving it here for the backward costs one more store
 * stream instead of a second pass of transcendental math. */
/* The row loop of a smooth activation: its value and derivative from one
 * evaluation (BOTH), or its value alone (VALUE) where no dact is kept. */
#define SMOOTH_ROW(BOTH, VALUE)                                                                                        \
    if (dact) {                                                                                                        \
        _Pragma("omp simd") for (int j = 0; j < n; j++) {                                                              \
            float v = h[j] + b[j];                                                                                     \
            h[j] = v;                                                                                                  \
            BOTH(v, &a[j], &dact[j]);                                                                                  \
        }                                                                                                              \
    } else {                                                                                                           \
        _Pragma("omp simd") for (int j = 0; j < n; j++) {                                                              \
            float v = h[j] + b[j];                                                                                     \
            h[j] = v;                                                                                                  \
            a[j] = VALUE(v);                                                                                           \
        }                                                                                                              \
    }

TPMLP_CLONES static void bias_act_row_f32(float *restrict h, float *restrict a, float *restrict dact,
                                          const float *restrict b, int n, tpmlp_act act) {
    switch (act) {
    case TPMLP_GELU: SMOOTH_ROW(act_gelu_both_f32, act_gelu_f32); break;
    case TPMLP_GELU_TANH: SMOOTH_ROW(act_gelu_tanh_both_f32, act_gelu_tanh_f32); break;
    case TPMLP_SILU: SMOOTH_ROW(act_silu_both_f32, act_silu_f32); break;
    default:
#pragma omp simd
        for (int j = 0; j < n; j++) {
            float v = h[j] + b[j];
            h[j] = v;
            a[j] = act_relu_f32(v);
        }
        if (dact) {
#pragma omp simd
            for (int j = 0; j < n; j++) dact[j] = act_relu_grad_f32(h[j]);
        }
        break;
    }
}

void bias_act_forward_f32(float *h, float *a, float *dact, const float *b, int N, int F, tpmlp_act act) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++)
        bias_act_row_f32(h + (size_t)i * F, a + (size_t)i * F, dact ? dact + (size_t)i * F : NULL, b, F, act);
}

/* One row segment: dh = dh ⊙ dact; db += dh.   dh, db, dact (n) */
TPMLP_CLONES static void act_backward_seg_f32(float *restrict dh, float *restrict db, const float *restrict dact,
                                              int n) {
#pragma omp simd
    for (int j = 0; j < n; j++) {
        float g = dh[j] * dact[j];
        dh[j] = g;
        db[j] += g;
    }
}

/* Columns are cut into blocks and each thread walks its blocks down all rows,
 * so db1 is summed in row order 0..N-1 whatever the thread count: the result
 * does not change with OMP_NUM_THREADS. */
#define COL_BLOCK 256

void act_backward_bias_f32(float *dh, float *db, const float *dact, int N, int F) {
    int nblocks = (F + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblocks; blk++) {
        int c0 = blk * COL_BLOCK, n = F - c0 < COL_BLOCK ? F - c0 : COL_BLOCK;
        memset(db + c0, 0, (size_t)n * sizeof *db);
        for (int i = 0; i < N; i++)
            act_backward_seg_f32(dh + (size_t)i * F + c0, db + c0, dact + (size_t)i * F + c0, n);
    }
}

void bias_add_f32(float *y, const float *b, int N, int D) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        float *row = y + (size_t)i * D;
#pragma omp simd
        for (int j = 0; j < D; j++) row[j] += b[j];
    }
}

/* Same column blocking as act_backward_bias_f32: row order, any thread count. */
void colsum_f32(float *db, const float *dy, int N, int D) {
    int nblocks = (D + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < nblocks; blk++) {
        int c0 = blk * COL_BLOCK, n = D - c0 < COL_BLOCK ? D - c0 : COL_BLOCK;
        float *acc = db + c0;
        memset(acc, 0, (size_t)n * sizeof *acc);
        for (int i = 0; i < N; i++) {
            const float *row = dy + (size_t)i * D + c0;
#pragma omp simd
            for (int j = 0; j < n; j++) acc[j] += row[j];
        }
    }
}
