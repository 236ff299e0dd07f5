/* Per-element bounds of one MLP step from the one error model (errmodel.h),
 * and the share of them an output uses: for the demo and the tests. */
#ifndef TPMLP_BOUND_H
#define TPMLP_BOUND_H

#include <math.h>

#include "errmodel.h"
#include "step.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The eight outputs, in one order with their vector names, for tables and checks. */
#define TPMLP_NUM_OUTPUTS (V_COUNT - V_FIRST_OUTPUT)
typedef struct {
    const char *name;
    const float *got;
    const double *ref, *bound; /* bound NULL when not asked for */
    size_t n;
} tpmlp_output_view;
void tpmlp_output_views(tpmlp_output_view v[TPMLP_NUM_OUTPUTS], const tpmlp_mlp32 *got, const tpmlp_mlp64 *ref,
                        const tpmlp_mlp64 *bound);

/* The one comparison of an element with its reference and bound, for check,
 * the demo and the tests: returns the share |got - ref| / bound of its bound
 * that it uses, *e = got - ref, *ae = |e|; NaN is taken as INFINITY (it never
 * passes: got NaN or Inf, or a bound of 0, which the error model never gives:
 * every bound has the format's floor). */
static inline double tpmlp_share(double got, double ref, double bound, double *e, double *ae) {
    *e = got - ref;
    const double a = fabs(*e), q = a / bound;
    *ae = a == a ? a : (double)INFINITY;
    return q == q ? q : (double)INFINITY;
}

/* max over k of tpmlp_share (the share of the bound used; INFINITY if any
 * got_k is NaN or Inf). *worst gets the index of the first element of the
 * max, *max_abs_err the largest |got_k - ref_k|. */
double tpmlp_budget_used(const float *got, const double *ref, const double *bound, size_t n, size_t *worst,
                         double *max_abs_err);

/* bound's eight outputs (h, a, y, dx, dw1, db1, dw2, db2) receive the
 * per-element bounds of the one error model (errmodel.h) for arithmetic fmt,
 * given the reference ref (inputs and outputs filled). */
void tpmlp_mlp64_bounds(tpmlp_mlp64 *bound, const tpmlp_mlp64 *ref, const tpmlp_format *fmt);

#ifdef __cplusplus
}
#endif

#endif
