/* Per-element error bounds for a float32 (or lower-precision) MLP against the
 * float64 reference, from rounding-error analysis.
 *
 * A dot product of length K computed in precision u has error at most
 * γ(K)·Σ|terms|, with γ(K) = K·u/(1-K·u) in the worst case for any summation
 * order (Higham, Accuracy and Stability, §3.1), and about λ·√K·u·Σ|terms| with
 * high probability when the roundings behave as independent random variables
 * (Higham & Mary 2019). Errors carried in from earlier steps are added to
 * first order: y inherits a's error through |W2|, and so on (see bound.c). */
#ifndef TPMLP_BOUND_H
#define TPMLP_BOUND_H

#include "mlp.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Every tensor of one MLP step, float64, shapes as in mlp.h. */
typedef struct {
    int N, D, F;
    tpmlp_act act;
    double *x, *w1, *b1, *w2, *b2, *dy;                         /* inputs */
    double *h, *a, *dact, *y, *dh, *dx, *dw1, *db1, *dw2, *db2; /* outputs; dact = act'(h), dh = dL/dh */
} tpmlp_mlp64;

typedef struct {
    double u;        /* unit round-off of the arithmetic checked (2^-24 for fp32) */
    double lambda;   /* 0: worst-case γ(K); > 0: probabilistic λ·√K·u */
    double act_ulps; /* error of one activation (or derivative) evaluation, in u, on top of its conditioning */
} tpmlp_err_model;

/* γ(K) under the model. */
double tpmlp_gamma(const tpmlp_err_model *m, double K);

/* The same, float32: what an implementation under test produces. */
typedef struct {
    int N, D, F;
    tpmlp_act act;
    float *x, *w1, *b1, *w2, *b2, *dy;
    float *h, *a, *dact, *y, *dh, *dx, *dw1, *db1, *dw2, *db2;
} tpmlp_mlp32;

void tpmlp_mlp32_alloc(tpmlp_mlp32 *t, int N, int D, int F, tpmlp_act act);
void tpmlp_mlp32_free(tpmlp_mlp32 *t);
/* Inputs from seed: x, dy uniform in [-1,1); weights and biases uniform in
 * ±1/√fan_in (nn.Linear's init scale). Deterministic on every machine. */
void tpmlp_mlp32_random_inputs(tpmlp_mlp32 *t, unsigned long long seed);
/* Runs the float32 reference forward and backward, filling t's outputs. */
void tpmlp_mlp32_run(tpmlp_mlp32 *t);
/* Copies t32's inputs (exactly) into t64's. */
void tpmlp_mlp64_inputs_from32(tpmlp_mlp64 *t64, const tpmlp_mlp32 *t32);

/* λ for the probabilistic bound. Higham & Mary (2019): a length-K dot product
 * exceeds λ·√K·u·Σ|terms| with probability at most 2K·exp(-λ²/2) under
 * independent roundings; λ = 10 makes that 2K·2e-22, negligible even over
 * 10^9 elements. */
#define TPMLP_LAMBDA 10.0

/* The eight outputs, in one order with their vector names, for tables and checks. */
#define TPMLP_NUM_OUTPUTS 8
typedef struct {
    const char *name;
    const float *got;
    const double *ref, *bound; /* bound NULL when not asked for */
    size_t n;
} tpmlp_output_view;
void tpmlp_output_views(tpmlp_output_view v[TPMLP_NUM_OUTPUTS], const tpmlp_mlp32 *got, const tpmlp_mlp64 *ref,
                        const tpmlp_mlp64 *bound);

/* max over k of |got_k - ref_k| / bound_k (the share of the bound used);
 * INFINITY if any got_k is NaN or Inf. *worst gets the index of the max. */
double tpmlp_budget_used(const float *got, const double *ref, const double *bound, size_t n, size_t *worst,
                         double *max_abs_err);

/* Allocates all buffers of a tpmlp_mlp64 (zeroed); frees them. */
void tpmlp_mlp64_alloc(tpmlp_mlp64 *t, int N, int D, int F, tpmlp_act act);
void tpmlp_mlp64_free(tpmlp_mlp64 *t);

/* Runs the float64 reference forward and backward on t's inputs, filling its outputs. */
void tpmlp_mlp64_run(tpmlp_mlp64 *t);

/* bound's outputs (h, a, y, dh, dx, dw1, db1, dw2, db2) receive the per-element
 * bounds for an implementation computing in precision m->u, given the
 * reference ref (inputs and outputs filled). bound must be allocated with the
 * same sizes; its inputs are used as scratch. */
void tpmlp_mlp64_bounds(tpmlp_mlp64 *bound, const tpmlp_mlp64 *ref, const tpmlp_err_model *m);

#ifdef __cplusplus
}
#endif

#endif
