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

void linear_backward_data_f32(float *dinp, const float *dout, const float *weight, int N, int IN, int OUT) {
    /* dinp (N,IN) = dout (N,OUT) · weight (OUT,IN) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IN, OUT, 1.0f, dout, OUT, weight, IN, 0.0f, dinp, IN);
}

void linear_backward_weight_f32(float *dweight, const float *dout, const float *inp, int N, int IN, int OUT) {
    /* dweight (OUT,IN) = doutᵀ (OUT,N) · inp (N,IN) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OUT, IN, N, 1.0f, dout, OUT, inp, IN, 0.0f, dweight, IN);
}

void mlp_forward_f32(float *h, float *a, float *dact, float *y, const float *x, const float *w1, const float *b1,
                     const float *w2, const float *b2, int N, int D, int F, tpmlp_act act) {
    linear_nobias_forward_f32(h, x, w1, N, D, F);    /* H = X·W1ᵀ        */
    bias_act_forward_f32(h, a, dact, b1, N, F, act); /* H += b1; A = act(H); dact = act'(H) */
    linear_nobias_forward_f32(y, a, w2, N, F, D);    /* Y = A·W2ᵀ        */
    bias_add_f32(y, b2, N, D);                       /* Y += b2          */
}

void mlp_backward_f32(float *dx, float *dw1, float *db1, float *dw2, float *db2, float *dh, const float *dy,
                      const float *x, const float *a, const float *dact, const float *w1, const float *w2, int N, int D,
                      int F) {
    linear_backward_data_f32(dh, dy, w2, N, F, D);   /* Y = A·W2ᵀ + b2  ->  dA (N,F) = dY·W2 */
    act_backward_bias_f32(dh, db1, dact, N, F);      /* A = act(H)  ->  dH = dA ⊙ act'(H); db1 = Σ_rows dH */
    linear_backward_data_f32(dx, dh, w1, N, D, F);   /* H = X·W1ᵀ + b1  ->  dX (N,D) = dH·W1 */
    colsum_f32(db2, dy, N, D);                       /* db2 = Σ_rows dY */
    linear_backward_weight_f32(dw2, dy, a, N, F, D); /* dW2 (D,F) = dYᵀ·A */
    linear_backward_weight_f32(dw1, dh, x, N, D, F); /* dW1 (F,D) = dHᵀ·X */
}
