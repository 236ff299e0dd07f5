/* Error propagation through the MLP, first order. Notation: |M| is the
 * elementwise absolute value, δT the bound on T's error, γ_K = tpmlp_gamma(K).
 *
 *   δH   = γ_{D+1}·(|X|·|W1|ᵀ + |b1|)
 *   δA   = L1·δH + c·u·(|A| + |H·act'(H)|)           L1 = max|act'|
 *   δY   = γ_{F+1}·(|A|·|W2|ᵀ + |b2|) + δA·|W2|ᵀ
 *   δdb2 = γ_N·Σ_rows|dY|
 *   δdW2 = γ_N·|dY|ᵀ·|A| + |dY|ᵀ·δA
 *   δdA  = γ_D·|dY|·|W2|
 *   δdH  = δdA·|act'(H)| + |dA|·δact' + u·|dH|
 *          δact' = min(L2·δH, R) + c·u·(|act'(H)| + L2·|H|)
 *   δdb1 = γ_N·Σ_rows|dH| + Σ_rows δdH
 *   δdW1 = γ_N·|dH|ᵀ·|X| + δdHᵀ·|X|
 *   δdX  = γ_F·|dH|·|W1| + δdH·|W1|
 * L2 bounds |act''| and R the range of act' (relu: act' jumps by 1 at 0, so
 * only elements with |H| ≤ δH can flip). */
#include "bound.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

double tpmlp_gamma(const tpmlp_err_model *m, double K) {
    if (m->lambda > 0) return m->lambda * sqrt(K) * m->u;
    double ku = K * m->u;
    return ku < 1 ? ku / (1 - ku) : INFINITY;
}

#define FIELDS(X)                                                                                                      \
    X(x, N, D)                                                                                                         \
    X(w1, F, D)                                                                                                        \
    X(b1, F, 1)                                                                                                        \
    X(w2, D, F)                                                                                                        \
    X(b2, D, 1)                                                                                                        \
    X(dy, N, D) X(h, N, F) X(a, N, F) X(dact, N, F) X(y, N, D) X(dh, N, F) X(dx, N, D) X(dw1, F, D) X(db1, F, 1)       \
        X(dw2, D, F) X(db2, D, 1)

#define ALLOC_ALL(t)                                                                                                   \
    do {                                                                                                               \
        memset(t, 0, sizeof *t);                                                                                       \
        t->N = N, t->D = D, t->F = F, t->act = act;                                                                    \
        FIELDS(ALLOC_ONE)                                                                                              \
    } while (0)
#define ALLOC_ONE(name, r, c)                                                                                          \
    t->name = tpmlp_alloc((size_t)(r) * (size_t)(c), sizeof *t->name, #name);                                          \
    memset(t->name, 0, (size_t)(r) * (size_t)(c) * sizeof *t->name);
#define FREE_ONE(name, r, c) free(t->name);

void tpmlp_mlp64_alloc(tpmlp_mlp64 *t, int N, int D, int F, tpmlp_act act) { ALLOC_ALL(t); }
void tpmlp_mlp32_alloc(tpmlp_mlp32 *t, int N, int D, int F, tpmlp_act act) { ALLOC_ALL(t); }

void tpmlp_mlp64_free(tpmlp_mlp64 *t) {
    FIELDS(FREE_ONE)
    memset(t, 0, sizeof *t);
}
void tpmlp_mlp32_free(tpmlp_mlp32 *t) {
    FIELDS(FREE_ONE)
    memset(t, 0, sizeof *t);
}

void tpmlp_mlp32_random_inputs(tpmlp_mlp32 *t, unsigned long long seed) {
    const size_t nd = (size_t)t->N * t->D, fd = (size_t)t->F * t->D;
    /* distinct streams per tensor: seed mixed with the tensor's number */
    tpmlp_fill_uniform_f32(t->x, nd, seed * 8 + 1, 1.0f);
    tpmlp_fill_uniform_f32(t->w1, fd, seed * 8 + 2, 1.0f / sqrtf((float)t->D));
    tpmlp_fill_uniform_f32(t->b1, (size_t)t->F, seed * 8 + 3, 1.0f / sqrtf((float)t->D));
    tpmlp_fill_uniform_f32(t->w2, fd, seed * 8 + 4, 1.0f / sqrtf((float)t->F));
    tpmlp_fill_uniform_f32(t->b2, (size_t)t->D, seed * 8 + 5, 1.0f / sqrtf((float)t->F));
    tpmlp_fill_uniform_f32(t->dy, nd, seed * 8 + 6, 1.0f);
}

void tpmlp_mlp32_run(tpmlp_mlp32 *t) {
    mlp_forward_f32(t->h, t->a, t->dact, t->y, t->x, t->w1, t->b1, t->w2, t->b2, t->N, t->D, t->F, t->act);
    mlp_backward_f32(t->dx, t->dw1, t->db1, t->dw2, t->db2, t->dh, t->dy, t->x, t->a, t->dact, t->w1, t->w2, t->N, t->D,
                     t->F);
}

void tpmlp_mlp64_inputs_from32(tpmlp_mlp64 *t64, const tpmlp_mlp32 *t) {
#define COPY_ONE(name)                                                                                                 \
    for (size_t k = 0; k < sizes.name; k++) t64->name[k] = (double)t->name[k];
    const struct {
        size_t x, w1, b1, w2, b2, dy;
    } sizes = {(size_t)t->N * t->D, (size_t)t->F * t->D, (size_t)t->F,
               (size_t)t->D * t->F, (size_t)t->D,        (size_t)t->N * t->D};
    COPY_ONE(x) COPY_ONE(w1) COPY_ONE(b1) COPY_ONE(w2) COPY_ONE(b2) COPY_ONE(dy)
#undef COPY_ONE
}

void tpmlp_output_views(tpmlp_output_view v[TPMLP_NUM_OUTPUTS], const tpmlp_mlp32 *t, const tpmlp_mlp64 *ref,
                        const tpmlp_mlp64 *bd) {
    const size_t nd = (size_t)t->N * t->D, nf = (size_t)t->N * t->F, fd = (size_t)t->F * t->D;
#define VIEW(i, label, field, count)                                                                                   \
    v[i] = (tpmlp_output_view){label, t->field, ref->field, bd ? bd->field : NULL, count}
    VIEW(0, "h", h, nf);
    VIEW(1, "a", a, nf);
    VIEW(2, "y", y, nd);
    VIEW(3, "dx", dx, nd);
    VIEW(4, "linear_fc1.weight.grad", dw1, fd);
    VIEW(5, "linear_fc1.bias.grad", db1, (size_t)t->F);
    VIEW(6, "linear_fc2.weight.grad", dw2, fd);
    VIEW(7, "linear_fc2.bias.grad", db2, (size_t)t->D);
#undef VIEW
}

double tpmlp_budget_used(const float *got, const double *ref, const double *bound, size_t n, size_t *worst,
                         double *max_abs_err) {
    double used = 0, maxerr = 0;
    size_t w = 0;
    for (size_t k = 0; k < n; k++) {
        if (!isfinite(got[k])) {
            *worst = k, *max_abs_err = INFINITY;
            return INFINITY;
        }
        double e = fabs((double)got[k] - ref[k]);
        double r = e == 0 ? 0 : bound[k] > 0 ? e / bound[k] : INFINITY;
        if (r > used) used = r, w = k;
        if (e > maxerr) maxerr = e;
    }
    *worst = w, *max_abs_err = maxerr;
    return used;
}

void tpmlp_mlp64_run(tpmlp_mlp64 *t) {
    mlp_forward_f64(t->h, t->a, t->dact, t->y, t->x, t->w1, t->b1, t->w2, t->b2, t->N, t->D, t->F, t->act);
    mlp_backward_f64(t->dx, t->dw1, t->db1, t->dw2, t->db2, t->dh, t->dy, t->x, t->a, t->dact, t->w1, t->w2, t->N, t->D,
                     t->F);
}

static double *abs_copy(const double *src, size_t n, const char *what) {
    double *d = tpmlp_alloc(n, sizeof *d, what);
    for (size_t i = 0; i < n; i++) d[i] = fabs(src[i]);
    return d;
}

/* C (M,N) = alpha·op(A)·op(B) + beta·C, row-major, for the |·| products. */
static void gemm(int ta, int tb, int M, int N, int K, double alpha, const double *A, const double *B, double beta,
                 double *C) {
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A,
                ta ? M : K, B, tb ? K : N, beta, C, N);
}

void tpmlp_mlp64_bounds(tpmlp_mlp64 *bd, const tpmlp_mlp64 *ref, const tpmlp_err_model *m) {
    const int N = ref->N, D = ref->D, F = ref->F;
    const size_t nd = (size_t)N * D, nf = (size_t)N * F, fd = (size_t)F * D;
    const double u = m->u, c = m->act_ulps * u;
    const double L1 = ref->act == TPMLP_RELU ? 1.0 : 1.13; /* max|act'|: gelu 1.129, gelu_tanh 1.129 */
    const double L2 = ref->act == TPMLP_RELU ? 0.0 : 0.8;  /* max|act''|: both GeLUs 2φ(0) ≈ 0.798 */
    double *ax = abs_copy(ref->x, nd, "bound |x|"), *aw1 = abs_copy(ref->w1, fd, "bound |w1|");
    double *aw2 = abs_copy(ref->w2, fd, "bound |w2|"), *ady = abs_copy(ref->dy, nd, "bound |dy|");
    double *aa = abs_copy(ref->a, nf, "bound |a|"), *adh = abs_copy(ref->dh, nf, "bound |dh|");
    double *da = tpmlp_alloc(nf, sizeof *da, "bound δa"), *ddh = tpmlp_alloc(nf, sizeof *ddh, "bound δdh");

    /* δH, δA */
    gemm(0, 1, N, F, D, tpmlp_gamma(m, D + 1), ax, aw1, 0, bd->h);
    for (size_t k = 0; k < nf; k++) bd->h[k] += tpmlp_gamma(m, D + 1) * fabs(ref->b1[k % F]);
    for (size_t k = 0; k < nf; k++) {
        double hv = ref->h[k], g = tpmlp_act_grad_f64(ref->act, hv);
        da[k] = bd->a[k] = L1 * bd->h[k] + c * (aa[k] + fabs(hv * g)); /* c·u·(|A| + |H·act'|): eval + conditioning */
    }
    /* δY */
    gemm(0, 1, N, D, F, tpmlp_gamma(m, F + 1), aa, aw2, 0, bd->y);
    for (size_t k = 0; k < nd; k++) bd->y[k] += tpmlp_gamma(m, F + 1) * fabs(ref->b2[k % D]);
    gemm(0, 1, N, D, F, 1.0, da, aw2, 1.0, bd->y);
    /* δdb2, δdW2 */
    memset(bd->db2, 0, (size_t)D * sizeof(double));
    for (size_t k = 0; k < nd; k++) bd->db2[k % D] += tpmlp_gamma(m, N) * ady[k];
    gemm(1, 0, D, F, N, tpmlp_gamma(m, N), ady, aa, 0, bd->dw2);
    gemm(1, 0, D, F, N, 1.0, ady, da, 1.0, bd->dw2);
    /* δdA into ddh, dA itself into da (δA is no longer needed), then δdH */
    gemm(0, 0, N, F, D, tpmlp_gamma(m, D), ady, aw2, 0, ddh);
    gemm(0, 0, N, F, D, 1.0, ref->dy, ref->w2, 0, da);
    for (size_t k = 0; k < nf; k++) {
        double hv = ref->h[k], g = tpmlp_act_grad_f64(ref->act, hv);
        double dact = ref->act == TPMLP_RELU ? (fabs(hv) <= bd->h[k] ? 1.0 : 0.0) : fmin(L2 * bd->h[k], 1.3);
        dact += c * (fabs(g) + L2 * fabs(hv));
        ddh[k] = ddh[k] * fabs(g) + fabs(da[k]) * dact + u * adh[k];
    }
    memcpy(bd->dh, ddh, nf * sizeof(double));
    /* δdb1, δdW1, δdX */
    memset(bd->db1, 0, (size_t)F * sizeof(double));
    for (size_t k = 0; k < nf; k++) bd->db1[k % F] += tpmlp_gamma(m, N) * adh[k] + ddh[k];
    gemm(1, 0, F, D, N, tpmlp_gamma(m, N), adh, ax, 0, bd->dw1);
    gemm(1, 0, F, D, N, 1.0, ddh, ax, 1.0, bd->dw1);
    gemm(0, 0, N, D, F, tpmlp_gamma(m, F), adh, aw1, 0, bd->dx);
    gemm(0, 0, N, D, F, 1.0, ddh, aw1, 1.0, bd->dx);

    free(ax), free(aw1), free(aw2), free(ady), free(aa), free(adh), free(da), free(ddh);
}
