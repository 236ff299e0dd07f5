#include "config.h"

#include "bound.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "vectors.h"

void tpmlp_output_views(tpmlp_output_view v[TPMLP_NUM_OUTPUTS], const tpmlp_mlp32 *t, const tpmlp_mlp64 *ref,
                        const tpmlp_mlp64 *bd) {
    /* the outputs of the step list, in its order */
#define VIEW_(id, field, name, dims, role, kind, bound, grad_of, needs, what)                                          \
    if (TPMLP_ROLE_##role == TPMLP_ROLE_OUT)                                                                           \
        v[id - V_FIRST_OUTPUT] = (tpmlp_output_view){name, t->field, ref->field, bd ? bd->field : NULL,                \
                                                     tpmlp_step_numel(id, t->N, t->D, t->F)};
    TPMLP_STEP_TENSORS(VIEW_)
#undef VIEW_
}

double tpmlp_budget_used(const float *got, const double *ref, const double *bound, size_t n, size_t *worst,
                         double *max_abs_err) {
    double used = 0, maxerr = 0;
    size_t w = 0;
    for (size_t k = 0; k < n; k++) {
        double e, ae, q = tpmlp_share(got[k], ref[k], bound[k], &e, &ae);
        if (q > used) used = q, w = k;
        if (ae > maxerr) maxerr = ae;
    }
    *worst = w, *max_abs_err = maxerr;
    return used;
}

static float *to_f32(const double *v, size_t n, const char *what) {
    float *o = tpmlp_alloc(n, sizeof *o, what);
    for (size_t i = 0; i < n; i++) o[i] = (float)v[i]; /* the inputs are float32 values: exact */
    return o;
}

void tpmlp_mlp64_bounds(tpmlp_mlp64 *bd, const tpmlp_mlp64 *ref, const tpmlp_format *fmt) {
    const int N = ref->N, D = ref->D, F = ref->F;
    /* the model's inputs by the table's ids: the inputs as the float32 they are, the outputs float64 */
    const void *t[V_COUNT];
    float *in32[V_FIRST_OUTPUT];
#define VIEW_(id, field, name, dims, role, kind, bound, grad_of, needs, what)                                          \
    if (TPMLP_ROLE_##role == TPMLP_ROLE_IN)                                                                            \
        t[id] = in32[id] = to_f32(ref->field, tpmlp_step_numel(id, N, D, F), name);                                    \
    if (TPMLP_ROLE_##role == TPMLP_ROLE_OUT) t[id] = ref->field;
    TPMLP_STEP_TENSORS(VIEW_)
#undef VIEW_
    const tpmlp_err_inputs in = tpmlp_err_inputs_of(N, D, F, ref->act, t);
    tpmlp_err_bounds b;
    tpmlp_err_bounds_compute(&b, &in, fmt, NULL, 1, NULL, NULL);
#define COPY_(id, field, name, dims, role, kind, bound, grad_of, needs, what)                                          \
    if (TPMLP_ROLE_##role == TPMLP_ROLE_OUT)                                                                           \
        memcpy(bd->field, b.of[id], tpmlp_step_numel(id, N, D, F) * sizeof(double));
    TPMLP_STEP_TENSORS(COPY_)
#undef COPY_
    tpmlp_err_free(&b);
    for (int i = 0; i < V_FIRST_OUTPUT; i++) free(in32[i]);
}
