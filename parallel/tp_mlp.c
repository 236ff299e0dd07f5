#include "config.h"

#include "tp_mlp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void tp_slice(int F, int p, int r, int *f0, int *Fr) {
    tpmlp_split_slice(TPMLP_SPLIT_BALANCED, F, p, r, f0, Fr); /* the one definition, shared with gen and check */
}

static tp_kind kind_of(tpmlp_vec_id id) { return id == V_DB1 || id == V_DB2 ? TP_F32 : TP_STORE; }

int tp_shard_alloc(tp_shard *s, tp_compute *cpt, int N, int D, int F, int p, int rank, tpmlp_act act) {
    memset(s, 0, sizeof *s);
    s->rank = rank, s->p = p, s->N = N, s->D = D, s->F = F, s->act = act, s->cpt = cpt;
    tp_slice(F, p, rank, &s->f0, &s->Fr);
    int ok = 1;
#define ALLOC_(id, field, name, shape, role, what)                                                                     \
    if (ok) ok = (s->field = cpt->ops->alloc(cpt, tpmlp_step_numel(id, N, D, s->Fr), kind_of(id), name)) != NULL;
    TPMLP_STEP_TENSORS(ALLOC_)
#undef ALLOC_
    if (!ok) tp_shard_free(s);
    return ok ? 0 : -1;
}

void tp_shard_free(tp_shard *s) {
    tp_compute *c = s->cpt;
    if (c == NULL) return;
#define FREE_(id, field, name, shape, role, what)                                                                      \
    if (s->field) c->ops->release(c, s->field);
    TPMLP_STEP_TENSORS(FREE_)
#undef FREE_
    if (s->y_partial) c->ops->release(c, s->y_partial);
    if (s->dx_partial) c->ops->release(c, s->dx_partial);
    memset(s, 0, sizeof *s);
}

int tp_shard_keep_partials(tp_shard *s) {
    const size_t nd = (size_t)s->N * s->D;
    s->y_partial = s->cpt->ops->alloc(s->cpt, nd, TP_STORE, "Y_r");
    s->dx_partial = s->cpt->ops->alloc(s->cpt, nd, TP_STORE, "dX_r");
    return s->y_partial && s->dx_partial ? 0 : -1;
}

/* The six inputs of the shard from host float32 slices: x, dy (N,D), w1 rows
 * (Fr,D), b1 (Fr), w2 columns (D,Fr), b2 (D). */
static int upload_inputs(tp_shard *s, const float *const in[V_FIRST_OUTPUT]) {
    tp_compute *c = s->cpt;
    int rc = 0;
#define UP_(id, field, name, shape, role, what)                                                                        \
    if (id < V_FIRST_OUTPUT && rc == 0)                                                                                \
        rc = c->ops->upload(c, s->field, in[id], tpmlp_step_numel(id, s->N, s->D, s->Fr), kind_of(id));
    TPMLP_STEP_TENSORS(UP_)
#undef UP_
    return rc;
}

int tp_shard_from_full(tp_shard *s, const tpmlp_mlp32 *t) {
    const int D = s->D, F = s->F, f0 = s->f0, Fr = s->Fr;
    float *w2 = tpmlp_alloc((size_t)D * Fr, sizeof *w2, "columns of w2");
    for (int d = 0; d < D; d++) /* columns f0.. of W2 */
        memcpy(w2 + (size_t)d * Fr, t->w2 + (size_t)d * F + f0, sizeof(float) * (size_t)Fr);
    const float *const in[V_FIRST_OUTPUT] = {[V_X] = t->x,        [V_W1] = t->w1 + (size_t)f0 * D, /* rows f0.. of W1 */
                                             [V_B1] = t->b1 + f0, [V_W2] = w2,
                                             [V_B2] = t->b2,      [V_DY] = t->dy};
    int rc = upload_inputs(s, in);
    free(w2);
    return rc;
}

int tp_shard_generate(tp_shard *s, const tpmlp_vec_dims *d) {
    /* the shard's six inputs on the host, then uploaded: rows f0..f1 of W1
     * and b1, the same columns of W2, x, dy and b2 whole */
    const uint64_t N = (uint64_t)s->N, D = (uint64_t)s->D, f0 = (uint64_t)s->f0, f1 = f0 + (uint64_t)s->Fr;
    const uint64_t rows[V_FIRST_OUTPUT][2] = {
        [V_X] = {0, N}, [V_W1] = {f0, f1}, [V_B1] = {0, 1}, [V_W2] = {0, D}, [V_B2] = {0, 1}, [V_DY] = {0, N}};
    const uint64_t cols[V_FIRST_OUTPUT][2] = {
        [V_X] = {0, D}, [V_W1] = {0, D}, [V_B1] = {f0, f1}, [V_W2] = {f0, f1}, [V_B2] = {0, D}, [V_DY] = {0, D}};
    float *in[V_FIRST_OUTPUT];
    for (int i = 0; i < V_FIRST_OUTPUT; i++) {
        const size_t n = tpmlp_step_numel((tpmlp_vec_id)i, s->N, s->D, s->Fr);
        in[i] = tpmlp_alloc(n, sizeof(float), tpmlp_vec_specs[i].name);
        tpmlp_vec_fill(in[i], (tpmlp_vec_id)i, d, rows[i][0], rows[i][1], cols[i][0], cols[i][1]);
    }
    int rc = upload_inputs(s, (const float *const *)in);
    for (int i = 0; i < V_FIRST_OUTPUT; i++) free(in[i]);
    return rc;
}

int tp_forward_partial(tp_shard *s) {
    tp_compute *k = s->cpt;
    const tp_compute_ops *o = k->ops;
    const int N = s->N, D = s->D, Fr = s->Fr;
    int rc;
    if (o->linear_bias_act) /* fused in the GEMM's epilogue: H_r and A_r */
        rc = o->linear_bias_act(k, s->a, s->h, s->x, s->w1, s->b1, N, D, Fr, s->act);
    else
        rc = o->linear(k, s->h, s->x, s->w1, N, D, Fr) ||               /* H_r = X·W1_rᵀ           */
             o->bias_act(k, s->h, s->a, s->dact, s->b1, N, Fr, s->act); /* += b1_r; A_r = act(H_r) */
    rc = rc || o->linear(k, s->y, s->a, s->w2, N, Fr, D);               /* Y_r = A_r·W2_rᵀ          */
    if (rc == 0 && s->y_partial) rc = o->copy(k, s->y_partial, s->y, (size_t)N * D, TP_STORE); /* a rank's check */
    rc = rc || o->sync(k); /* Y_r complete before a communicator reads it */
    return rc ? -1 : 0;
}

int tp_forward(tp_shard *s, tpmlp_comm *c) {
    /* f: X arrives replicated, nothing to do */
    int rc = tp_forward_partial(s);
    rc = rc || c->ops->allreduce(c, s->y, (size_t)s->N * s->D, s->cpt->store); /* g: Y = Σ_r Y_r */
    rc = rc || s->cpt->ops->bias_add(s->cpt, s->y, s->b2, s->N, s->D);         /* b2 once, after the sum */
    return rc ? -1 : 0;
}

int tp_backward_data(tp_shard *s) {
    tp_compute *k = s->cpt;
    const tp_compute_ops *o = k->ops;
    const int N = s->N, D = s->D, Fr = s->Fr;
    /* db2 = Σ_rows dY first: no other rank needs it, and its scratch space
     * is then in place before any collective (a GPU allocation while NCCL
     * runs would wait for it, or worse) */
    int rc = o->col_sums(k, s->db2, s->dy, N, D);
    if (rc == 0 && o->linear_dgrad_act_bwd) /* fused in the GEMM's epilogue, from H_r */
        rc = o->linear_dgrad_act_bwd(k, s->dh, s->db1, s->dy, s->w2, s->h, N, Fr, D, s->act);
    else if (rc == 0)
        rc = o->linear_dgrad(k, s->dh, s->dy, s->w2, N, Fr, D) || /* dA_r = dY·W2_r            */
             o->act_bwd(k, s->dh, s->db1, s->dact, N, Fr);        /* dH_r = dA_r ⊙ act'; db1_r */
    rc = rc || o->linear_dgrad(k, s->dx, s->dh, s->w1, N, D, Fr); /* dX_r = dH_r·W1_r          */
    if (rc == 0 && s->dx_partial) rc = o->copy(k, s->dx_partial, s->dx, (size_t)N * D, TP_STORE); /* a rank's check */
    rc = rc || o->sync(k); /* dX_r complete before a communicator reads it */
    return rc ? -1 : 0;
}

int tp_backward_weights(tp_shard *s, tpmlp_comm *moving) {
    tp_compute *k = s->cpt;
    const tp_compute_ops *o = k->ops;
    const int N = s->N, D = s->D, Fr = s->Fr;
    int rc = o->linear_wgrad(k, s->dw2, s->dy, s->a, N, Fr, D);   /* dW2_r = dYᵀ·A_r        */
    rc = rc || (moving && comm_progress(moving));                 /* move the all-reduce on */
    rc = rc || o->linear_wgrad(k, s->dw1, s->dh, s->x, N, D, Fr); /* dW1_r = dH_rᵀ·X        */
    rc = rc || o->sync(k);
    return rc ? -1 : 0;
}

int tp_backward(tp_shard *s, tpmlp_comm *c) {
    const size_t nd = (size_t)s->N * s->D;
    /* g's backward is the identity: dY arrives whole on every rank. The path
     * to dX first, then f's backward: dX = all_reduce(dX_r). With overlap the
     * all-reduce starts now and runs while the weight gradients, which need
     * no other rank, are computed; then it is waited for. Without, it ends
     * before they start. */
    int rc = tp_backward_data(s);
    if (s->overlap) {
        rc = rc || comm_iallreduce(c, s->dx, nd, s->cpt->store);
        if (rc == 0) { /* started: waited for even if the weight gradients fail (it still writes dx) */
            rc = tp_backward_weights(s, c);
            const int w = comm_wait(c);
            rc = rc || w;
        }
    } else {
        rc = rc || c->ops->allreduce(c, s->dx, nd, s->cpt->store);
        rc = rc || tp_backward_weights(s, NULL);
    }
    return rc ? -1 : 0;
}

int tp_shard_download(const tp_shard *s, tpmlp_mlp32 *mine, float *partials) {
    tp_compute *c = s->cpt;
    tpmlp_mlp32_alloc(mine, s->N, s->D, s->Fr, s->act);
    int rc = c->ops->sync(c);
#define DOWN_(id, field, name, shape, role, what)                                                                      \
    if (id >= V_FIRST_OUTPUT && id < V_COUNT && rc == 0)                                                               \
        rc = c->ops->download(c, mine->field, s->field, tpmlp_step_numel(id, s->N, s->D, s->Fr), kind_of(id));
    TPMLP_STEP_TENSORS(DOWN_)
#undef DOWN_
    const size_t nd = (size_t)s->N * s->D;
    if (rc == 0 && partials && s->y_partial) rc = c->ops->download(c, partials, s->y_partial, nd, TP_STORE);
    if (rc == 0 && partials && s->dx_partial) rc = c->ops->download(c, partials + nd, s->dx_partial, nd, TP_STORE);
    if (rc != 0) tpmlp_mlp32_free(mine);
    return rc;
}

/* Blocks of all ranks into full on rank 0: rank q's part is R rows of
 * Fr_q·unit values, which land at column f0_q·unit of full's rows of F·unit.
 * Column-sharded (R, Fr) tensors use unit 1; row-sharded (Fr, C) ones are
 * one row (R = 1) with unit C. One all-gather of blocks padded to the
 * largest Fr. */
static int gather_blocks(tpmlp_comm *c, int F, int Fr, const float *part, float *full, int R, int unit) {
    int fmax, f0, fr;
    tp_slice(F, c->size, 0, &f0, &fmax);
    const size_t width = (size_t)fmax * unit, blk = (size_t)R * width, row = (size_t)F * unit;
    const size_t mine = (size_t)Fr * unit;
    float *send = tpmlp_alloc(blk, sizeof *send, "gather send"),
          *recv = tpmlp_alloc(blk * c->size, sizeof *recv, "gather");
    memset(send, 0, blk * sizeof *send);
    for (int r = 0; r < R; r++) memcpy(send + r * width, part + r * mine, sizeof(float) * mine);
    int rc = c->ops->allgather(c, send, recv, blk, COMM_F32);
    if (rc == 0 && full)
        for (int q = 0; q < c->size; q++) {
            tp_slice(F, c->size, q, &f0, &fr);
            for (int r = 0; r < R; r++)
                memcpy(full + r * row + (size_t)f0 * unit, recv + q * blk + r * width, sizeof(float) * fr * unit);
        }
    free(send), free(recv);
    return rc;
}

int tp_gather_outputs(const tpmlp_mlp32 *m, int F, tpmlp_comm *c, tpmlp_mlp32 *full) {
    const int N = m->N, D = m->D, Fr = m->F;
    int rc = gather_blocks(c, F, Fr, m->h, full ? full->h : NULL, N, 1); /* (N, Fr) column blocks */
    rc = rc ? rc : gather_blocks(c, F, Fr, m->a, full ? full->a : NULL, N, 1);
    rc = rc ? rc : gather_blocks(c, F, Fr, m->dw2, full ? full->dw2 : NULL, D, 1); /* (D, Fr) */
    rc = rc ? rc : gather_blocks(c, F, Fr, m->dw1, full ? full->dw1 : NULL, 1, D); /* (Fr, D) row blocks */
    rc = rc ? rc : gather_blocks(c, F, Fr, m->db1, full ? full->db1 : NULL, 1, 1);
    if (rc == 0 && full) { /* y, dx, db2 are replicated: rank 0's copy */
        memcpy(full->y, m->y, sizeof(float) * (size_t)N * D);
        memcpy(full->dx, m->dx, sizeof(float) * (size_t)N * D);
        memcpy(full->db2, m->db2, sizeof(float) * (size_t)D);
    }
    return rc;
}
