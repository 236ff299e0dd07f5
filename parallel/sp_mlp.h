/* Sequence parallelism (Megatron-LM's): on top of the tensor-parallel split
 * of F, the rows N (batch × sequence) of X, Y, dY and dX are split too, so
 * no rank ever holds a full activation outside the MLP. The all-reduce of Y
 * becomes an all-gather before fc1 and a reduce-scatter after fc2:
 *
 *   forward:  X   = all_gather(X_r)            (rows)
 *             H_r = X·W1_rᵀ + b1_r;  A_r = act(H_r);  Z_r = A_r·W2_rᵀ  (N, D)
 *             Y_r = reduce_scatter(Z_r) + b2   (rank r gets its rows of Σ Z)
 *   backward: dY  = all_gather(dY_r)
 *             the shard backward gives dW2_r, dW1_r, db1_r, db2, partial dX
 *             dX_r = reduce_scatter(partial dX)
 * The same bytes cross the wire as with one all-reduce (an all-reduce is a
 * reduce-scatter followed by an all-gather), but activations are stored 1/p.
 * N must be a multiple of p (as Megatron requires of the sequence length). */
#ifndef TPMLP_SP_MLP_H
#define TPMLP_SP_MLP_H

#include "tp_mlp.h"

typedef struct {
    tp_shard t;                                /* the F split; t.x, t.dy hold the gathered rows */
    int n0, Nr;                                /* this rank's rows */
    void *x_rows, *dy_rows, *y_rows, *dx_rows; /* (Nr, D) each, in t.cpt's memory */
} sp_shard;

/* 0, or -1 (one line printed). */
int sp_shard_alloc(sp_shard *s, tp_compute *cpt, int N, int D, int F, int p, int rank, tpmlp_act act);
void sp_shard_free(sp_shard *s);
/* Inputs from the full tensors: this rank's rows of x and dy, its block of the weights. */
int sp_shard_from_full(sp_shard *s, const tpmlp_mlp32 *full);
/* The step: the tensor-parallel one's pieces (tp_mlp.h) between other collectives. */
int sp_forward(sp_shard *s, tpmlp_comm *c);
int sp_backward(sp_shard *s, tpmlp_comm *c);
/* Full outputs on rank 0 (full allocated there; NULL elsewhere). Collective. */
int sp_gather_outputs(sp_shard *s, tpmlp_comm *c, tpmlp_mlp32 *full);

#endif
