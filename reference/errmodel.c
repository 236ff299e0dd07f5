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
 *   A = act(H)         gelu: σA² = g²σH'² + Ea² + ρ(A)²,  hard = ½M2·BH²,
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
 *   dH = dA ⊙ act'(H)  gelu: σ² = g²σdA'² + dA²σg² + ρ(dH)²
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
#include "errmodel.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

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
#define M2 0.8                  /* max |act''| for both GELUs: 2φ(0) ≈ 0.798 */

static double rho(const tpmlp_format *f, double v) { return f->u * fabs(v) + f->tiny; }
static double srho(const tpmlp_format *f, double v) { return UNI * rho(f, v); } /* its scale */
static double sq(double v) { return v * v; }

/* The row and column ‖·‖₂ of the (N,F) arrays the sums read again and
 * again, each found in one pass: norms() looks them up here first. */
typedef struct {
    int count;
    struct {
        const float *m;
        int R, C;
        double *rows, *cols;
    } e[8];
} norm_cache;

static void cache_add(norm_cache *nc, const float *M, int R, int C) {
    double *rows = tpmlp_alloc((size_t)R, sizeof *rows, "row norms"),
           *cols = tpmlp_alloc((size_t)C, sizeof *cols, "col norms");
    for (int c = 0; c < C; c++) cols[c] = 0;
#pragma omp parallel
    {
        double *mine = tpmlp_alloc((size_t)C, sizeof *mine, "col norms");
        for (int c = 0; c < C; c++) mine[c] = 0;
#pragma omp for schedule(static)
        for (int r = 0; r < R; r++) {
            double acc = 0;
            for (int c = 0; c < C; c++) {
                const double v = (double)M[(size_t)r * C + c] * M[(size_t)r * C + c];
                acc += v, mine[c] += v;
            }
            rows[r] = sqrt(acc);
        }
#pragma omp critical
        for (int c = 0; c < C; c++) cols[c] += mine[c];
        free(mine);
    }
    for (int c = 0; c < C; c++) cols[c] = sqrt(cols[c]);
    nc->e[nc->count].m = M, nc->e[nc->count].R = R, nc->e[nc->count].C = C;
    nc->e[nc->count].rows = rows, nc->e[nc->count].cols = cols, nc->count++;
}

static void cache_free(norm_cache *nc) {
    for (int i = 0; i < nc->count; i++) free(nc->e[i].rows), free(nc->e[i].cols);
    nc->count = 0;
}

/* Set for the length of one tpmlp_err_bounds_compute: one computation at a
 * time per process (check, the demo and the tests make one at a time). */
static norm_cache *the_cache;

/* ‖·‖₂ along k of op(M)[i, k] for i < n, k < K; op(M)[i,k] = M[i·si + k·sk]. */
static double *norms(const float *M, int n, int K, size_t si, size_t sk, const char *what) {
    double *out = tpmlp_alloc((size_t)n, sizeof *out, what);
    for (int i = 0; the_cache && i < the_cache->count; i++) { /* a whole row or column set already known */
        const int R = the_cache->e[i].R, C = the_cache->e[i].C;
        if (the_cache->e[i].m != M) continue;
        if (n == R && K == C && si == (size_t)C && sk == 1)
            return memcpy(out, the_cache->e[i].rows, (size_t)n * sizeof *out);
        if (n == C && K == R && si == 1 && sk == (size_t)C)
            return memcpy(out, the_cache->e[i].cols, (size_t)n * sizeof *out);
    }
    if (sk == 1) {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += sq(M[i * si + k]);
            out[i] = sqrt(s);
        }
    } else { /* k strided: each thread sweeps the rows of k in order over its block of i */
#pragma omp parallel
        {
#pragma omp for schedule(static)
            for (int i = 0; i < n; i++) out[i] = 0;
            const int nt = omp_get_num_threads(), t = omp_get_thread_num();
            const int i0 = (int)((long long)n * t / nt), i1 = (int)((long long)n * (t + 1) / nt);
            for (int k = 0; k < K; k++)
                for (int i = i0; i < i1; i++) out[i] += sq(M[i * si + k * sk]);
#pragma omp barrier
#pragma omp for schedule(static)
            for (int i = 0; i < n; i++) out[i] = sqrt(out[i]);
        }
    }
    return out;
}

/* C (M,N) ≥ op(A)·op(B) for non-negative A, B, op(A) (M,K), op(B) (K,N):
 * the float32 GEMM inflated by its own worst-case rounding, or Cauchy–Schwarz. */
static void pos_gemm(float *C, int M, int N, int K, const float *A, size_t lda, int ta, const float *B, size_t ldb,
                     int tb, int exact) {
    if (exact) {
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A,
                    (int)lda, B, (int)ldb, 0.0f, C, N);
        const float infl = (float)(1.0 + 2.0 * K * 0x1p-24);
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < (size_t)M * N; i++) C[i] *= infl;
        return;
    }
    double *na = norms(A, M, K, ta ? 1 : lda, ta ? lda : 1, "row norms");
    double *nb = norms(B, N, K, tb ? ldb : 1, tb ? 1 : ldb, "column norms");
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) C[(size_t)m * N + n] = (float)(na[m] * nb[n] * (1 + 1e-6));
    free(na), free(nb);
}

static float *alloc_f(size_t n, const char *what) { return tpmlp_alloc(n, sizeof(float), what); }
static double *alloc_d(size_t n, const char *what) { return tpmlp_alloc(n, sizeof(double), what); }

/* elementwise |v| or v², float32 */
static float *mapf(const float *v, size_t n, int square, const char *what) {
    float *o = alloc_f(n, what);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) o[i] = square ? v[i] * v[i] : fabsf(v[i]);
    return o;
}

/* act'(h) into g and, if a is not NULL, act(h) into a, from float64 h, by the
 * vectorised float32 kernel in blocks. */
static void acts_f32(float *g, float *a, const double *h, size_t n, tpmlp_act act) {
    enum { BLK = 4096 };
    static const float zero[BLK];
#pragma omp parallel
    {
        float *hb = tpmlp_alloc(BLK, sizeof *hb, "h block"), *ab = tpmlp_alloc(BLK, sizeof *ab, "act block");
#pragma omp for schedule(static)
        for (size_t k0 = 0; k0 < n; k0 += BLK) {
            const int m = (int)(n - k0 < BLK ? n - k0 : BLK);
            for (int i = 0; i < m; i++) hb[i] = (float)h[k0 + i];
            bias_act_forward_f32(hb, a ? a + k0 : ab, g + k0, zero, 1, m, act);
        }
        free(hb), free(ab);
    }
}

/* What the forward pass leaves for the rest: per (n,f). */
typedef struct {
    float *shp2; /* σH'² */
    float *g;    /* act'(H) */
    float *sg2;  /* σg² (gelu); relu: 1 where h may cross 0 (|H| ≤ its bound), else 0 */
    float *sy;   /* σA'² + ui²A²: what A brings into Y and dW2 */
    float *absa; /* |A| */
} fwd_state;

static void forward(tpmlp_err_bounds *b, fwd_state *st, const tpmlp_err_inputs *in, const tpmlp_format *fm, int exact) {
    const int N = in->N, D = in->D, F = in->F;
    const size_t nf = (size_t)N * F;
    const double lam = TPMLP_LAMBDA, ui = fm->u_in * UNI, ue = TPMLP_ACT_ULPS * 0x1p-24;
    float *t2 = NULL;
    if (ui > 0) { /* ‖t‖₂² = (X²·W1²ᵀ)[n,f] */
        float *x2 = mapf(in->x, (size_t)N * D, 1, "x²"), *w2 = mapf(in->w1, (size_t)F * D, 1, "W1²");
        t2 = alloc_f(nf, "‖t‖₂² of H");
        pos_gemm(t2, N, F, D, x2, D, 0, w2, D, 1, exact);
        free(x2), free(w2);
    }
    double *nx = norms(in->x, N, D, D, 1, "‖x_n‖"), *nw = norms(in->w1, F, D, D, 1, "‖W1_f‖");
    st->shp2 = alloc_f(nf, "σH'²"), st->g = alloc_f(nf, "act'");
    st->sg2 = alloc_f(nf, "σg²"), st->sy = alloc_f(nf, "σA'²"), st->absa = alloc_f(nf, "|A|");
    acts_f32(st->g, NULL, in->h, nf, in->act); /* act'(H): a bound needs its size, not its last bits */
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < nf; k++) {
        const int n = (int)(k / F), f = (int)(k % F);
        const double h = in->h[k], a = in->a[k], b1 = in->b1[f];
        double sh2 = sq(UA * sqrt(D + 1.0) * (nx[n] * nw[f] + fabs(b1))) + sq(srho(fm, h - b1));
        if (t2) sh2 += sq(ui) * (2.0 * t2[k] + b1 * b1);
        const double bh = lam * sqrt(sh2) + rho(fm, h), shp2 = sh2 + sq(srho(fm, h));
        const double g = st->g[k];
        double ba, sa2, sg2 = 0;
        if (in->act == TPMLP_RELU) {
            sg2 = fabs(h) <= bh; /* relu: marks where h may cross 0 */
            const double slope = (h > 0 || sg2) ? 1.0 : 0.0;
            ba = slope * bh + rho(fm, a);
            sa2 = slope * shp2 + sq(srho(fm, a));
        } else {
            const double s = h != 0 ? a / h : 0.5, m = s > 0.5 ? s : 1 - s;
            /* evaluation: TPMLP_ACT_ULPS fp32 ulps of the formula's terms, plus the
             * rounding to the format of its intermediate erf or tanh and of 1 + it
             * (PyTorch's bf16 GELU rounds them): u·(½|H·erf| + |A|). In a's own
             * bound that part counts twice: the roundings reach u·|value| where
             * the value sits just above a power of 2, and a correct implementation
             * must keep half of its budget. */
            const double ef = fm->u * (fabs(h) * fabs(s - 0.5) + fabs(a));
            const double ea = ue * (fabs(h) * m + fabs(a)) + ef;
            const double eg = ue * (m + fabs(g - s) * (1 + 0.5 * h * h)) + fm->u * (fabs(s - 0.5) + s + fabs(g - s));
            ba = fabs(g) * bh + ea + ef + 0.5 * M2 * bh * bh + rho(fm, a);
            sa2 = g * g * shp2 + ea * ea + sq(srho(fm, a)) + sq(0.5 * M2 * shp2);
            sg2 = M2 * M2 * shp2 + eg * eg + sq(srho(fm, g));
        }
        b->h[k] = bh, b->a[k] = ba;
        st->shp2[k] = (float)shp2, st->sg2[k] = (float)sg2;
        st->sy[k] = (float)(sa2 + sq(ui * a)), st->absa[k] = (float)fabs(a);
    }
    free(t2), free(nx), free(nw);
}

/* Bounds of a sum over f ∈ [f0, f1) of per-(n,f) errors through a (D,F)-shaped
 * or (F,D)-shaped weight: Y = A·W2ᵀ (w_df = W2[d,f]) or dX = dH·W1 (w_df = W1[f,d]).
 * s2 (N,F): σ² entering each term; absv (N,F): |terms' other factor| for Σ|t|;
 * hard (N,F) or NULL; bias (D) or NULL, added last; out (N,D) receives hard + λσ
 * (without the own rounding). */
static void sum_over_f(double *out, const float *s2, const float *absv, const double *hard, const float *w, int w_is_df,
                       const float *bias, int N, int D, int F, int f0, int f1, int exact) {
    const int K = f1 - f0;
    float *w2 = mapf(w, (size_t)F * D, 1, "w²");
    float *rw = alloc_f((size_t)N * D, "Σ w²σ²");
    /* w_is_df: w (D,F), the sum runs along its rows -> op(B) = w2ᵀ (K, D) */
    if (w_is_df)
        pos_gemm(rw, N, D, K, s2 + f0, F, 0, w2 + f0, F, 1, exact);
    else
        pos_gemm(rw, N, D, K, s2 + f0, F, 0, w2 + (size_t)f0 * D, D, 0, exact);
    double *nv = norms(absv + f0, N, K, F, 1, "‖row‖");
    double *nw = w_is_df ? norms(w + f0, D, K, F, 1, "‖W_d‖") : norms(w + (size_t)f0 * D, D, K, 1, D, "‖W_:d‖");
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < (size_t)N * D; k++) {
        const int n = (int)(k / D), d = (int)(k % D);
        const double b = bias ? fabs(bias[d]) : 0; /* y's running sums are within Σ|t| + |b2| */
        out[k] = TPMLP_LAMBDA * sqrt(rw[k] + sq(UA * sqrt(K + 1.0) * (nv[n] * nw[d] + b)));
    }
    if (hard) /* sparse: only relu crossings are non-zero */
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++)
            for (int f = f0; f < f1; f++) {
                const double hv = hard[(size_t)n * F + f];
                if (hv == 0) continue;
                for (int d = 0; d < D; d++)
                    out[(size_t)n * D + d] += hv * fabsf(w_is_df ? w[(size_t)d * F + f] : w[(size_t)f * D + d]);
            }
    free(w2), free(rw), free(nv), free(nw);
}

/* Bounds of a sum over the N rows: out (R,C) ≥ hard + λσ for Σ_n G[n,r]·V[n,c],
 * with σ² = Σ_n P[n,r]·Q[n,c] (P, Q: the squared factors and carried σ²), the
 * fp32 accumulation from |G| and |V|, and hard (N,R) carried through |V|. */
static void sum_over_n(double *out, const float *P, const float *Q, const float *absg, const float *absv,
                       const double *hard, int N, int R, int C, int exact) {
    float *rw = alloc_f((size_t)R * C, "Σ σ² over rows");
    pos_gemm(rw, R, C, N, P, R, 1, Q, C, 0, exact);
    double *ng = norms(absg, R, N, 1, R, "‖G_:r‖"), *nv = norms(absv, C, N, 1, C, "‖V_:c‖");
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < (size_t)R * C; k++)
        out[k] = TPMLP_LAMBDA * sqrt(rw[k] + sq(UA * sqrt((double)N) * ng[k / C] * nv[k % C]));
    if (hard)
#pragma omp parallel for schedule(static)
        for (int r = 0; r < R; r++)
            for (int n = 0; n < N; n++) {
                const double hv = hard[(size_t)n * R + r];
                if (hv == 0) continue;
                for (int c = 0; c < C; c++) out[(size_t)r * C + c] += hv * absv[(size_t)n * C + c];
            }
    free(rw), free(ng), free(nv);
}

/* The all-reduce's roundings for a replicated sum: p partials stored, p - 1
 * additions of at most Σ_r|partial_r|. */
static void add_allreduce(double *b, const tpmlp_err_tp *tp, const double *sum, size_t n, const tpmlp_format *fm) {
    for (size_t k = 0; k < n; k++)
        b[k] += TPMLP_LAMBDA * UNI * sqrt(tp->p * sq(fm->u * sum[k] + fm->tiny) + (tp->p - 1) * sq(fm->u * sum[k]));
}

/* What the backward needs per (n,f): σdH'² (s), σdH'² + ui²dH² (s2), |dH|, hard. */
typedef struct {
    float *s, *s2, *absdh;
    double *hard; /* relu only; NULL otherwise */
} bwd_state;

static void backward_dh(bwd_state *bs, const fwd_state *st, const tpmlp_err_inputs *in, const tpmlp_format *fm,
                        int exact) {
    const int N = in->N, D = in->D, F = in->F;
    const size_t nf = (size_t)N * F;
    const double ui = fm->u_in * UNI;
    float *dA = alloc_f(nf, "dA");
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, F, D, 1.0f, in->dy, D, in->w2, F, 0.0f, dA, F);
    float *t2 = NULL;
    if (ui > 0) { /* ‖t‖₂² = (dY²·W2²)[n,f] */
        float *dy2 = mapf(in->dy, (size_t)N * D, 1, "dy²"), *w22 = mapf(in->w2, (size_t)F * D, 1, "W2²");
        t2 = alloc_f(nf, "‖t‖₂² of dA");
        pos_gemm(t2, N, F, D, dy2, D, 0, w22, F, 0, exact);
        free(dy2), free(w22);
    }
    double *ndy = norms(in->dy, N, D, D, 1, "‖dy_n‖"), *nw = norms(in->w2, F, D, 1, F, "‖W2_:f‖");
    bs->s = alloc_f(nf, "σdH'²"), bs->absdh = alloc_f(nf, "|dH|");
    bs->s2 = ui > 0 ? alloc_f(nf, "σdH'² + ui²dH²") : bs->s; /* the same at fp32 */
    bs->hard = in->act == TPMLP_RELU ? alloc_d(nf, "crossings") : NULL;
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < nf; k++) {
        const int n = (int)(k / F), f = (int)(k % F);
        const double da = dA[k] * (1 + 1e-6), h = in->h[k], g = st->g[k]; /* the sgemm's own error is far below */
        double sda2 = sq(UA * sqrt((double)D) * ndy[n] * nw[f]);
        if (t2) sda2 += 2 * sq(ui) * t2[k];
        const double bda = TPMLP_LAMBDA * sqrt(sda2) + rho(fm, da), sdap2 = sda2 + sq(srho(fm, da));
        double dh, s;
        if (bs->hard) {
            /* where h may cross 0 at the λ level, dH may be off by all of dA: a
             * full-size error, added in full (an on/off event is no random walk),
             * and twice, as every full-size allowance: a correct implementation
             * keeps half of its budget */
            const int cross = st->sg2[k] != 0;
            dh = h > 0 ? da : 0;
            bs->hard[k] = cross ? 2 * (fabs(da) + bda) : 0;
            s = (h > 0 && !cross ? sdap2 : 0) + sq(srho(fm, dh));
        } else {
            dh = da * g;
            s = g * g * sdap2 + da * da * st->sg2[k] + sq(srho(fm, dh));
        }
        bs->s[k] = (float)s, bs->absdh[k] = (float)fabs(dh);
        if (bs->s2 != bs->s) bs->s2[k] = (float)(s + sq(ui * dh));
    }
    free(dA), free(t2), free(ndy), free(nw);
}

void tpmlp_err_bounds_compute(tpmlp_err_bounds *b, const tpmlp_err_inputs *in, const tpmlp_format *fm,
                              const tpmlp_err_tp *tp, int exact) {
    const int N = in->N, D = in->D, F = in->F;
    const size_t nf = (size_t)N * F, nd = (size_t)N * D, fd = (size_t)F * D;
    const double lam = TPMLP_LAMBDA, ui = fm->u_in * UNI;
    memset(b, 0, sizeof *b);
    b->h = alloc_d(nf, "bound h"), b->a = alloc_d(nf, "bound a"), b->y = alloc_d(nd, "bound y");
    b->dx = alloc_d(nd, "bound dx"), b->dw1 = alloc_d(fd, "bound dW1"), b->db1 = alloc_d((size_t)F, "bound db1");
    b->dw2 = alloc_d(fd, "bound dW2"), b->db2 = alloc_d((size_t)D, "bound db2");
    fwd_state st;
    forward(b, &st, in, fm, exact);
    norm_cache nc = {0};
    the_cache = &nc;
    if (!exact) cache_add(&nc, st.sy, N, F); /* Cauchy–Schwarz reads its rows (y) and columns (dW2) */
    cache_add(&nc, st.absa, N, F);           /* Σ|t| of y and dW2 */

    /* y = A·W2ᵀ + b2, and the rank's partial */
    sum_over_f(b->y, st.sy, st.absa, NULL, in->w2, 1, in->b2, N, D, F, 0, F, exact);
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < nd; k++) {
        const double b2 = in->b2[k % D];
        const double s2 = sq(ui * b2) + sq(srho(fm, in->y[k] - b2));
        b->y[k] = sqrt(sq(b->y[k]) + lam * lam * s2) + rho(fm, in->y[k]);
    }
    if (tp && tp->yr) {
        b->y_part = alloc_d(nd, "bound y.partial");
        sum_over_f(b->y_part, st.sy, st.absa, NULL, in->w2, 1, NULL, N, D, F, tp->f0, tp->f1, exact);
        for (size_t k = 0; k < nd; k++) b->y_part[k] += rho(fm, tp->yr[k]);
    }
    if (tp) add_allreduce(b->y, tp, tp->ysum, nd, fm);
    /* dW2 = dYᵀ·A, db2 = Σ dY */
    float *dy2 = mapf(in->dy, nd, 1, "dy²"), *ady = mapf(in->dy, nd, 0, "|dy|");
    sum_over_n(b->dw2, dy2, st.sy, ady, st.absa, NULL, N, D, F, exact);
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < fd; k++) b->dw2[k] += rho(fm, in->dw2[k]);
    for (int d = 0; d < D; d++) {
        double s2 = 0, s1 = 0;
        for (int n = 0; n < N; n++) s2 += sq(in->dy[(size_t)n * D + d]), s1 += fabs(in->dy[(size_t)n * D + d]);
        b->db2[d] = lam * sqrt(sq(ui) * s2 + sq(UA * sqrt((double)N) * s1)) + rho(fm, in->db2[d]);
    }
    cache_free(&nc); /* before the arrays go: their addresses may come back */
    free(dy2), free(ady), free(st.sy), free(st.absa);

    /* dH, then db1 = Σ dH, dW1 = dHᵀ·X, dX = dH·W1 */
    bwd_state bs;
    backward_dh(&bs, &st, in, fm, exact);
    if (!exact) cache_add(&nc, bs.s2, N, F); /* rows (dX), columns (dW1) */
    cache_add(&nc, bs.absdh, N, F);
    free(st.shp2), free(st.g), free(st.sg2);
#pragma omp parallel for schedule(static)
    for (int f0 = 0; f0 < F; f0 += 256) { /* column blocks, rows in order: the reads stay contiguous */
        const int f1 = f0 + 256 < F ? f0 + 256 : F;
        double s2[256] = {0}, s1[256] = {0}, hard[256] = {0};
        for (int n = 0; n < N; n++)
            for (int f = f0; f < f1; f++) {
                const size_t k = (size_t)n * F + f;
                s2[f - f0] += bs.s[k], s1[f - f0] += bs.absdh[k], hard[f - f0] += bs.hard ? bs.hard[k] : 0;
            }
        for (int f = f0; f < f1; f++)
            b->db1[f] =
                hard[f - f0] + lam * sqrt(s2[f - f0] + sq(UA * sqrt((double)N) * s1[f - f0])) + rho(fm, in->db1[f]);
    }
    float *x2 = mapf(in->x, nd, 1, "x²"), *ax = mapf(in->x, nd, 0, "|x|");
    sum_over_n(b->dw1, bs.s2, x2, bs.absdh, ax, bs.hard, N, F, D, exact);
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < fd; k++) b->dw1[k] += rho(fm, in->dw1[k]);
    free(x2), free(ax);
    sum_over_f(b->dx, bs.s2, bs.absdh, bs.hard, in->w1, 0, NULL, N, D, F, 0, F, exact);
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < nd; k++) b->dx[k] += rho(fm, in->dx[k]);
    if (tp && tp->dxr) {
        b->dx_part = alloc_d(nd, "bound dx.partial");
        sum_over_f(b->dx_part, bs.s2, bs.absdh, bs.hard, in->w1, 0, NULL, N, D, F, tp->f0, tp->f1, exact);
        for (size_t k = 0; k < nd; k++) b->dx_part[k] += rho(fm, tp->dxr[k]);
    }
    if (tp) add_allreduce(b->dx, tp, tp->dxsum, nd, fm);
    cache_free(&nc);
    the_cache = NULL;
    if (bs.s2 != bs.s) free(bs.s2);
    free(bs.s), free(bs.absdh), free(bs.hard);
}

void tpmlp_err_form_sums(tpmlp_act act, const double *h, const double *e, const double *ba, size_t n, double *num,
                         double *den) {
    if (act == TPMLP_RELU) return;
    const tpmlp_act other = act == TPMLP_GELU ? TPMLP_GELU_TANH : TPMLP_GELU;
    enum { BLK = 1024 };
    static const float zero[BLK];
    float hb[BLK], a1[BLK], a2[BLK], g[BLK];
    for (size_t k0 = 0; k0 < n; k0 += BLK) {
        /* Δ = other(h) - act(h), from the float32 kernels: Δ is about 10⁻⁴ where it
         * matters, their errors about 10⁻⁷ of |a| */
        const int m = (int)(n - k0 < BLK ? n - k0 : BLK);
        for (int i = 0; i < m; i++) hb[i] = (float)h[k0 + i];
        bias_act_forward_f32(hb, a1, g, zero, 1, m, act);
        for (int i = 0; i < m; i++) hb[i] = (float)h[k0 + i];
        bias_act_forward_f32(hb, a2, g, zero, 1, m, other);
        for (int i = 0; i < m; i++) { /* β = Σ wΔ·e / Σ wΔ², w = 1/scale²: the least-squares share of Δ in e */
            const double scale = ba[k0 + i] / TPMLP_LAMBDA, dlt = (double)a2[i] - (double)a1[i];
            if (!(scale > 0) || !isfinite(e[k0 + i])) continue;
            *num += dlt * e[k0 + i] / (scale * scale), *den += dlt * dlt / (scale * scale);
        }
    }
}

double tpmlp_err_form_beta(double num, double den, double *noise) {
    *noise = den > 0 ? TPMLP_LAMBDA / sqrt(den) : INFINITY; /* Σ wΔ·e has scale (Σ w²Δ² scale²)^{1/2} = √den */
    return den > 0 ? num / den : 0;
}

void tpmlp_err_free(tpmlp_err_bounds *b) {
    double *all[] = {b->h, b->a, b->y, b->dx, b->dw1, b->db1, b->dw2, b->db2, b->y_part, b->dx_part};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    memset(b, 0, sizeof *b);
}
