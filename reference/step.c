#include "config.h"

#include "step.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oracle.h"
#include "util.h"

#define NEEDS_ALWAYS 0
#define NEEDS_BIAS 1
#define SPEC_(id, field, name, dims, role, kind, bound, grad_of, needs, what)                                          \
    [id] = {name, dims, TPMLP_ROLE_##role, TPMLP_##kind, TPMLP_BOUND_##bound, grad_of, NEEDS_##needs, what},
const tpmlp_vec_spec tpmlp_vec_specs[V_ALL] = {TPMLP_STEP_TENSORS(SPEC_)};
#undef SPEC_

const char *tpmlp_role_name(tpmlp_role r) {
    static const char *const names[] = {"input", "output", "partial", "temporary"};
    return names[r];
}

int tpmlp_step_f_axis(tpmlp_vec_id id) {
    const char *f = strchr(tpmlp_vec_specs[id].dims, 'F');
    return f ? (int)(f - tpmlp_vec_specs[id].dims) : -1;
}

tpmlp_shard tpmlp_step_shard(tpmlp_vec_id id) {
    if (tpmlp_vec_specs[id].role == TPMLP_ROLE_PART) return TPMLP_PARTIAL;
    const int ax = tpmlp_step_f_axis(id);
    return ax < 0 ? TPMLP_REPLICATED : ax == 0 ? TPMLP_SHARD_ROWS : TPMLP_SHARD_COLUMNS;
}

const char *tpmlp_shard_name(tpmlp_shard s) {
    static const char *const names[] = {"replicated", "rows", "columns", "partial"};
    return names[s];
}

/* The size of one letter of dims, for N rows: T stands for all of B·T (B is 1). */
static size_t dim_size(char c, int N, int D, int F) { return (size_t)(c == 'B' ? 1 : c == 'T' ? N : c == 'D' ? D : F); }

size_t tpmlp_step_numel(tpmlp_vec_id id, int N, int D, int F) {
    size_t n = 1;
    for (const char *c = tpmlp_vec_specs[id].dims; *c; c++) n *= dim_size(*c, N, D, F);
    return n;
}

#define ALLOC_(id, field, name, dims, role, kind, bound, grad_of, needs, what)                                         \
    if (TPMLP_ROLE_##role != TPMLP_ROLE_PART) {                                                                        \
        t->field = tpmlp_alloc(tpmlp_step_numel(id, N, D, F), sizeof *t->field, name);                                 \
        memset(t->field, 0, tpmlp_step_numel(id, N, D, F) * sizeof *t->field);                                         \
    }
#define FREE_(id, field, name, dims, role, kind, bound, grad_of, needs, what) free(t->field);

void tpmlp_mlp64_alloc(tpmlp_mlp64 *t, int N, int D, int F, tpmlp_act act) {
    *t = (tpmlp_mlp64){.N = N, .D = D, .F = F, .act = act};
    TPMLP_STEP_TENSORS(ALLOC_)
}
void tpmlp_mlp32_alloc(tpmlp_mlp32 *t, int N, int D, int F, tpmlp_act act) {
    *t = (tpmlp_mlp32){.N = N, .D = D, .F = F, .act = act};
    TPMLP_STEP_TENSORS(ALLOC_)
}
void tpmlp_mlp64_free(tpmlp_mlp64 *t) {
    TPMLP_STEP_TENSORS(FREE_)
    memset(t, 0, sizeof *t);
}
void tpmlp_mlp32_free(tpmlp_mlp32 *t) {
    TPMLP_STEP_TENSORS(FREE_)
    memset(t, 0, sizeof *t);
}

float *tpmlp_mlp32_tensor(const tpmlp_mlp32 *t, tpmlp_vec_id id) {
#define FIELD_(id, field, name, dims, role, kind, bound, grad_of, needs, what) [id] = t->field,
    float *const all[V_ALL] = {TPMLP_STEP_TENSORS(FIELD_)};
#undef FIELD_
    return all[id];
}

void tpmlp_mlp32_run(tpmlp_mlp32 *t) {
    mlp_forward_f32(t->h, t->a, t->dact, t->y, t->x, t->w1, t->b1, t->w2, t->b2, t->N, t->D, t->F, t->act);
    mlp_backward_f32(t->dx, t->dw1, t->db1, t->dw2, t->db2, t->dh, t->dy, t->x, t->a, t->dact, t->w1, t->w2, t->N, t->D,
                     t->F);
}

void tpmlp_mlp64_inputs_from32(tpmlp_mlp64 *t64, const tpmlp_mlp32 *t) {
#define WIDEN_(id, field, name, dims, role, kind, bound, grad_of, needs, what)                                         \
    if (TPMLP_ROLE_##role == TPMLP_ROLE_IN)                                                                            \
        for (size_t k = 0; k < tpmlp_step_numel(id, t->N, t->D, t->F); k++) t64->field[k] = (double)t->field[k];
    TPMLP_STEP_TENSORS(WIDEN_)
#undef WIDEN_
}

void tpmlp_mlp64_run(tpmlp_mlp64 *t) {
    tpmlp_oracle_step(t->h, t->a, t->y, t->dx, t->dw1, t->db1, t->dw2, t->db2, t->x, t->w1, t->b1, t->w2, t->b2, t->dy,
                      t->N, t->D, t->F, t->act);
}

int tpmlp_split_parse(const char *name, tpmlp_split *out) {
    if (strcmp(name, "balanced") == 0) return *out = TPMLP_SPLIT_BALANCED, 0;
    if (strcmp(name, "chunk") == 0) return *out = TPMLP_SPLIT_CHUNK, 0;
    return -1;
}

const char *tpmlp_split_name(tpmlp_split s) { return s == TPMLP_SPLIT_CHUNK ? "chunk" : "balanced"; }

int tpmlp_split_slice(tpmlp_split s, int F, int p, int r, int *f0, int *fr) {
    if (s == TPMLP_SPLIT_CHUNK) { /* torch.chunk: ⌈F/p⌉ each, the last smaller (or none) */
        const int c = F / p + (F % p != 0);
        const long long b = (long long)r * c;
        *f0 = b < F ? (int)b : F;
        *fr = b < F ? (F - b < c ? (int)(F - b) : c) : 0;
    } else {
        const int q = F / p, rem = F % p;
        *f0 = r * q + (r < rem ? r : rem);
        *fr = q + (r < rem ? 1 : 0);
    }
    return *fr > 0 ? 0 : -1;
}

int tpmlp_split_check(tpmlp_split s, int F, int p, int r, char *err, size_t errlen) {
    int f0, fr;
    if (p < 1 || p > F)
        return snprintf(err, errlen, "--tp %d: expected 1 ≤ P ≤ F = %d (every rank holds a block of F)", p, F), -1;
    if (r < 0) return 0;
    if (r >= p) return snprintf(err, errlen, "--tp %d --rank %d: expected 0 ≤ R < P", p, r), -1;
    if (tpmlp_split_slice(s, F, p, r, &f0, &fr) != 0)
        return snprintf(err, errlen, "--rank %d: the %s split of F = %d over %d ranks leaves it no columns", r,
                        tpmlp_split_name(s), F, p),
               -1;
    return 0;
}

tpmlp_block tpmlp_step_block(tpmlp_vec_id id, int N, int D, int F, int f0, int fr) {
    const char *dims = tpmlp_vec_specs[id].dims;
    const int n = (int)strlen(dims), ax = tpmlp_step_f_axis(id);
    tpmlp_block b = {.rows = 1};
    for (int k = 0; k + 1 < n; k++) b.rows *= dim_size(dims[k], N, D, F);
    b.cols = dim_size(dims[n - 1], N, D, F);
    b.r1 = b.rows, b.c1 = b.cols;
    if (ax == n - 1) /* F last (h, a, W2, a bias): the rank's columns */
        b.c0 = (size_t)f0, b.c1 = (size_t)(f0 + fr);
    else if (ax >= 0) /* F first of two (W1): its rows */
        b.r0 = (size_t)f0, b.r1 = (size_t)(f0 + fr);
    return b;
}

size_t tpmlp_block_numel(const tpmlp_block *b) { return (b->r1 - b->r0) * (b->c1 - b->c0); }

void tpmlp_block_take(void *block, const void *whole, const tpmlp_block *b, size_t elem) {
    const size_t w = (b->c1 - b->c0) * elem;
    for (size_t r = b->r0; r < b->r1; r++)
        memcpy((char *)block + (r - b->r0) * w, (const char *)whole + (r * b->cols + b->c0) * elem, w);
}

void tpmlp_block_put(void *whole, const void *block, const tpmlp_block *b, size_t elem) {
    const size_t w = (b->c1 - b->c0) * elem;
    for (size_t r = b->r0; r < b->r1; r++)
        memcpy((char *)whole + (r * b->cols + b->c0) * elem, (const char *)block + (r - b->r0) * w, w);
}
