#include "config.h"

#include "sp_mlp.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

int sp_shard_alloc(sp_shard *s, tp_compute *cpt, int N, int D, int F, int p, int rank, tpmlp_act act) {
    memset(s, 0, sizeof *s);
    if (tp_shard_alloc(&s->t, cpt, N, D, F, p, rank, act) != 0) return -1;
    s->Nr = N / p, s->n0 = rank * s->Nr;
    const size_t rd = (size_t)s->Nr * D;
    void **rows[] = {&s->x_rows, &s->dy_rows, &s->y_rows, &s->dx_rows};
    const char *names[] = {"rows of x", "rows of dy", "rows of y", "rows of dx"};
    for (int i = 0; i < 4; i++)
        if ((*rows[i] = cpt->ops->alloc(cpt, rd, TPMLP_STORE, names[i])) == NULL) return sp_shard_free(s), -1;
    return 0;
}

void sp_shard_free(sp_shard *s) {
    tp_compute *c = s->t.cpt;
    void *rows[] = {s->x_rows, s->dy_rows, s->y_rows, s->dx_rows};
    for (int i = 0; i < 4; i++)
        if (rows[i]) c->ops->release(c, rows[i]);
    tp_shard_free(&s->t);
    memset(s, 0, sizeof *s);
}

int sp_shard_from_full(sp_shard *s, const tpmlp_mlp32 *full) {
    tp_compute *c = s->t.cpt;
    const size_t D = (size_t)s->t.D, rd = (size_t)s->Nr * D, nd = (size_t)s->t.N * D;
    if (tp_shard_from_full(&s->t, full) != 0) return -1;
    /* the full x and dy must come from the all-gathers, not from here */
    float *zero = tpmlp_alloc(nd, sizeof *zero, "zeros");
    memset(zero, 0, nd * sizeof *zero);
    int rc = c->ops->upload(c, s->x_rows, full->x + (size_t)s->n0 * D, rd, TPMLP_STORE) ||
             c->ops->upload(c, s->dy_rows, full->dy + (size_t)s->n0 * D, rd, TPMLP_STORE) ||
             c->ops->upload(c, s->t.x, zero, nd, TPMLP_STORE) || c->ops->upload(c, s->t.dy, zero, nd, TPMLP_STORE);
    free(zero);
    return rc ? -1 : 0;
}

int sp_forward(sp_shard *s, tpmlp_comm *c) {
    tp_shard *t = &s->t;
    const size_t rd = (size_t)s->Nr * t->D;
    const comm_dtype st = t->cpt->store;
    int rc = c->ops->allgather(c, s->x_rows, t->x, rd, st);                  /* X = all_gather(X_r)         */
    rc = rc || tp_forward_partial(t);                                        /* H_r, A_r, Z_r = A_r·W2_rᵀ   */
    rc = rc || c->ops->reduce_scatter(c, t->y, s->y_rows, rd, st);           /* my rows of Σ Z              */
    rc = rc || t->cpt->ops->bias_add(t->cpt, s->y_rows, t->b2, s->Nr, t->D); /* b2 once, after the sum */
    return rc ? -1 : 0;
}

int sp_backward(sp_shard *s, tpmlp_comm *c) {
    tp_shard *t = &s->t;
    const size_t rd = (size_t)s->Nr * t->D;
    const comm_dtype st = t->cpt->store;
    int rc = c->ops->allgather(c, s->dy_rows, t->dy, rd, st);        /* dY = all_gather(dY_r)  */
    rc = rc || tp_backward_data(t) || tp_backward_weights(t, NULL);  /* the shard's backward   */
    rc = rc || c->ops->reduce_scatter(c, t->dx, s->dx_rows, rd, st); /* my rows of Σ dX_r      */
    return rc ? -1 : 0;
}

int sp_gather_outputs(sp_shard *s, tpmlp_comm *c, tpmlp_mlp32 *full) {
    tp_shard *t = &s->t;
    const size_t rd = (size_t)s->Nr * t->D;
    /* h, a and the weight gradients are sharded by F exactly as in TP; y and
     * dx are sharded by rows: gather those into t's full-size buffers first */
    int rc = c->ops->allgather(c, s->y_rows, t->y, rd, t->cpt->store);
    rc = rc || c->ops->allgather(c, s->dx_rows, t->dx, rd, t->cpt->store);
    tpmlp_mlp32 mine;
    rc = rc || tp_shard_download(t, &mine);
    if (rc) return -1;
    rc = tp_gather_outputs(&mine, t->F, c, full);
    tpmlp_mlp32_free(&mine);
    return rc;
}
