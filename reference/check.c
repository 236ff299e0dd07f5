/* The bound, per output element, for an implementation computing with unit
 * round-off u (2^-24 fp32, 2^-11 tf32 and fp16, 2^-8 bf16).
 *
 * One dot product of length K: |error| ≤ γ(K)·Σ|terms|, γ(K) = λ·√K·u, the
 * probabilistic bound of Higham & Mary (2019), which fails with probability
 * at most 2K·exp(-λ²/2) per element if roundings are independent; λ = 10
 * (TPMLP_LAMBDA). It holds for any summation order and also covers inputs
 * rounded to the lower precision (each product then carries ≤ 2u, and
 * 2u·Σ|t| ≤ λ√K·u·Σ|t|).
 *
 * Errors carried from an earlier step: each e_j is itself a sum of many
 * independent roundings, bounded at the λ level by δ_j, i.e. sub-Gaussian
 * with scale δ_j/λ. A later sum Σ_j e_j·w_j is then sub-Gaussian with scale
 * (Σ (δ_j/λ)²·w_j²)^{1/2}, so at the same λ level it is at most
 * (Σ δ_j²·w_j²)^{1/2} — no second factor λ — which we bound by ‖δ‖₄·‖w‖₄
 * (Hölder): one pass instead of a GEMM.
 *
 *   δH   = γ(D+1)·(|X|·|W1|ᵀ + |b1|)
 *   δA   = (|g| + |act''(H)|·δH)·δH + c·u·(|A| + |H·g|)   g = act'(H), c = 8
 *          (relu: slope 1 where |H| ≤ δH, the kink may be crossed)
 *   δY   = γ(F+1)·(|A|·|W2|ᵀ + |b2|) + ‖δA_n‖₄‖W2_d‖₄
 *   δdb2 = γ(N)·Σ_n|dY|
 *   δdW2 = γ(N)·|dY|ᵀ·|A| + ‖dY_:d‖₄‖δA_:f‖₄
 *   δdA  = γ(D)·|dY|·|W2|
 *   δg   = |act''(H)|·δH + c·u·(|g| + 0.8|H|)   (relu: 1 where |H| ≤ δH)
 *   δdH  = |g|·δdA + |dA|·δg + u·|dH|
 *   δdb1 = γ(N)·Σ_n|dH| + (Σ_n δdH²)^{1/2}
 *   δdW1 = γ(N)·|dH|ᵀ·|X| + ‖δdH_:f‖₄‖X_:d‖₄
 *   δdX  = γ(F)·|dH|·|W1| + ‖δdH_n‖₄‖W1_:d‖₄
 * The |·| products are float32 GEMMs of non-negative numbers; their own
 * rounding (≤ K·2^-24 relative) is covered by inflating them by 1 + 2K·2^-24. */
#include "check.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bound.h"
#include "util.h"

double tpmlp_dtype_u(const char *name) {
    if (strcmp(name, "fp32") == 0) return 0x1p-24;
    if (strcmp(name, "tf32") == 0) return 0x1p-11;
    if (strcmp(name, "fp16") == 0) return 0x1p-11;
    if (strcmp(name, "bf16") == 0) return 0x1p-8;
    return -1;
}

/* |M| as float32 */
static float *absf(const void *src, int is_f64, size_t n, const char *what) {
    float *d = tpmlp_alloc(n, sizeof *d, what);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        d[i] = is_f64 ? (float)fabs(((const double *)src)[i]) : fabsf(((const float *)src)[i]);
    return d;
}

/* C (M,N) = op(A)·op(B) in float32 with non-negative inputs, inflated to an upper bound. */
static void abs_gemm(float *C, int ta, int tb, int M, int N, int K, const float *A, const float *B) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A,
                ta ? M : K, B, tb ? K : N, 0.0f, C, N);
    float infl = (float)(1.0 + 2.0 * K * 0x1p-24);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < (size_t)M * N; i++) C[i] *= infl;
}

/* ‖row i‖₄ of an (R,C) matrix given as doubles or floats, for each row; or,
 * with cols = 1, ‖column j‖₄ for each column. */
static double *norm4(const void *m, int is_f64, int R, int C, int by_cols, const char *what) {
    int n = by_cols ? C : R;
    double *out = tpmlp_alloc((size_t)n, sizeof *out, what);
    if (by_cols) {
        for (int i = 0; i < n; i++) out[i] = 0;
        for (int r = 0; r < R; r++)
            for (int c = 0; c < C; c++) {
                double v = is_f64 ? ((const double *)m)[(size_t)r * C + c] : ((const float *)m)[(size_t)r * C + c];
                v *= v;
                out[c] += v * v;
            }
    } else {
#pragma omp parallel for schedule(static)
        for (int r = 0; r < R; r++) {
            double acc = 0;
            for (int c = 0; c < C; c++) {
                double v = is_f64 ? ((const double *)m)[(size_t)r * C + c] : ((const float *)m)[(size_t)r * C + c];
                v *= v;
                acc += v * v;
            }
            out[r] = acc;
        }
    }
    for (int i = 0; i < n; i++) out[i] = sqrt(sqrt(out[i]));
    return out;
}

/* max|act''|: 2φ(0) ≈ 0.798 for gelu, about the same for gelu_tanh; relu's
 * jump is handled where it is used. The terms it enters are second order or
 * bound the error of act' itself, so the global maximum is enough. */
static double act_second(tpmlp_act act) { return act == TPMLP_RELU ? 0.0 : 0.8; }

/* δA: the slope over [H - δH, H + δH] times δH, plus the evaluation's own
 * error. relu's slope jumps from 0 to 1 at the kink, which H may cross. */
static double delta_a(tpmlp_act act, double h, double a, double g, double dh, double c) {
    double slope = act == TPMLP_RELU ? (fabs(h) <= dh ? 1.0 : fabs(g)) : fabs(g) + act_second(act) * dh;
    return slope * dh + c * (fabs(a) + fabs(h * g));
}

typedef struct {
    double *b[TPMLP_CHECK_OUTPUTS]; /* the bound per element, by output */
} bounds;

static void compute_bounds(bounds *bd, const st_file *vec, const tpmlp_vec_dims *dm, double u) {
    const int N = dm->B * dm->T, D = dm->D, F = dm->F;
    const size_t nd = (size_t)N * D, nf = (size_t)N * F, fd = (size_t)F * D;
    const double lam = TPMLP_LAMBDA, c = 8 * u;
#define G(K) (lam * sqrt((double)(K)) * u)
    /* aligned copies: the file's tensors need not be aligned for their dtype */
    const float *x = st_aligned(vec, st_find(vec, "x")), *w1 = st_aligned(vec, st_find(vec, "linear_fc1.weight"));
    const float *b1 = st_aligned(vec, st_find(vec, "linear_fc1.bias"));
    const float *w2 = st_aligned(vec, st_find(vec, "linear_fc2.weight"));
    const float *b2 = st_aligned(vec, st_find(vec, "linear_fc2.bias")), *dy = st_aligned(vec, st_find(vec, "dy"));
    const double *h = st_aligned(vec, st_find(vec, "h")), *a = st_aligned(vec, st_find(vec, "a"));
    for (int i = 0; i < TPMLP_CHECK_OUTPUTS; i++)
        bd->b[i] = tpmlp_alloc(tpmlp_vec_numel((tpmlp_vec_id)(V_FIRST_OUTPUT + i), dm), sizeof(double), "bound");
    double *dH = bd->b[V_H - V_FIRST_OUTPUT], *dA = bd->b[V_A - V_FIRST_OUTPUT], *dY = bd->b[V_Y - V_FIRST_OUTPUT];
    double *dX = bd->b[V_DX - V_FIRST_OUTPUT], *dW1 = bd->b[V_DW1 - V_FIRST_OUTPUT],
           *dB1 = bd->b[V_DB1 - V_FIRST_OUTPUT];
    double *dW2 = bd->b[V_DW2 - V_FIRST_OUTPUT], *dB2 = bd->b[V_DB2 - V_FIRST_OUTPUT];

    float *ax = absf(x, 0, nd, "|x|"), *aw1 = absf(w1, 0, fd, "|w1|"), *aw2 = absf(w2, 0, fd, "|w2|");
    float *ady = absf(dy, 0, nd, "|dy|"), *aa = absf(a, 1, nf, "|a|");
    float *s = tpmlp_alloc(nf > fd ? nf : fd, sizeof *s, "|terms|");
    /* g = act'(h), from the vectorised float32 kernel: a bound needs its size, not its last bits */
    float *g = tpmlp_alloc(nf, sizeof *g, "act'(h)"), *hf = tpmlp_alloc(nf, sizeof *hf, "h as float");
    float *zero = tpmlp_alloc((size_t)F, sizeof *zero, "zero bias");
    memset(zero, 0, (size_t)F * sizeof *zero);
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < nf; k++) hf[k] = (float)h[k];
    bias_act_forward_f32(hf, s, g, zero, N, F, dm->act); /* s: scratch for act(h) */
    free(hf), free(zero);

    /* forward */
    abs_gemm(s, 0, 1, N, F, D, ax, aw1);
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < nf; k++) {
        dH[k] = G(D + 1) * (s[k] + fabs(b1[k % F]));
        dA[k] = delta_a(dm->act, h[k], a[k], g[k], dH[k], c);
    }
    double *nA_row = norm4(dA, 1, N, F, 0, "‖δA_n‖₄"), *nW2_row = norm4(w2, 0, D, F, 0, "‖W2_d‖₄");
    abs_gemm(s, 0, 1, N, D, F, aa, aw2);
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < nd; k++) dY[k] = G(F + 1) * (s[k] + fabs(b2[k % D])) + nA_row[k / D] * nW2_row[k % D];
    /* dW2, db2 */
    double *nDY_col = norm4(dy, 0, N, D, 1, "‖dY_:d‖₄"), *nA_col = norm4(dA, 1, N, F, 1, "‖δA_:f‖₄");
    abs_gemm(s, 1, 0, D, F, N, ady, aa);
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < fd; k++) dW2[k] = G(N) * s[k] + nDY_col[k / F] * nA_col[k % F];
    for (int d = 0; d < D; d++) dB2[d] = 0;
    for (size_t k = 0; k < nd; k++) dB2[k % D] += fabs(dy[k]);
    for (int d = 0; d < D; d++) dB2[d] *= G(N);
    /* dA exactly (its size enters δdH), δdA, then δdH kept in dA's place and |dH| in aa */
    float *dAv = tpmlp_alloc(nf, sizeof *dAv, "dA");
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, F, D, 1.0f, dy, D, w2, F, 0.0f, dAv, F);
    abs_gemm(s, 0, 0, N, F, D, ady, aw2);
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < nf; k++) {
        double dg = dm->act == TPMLP_RELU ? (fabs(h[k]) <= dH[k] ? 1.0 : 0.0) : act_second(dm->act) * dH[k];
        dg += c * (fabs(g[k]) + (dm->act == TPMLP_RELU ? 0 : 0.8 * fabs(h[k])));
        double adA = fabs(dAv[k]) + G(D) * s[k]; /* |dA| plus its own error */
        double adH = fabs(g[k]) * adA;
        dA[k] = fabs(g[k]) * G(D) * s[k] + adA * dg + u * adH; /* now δdH */
        aa[k] = (float)adH;                                    /* now |dH| */
    }
    /* db1, dW1, dX */
    for (int f = 0; f < F; f++) dB1[f] = 0;
    double *sq = tpmlp_alloc((size_t)F, sizeof *sq, "Σδ²");
    for (int f = 0; f < F; f++) sq[f] = 0;
#pragma omp parallel for schedule(static)
    for (int f0 = 0; f0 < F; f0 += 256) /* column blocks, rows in order */
        for (int n = 0; n < N; n++)
            for (int f = f0; f < F && f < f0 + 256; f++) {
                size_t k = (size_t)n * F + f;
                dB1[f] += aa[k], sq[f] += dA[k] * dA[k];
            }
    for (int f = 0; f < F; f++) dB1[f] = G(N) * dB1[f] + sqrt(sq[f]);
    double *nDH_col = norm4(dA, 1, N, F, 1, "‖δdH_:f‖₄"), *nX_col = norm4(x, 0, N, D, 1, "‖X_:d‖₄");
    abs_gemm(s, 1, 0, F, D, N, aa, ax);
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < fd; k++) dW1[k] = G(N) * s[k] + nDH_col[k / D] * nX_col[k % D];
    double *nDH_row = norm4(dA, 1, N, F, 0, "‖δdH_n‖₄"), *nW1_col = norm4(w1, 0, F, D, 1, "‖W1_:d‖₄");
    abs_gemm(s, 0, 0, N, D, F, aa, aw1);
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < nd; k++) dX[k] = G(F) * s[k] + nDH_row[k / D] * nW1_col[k % D];
        /* dA's buffer held δA, then δdH: put δA back for the a tensor */
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < nf; k++) dA[k] = delta_a(dm->act, h[k], a[k], g[k], dH[k], c);
#undef G
    free(ax), free(aw1), free(aw2), free(ady), free(aa), free(s), free(g), free(dAv), free(sq);
    const void *views[] = {x, w1, b1, w2, b2, dy, h, a};
    for (size_t i = 0; i < sizeof views / sizeof *views; i++) st_release(vec, views[i]);
    free(nA_row), free(nW2_row), free(nDY_col), free(nA_col), free(nDH_col), free(nX_col), free(nDH_row), free(nW1_col);
}

static void compare(tpmlp_check_row *r, const st_file *theirs, const st_tensor *t, const double *ref,
                    const double *bound) {
    const uint64_t chunk = 1 << 15, nchunks = (t->numel + chunk - 1) / chunk;
    double used = 0, maxerr = 0;
    uint64_t worst = 0;
#pragma omp parallel
    {
        double *buf = tpmlp_alloc(chunk, sizeof *buf, "check buffer");
        double my_used = 0, my_err = 0;
        uint64_t my_worst = 0;
#pragma omp for schedule(static)
        for (uint64_t c = 0; c < nchunks; c++) {
            uint64_t k0 = c * chunk;
            st_tensor part = *t;
            part.numel = t->numel - k0 < chunk ? t->numel - k0 : chunk;
            part.begin = t->begin + (size_t)k0 * st_dtype_size(t->dtype);
            st_to_f64(theirs, &part, buf);
            for (uint64_t i = 0; i < part.numel; i++) {
                uint64_t k = k0 + i;
                double e = isfinite(buf[i]) ? fabs(buf[i] - ref[k]) : INFINITY;
                double q = isinf(e) ? INFINITY : e == 0 ? 0 : e / bound[k];
                if (q > my_used) my_used = q, my_worst = k;
                if (e > my_err) my_err = e;
            }
        }
        free(buf);
#pragma omp critical
        { /* the largest share wins; among equal shares, the first element */
            if (my_used > used || (my_used == used && my_used > 0 && my_worst < worst))
                used = my_used, worst = my_worst;
            if (my_err > maxerr) maxerr = my_err;
        }
    }
    r->used = used, r->max_abs_err = maxerr, r->worst = worst;
    r->worst_ref = ref[worst], r->worst_bound = bound[worst];
    st_tensor one = *t;
    one.numel = 1, one.begin = t->begin + (size_t)worst * st_dtype_size(t->dtype);
    st_to_f64(theirs, &one, &r->worst_got);
    r->pass = used <= 1.0;
}

int tpmlp_check_dump(tpmlp_check_row rows[TPMLP_CHECK_OUTPUTS], const st_file *vec, const st_file *theirs, double u,
                     const char *dump, char *err, size_t errlen) {
    tpmlp_vec_dims dm;
    if (tpmlp_vec_read_dims(vec, &dm, err, errlen) != 0) return -1;
    for (int i = 0; i < V_COUNT; i++) {
        const st_tensor *t = st_find(vec, tpmlp_vec_specs[i].name);
        st_dtype want = i < V_FIRST_OUTPUT ? ST_F32 : ST_F64;
        if (t == NULL || t->dtype != want)
            return snprintf(err, errlen, "%s: tensor '%s' %s (a vector file holds it as %s)", vec->path,
                            tpmlp_vec_specs[i].name, t ? "has the wrong dtype" : "is missing", st_dtype_name(want)),
                   -1;
    }
    /* THEIRS: every output tensor present must have the vector file's shape */
    int any = 0;
    for (int i = 0; i < TPMLP_CHECK_OUTPUTS; i++) {
        tpmlp_vec_id id = (tpmlp_vec_id)(V_FIRST_OUTPUT + i);
        const st_tensor *t = st_find(theirs, tpmlp_vec_specs[id].name), *ref = st_find(vec, tpmlp_vec_specs[id].name);
        memset(&rows[i], 0, sizeof rows[i]);
        rows[i].id = id, rows[i].n = ref->numel;
        if (t == NULL) continue;
        int same = t->ndim == ref->ndim;
        for (int k = 0; same && k < t->ndim; k++) same = t->shape[k] == ref->shape[k];
        if (!same)
            return snprintf(err, errlen,
                            "%s: tensor '%s': shape does not match the vector file's (%s with B=%d T=%d D=%d F=%d)",
                            theirs->path, t->name, tpmlp_vec_specs[id].dims, dm.B, dm.T, dm.D, dm.F),
                   -1;
        rows[i].present = 1, rows[i].dtype = t->dtype, any = 1;
    }
    if (!any) return 0;
    bounds bd;
    compute_bounds(&bd, vec, &dm, u);
    st_out out[2 * TPMLP_CHECK_OUTPUTS];
    float *keep[2 * TPMLP_CHECK_OUTPUTS];
    int nout = 0;
    for (int i = 0; i < TPMLP_CHECK_OUTPUTS; i++) {
        if (rows[i].present) {
            const char *name = tpmlp_vec_specs[rows[i].id].name;
            const st_tensor *t = st_find(theirs, name);
            const double *ref = st_aligned(vec, st_find(vec, name));
            compare(&rows[i], theirs, t, ref, bd.b[i]);
            if (dump) { /* per element: |theirs - reference| / bound, and the bound */
                float *ratio = tpmlp_alloc(t->numel, sizeof *ratio, "dump"),
                      *bnd = tpmlp_alloc(t->numel, sizeof *bnd, "dump");
                double *got = tpmlp_alloc(t->numel, sizeof *got, "dump");
                st_to_f64(theirs, t, got);
                for (uint64_t k = 0; k < t->numel; k++)
                    ratio[k] = (float)(fabs(got[k] - ref[k]) / bd.b[i][k]), bnd[k] = (float)bd.b[i][k];
                free(got);
                out[nout] = (st_out){.name = name, .dtype = ST_F32, .data = ratio}, keep[nout] = ratio;
                out[nout].ndim = tpmlp_vec_shape(rows[i].id, &dm, out[nout].shape), nout++;
                out[nout] = out[nout - 1], out[nout].data = bnd, keep[nout] = bnd, nout++;
            }
            st_release(vec, ref);
        }
        free(bd.b[i]);
    }
    int rc = 0;
    if (dump) {
        char names[TPMLP_CHECK_OUTPUTS][64];
        for (int k = 1; k < nout; k += 2) /* the bounds under NAME.bound */
            snprintf(names[k / 2], sizeof names[0], "%s.bound", out[k].name), out[k].name = names[k / 2];
        const char *mk[] = {"format"}, *mv[] = {"tpmlp-check-dump: NAME = |theirs - reference| / bound, NAME.bound"};
        rc = st_write(dump, out, nout, mk, mv, 1, err, errlen);
        for (int k = 0; k < nout; k++) free(keep[k]);
    }
    return rc;
}

int tpmlp_check(tpmlp_check_row rows[TPMLP_CHECK_OUTPUTS], const st_file *vec, const st_file *theirs, double u,
                char *err, size_t errlen) {
    return tpmlp_check_dump(rows, vec, theirs, u, NULL, err, errlen);
}
