#include "config.h"

#include "tp_mlp.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

void tp_slice(int F, int p, int r, int *f0, int *Fr) {
    tpmlp_split_slice(TPMLP_SPLIT_BALANCED, F, p, r, f0, Fr); /* the one definition, shared with gen and check */
}

void tp_shard_alloc(tp_shard *s, int N, int D, int F, int p, int rank, tpmlp_act act) {
    memset(s, 0, sizeof *s);
    s->rank = rank, s->p = p, s->N = N, s->D = D, s->F = F, s->act = act;
    tp_slice(F, p, rank, &s->f0, &s->Fr);
    const size_t nd = (size_t)N * D, nr = (size_t)N * s->Fr, rd = (size_t)s->Fr * D;
    s->x = tpmlp_alloc(nd, sizeof(float), "shard x"), s->dy = tpmlp_alloc(nd, sizeof(float), "shard dy");
    s->w1 = tpmlp_alloc(rd, sizeof(float), "shard w1"), s->b1 = tpmlp_alloc((size_t)s->Fr, sizeof(float), "shard b1");
    s->w2 = tpmlp_alloc(rd, sizeof(float), "shard w2"), s->b2 = tpmlp_alloc((size_t)D, sizeof(float), "shard b2");
    s->h = tpmlp_alloc(nr, sizeof(float), "shard h"), s->a = tpmlp_alloc(nr, sizeof(float), "shard a");
    s->dact = tpmlp_alloc(nr, sizeof(float), "shard act'"), s->dh = tpmlp_alloc(nr, sizeof(float), "shard dh");
    s->y = tpmlp_alloc(nd, sizeof(float), "shard y"), s->dx = tpmlp_alloc(nd, sizeof(float), "shard dx");
    s->dw1 = tpmlp_alloc(rd, sizeof(float), "shard dw1"),
    s->db1 = tpmlp_alloc((size_t)s->Fr, sizeof(float), "shard db1");
    s->dw2 = tpmlp_alloc(rd, sizeof(float), "shard dw2"), s->db2 = tpmlp_alloc((size_t)D, sizeof(float), "shard db2");
}

void tp_shard_free(tp_shard *s) {
    float *all[] = {s->x,  s->w1, s->b1, s->w2,  s->b2,  s->dy,  s->h,         s->a,          s->dact,
                    s->dh, s->y,  s->dx, s->dw1, s->db1, s->dw2, s->y_partial, s->dx_partial, s->db2};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    memset(s, 0, sizeof *s);
}

void tp_shard_keep_partials(tp_shard *s) {
    s->y_partial = tpmlp_alloc((size_t)s->N * s->D, sizeof(float), "Y_r");
    s->dx_partial = tpmlp_alloc((size_t)s->N * s->D, sizeof(float), "dX_r");
}

void tp_shard_from_full(tp_shard *s, const float *x, const float *w1, const float *b1, const float *w2, const float *b2,
                        const float *dy) {
    const int N = s->N, D = s->D, F = s->F, f0 = s->f0, Fr = s->Fr;
    memcpy(s->x, x, sizeof(float) * (size_t)N * D);
    memcpy(s->dy, dy, sizeof(float) * (size_t)N * D);
    memcpy(s->b2, b2, sizeof(float) * (size_t)D);
    memcpy(s->w1, w1 + (size_t)f0 * D, sizeof(float) * (size_t)Fr * D); /* rows f0.. of W1 */
    memcpy(s->b1, b1 + f0, sizeof(float) * (size_t)Fr);
    for (int d = 0; d < D; d++) /* columns f0.. of W2 */
        memcpy(s->w2 + (size_t)d * Fr, w2 + (size_t)d * F + f0, sizeof(float) * (size_t)Fr);
}

void tp_shard_generate(tp_shard *s, const tpmlp_vec_dims *d) {
    const uint64_t N = (uint64_t)s->N, D = (uint64_t)s->D, f0 = (uint64_t)s->f0, f1 = f0 + (uint64_t)s->Fr;
    tpmlp_vec_fill(s->x, V_X, d, 0, N, 0, D);
    tpmlp_vec_fill(s->dy, V_DY, d, 0, N, 0, D);
    tpmlp_vec_fill(s->b2, V_B2, d, 0, 1, 0, D);
    tpmlp_vec_fill(s->w1, V_W1, d, f0, f1, 0, D);
    tpmlp_vec_fill(s->b1, V_B1, d, 0, 1, f0, f1);
    tpmlp_vec_fill(s->w2, V_W2, d, 0, D, f0, f1);
}

int tp_forward(tp_shard *s, tpmlp_comm *c) {
    /* f: X arrives replicated, nothing to do */
    linear_nobias_forward_f32(s->h, s->x, s->w1, s->N, s->D, s->Fr);                   /* H_r = X·W1_rᵀ        */
    bias_act_forward_f32(s->h, s->a, s->dact, s->b1, s->N, s->Fr, s->act);             /* += b1_r; A_r = act(H_r) */
    linear_nobias_forward_f32(s->y, s->a, s->w2, s->N, s->Fr, s->D);                   /* Y_r = A_r·W2_rᵀ      */
    if (s->y_partial) memcpy(s->y_partial, s->y, sizeof(float) * (size_t)s->N * s->D); /* kept: a rank's check */
    if (c->ops->allreduce(c, s->y, (size_t)s->N * s->D, COMM_F32) != 0) return -1;     /* g: the sum */
    bias_add_f32(s->y, s->b2, s->N, s->D);                                             /* b2 once, after the sum */
    return 0;
}

static void move_on(void *c) { comm_progress(c); } /* a failure has ended the job already */

int tp_backward(tp_shard *s, tpmlp_comm *c) {
    const size_t nd = (size_t)s->N * s->D;
    /* g's backward is the identity: dY arrives whole on every rank. The path
     * to dX first: dA_r = dY·W2_r, dH_r = dA_r ⊙ act'(H_r), db1_r, and the
     * partial dX_r = dH_r·W1_r, which f's backward sums over the ranks. */
    mlp_backward_data_f32(s->dx, s->db1, s->dh, s->dy, s->dact, s->w1, s->w2, s->N, s->D, s->Fr);
    if (s->dx_partial) memcpy(s->dx_partial, s->dx, sizeof(float) * nd); /* kept: a rank's check */
    if (!s->overlap) { /* dX = all_reduce(dX_r), then the weight gradients */
        if (c->ops->allreduce(c, s->dx, nd, COMM_F32) != 0) return -1;
        mlp_backward_weights_f32(s->dw1, s->dw2, s->db2, s->dy, s->x, s->a, s->dh, s->N, s->D, s->Fr, NULL, NULL);
        return 0;
    }
    /* overlapped: dX's all-reduce starts now and runs while dW2_r, db2 and
     * dW1_r, which need no other rank, are computed; then it is waited for */
    if (comm_iallreduce(c, s->dx, nd, COMM_F32) != 0) return -1;
    mlp_backward_weights_f32(s->dw1, s->dw2, s->db2, s->dy, s->x, s->a, s->dh, s->N, s->D, s->Fr, move_on, c);
    return comm_wait(c);
}

/* Blocks of all ranks into full on rank 0: rank q's part is R rows of
 * Fr_q·unit values, which land at column f0_q·unit of full's rows of F·unit.
 * Column-sharded (R, Fr) tensors use unit 1; row-sharded (Fr, C) ones are
 * one row (R = 1) with unit C. One all-gather of blocks padded to the
 * largest Fr. */
static int gather_blocks(tpmlp_comm *c, const tp_shard *s, const float *part, float *full, int R, int unit) {
    int fmax, f0, fr;
    tp_slice(s->F, s->p, 0, &f0, &fmax);
    const size_t width = (size_t)fmax * unit, blk = (size_t)R * width, row = (size_t)s->F * unit;
    const size_t mine = (size_t)s->Fr * unit;
    float *send = tpmlp_alloc(blk, sizeof *send, "gather send"),
          *recv = tpmlp_alloc(blk * s->p, sizeof *recv, "gather");
    memset(send, 0, blk * sizeof *send);
    for (int r = 0; r < R; r++) memcpy(send + r * width, part + r * mine, sizeof(float) * mine);
    int rc = c->ops->allgather(c, send, recv, blk, COMM_F32);
    if (rc == 0 && full)
        for (int q = 0; q < s->p; q++) {
            tp_slice(s->F, s->p, q, &f0, &fr);
            for (int r = 0; r < R; r++)
                memcpy(full + r * row + (size_t)f0 * unit, recv + q * blk + r * width, sizeof(float) * fr * unit);
        }
    free(send), free(recv);
    return rc;
}

int tp_gather_outputs(tp_shard *s, tpmlp_comm *c, tpmlp_mlp32 *full) {
    int rc = gather_blocks(c, s, s->h, full ? full->h : NULL, s->N, 1); /* (N, Fr) column blocks */
    rc = rc ? rc : gather_blocks(c, s, s->a, full ? full->a : NULL, s->N, 1);
    rc = rc ? rc : gather_blocks(c, s, s->dw2, full ? full->dw2 : NULL, s->D, 1); /* (D, Fr) */
    rc = rc ? rc : gather_blocks(c, s, s->dw1, full ? full->dw1 : NULL, 1, s->D); /* (Fr, D) row blocks */
    rc = rc ? rc : gather_blocks(c, s, s->db1, full ? full->db1 : NULL, 1, 1);
    if (rc == 0 && full) { /* y, dx, db2 are replicated: rank 0's copy */
        memcpy(full->y, s->y, sizeof(float) * (size_t)s->N * s->D);
        memcpy(full->dx, s->dx, sizeof(float) * (size_t)s->N * s->D);
        memcpy(full->db2, s->db2, sizeof(float) * (size_t)s->D);
    }
    return rc;
}
