/* The cpu backend of the compute interface (compute.h): host memory in
 * float32, and the reference's own building blocks (reference/mlp.h), so a
 * shard computes exactly as the reference MLP does. Nothing is queued: sync
 * has nothing to wait for. Also the wrappers a benchmark uses, for any
 * backend (tp_compute_wrap). */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute.h"
#include "util.h"

static void *cpu_alloc(tp_compute *c, size_t n, tpmlp_kind k, const char *what) {
    (void)c, (void)k;
    void *p = calloc(n ? n : 1, sizeof(float));
    if (p == NULL) fprintf(stderr, "tpmlp: compute cpu: cannot allocate %zu floats for %s\n", n, what);
    return p;
}
static void cpu_release(tp_compute *c, void *p) { (void)c, free(p); }
static int cpu_copy(tp_compute *c, void *dst, const void *src, size_t n, tpmlp_kind k) {
    (void)c, (void)k;
    if (dst != src) memcpy(dst, src, n * sizeof(float));
    return 0;
}
static int cpu_upload(tp_compute *c, void *dst, const float *src, size_t n, tpmlp_kind k) {
    return cpu_copy(c, dst, src, n, k);
}
static int cpu_download(tp_compute *c, float *dst, const void *src, size_t n, tpmlp_kind k) {
    return cpu_copy(c, dst, src, n, k);
}

static int cpu_linear(tp_compute *c, void *out, const void *in, const void *w, int M, int K, int N) {
    (void)c, linear_nobias_forward_f32(out, in, w, M, K, N);
    return 0;
}
static int cpu_linear_dgrad(tp_compute *c, void *din, const void *dout, const void *w, int M, int K, int N) {
    (void)c, linear_backward_data_f32(din, dout, w, M, K, N);
    return 0;
}
static int cpu_linear_wgrad(tp_compute *c, void *dw, const void *dout, const void *in, int M, int K, int N) {
    (void)c, linear_backward_weight_f32(dw, dout, in, M, K, N);
    return 0;
}
static int cpu_bias_act(tp_compute *c, void *h, void *a, void *dact, const void *b, int M, int N, tpmlp_act act) {
    (void)c, bias_act_forward_f32(h, a, dact, b, M, N, act);
    return 0;
}
static int cpu_act_bwd(tp_compute *c, void *dh, float *db, const void *dact, int M, int N) {
    (void)c, act_backward_bias_f32(dh, db, dact, M, N);
    return 0;
}
static int cpu_bias_add(tp_compute *c, void *y, const void *b, int M, int N) {
    (void)c, bias_add_f32(y, b, M, N);
    return 0;
}
static int cpu_col_sums(tp_compute *c, float *db, const void *g, int M, int N) {
    (void)c, colsum_f32(db, g, M, N);
    return 0;
}
static int cpu_sync(tp_compute *c) { return (void)c, 0; }
static void cpu_destroy(tp_compute *c) { (void)c; }

static const tp_compute_ops cpu_ops = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_upload,
    .download = cpu_download,
    .copy = cpu_copy,
    .linear = cpu_linear,
    .linear_dgrad = cpu_linear_dgrad,
    .linear_wgrad = cpu_linear_wgrad,
    .bias_act = cpu_bias_act,
    .act_bwd = cpu_act_bwd,
    .bias_add = cpu_bias_add,
    .col_sums = cpu_col_sums,
    .sync = cpu_sync,
    .destroy = cpu_destroy,
};

tp_compute *tp_compute_cpu(void) {
    static tp_compute cpu = {&cpu_ops, COMM_F32, NULL};
    return &cpu;
}

/* ------------------------------------------------------------ wrappers */

typedef struct {
    tp_compute *base;
    int flags;
} wrap;

static tp_compute *base_of(tp_compute *c) { return ((wrap *)c->impl)->base; }
static int gemms_only(tp_compute *c) { return ((wrap *)c->impl)->flags & TP_WRAP_GEMMS_ONLY; }

static void *w_alloc(tp_compute *c, size_t n, tpmlp_kind k, const char *what) {
    return base_of(c)->ops->alloc(base_of(c), n, k, what);
}
static void w_release(tp_compute *c, void *p) { base_of(c)->ops->release(base_of(c), p); }
static int w_upload(tp_compute *c, void *dst, const float *src, size_t n, tpmlp_kind k) {
    return base_of(c)->ops->upload(base_of(c), dst, src, n, k);
}
static int w_download(tp_compute *c, float *dst, const void *src, size_t n, tpmlp_kind k) {
    return base_of(c)->ops->download(base_of(c), dst, src, n, k);
}
static int w_copy(tp_compute *c, void *dst, const void *src, size_t n, tpmlp_kind k) {
    return base_of(c)->ops->copy(base_of(c), dst, src, n, k);
}
static int w_linear(tp_compute *c, void *out, const void *in, const void *w, int M, int K, int N) {
    return base_of(c)->ops->linear(base_of(c), out, in, w, M, K, N);
}
static int w_linear_dgrad(tp_compute *c, void *din, const void *dout, const void *w, int M, int K, int N) {
    return base_of(c)->ops->linear_dgrad(base_of(c), din, dout, w, M, K, N);
}
static int w_linear_wgrad(tp_compute *c, void *dw, const void *dout, const void *in, int M, int K, int N) {
    return base_of(c)->ops->linear_wgrad(base_of(c), dw, dout, in, M, K, N);
}
static int w_bias_act(tp_compute *c, void *h, void *a, void *dact, const void *b, int M, int N, tpmlp_act act) {
    return gemms_only(c) ? 0 : base_of(c)->ops->bias_act(base_of(c), h, a, dact, b, M, N, act);
}
static int w_act_bwd(tp_compute *c, void *dh, float *db, const void *dact, int M, int N) {
    return gemms_only(c) ? 0 : base_of(c)->ops->act_bwd(base_of(c), dh, db, dact, M, N);
}
static int w_bias_add(tp_compute *c, void *y, const void *b, int M, int N) {
    return gemms_only(c) ? 0 : base_of(c)->ops->bias_add(base_of(c), y, b, M, N);
}
static int w_col_sums(tp_compute *c, float *db, const void *g, int M, int N) {
    return gemms_only(c) ? 0 : base_of(c)->ops->col_sums(base_of(c), db, g, M, N);
}
static int w_sync(tp_compute *c) {
    return ((wrap *)c->impl)->flags & TP_WRAP_NO_SYNC ? 0 : base_of(c)->ops->sync(base_of(c));
}
static void w_destroy(tp_compute *c) { /* the base is its owner's */
    free(c->impl);
    c->impl = NULL;
}
static int w_linear_bias_act(tp_compute *c, void *a, void *h, const void *in, const void *w, const void *b, int M,
                             int K, int N, tpmlp_act act) {
    return base_of(c)->ops->linear_bias_act(base_of(c), a, h, in, w, b, M, K, N, act);
}
static int w_linear_dgrad_act_bwd(tp_compute *c, void *dh, float *db, const void *dout, const void *w, const void *h,
                                  int M, int K, int N, tpmlp_act act) {
    return base_of(c)->ops->linear_dgrad_act_bwd(base_of(c), dh, db, dout, w, h, M, K, N, act);
}

#define WRAP_OPS(fused_fwd, fused_bwd)                                                                                 \
    {                                                                                                                  \
        .name = "wrapped", .alloc = w_alloc, .release = w_release, .upload = w_upload, .download = w_download,         \
        .copy = w_copy, .linear = w_linear, .linear_dgrad = w_linear_dgrad, .linear_wgrad = w_linear_wgrad,            \
        .bias_act = w_bias_act, .act_bwd = w_act_bwd, .bias_add = w_bias_add, .col_sums = w_col_sums, .sync = w_sync,  \
        .destroy = w_destroy, .linear_bias_act = fused_fwd, .linear_dgrad_act_bwd = fused_bwd                          \
    }
static const tp_compute_ops wrap_ops = WRAP_OPS(NULL, NULL);
static const tp_compute_ops wrap_fused_ops = WRAP_OPS(w_linear_bias_act, w_linear_dgrad_act_bwd);

int tp_compute_wrap(tp_compute *out, tp_compute *base, int flags) {
    wrap *w = malloc(sizeof *w);
    if (w == NULL) {
        fprintf(stderr, "tpmlp: compute %s: no memory for a wrapper\n", base->ops->name);
        return -1;
    }
    *w = (wrap){base, flags};
    /* the GEMMs alone have no fused forms: those would run the epilogue's work */
    const int fused = base->ops->linear_bias_act && !(flags & TP_WRAP_GEMMS_ONLY);
    *out = (tp_compute){fused ? &wrap_fused_ops : &wrap_ops, base->store, w};
    return 0;
}
