/* One MLP step's tensors in float32 and float64, for the demo and the tests:
 * allocation, the reference inputs, running both precisions, and their
 * per-element bounds from the one error model (errmodel.h). */
#ifndef TPMLP_BOUND_H
#define TPMLP_BOUND_H

#include "errmodel.h"
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

/* The same, float32: what an implementation under test produces. */
typedef struct {
    int N, D, F;
    tpmlp_act act;
    float *x, *w1, *b1, *w2, *b2, *dy;
    float *h, *a, *dact, *y, *dh, *dx, *dw1, *db1, *dw2, *db2;
} tpmlp_mlp32;

void tpmlp_mlp32_alloc(tpmlp_mlp32 *t, int N, int D, int F, tpmlp_act act);
void tpmlp_mlp32_free(tpmlp_mlp32 *t);
/* Inputs from seed, by the vector files' generator (vectors.h: B = 1, T = N). */
void tpmlp_mlp32_random_inputs(tpmlp_mlp32 *t, unsigned long long seed);
/* Runs the float32 reference forward and backward, filling t's outputs. */
void tpmlp_mlp32_run(tpmlp_mlp32 *t);
/* Copies t32's inputs (exactly) into t64's. */
void tpmlp_mlp64_inputs_from32(tpmlp_mlp64 *t64, const tpmlp_mlp32 *t32);

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

/* bound's eight outputs (h, a, y, dx, dw1, db1, dw2, db2) receive the
 * per-element bounds of the one error model (errmodel.h) for arithmetic fmt,
 * given the reference ref (inputs and outputs filled). */
void tpmlp_mlp64_bounds(tpmlp_mlp64 *bound, const tpmlp_mlp64 *ref, const tpmlp_format *fmt);

#ifdef __cplusplus
}
#endif

#endif
