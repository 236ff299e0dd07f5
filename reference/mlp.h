/* tpmlp reference MLP: Y = act(X·W1ᵀ + b1)·W2ᵀ + b2 and its gradients.
 *
 * Layout: row-major, contiguous; weights in torch.nn.Linear layout
 * (out_features, in_features). N = rows (batch × sequence), D = hidden size,
 * F = FFN size. Argument order follows llm.c: outputs, then inputs, then sizes.
 *
 * float32: OpenBLAS sgemm + vectorised, OpenMP-threaded elementwise passes
 * (our own erf/exp, see act.h). The float64 oracle it is tested against is
 * the vector files' fixed-order reference (oracle.h: tpmlp_oracle_step).
 * The building blocks are public so that the tensor-parallel stages call them
 * on their shards instead of writing them again. */
#ifndef TPMLP_MLP_H
#define TPMLP_MLP_H

#ifdef __cplusplus
extern "C" { /* the CUDA host code (C++) links against these */
#endif

#include <stddef.h>

typedef enum { TPMLP_GELU = 0, TPMLP_GELU_TANH = 1, TPMLP_RELU = 2, TPMLP_SILU = 3 } tpmlp_act;
#define TPMLP_NUM_ACTS 4
/* The names, for messages: "gelu, gelu_tanh, relu or silu". */
#define TPMLP_ACT_NAMES "gelu, gelu_tanh, relu or silu"

/* "gelu", "gelu_tanh", "relu", "silu"; returns 0 on success, -1 for an unknown name. */
int tpmlp_act_parse(const char *name, tpmlp_act *out);
const char *tpmlp_act_name(tpmlp_act act);

/* ---- scalar activations (for tests and documentation; the row kernels use
 * the same inline code from act.h) ---- */
float tpmlp_act_f32(tpmlp_act act, float x);
float tpmlp_act_grad_f32(tpmlp_act act, float x);
double tpmlp_act_f64(tpmlp_act act, double x);
double tpmlp_act_grad_f64(tpmlp_act act, double x);

/* ---- building blocks, float32 ---- */
/* out = inp·weightᵀ            out (N,OUT), inp (N,IN), weight (OUT,IN) */
void linear_nobias_forward_f32(float *out, const float *inp, const float *weight, int N, int IN, int OUT);
/* its gradients: dinp = dout·weight;  dweight = doutᵀ·inp   dinp (N,IN), dout (N,OUT), dweight (OUT,IN) */
void linear_backward_data_f32(float *dinp, const float *dout, const float *weight, int N, int IN, int OUT);
void linear_backward_weight_f32(float *dweight, const float *dout, const float *inp, int N, int IN, int OUT);
/* h = h + b; a = act(h); dact = act'(h), one pass.  h (N,F) in/out, a (N,F),
 * dact (N,F) or NULL (inference: not saved), b (F). act'(h) is saved for the
 * backward, as autograd saves tensors: computing it here shares the erfc/exp
 * work with act(h) instead of repeating it in the backward. */
void bias_act_forward_f32(float *h, float *a, float *dact, const float *b, int N, int F, tpmlp_act act);
/* dh = dh ⊙ dact; db = Σ_rows dh, one pass.   dh (N,F) in: dA, out: dH; db (F); dact (N,F) */
void act_backward_bias_f32(float *dh, float *db, const float *dact, int N, int F);
/* y = y + b (every row)         y (N,D), b (D) */
void bias_add_f32(float *y, const float *b, int N, int D);
/* db = Σ_rows dy                db (D), dy (N,D) */
void colsum_f32(float *db, const float *dy, int N, int D);

/* ---- the block, float32 ---- */
void mlp_forward_f32(float *h, float *a, float *dact, float *y, /* (N,F) (N,F) (N,F) or NULL (N,D) */
                     const float *x,                            /* (N,D) */
                     const float *w1, const float *b1,          /* (F,D) (F) */
                     const float *w2, const float *b2,          /* (D,F) (D) */
                     int N, int D, int F, tpmlp_act act);
/* The backward, in the order a tensor-parallel rank needs it: first the path
 * to dX (dA = dY·W2, dH = dA ⊙ act'(H) with db1, dX = dH·W1), whose
 * all-reduce can then run while the weight gradients (db2, dW2 = dYᵀ·A,
 * dW1 = dHᵀ·X), which need nothing from another rank, are computed.
 * dh receives dL/dH (N,F); a and dact are the forward's outputs. */
void mlp_backward_f32(float *dx, float *dw1, float *db1, float *dw2, float *db2, /* (N,D) (F,D) (F) (D,F) (D) */
                      float *dh,                                                 /* (N,F) */
                      const float *dy, const float *x,                           /* (N,D) (N,D) */
                      const float *a, const float *dact,                         /* (N,F) (N,F) */
                      const float *w1, const float *w2,                          /* (F,D) (D,F) */
                      int N, int D, int F);

#ifdef __cplusplus
}
#endif

#endif
