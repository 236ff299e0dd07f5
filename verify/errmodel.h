/* The one error model: per-element bounds on how far a correct
 * implementation of the MLP block, computing in a given arithmetic, can be
 * from the exact (float64) result on the same float32 inputs. `tpmlp check`,
 * the demo and the tests all use it. Derivation: docs/vectors.md.
 *
 * Arithmetic (tpmlp_format):
 *   fp32        products and sums in fp32, results stored in fp32;
 *   tf32, bf16, fp16: as tensor-core GEMMs compute: every GEMM operand
 *               rounded to the format, products and sums in fp32, every
 *               result rounded to the format (for tf32 that last rounding
 *               is a conservative assumption: most tf32 GEMMs store fp32).
 *   Activations are evaluated in fp32 (any of the erf, erfc, Φ, tanh or
 *   polynomial forms) and stored in the format.
 *
 * Every error is first order in the roundings, and each rounding error is an
 * independent, mean-zero variable, uniform on [-½ulp, ½ulp] (so of
 * sub-Gaussian scale at most u·|value|/√3). A linear combination Σ c_i δ_i is
 * then sub-Gaussian with scale σ = (Σ c_i² σ_i²)^{1/2} (Hoeffding; for the
 * running sums of a dot product, Azuma), so it exceeds λ·σ with probability
 * at most 2·exp(-λ²/2). Each element's bound is
 *     hard + λ·σ + (its own last rounding),
 * where "hard" holds what is not a mean-zero rounding, in full: the
 * second-order term of the activation and relu kink crossings. */
#ifndef TPMLP_ERRMODEL_H
#define TPMLP_ERRMODEL_H

#include "mlp.h"
#include "step.h"

#ifdef __cplusplus
extern "C" {
#endif

/* λ: each element fails a correct implementation with probability at most
 * 2·exp(-λ²/2) = 3.9·10⁻²², so at most 3.9·10⁻¹⁴ over the 10⁸ elements of the
 * largest files. */
#define TPMLP_LAMBDA 10.0
/* The activation's evaluation error, in fp32 unit round-offs (2⁻²⁴) of the
 * terms of its formula: 4 to 8 ulps (PyTorch's vectorised erf is about
 * 2.5 ulp off; libm's below 1). */
#define TPMLP_ACT_ULPS 8.0

typedef struct {
    const char *name; /* fp32, tf32, bf16, fp16 */
    double u;         /* unit round-off of stored results */
    double u_in;      /* unit round-off of GEMM operands: 0 for fp32 (nothing rounded) */
    double tiny;      /* half the spacing of the format's subnormals: the absolute floor of a rounding */
} tpmlp_format;

/* The format of a --dtype name; NULL if unknown. */
const tpmlp_format *tpmlp_format_find(const char *name);

/* The inputs of the bound: the float32 inputs and the float64 reference
 * h and a (everything else is derived). */
typedef struct {
    int N, D, F;
    tpmlp_act act;
    const float *x, *w1, *b1, *w2, *b2, *dy;      /* (N,D) (F,D) (F) (D,F) (D) (N,D) */
    const double *h, *a;                          /* (N,F) (N,F) */
    const double *y, *dx, *dw1, *db1, *dw2, *db2; /* the reference outputs: their own last rounding */
} tpmlp_err_inputs;

/* The inputs of the bound from the tensors of a vector file by the table's
 * ids: t[id] float32 for the inputs, float64 for the outputs. */
tpmlp_err_inputs tpmlp_err_inputs_of(int N, int D, int F, tpmlp_act act, const void *const t[V_COUNT]);

/* For outputs of a tensor-parallel run over p ranks: ysum/dxsum (N,D), Σ_r |Y_r|
 * and Σ_r |dX_r| over all ranks, for the all-reduce's roundings in y and dx.
 * For one rank's check also the F-columns [f0, f1) of the rank and yr/dxr
 * (N,D), its own partials (reference values); NULL for whole outputs. */
typedef struct {
    int p, f0, f1;
    const double *ysum, *dxsum, *yr, *dxr;
} tpmlp_err_tp;

/* Per-element bounds, full shapes (as the vector file's tensors), indexed
 * by the step's table (step.h): of[id] for every output, and for the partial
 * sums (N,D) only with a tp argument that names a rank; NULL elsewhere.
 * Where a row function receives the bounds, only the ARRAY rows (db1, db2)
 * are arrays; the ROWS rows are NULL. */
typedef struct {
    double *of[V_ALL];
} tpmlp_err_bounds;

/* Receives the bounds of the table's ROWS tensors row by row, as they are
 * found, instead of arrays: bound, row r of tensor which (the tensor seen as
 * a matrix, tpmlp_step_block: h, a (N,F); y, dx (N,D); dW1 (F,D); dW2 (D,F);
 * y.partial, dx.partial (N,D)); with a's rows also a32 (F), the asked
 * activation of h rounded to float32 (the form test's; NULL otherwise).
 * Called from the threads of an OpenMP team at once, each thread's rows of
 * a tensor in increasing order; thread is omp_get_thread_num(), below
 * omp_get_max_threads() at the call of tpmlp_err_bounds_compute. */
typedef void (*tpmlp_err_row_fn)(void *ctx, int thread, tpmlp_vec_id which, int r, const double *bound,
                                 const float *a32);

/* Computes every bound. exact: 1 computes the random-walk sums Σ c²·σ²
 * exactly (float32 GEMMs of squares), 0 bounds them by Cauchy–Schwarz
 * (no GEMM: what keeps `check` fast at fp32, where these terms are small);
 * a format that rounds the operands (u_in > 0) is always exact. row: NULL,
 * or where the bounds go instead of the arrays of b (with ctx).
 * Allocates the arrays; free with tpmlp_err_free. */
void tpmlp_err_bounds_compute(tpmlp_err_bounds *b, const tpmlp_err_inputs *in, const tpmlp_format *fmt,
                              const tpmlp_err_tp *tp, int exact, tpmlp_err_row_fn row, void *ctx);
void tpmlp_err_free(tpmlp_err_bounds *b);

/* The form test: how much of the difference Δ between the asked GELU form
 * and the other one (erf vs tanh) the error e = theirs - reference in `a`
 * carries. tpmlp_err_form_sums adds, for n elements with reference h and
 * bounds ba (each element's error taken at scale ba/λ), their terms to *num
 * and *den (relu: nothing); a1: the asked form of h rounded to float32 (the
 * row function's a32), or NULL to compute it here; tpmlp_err_form_beta turns the totals into beta
 * (≈ 0 for a correct implementation, ≈ 1 for the other form) and *noise,
 * the λ-level bound on |beta| for a correct one (INFINITY if den is 0). */
void tpmlp_err_form_sums(tpmlp_act act, const double *h, const float *a1, const double *e, const double *ba, size_t n,
                         double *num, double *den);
double tpmlp_err_form_beta(double num, double den, double *noise);
/* The form test runs for the two GELUs only (relu and silu have no other form to take for them). */
int tpmlp_err_has_form_test(tpmlp_act act);

#ifdef __cplusplus
}
#endif

#endif
