#include "config.h"

#include "gradcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "oracle.h"

/* L = Σ Y⊙dY for t's current inputs; h, a, y are scratch. */
static double loss(const tpmlp_mlp64 *t, double *h, double *a, double *y) {
    tpmlp_oracle_forward(h, a, y, t->x, t->w1, t->b1, t->w2, t->b2, t->N, t->D, t->F, t->act);
    double s = 0;
    for (size_t k = 0; k < (size_t)t->N * t->D; k++) s += y[k] * t->dy[k];
    return s;
}

/* Element k of a float64 step tensor, by its table id. */
static double *tensor64(const tpmlp_mlp64 *t, tpmlp_vec_id id) {
#define FIELD_(id, field, name, dims, role, kind, bound, grad_of, needs, what) [id] = t->field,
    double *const all[V_ALL] = {TPMLP_STEP_TENSORS(FIELD_)};
#undef FIELD_
    return all[id];
}

void tpmlp_gradcheck_f64(const tpmlp_mlp64 *t, double step, double err[V_ALL]) {
    const size_t nf = (size_t)t->N * t->F;
    double *h = tpmlp_alloc(nf, sizeof *h, "gradcheck h"), *a = tpmlp_alloc(nf, sizeof *a, "gradcheck a");
    double *y = tpmlp_alloc((size_t)t->N * t->D, sizeof *y, "gradcheck y");
    for (int i = 0; i < V_ALL; i++) {
        err[i] = NAN;
        if (tpmlp_vec_specs[i].grad_of == V_ALL) continue;
        double *param = tensor64(t, (tpmlp_vec_id)tpmlp_vec_specs[i].grad_of), *grad = tensor64(t, (tpmlp_vec_id)i);
        const size_t n = tpmlp_step_numel((tpmlp_vec_id)i, t->N, t->D, t->F);
        double maxdiff = 0, maxan = 0;
        for (size_t k = 0; k < n; k++) {
            double keep = param[k], s = step * fmax(1.0, fabs(keep));
            param[k] = keep + s; /* t's inputs are perturbed in place and restored */
            double lp = loss(t, h, a, y);
            param[k] = keep - s;
            double lm = loss(t, h, a, y);
            param[k] = keep;
            double fd = (lp - lm) / (2 * s);
            maxdiff = fmax(maxdiff, fabs(fd - grad[k]));
            maxan = fmax(maxan, fabs(grad[k]));
        }
        err[i] = maxan > 0 ? maxdiff / maxan : maxdiff;
    }
    free(h), free(a), free(y);
}
