/* The Megatron tensor-parallel MLP, written once against tpmlp_comm.
 *
 * F is cut into p contiguous blocks (the first F mod p ranks get one more).
 * Rank r holds rows [f0, f0+Fr) of W1 and b1 (column-parallel fc1) and the
 * same columns of W2 (row-parallel fc2); x, dy and b2 are replicated.
 *
 *   forward:  H_r = X·W1_rᵀ + b1_r;  A_r = act(H_r);  Y_r = A_r·W2_rᵀ
 *             Y = all_reduce(Y_r) + b2          (g: the one all-reduce)
 *   backward: dY arrives whole (g's backward is the identity); the plain
 *             MLP backward on the shard gives dH_r, db1_r and a partial
 *             dX_r = dH_r·W1_r, then dW2_r, db2, dW1_r;
 *             dX = all_reduce(dX_r)             (f's backward)
 *   with overlap, dX's all-reduce runs while the weight gradients are
 *   computed: they need nothing from another rank (Megatron's asynchronous
 *   tensor-parallel all-reduce). */
#ifndef TPMLP_TP_MLP_H
#define TPMLP_TP_MLP_H

#include "step.h"
#include "comm.h"
#include "mlp.h"
#include "vectors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int rank, p;
    int N, D, F; /* the full sizes */
    int f0, Fr;  /* this rank's block of F */
    tpmlp_act act;
    float *x, *w1, *b1, *w2, *b2, *dy;     /* (N,D) (Fr,D) (Fr) (D,Fr) (D) (N,D) */
    float *h, *a, *dact, *dh;              /* (N,Fr) each */
    float *y, *dx, *dw1, *db1, *dw2, *db2; /* (N,D) (N,D) (Fr,D) (Fr) (D,Fr) (D) */
    float *y_partial, *dx_partial;         /* (N,D) each, or NULL: Y_r and dX_r kept before the all-reduces */
    int overlap;                           /* 1: dX's all-reduce during the weight gradients (stages.h) */
} tp_shard;

/* Rank r's block of F over p ranks. */
void tp_slice(int F, int p, int r, int *f0, int *Fr);

void tp_shard_alloc(tp_shard *s, int N, int D, int F, int p, int rank, tpmlp_act act);
void tp_shard_free(tp_shard *s);
/* Keep Y_r and dX_r (for a per-rank check): allocates s->y_partial, s->dx_partial. */
void tp_shard_keep_partials(tp_shard *s);
/* The shard's inputs as slices of the full tensors (x, dy (N,D), w1 (F,D), b1 (F), w2 (D,F), b2 (D)). */
void tp_shard_from_full(tp_shard *s, const float *x, const float *w1, const float *b1, const float *w2, const float *b2,
                        const float *dy);
/* The shard's inputs generated alone from the vector dims (equal to the slices). */
void tp_shard_generate(tp_shard *s, const tpmlp_vec_dims *d);

int tp_forward(tp_shard *s, tpmlp_comm *c);
int tp_backward(tp_shard *s, tpmlp_comm *c);

/* Assembles the full outputs on rank 0 into full (allocated there, N D F);
 * the other ranks pass NULL. Collective. */
int tp_gather_outputs(tp_shard *s, tpmlp_comm *c, tpmlp_mlp32 *full);

#ifdef __cplusplus
}
#endif

#endif
