/* The Megatron tensor-parallel MLP, written once against tpmlp_comm (the
 * collectives) and tp_compute (the operations, on a CPU or a GPU).
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

#include "comm.h"
#include "compute.h"
#include "step.h"
#include "vectors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One rank's shard. Its tensors live where its compute backend keeps them
 * (host memory for cpu, device memory for cuda), shard-shaped: the step's
 * tensor list (step.h) with F replaced by Fr. db1 and db2 are float32, the
 * others the backend's storage type. */
#define TP_SHARD_FIELD_(id, field, name, dims, role, kind, bound, grad_of, needs, what) void *field;
typedef struct {
    int rank, p;
    int N, D, F; /* the full sizes */
    int f0, Fr;  /* this rank's block of F */
    tpmlp_act act;
    tp_compute *cpt;
    /* x (N,D) w1 (Fr,D) b1 (Fr) w2 (D,Fr) b2 (D) dy (N,D), h a (N,Fr), ...;
     * y_partial, dx_partial (N,D) each, or NULL: Y_r and dX_r kept before the all-reduces */
    TPMLP_STEP_TENSORS(TP_SHARD_FIELD_)
    int overlap; /* 1: dX's all-reduce during the weight gradients */
} tp_shard;
#undef TP_SHARD_FIELD_

/* Rank r's block of F over p ranks. */
void tp_slice(int F, int p, int r, int *f0, int *Fr);

/* 0, or -1 (one line printed, nothing left allocated). */
int tp_shard_alloc(tp_shard *s, tp_compute *cpt, int N, int D, int F, int p, int rank, tpmlp_act act);
void tp_shard_free(tp_shard *s);
/* Keep Y_r and dX_r (for a per-rank check): allocates s->y_partial, s->dx_partial. */
int tp_shard_keep_partials(tp_shard *s);
/* The shard's inputs: its slices of full's x, w1, b1, w2, b2, dy. */
int tp_shard_from_full(tp_shard *s, const tpmlp_mlp32 *full);
/* The shard's inputs generated alone from the vector dims (equal to the slices). */
int tp_shard_generate(tp_shard *s, const tpmlp_vec_dims *d);

/* The step, written once for every stage, over the communicator and the
 * shard's compute backend. 0, or -1 after one line. */
int tp_forward(tp_shard *s, tpmlp_comm *c);
int tp_backward(tp_shard *s, tpmlp_comm *c);
/* One forward and backward of job->s over job->c (a tp_step_job), as a
 * callback for the benchmarks' timers. 0, or -1. */
typedef struct {
    tp_shard *s;
    tpmlp_comm *c;
} tp_step_job;
int tp_step(void *job);

/* Their pieces without a collective, for the sequence-parallel variant
 * (sp_mlp.h), which changes only the collectives around them:
 *   forward_partial: H_r, A_r and the partial Y_r (kept if asked);
 *   backward_data:   db2, dH_r, db1_r and the partial dX_r (kept if asked);
 *   backward_weights: dW2_r, dW1_r; moving (or NULL) is a communicator
 *   whose non-blocking all-reduce runs meanwhile and is moved on between them.
 * Each ends with its results complete (compute sync). */
int tp_forward_partial(tp_shard *s);
int tp_backward_data(tp_shard *s);
int tp_backward_weights(tp_shard *s, tpmlp_comm *moving);

/* The shard's outputs on the host: mine (allocated here as a tpmlp_mlp32 of
 * N, D, Fr) gets h, a, y, dx and the gradients, and y.partial, dx.partial
 * when they were kept (NULL otherwise). */
int tp_shard_download(const tp_shard *s, tpmlp_mlp32 *mine);

/* Assembles every rank's host outputs (mine, from tp_shard_download) into
 * full on rank 0 (allocated there, N D F); the other ranks pass NULL.
 * Collective over host (a communicator of host buffers). */
int tp_gather_outputs(const tpmlp_mlp32 *mine, int F, tpmlp_comm *host, tpmlp_mlp32 *full);

#ifdef __cplusplus
}
#endif

#endif
