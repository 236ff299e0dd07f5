#include "bound.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "vectors.h"

#define FIELDS(X)                                                                                                      \
    X(x, N, D)                                                                                                         \
    X(w1, F, D)                                                                                                        \
    X(b1, F, 1)                                                                                                        \
    X(w2, D, F)                                                                                                        \
    X(b2, D, 1)                                                                                                        \
    X(dy, N, D)                                                                                                        \
    X(h, N, F)                                                                                                         \
    X(a, N, F) X(dact, N, F) X(y, N, D) X(dh, N, F) X(dx, N, D) X(dw1, F, D) X(db1, F, 1) X(dw2, D, F) X(db2, D, 1)

#define ALLOC_ALL(t)                                                                                                   \
    do {                                                                                                               \
        memset(t, 0, sizeof *t);                                                                                       \
        t->N = N, t->D = D, t->F = F, t->act = act;                                                                    \
        FIELDS(ALLOC_ONE)                                                                                              \
    } while (0)
#define ALLOC_ONE(name, r, c)                                                                                          \
    t->name = tpmlp_alloc((size_t)(r) * (size_t)(c), sizeof *t->name, #name);                                          \
    memset(t->name, 0, (size_t)(r) * (size_t)(c) * sizeof *t->name);
#define FREE_ONE(name, r, c) free(t->name);

void tpmlp_mlp64_alloc(tpmlp_mlp64 *t, int N, int D, int F, tpmlp_act act) { ALLOC_ALL(t); }
void tpmlp_mlp32_alloc(tpmlp_mlp32 *t, int N, int D, int F, tpmlp_act act) { ALLOC_ALL(t); }

void tpmlp_mlp64_free(tpmlp_mlp64 *t) {
    FIELDS(FREE_ONE)
    memset(t, 0, sizeof *t);
}
void tpmlp_mlp32_free(tpmlp_mlp32 *t) {
    FIELDS(FREE_ONE)
    memset(t, 0, sizeof *t);
}

void tpmlp_mlp32_random_inputs(tpmlp_mlp32 *t, unsigned long long seed) {
    /* the vector files' generator, so the demo, bench and tests draw what gen writes */
    const tpmlp_vec_dims d = {1, t->N, t->D, t->F, t->act, seed};
    tpmlp_vec_fill_inputs(t->x, t->w1, t->b1, t->w2, t->b2, t->dy, &d);
}

void tpmlp_mlp32_run(tpmlp_mlp32 *t) {
    mlp_forward_f32(t->h, t->a, t->dact, t->y, t->x, t->w1, t->b1, t->w2, t->b2, t->N, t->D, t->F, t->act);
    mlp_backward_f32(t->dx, t->dw1, t->db1, t->dw2, t->db2, t->dh, t->dy, t->x, t->a, t->dact, t->w1, t->w2, t->N, t->D,
                     t->F);
}

void tpmlp_mlp64_inputs_from32(tpmlp_mlp64 *t64, const tpmlp_mlp32 *t) {
#define COPY_ONE(name)                                                                                                 \
    for (size_t k = 0; k < sizes.name; k++) t64->name[k] = (double)t->name[k];
    const struct {
        size_t x, w1, b1, w2, b2, dy;
    } sizes = {(size_t)t->N * t->D, (size_t)t->F * t->D, (size_t)t->F,
               (size_t)t->D * t->F, (size_t)t->D,        (size_t)t->N * t->D};
    COPY_ONE(x) COPY_ONE(w1) COPY_ONE(b1) COPY_ONE(w2) COPY_ONE(b2) COPY_ONE(dy)
#undef COPY_ONE
}

void tpmlp_output_views(tpmlp_output_view v[TPMLP_NUM_OUTPUTS], const tpmlp_mlp32 *t, const tpmlp_mlp64 *ref,
                        const tpmlp_mlp64 *bd) {
    const size_t nd = (size_t)t->N * t->D, nf = (size_t)t->N * t->F, fd = (size_t)t->F * t->D;
#define VIEW(i, label, field, count)                                                                                   \
    v[i] = (tpmlp_output_view){label, t->field, ref->field, bd ? bd->field : NULL, count}
    VIEW(0, "h", h, nf);
    VIEW(1, "a", a, nf);
    VIEW(2, "y", y, nd);
    VIEW(3, "dx", dx, nd);
    VIEW(4, "linear_fc1.weight.grad", dw1, fd);
    VIEW(5, "linear_fc1.bias.grad", db1, (size_t)t->F);
    VIEW(6, "linear_fc2.weight.grad", dw2, fd);
    VIEW(7, "linear_fc2.bias.grad", db2, (size_t)t->D);
#undef VIEW
}

double tpmlp_budget_used(const float *got, const double *ref, const double *bound, size_t n, size_t *worst,
                         double *max_abs_err) {
    double used = 0, maxerr = 0;
    size_t w = 0;
    for (size_t k = 0; k < n; k++) {
        if (!isfinite(got[k])) {
            *worst = k, *max_abs_err = INFINITY;
            return INFINITY;
        }
        double e = fabs((double)got[k] - ref[k]);
        double r = e == 0 ? 0 : bound[k] > 0 ? e / bound[k] : INFINITY;
        if (r > used) used = r, w = k;
        if (e > maxerr) maxerr = e;
    }
    *worst = w, *max_abs_err = maxerr;
    return used;
}

void tpmlp_mlp64_run(tpmlp_mlp64 *t) {
    tpmlp_vec_reference(t->h, t->a, t->y, t->dx, t->dw1, t->db1, t->dw2, t->db2, t->x, t->w1, t->b1, t->w2, t->b2,
                        t->dy, t->N, t->D, t->F, t->act);
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
    const tpmlp_err_inputs in = {N,  D,      F,      ref->act, x,       w1,       b1,       w2,       b2,
                                 dy, ref->h, ref->a, ref->y,   ref->dx, ref->dw1, ref->db1, ref->dw2, ref->db2};
    tpmlp_err_bounds b;
    tpmlp_err_bounds_compute(&b, &in, fmt, NULL, 1, NULL, NULL);
    const size_t nf = (size_t)N * F;
    memcpy(bd->h, b.h, nf * sizeof(double)), memcpy(bd->a, b.a, nf * sizeof(double));
    memcpy(bd->y, b.y, nd * sizeof(double)), memcpy(bd->dx, b.dx, nd * sizeof(double));
    memcpy(bd->dw1, b.dw1, fd * sizeof(double)), memcpy(bd->db1, b.db1, (size_t)F * sizeof(double));
    memcpy(bd->dw2, b.dw2, fd * sizeof(double)), memcpy(bd->db2, b.db2, (size_t)D * sizeof(double));
    tpmlp_err_free(&b);
    free(x), free(w1), free(b1), free(w2), free(b2), free(dy);
}
