#include "config.h"

#include "oracle.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "seqgemm.h"
#include "util.h"

/* ---------------------------------------------------- deterministic math */

/* e^y by Cody–Waite reduction y = k·ln2 + r (ln2_hi has 21 trailing zero bits,
 * so k·ln2_hi is exact for |k| < 2^21) and a degree-14 Taylor polynomial on
 * |r| ≤ 0.35 (truncation below 1e-18); 2^k by ldexp, which is exact. */
static double det_exp(double y) {
    if (y < -745.0) return 0.0;
    if (y > 709.0) return INFINITY;
    double k = floor(y * 1.4426950408889634 + 0.5);
    double r = (y - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10;
    double p = 1.0, term = 1.0;
    for (int i = 1; i <= 14; i++) {
        term = term * r / i;
        p = p + term;
    }
    return ldexp(p, (int)k);
}

/* erfc(z): for z < 2 from the positive series erf(z) = 2z/√π·e^{-z²}·Σ (2z²)^n / (1·3·…·(2n+1))
 * (relative error of erfc below 1e-13 there); for z ≥ 2 from the continued
 * fraction erfc(z) = e^{-z²}/√π / (z + (1/2)/(z + 1/(z + (3/2)/(z + …)))), 60 levels. */
static double det_erfc(double z) {
    if (z < 0) return 2.0 - det_erfc(-z);
    if (z > 27.3) return 0.0;
    double e = det_exp(-z * z);
    if (z < 2.0) {
        double s = 0.0, term = 1.0;
        for (int n = 0; n < 200 && term > 1e-18 * s; n++) {
            s = s + term;
            term = term * (2.0 * z * z) / (2.0 * n + 3.0);
        }
        return 1.0 - 2.0 * z * 0.56418958354775628695 * e * s;
    }
    double f = z;
    for (int k = 60; k >= 1; k--) f = z + (k * 0.5) / f;
    return e * 0.56418958354775628695 / f;
}

double tpmlp_det_act(tpmlp_act act, double x) {
    switch (act) {
    case TPMLP_GELU: return x * 0.5 * det_erfc(-x * 0.70710678118654752440);
    case TPMLP_GELU_TANH: {
        double u = 0.79788456080286535588 * (x + 0.044715 * x * x * x);
        double e = det_exp(-2.0 * fabs(u));
        return u >= 0 ? x / (1.0 + e) : x * e / (1.0 + e);
    }
    case TPMLP_SILU: { /* x·σ(x), σ from e^-|x| ≤ 1 */
        double e = det_exp(-fabs(x));
        return x >= 0 ? x / (1.0 + e) : x * e / (1.0 + e);
    }
    default: return x > 0 ? x : 0.0;
    }
}

double tpmlp_det_act_grad(tpmlp_act act, double x) {
    switch (act) {
    case TPMLP_GELU:
        return 0.5 * det_erfc(-x * 0.70710678118654752440) + x * 0.39894228040143267794 * det_exp(-0.5 * x * x);
    case TPMLP_GELU_TANH: {
        double u = 0.79788456080286535588 * (x + 0.044715 * x * x * x);
        double e = det_exp(-2.0 * fabs(u)), inv = 1.0 / (1.0 + e);
        double s = u >= 0 ? inv : e * inv;
        return s + x * (e * inv * inv) * 2.0 * 0.79788456080286535588 * (1.0 + 3.0 * 0.044715 * x * x);
    }
    case TPMLP_SILU: { /* σ + x·σ(1-σ) */
        double e = det_exp(-fabs(x)), inv = 1.0 / (1.0 + e);
        double s = x >= 0 ? inv : e * inv;
        return s + x * (e * inv * inv);
    }
    default: return x > 0 ? 1.0 : 0.0;
    }
}

/* ---------------------------------------------------- reference outputs */

/* Each sum of the reference in increasing index order from 0.0, the bias
 * added after it (tpmlp_seq_gemm: the bits of the plain loops, blocked and
 * threaded). */
static tpmlp_dview view(const double *p, size_t rs, size_t cs) { return (tpmlp_dview){p, rs, cs}; }

/* db (R) = Σ over the N rows of g (N, R, row stride ld), n in increasing order */
static void column_sums(double *db, const double *g, int N, int R, size_t ld) {
#pragma omp parallel for schedule(static)
    for (int r = 0; r < R; r++) {
        double s = 0.0;
        for (int n = 0; n < N; n++) s = s + g[(size_t)n * ld + r];
        db[r] = s;
    }
}

/* dH (N, f1-f0) = (dY·W2[:, f0:f1]) ⊙ act'(H[:, f0:f1]): the columns [f0, f1) of F */
static void dh_block(double *dh, const double *dy, const double *w2, const double *h, int N, int D, int F, int f0,
                     int f1, tpmlp_act act) {
    const int fr = f1 - f0;
    tpmlp_seq_gemm(N, fr, D, view(dy, (size_t)D, 1), view(w2 + f0, (size_t)F, 1), dh, (size_t)fr);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int f = 0; f < fr; f++)
            dh[(size_t)n * fr + f] = dh[(size_t)n * fr + f] * tpmlp_det_act_grad(act, h[(size_t)n * F + f0 + f]);
}

void tpmlp_oracle_forward(double *h, double *a, double *y, const double *x, const double *w1, const double *b1,
                          const double *w2, const double *b2, int N, int D, int F, tpmlp_act act) {
    /* h = x·W1ᵀ + b1, a = act(h); y = a·W2ᵀ + b2 */
    tpmlp_seq_gemm(N, F, D, view(x, (size_t)D, 1), view(w1, 1, (size_t)D), h, (size_t)F);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int f = 0; f < F; f++) {
            const size_t i = (size_t)n * F + f;
            h[i] = h[i] + b1[f];
            a[i] = tpmlp_det_act(act, h[i]);
        }
    tpmlp_seq_gemm(N, D, F, view(a, (size_t)F, 1), view(w2, 1, (size_t)F), y, (size_t)D);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int d = 0; d < D; d++) y[(size_t)n * D + d] = y[(size_t)n * D + d] + b2[d];
}

void tpmlp_oracle_step(double *h, double *a, double *y, double *dx, double *dw1, double *db1, double *dw2, double *db2,
                       const double *x, const double *w1, const double *b1, const double *w2, const double *b2,
                       const double *dy, int N, int D, int F, tpmlp_act act) {
    double *dh = tpmlp_alloc((size_t)N * F, sizeof *dh, "reference dh");
    tpmlp_progress("float64 reference: forward", 1, 4);
    tpmlp_oracle_forward(h, a, y, x, w1, b1, w2, b2, N, D, F, act);
    tpmlp_progress("float64 reference: dH and dX", 2, 4);
    dh_block(dh, dy, w2, h, N, D, F, 0, F, act);
    tpmlp_seq_gemm(N, D, F, view(dh, (size_t)F, 1), view(w1, (size_t)D, 1), dx, (size_t)D); /* dX = dH·W1 */
    /* parameter gradients: dW1 = dHᵀ·X, db1 = Σ dH; dW2 = dYᵀ·A, db2 = Σ dY */
    tpmlp_progress("float64 reference: dW1", 3, 4);
    tpmlp_seq_gemm(F, D, N, view(dh, 1, (size_t)F), view(x, (size_t)D, 1), dw1, (size_t)D);
    column_sums(db1, dh, N, F, (size_t)F);
    tpmlp_progress("float64 reference: dW2", 4, 4);
    tpmlp_seq_gemm(D, F, N, view(dy, 1, (size_t)D), view(a, (size_t)F, 1), dw2, (size_t)F);
    column_sums(db2, dy, N, D, (size_t)D);
    free(dh);
    tpmlp_progress_done();
}

void tpmlp_oracle_partial_sums(double *yp, double *dxp, const double *dy, const double *w1, const double *w2,
                               const double *h, const double *a, int N, int D, int F, int f0, int f1, tpmlp_act act) {
    const int fr = f1 - f0;
    double *dh = tpmlp_alloc((size_t)N * fr, sizeof *dh, "partial dh");
    tpmlp_seq_gemm(N, D, fr, view(a + f0, (size_t)F, 1), view(w2 + f0, 1, (size_t)F), yp, (size_t)D);
    dh_block(dh, dy, w2, h, N, D, F, f0, f1, act);
    tpmlp_seq_gemm(N, D, fr, view(dh, (size_t)fr, 1), view(w1 + (size_t)f0 * D, (size_t)D, 1), dxp, (size_t)D);
    free(dh);
}

double *tpmlp_widen(const float *v, size_t n, const char *what) {
    double *d = tpmlp_alloc(n, sizeof *d, what);
    for (size_t i = 0; i < n; i++) d[i] = v[i]; /* exact */
    return d;
}
