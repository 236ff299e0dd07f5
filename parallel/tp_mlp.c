#include "config.h"

#include "tp_mlp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void tp_slice(int F, int p, int r, int *f0, int *Fr) {
    tpmlp_split_slice(TPMLP_SPLIT_BALANCED, F, p, r, f0, Fr); /* the one definition, shared with gen and check */
}

int tp_shard_alloc(tp_shard *s, tp_compute *cpt, int N, int D, int F, int p, int rank, tpmlp_act act) {
    memset(s, 0, sizeof *s);
    s->rank = rank, s->p = p, s->N = N, s->D = D, s->F = F, s->act = act, s->cpt = cpt;
    tp_slice(F, p, rank, &s->f0, &s->Fr);
    int ok = 1;
#define ALLOC_(id, field, name, dims, role, kind, bound, grad_of, needs, what)                                                \
    if (ok && TPMLP_ROLE_##role != TPMLP_ROLE_PART)                                                                    \
        ok = (s->field = cpt->ops->alloc(cpt, tpmlp_step_numel(id, N, D, s->Fr), TPMLP_##kind, name)) != NULL;
    TPMLP_STEP_TENSORS(ALLOC_)
#undef ALLOC_
    if (!ok) tp_shard_free(s);
    return ok ? 0 : -1;
}

void tp_shard_free(tp_shard *s) {
    tp_compute *c = s->cpt;
    if (c == NULL) return;
#define FREE_(id, field, name, dims, role, kind, bound, grad_of, needs, what)                                                 \
    if (s->field) c->ops->release(c, s->field);
    TPMLP_STEP_TENSORS(FREE_)
#undef FREE_
    memset(s, 0, sizeof *s);
}

int tp_shard_keep_partials(tp_shard *s) {
    int ok = 1;
#define PART_(id, field, name, dims, role, kind, bound, grad_of, needs, what)                                                 \
    if (ok && TPMLP_ROLE_##role == TPMLP_ROLE_PART)                                                                    \
        ok = (s->field = s->cpt->ops->alloc(s->cpt, tpmlp_step_numel(id, s->N, s->D, s->Fr), TPMLP_##kind, name)) !=   \
             NULL;
    TPMLP_STEP_TENSORS(PART_)
#undef PART_
    return ok ? 0 : -1;
}

/* The shard's inputs from host float32 blocks in[id] (its block of each
 * input: tpmlp_step_block). */
static int upload_inputs(tp_shard *s, const float *const in[V_FIRST_OUTPUT]) {
    tp_compute *c = s->cpt;
    int rc = 0;
#define UP_(id, field, name, dims, role, kind, bound, grad_of, needs, what)                                                   \
    if (TPMLP_ROLE_##role == TPMLP_ROLE_IN && rc == 0)                                                                 \
        rc = c->ops->upload(c, s->field, in[id], tpmlp_step_numel(id, s->N, s->D, s->Fr), TPMLP_##kind);
    TPMLP_STEP_TENSORS(UP_)
#undef UP_
    return rc;
}

/* The shard's input blocks: taken from the whole tensors (full, or NULL) or
 * generated alone from the vector dims d (the same values), then uploaded. */
static int shard_inputs(tp_shard *s, const tpmlp_mlp32 *full, const tpmlp_vec_dims *d) {
    float *in[V_FIRST_OUTPUT];
    for (int i = 0; i < V_FIRST_OUTPUT; i++) {
        const tpmlp_block b = tpmlp_step_block((tpmlp_vec_id)i, s->N, s->D, s->F, s->f0, s->Fr);
        in[i] = tpmlp_alloc(tpmlp_block_numel(&b), sizeof(float), tpmlp_vec_specs[i].name);
        if (full)
            tpmlp_block_take(in[i], tpmlp_mlp32_tensor(full, (tpmlp_vec_id)i), &b, sizeof(float));
        else
            tpmlp_vec_fill(in[i], (tpmlp_vec_id)i, d, b.r0, b.r1, b.c0, b.c1);
    }
    int rc = upload_inputs(s, (const float *const *)in);
    for (int i = 0; i < V_FIRST_OUTPUT; i++) free(in[i]);
    return rc;
}

int tp_shard_from_full(tp_shard *s, const tpmlp_mlp32 *full) { return shard_inputs(s, full, NULL); }

int tp_shard_generate(tp_shard *s, const tpmlp_vec_dims *d) { return shard_inputs(s, NULL, d); }

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
    if (rc == 0 && s->y_partial) rc = o->copy(k, s->y_partial, s->y, (size_t)N * D, TPMLP_STORE); /* a rank's check */
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
    if (rc == 0 && s->dx_partial)
        rc = o->copy(k, s->dx_partial, s->dx, (size_t)N * D, TPMLP_STORE); /* a rank's check */
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

int tp_step(void *job) {
    tp_step_job *j = job;
    return tp_forward(j->s, j->c) || tp_backward(j->s, j->c) ? -1 : 0;
}

int tp_shard_download(const tp_shard *s, tpmlp_mlp32 *mine) {
    tp_compute *c = s->cpt;
    tpmlp_mlp32_alloc(mine, s->N, s->D, s->Fr, s->act);
    int rc = c->ops->sync(c);
#define DOWN_(id, field, name, dims, role, kind, bound, grad_of, needs, what)                                                 \
    if (TPMLP_ROLE_##role == TPMLP_ROLE_PART && s->field && rc == 0)                                                   \
        mine->field = tpmlp_alloc(tpmlp_step_numel(id, s->N, s->D, s->Fr), sizeof(float), name);                       \
    if ((TPMLP_ROLE_##role == TPMLP_ROLE_OUT || (TPMLP_ROLE_##role == TPMLP_ROLE_PART && s->field)) && rc == 0)        \
        rc = c->ops->download(c, mine->field, s->field, tpmlp_step_numel(id, s->N, s->D, s->Fr), TPMLP_##kind);
    TPMLP_STEP_TENSORS(DOWN_)
#undef DOWN_
    if (rc != 0) tpmlp_mlp32_free(mine);
    return rc;
}

/* Every rank's block of output id (rank q's, from tpmlp_step_block) into
 * full on rank 0: one all-gather of the blocks, each padded to the largest. */
static int gather_tensor(tpmlp_comm *c, tpmlp_vec_id id, const tpmlp_mlp32 *m, int F, tpmlp_mlp32 *full) {
    int f0, fr;
    tp_slice(F, c->size, 0, &f0, &fr);
    const tpmlp_block most = tpmlp_step_block(id, m->N, m->D, F, f0, fr); /* rank 0's: the largest */
    const size_t blk = tpmlp_block_numel(&most);
    float *send = tpmlp_alloc(blk, sizeof *send, "gather send"),
          *recv = tpmlp_alloc(blk * c->size, sizeof *recv, "gather");
    memset(send, 0, blk * sizeof *send);
    memcpy(send, tpmlp_mlp32_tensor(m, id), tpmlp_step_numel(id, m->N, m->D, m->F) * sizeof *send);
    int rc = c->ops->allgather(c, send, recv, blk, COMM_F32);
    for (int q = 0; rc == 0 && full && q < c->size; q++) {
        tp_slice(F, c->size, q, &f0, &fr);
        const tpmlp_block b = tpmlp_step_block(id, m->N, m->D, F, f0, fr);
        tpmlp_block_put(tpmlp_mlp32_tensor(full, id), recv + (size_t)q * blk, &b, sizeof(float));
    }
    free(send), free(recv);
    return rc;
}

int tp_gather_outputs(const tpmlp_mlp32 *m, int F, tpmlp_comm *c, tpmlp_mlp32 *full) {
    int rc = 0;
    for (int i = V_FIRST_OUTPUT; i < V_ALL && rc == 0; i++) {
        if (tpmlp_vec_specs[i].role != TPMLP_ROLE_OUT) continue;
        if (tpmlp_step_shard((tpmlp_vec_id)i) == TPMLP_REPLICATED) { /* y, dx, db2: rank 0's copy */
            if (full)
                memcpy(tpmlp_mlp32_tensor(full, (tpmlp_vec_id)i), tpmlp_mlp32_tensor(m, (tpmlp_vec_id)i),
                       sizeof(float) * tpmlp_step_numel((tpmlp_vec_id)i, m->N, m->D, F));
        } else
            rc = gather_tensor(c, (tpmlp_vec_id)i, m, F, full);
    }
    return rc;
}
