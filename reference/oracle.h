/* The float64 oracle of tpmlp: the MLP step in a fixed summation order, so
 * its bytes are the same on every machine (the vector files, the demo and the
 * tests all compare against it). */
#ifndef TPMLP_ORACLE_H
#define TPMLP_ORACLE_H

#include <stddef.h>

#include "mlp.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The float64 reference: the one oracle of tpmlp (the vector files, the demo
 * and the tests). tpmlp's own fixed summation order (each sum in increasing
 * index order from 0.0, bias added last) and own erfc/exp, so the bytes do not
 * depend on BLAS, libm, the CPU or the thread count. N = B·T rows. The
 * forward alone (h, a, y) is what finite differences differentiate. */
void tpmlp_oracle_step(double *h, double *a, double *y, double *dx, double *dw1, double *db1, double *dw2, double *db2,
                       const double *x, const double *w1, const double *b1, const double *w2, const double *b2,
                       const double *dy, int N, int D, int F, tpmlp_act act);
void tpmlp_oracle_forward(double *h, double *a, double *y, const double *x, const double *w1, const double *b1,
                          const double *w2, const double *b2, int N, int D, int F, tpmlp_act act);
/* A float32 tensor as float64 (exact); free() it. */
double *tpmlp_widen(const float *v, size_t n, const char *what);

/* Deterministic float64 activations (no libm transcendental calls). */
double tpmlp_det_act(tpmlp_act act, double x);
double tpmlp_det_act_grad(tpmlp_act act, double x);

/* The partial sums of the columns [f0, f1) of F, in the reference's fixed
 * order: yp (N,D) = A[:, f0:f1]·W2[:, f0:f1]ᵀ and dxp (N,D) = dH[:, f0:f1]·W1[f0:f1, :],
 * from the inputs and the reference h and a. */
void tpmlp_oracle_partial_sums(double *yp, double *dxp, const double *dy, const double *w1, const double *w2,
                               const double *h, const double *a, int N, int D, int F, int f0, int f1, tpmlp_act act);

#ifdef __cplusplus
}
#endif

#endif
