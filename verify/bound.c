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
    const size_t nd = (size_t)N * D, fd = (size_t)F * D;
    float *x = to_f32(ref->x, nd, "x"), *w1 = to_f32(ref->w1, fd, "w1"), *b1 = to_f32(ref->b1, (size_t)F, "b1");
    float *w2 = to_f32(ref->w2, fd, "w2"), *b2 = to_f32(ref->b2, (size_t)D, "b2"), *dy = to_f32(ref->dy, nd, "dy");
    const tpmlp_err_inputs in = {.N = N,
                                 .D = D,
                                 .F = F,
                                 .act = ref->act,
                                 .x = x,
                                 .w1 = w1,
                                 .b1 = b1,
                                 .w2 = w2,
                                 .b2 = b2,
                                 .dy = dy,
                                 .h = ref->h,
                                 .a = ref->a,
                                 .y = ref->y,
                                 .dx = ref->dx,
                                 .dw1 = ref->dw1,
                                 .db1 = ref->db1,
                                 .dw2 = ref->dw2,
                                 .db2 = ref->db2};
    tpmlp_err_bounds b;
    tpmlp_err_bounds_compute(&b, &in, fmt, NULL, 1, NULL, NULL);
#define COPY_(id, field, name, dims, role, kind, bound, grad_of, needs, what)                                          \
    if (TPMLP_ROLE_##role == TPMLP_ROLE_OUT)                                                                           \
        memcpy(bd->field, b.of[id], tpmlp_step_numel(id, N, D, F) * sizeof(double));
    TPMLP_STEP_TENSORS(COPY_)
#undef COPY_
    tpmlp_err_free(&b);
    free(x), free(w1), free(b1), free(w2), free(b2), free(dy);
}
