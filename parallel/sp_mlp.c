#include "config.h"

#include "sp_mlp.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

void sp_shard_alloc(sp_shard *s, int N, int D, int F, int p, int rank, tpmlp_act act) {
    tp_shard_alloc(&s->t, N, D, F, p, rank, act);
    s->Nr = N / p, s->n0 = rank * s->Nr;
    const size_t rd = (size_t)s->Nr * D;
    s->x_rows = tpmlp_alloc(rd, sizeof(float), "rows of x"), s->dy_rows = tpmlp_alloc(rd, sizeof(float), "rows of dy");
    s->y_rows = tpmlp_alloc(rd, sizeof(float), "rows of y"), s->dx_rows = tpmlp_alloc(rd, sizeof(float), "rows of dx");
}

void sp_shard_free(sp_shard *s) {
    tp_shard_free(&s->t);
    free(s->x_rows), free(s->dy_rows), free(s->y_rows), free(s->dx_rows);
}

void sp_shard_from_full(sp_shard *s, const float *x, const float *w1, const float *b1, const float *w2, const float *b2,
                        const float *dy) {
    tp_shard_from_full(&s->t, x, w1, b1, w2, b2, dy);
    const size_t D = (size_t)s->t.D, rd = (size_t)s->Nr * D;
    memcpy(s->x_rows, x + (size_t)s->n0 * D, sizeof(float) * rd);
    memcpy(s->dy_rows, dy + (size_t)s->n0 * D, sizeof(float) * rd);
    /* the full x and dy must come from the all-gathers, not from here */
    memset(s->t.x, 0, sizeof(float) * (size_t)s->t.N * D);
    memset(s->t.dy, 0, sizeof(float) * (size_t)s->t.N * D);
}

int sp_forward(sp_shard *s, tpmlp_comm *c) {
    tp_shard *t = &s->t;
    const size_t rd = (size_t)s->Nr * t->D;
    if (c->ops->allgather(c, s->x_rows, t->x, rd, COMM_F32) != 0) return -1;      /* X = all_gather(X_r) */
    linear_nobias_forward_f32(t->h, t->x, t->w1, t->N, t->D, t->Fr);              /* H_r = X·W1_rᵀ */
    bias_act_forward_f32(t->h, t->a, t->dact, t->b1, t->N, t->Fr, t->act);        /* += b1_r; A_r = act(H_r) */
    linear_nobias_forward_f32(t->y, t->a, t->w2, t->N, t->Fr, t->D);              /* Z_r = A_r·W2_rᵀ (partial) */
    if (c->ops->reduce_scatter(c, t->y, s->y_rows, rd, COMM_F32) != 0) return -1; /* my rows of Σ Z */
    bias_add_f32(s->y_rows, t->b2, s->Nr, t->D);                                  /* b2 once, after the sum */
    return 0;
}

int sp_backward(sp_shard *s, tpmlp_comm *c) {
    tp_shard *t = &s->t;
    const size_t rd = (size_t)s->Nr * t->D;
    if (c->ops->allgather(c, s->dy_rows, t->dy, rd, COMM_F32) != 0) return -1; /* dY = all_gather(dY_r) */
    mlp_backward_f32(t->dx, t->dw1, t->db1, t->dw2, t->db2, t->dh, t->dy, t->x, t->a, t->dact, t->w1, t->w2, t->N, t->D,
                     t->Fr);
    return c->ops->reduce_scatter(c, t->dx, s->dx_rows, rd, COMM_F32); /* my rows of Σ dX_r */
}

int sp_gather_outputs(sp_shard *s, tpmlp_comm *c, tpmlp_mlp32 *full) {
    tp_shard *t = &s->t;
    const size_t rd = (size_t)s->Nr * t->D;
    /* h, a and the weight gradients are sharded by F exactly as in TP; y and
     * dx are sharded by rows: gather those into t's full-size buffers first */
    int rc = c->ops->allgather(c, s->y_rows, t->y, rd, COMM_F32);
    rc = rc ? rc : c->ops->allgather(c, s->dx_rows, t->dx, rd, COMM_F32);
    return rc ? rc : tp_gather_outputs(t, c, full);
}
