#include "config.h"

#include "gradcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "oracle.h"

const char *tpmlp_gradcheck_name(int g) {
    static const tpmlp_vec_id ids[GC_COUNT] = {V_DX, V_DW1, V_DB1, V_DW2, V_DB2};
    return tpmlp_vec_specs[ids[g]].name;
}

/* L = Σ Y⊙dY for t's current inputs; h, a, y are scratch. */
static double loss(const tpmlp_mlp64 *t, double *h, double *a, double *y) {
    tpmlp_oracle_forward(h, a, y, t->x, t->w1, t->b1, t->w2, t->b2, t->N, t->D, t->F, t->act);
    double s = 0;
    for (size_t k = 0; k < (size_t)t->N * t->D; k++) s += y[k] * t->dy[k];
    return s;
}

void tpmlp_gradcheck_f64(const tpmlp_mlp64 *t, double step, double err[GC_COUNT]) {
    const size_t nf = (size_t)t->N * t->F;
    double *h = tpmlp_alloc(nf, sizeof *h, "gradcheck h"), *a = tpmlp_alloc(nf, sizeof *a, "gradcheck a");
    double *y = tpmlp_alloc((size_t)t->N * t->D, sizeof *y, "gradcheck y");
    struct {
        double *param, *grad;
        size_t n;
    } g[GC_COUNT] = {
        {t->x, t->dx, (size_t)t->N * t->D},   {t->w1, t->dw1, (size_t)t->F * t->D}, {t->b1, t->db1, (size_t)t->F},
        {t->w2, t->dw2, (size_t)t->D * t->F}, {t->b2, t->db2, (size_t)t->D},
    };
    for (int i = 0; i < GC_COUNT; i++) {
        double maxdiff = 0, maxan = 0;
        for (size_t k = 0; k < g[i].n; k++) {
            double keep = g[i].param[k], s = step * fmax(1.0, fabs(keep));
            g[i].param[k] = keep + s; /* t's inputs are perturbed in place and restored */
            double lp = loss(t, h, a, y);
            g[i].param[k] = keep - s;
            double lm = loss(t, h, a, y);
            g[i].param[k] = keep;
            double fd = (lp - lm) / (2 * s);
            maxdiff = fmax(maxdiff, fabs(fd - g[i].grad[k]));
            maxan = fmax(maxan, fabs(g[i].grad[k]));
        }
        err[i] = maxan > 0 ? maxdiff / maxan : maxdiff;
    }
    free(h), free(a), free(y);
}
