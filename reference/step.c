#include "config.h"

#include "step.h"

#include <stdlib.h>
#include <string.h>

#include "oracle.h"
#include "util.h"

#define SPEC_(id, field, name, shape, role, what) [id] = {name, shape, what},
const tpmlp_vec_spec tpmlp_vec_specs[V_ALL] = {TPMLP_STEP_TENSORS(SPEC_)};
#undef SPEC_

size_t tpmlp_step_numel(tpmlp_vec_id id, int N, int D, int F) {
    size_t n = 1;
    for (const char *c = tpmlp_vec_specs[id].dims; *c; c++)
        if (*c != 'B') n *= (size_t)(*c == 'T' ? N : *c == 'D' ? D : F); /* B·T is N */
    return n;
}

#define ALLOC_(id, field, name, shape, role, what)                                                                     \
    t->field = tpmlp_alloc(tpmlp_step_numel(id, N, D, F), sizeof *t->field, name);                                     \
    memset(t->field, 0, tpmlp_step_numel(id, N, D, F) * sizeof *t->field);
#define FREE_(id, field, name, shape, role, what) free(t->field);

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
#define FIELD_(id, field, name, shape, role, what) [id] = t->field,
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
#define WIDEN_(id, field, name, shape, role, what)                                                                     \
    if (id < V_FIRST_OUTPUT)                                                                                           \
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
