/* The MLP block, forward and backward, on OpenBLAS. Shapes as in mlp.h:
 * x (N,D), w1 (F,D), b1 (F), w2 (D,F), b2 (D), h and a (N,F), y (N,D). */
#include "config.h"

#include <cblas.h>

#include "mlp.h"

/* ---------------------------------------------------------------- float32 */

void linear_nobias_forward_f32(float *out, const float *inp, const float *weight, int N, int IN, int OUT) {
    /* out (N,OUT) = inp (N,IN) · weightᵀ (IN,OUT) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OUT, IN, 1.0f, inp, IN, weight, IN, 0.0f, out, OUT);
}

void mlp_forward_f32(float *h, float *a, float *dact, float *y, const float *x, const float *w1, const float *b1,
                     const float *w2, const float *b2, int N, int D, int F, tpmlp_act act) {
    linear_nobias_forward_f32(h, x, w1, N, D, F);    /* H = X·W1ᵀ        */
    bias_act_forward_f32(h, a, dact, b1, N, F, act); /* H += b1; A = act(H); dact = act'(H) */
    linear_nobias_forward_f32(y, a, w2, N, F, D);    /* Y = A·W2ᵀ        */
    bias_add_f32(y, b2, N, D);                       /* Y += b2          */
}

void mlp_backward_data_f32(float *dx, float *db1, float *dh, const float *dy, const float *dact, const float *w1,
                           const float *w2, int N, int D, int F) {
    /* Y = A·W2ᵀ + b2  ->  dA (N,F) = dY·W2 */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, F, D, 1.0f, dy, D, w2, F, 0.0f, dh, F);
    /* A = act(H)  ->  dH = dA ⊙ act'(H); H = X·W1ᵀ + b1  ->  db1 = Σ_rows dH */
    act_backward_bias_f32(dh, db1, dact, N, F);
    /* dX (N,D) = dH·W1 */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, D, F, 1.0f, dh, F, w1, D, 0.0f, dx, D);
}

void mlp_backward_weights_f32(float *dw1, float *dw2, float *db2, const float *dy, const float *x, const float *a,
                              const float *dh, int N, int D, int F, void (*between)(void *), void *arg) {
    colsum_f32(db2, dy, N, D); /* db2 = Σ_rows dY */
    /* dW2 (D,F) = dYᵀ·A */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, F, N, 1.0f, dy, D, a, F, 0.0f, dw2, F);
    if (between) between(arg);
    /* dW1 (F,D) = dHᵀ·X */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, F, D, N, 1.0f, dh, F, x, D, 0.0f, dw1, D);
}

void mlp_backward_f32(float *dx, float *dw1, float *db1, float *dw2, float *db2, float *dh, const float *dy,
                      const float *x, const float *a, const float *dact, const float *w1, const float *w2, int N, int D,
                      int F) {
    mlp_backward_data_f32(dx, db1, dh, dy, dact, w1, w2, N, D, F);
    mlp_backward_weights_f32(dw1, dw2, db2, dy, x, a, dh, N, D, F, NULL, NULL);
}
