/* The compute interface the tensor-parallel step is written against, beside
 * the communicator (comm.h): where a shard's tensors live and how the step's
 * operations run on them. tp_forward and tp_backward (tp_mlp.h) call only
 * these, so the step is written once for every stage:
 *   cpu    host memory, float32; OpenBLAS sgemm and the reference's fused
 *          passes (reference/mlp.h): compute_cpu.c
 *   cuda   device memory, float32 or bf16 storage; cuBLAS GEMMs and the
 *          kernels of kernels/ on one stream: compute_cuda.cu
 * Shapes as in mlp.h: row-major, weights (out, in). Every call returns 0, or
 * -1 after printing one line that names the backend, the call and what failed.
 * A backend may queue its work (a GPU stream): sync waits for it, and must be
 * called before a communicator reads what the work wrote. */
#ifndef TPMLP_COMPUTE_H
#define TPMLP_COMPUTE_H

#include <stddef.h>

#include "comm.h"
#include "mlp.h"
#include "step.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A buffer holds the backend's storage type (TPMLP_STORE), or float32
 * whatever the storage (TPMLP_F32: the bias gradients, which are sums over
 * all rows): the kind column of the step's table (step.h). */

typedef struct tp_compute tp_compute;
typedef struct {
    const char *name;
    /* n elements of kind k, zeroed; NULL after one line */
    void *(*alloc)(tp_compute *c, size_t n, tpmlp_kind k, const char *what);
    void (*release)(tp_compute *c, void *p);
    /* host float32 <-> the backend's buffer of kind k (rounded to the storage type on the way in) */
    int (*upload)(tp_compute *c, void *dst, const float *src, size_t n, tpmlp_kind k);
    int (*download)(tp_compute *c, float *dst, const void *src, size_t n, tpmlp_kind k);
    int (*copy)(tp_compute *c, void *dst, const void *src, size_t n, tpmlp_kind k);

    /* out (M,N) = in (M,K) · w (N,K)ᵀ                 (a Linear without bias) */
    int (*linear)(tp_compute *c, void *out, const void *in, const void *w, int M, int K, int N);
    /* din (M,K) = dout (M,N) · w (N,K)                (its input gradient) */
    int (*linear_dgrad)(tp_compute *c, void *din, const void *dout, const void *w, int M, int K, int N);
    /* dw (N,K) = dout (M,N)ᵀ · in (M,K)               (its weight gradient) */
    int (*linear_wgrad)(tp_compute *c, void *dw, const void *dout, const void *in, int M, int K, int N);
    /* h (M,N) += b; a = act(h); dact = act'(h) */
    int (*bias_act)(tp_compute *c, void *h, void *a, void *dact, const void *b, int M, int N, tpmlp_act act);
    /* dh (M,N) in: dA, out: dA ⊙ dact; db (N, float32) = Σ_rows dh */
    int (*act_bwd)(tp_compute *c, void *dh, float *db, const void *dact, int M, int N);
    /* y (M,N) += b on every row */
    int (*bias_add)(tp_compute *c, void *y, const void *b, int M, int N);
    /* db (N, float32) = Σ_rows g (M,N) */
    int (*col_sums)(tp_compute *c, float *db, const void *g, int M, int N);
    /* the work queued so far is done */
    int (*sync)(tp_compute *c);
    void (*destroy)(tp_compute *c);

    /* Optional fused forms (NULL: the plain operations above), as cuBLASLt's
     * GEMM epilogues offer them. Where they are used, dact is not computed
     * and the backward reads h instead:
     *   a = act(in·wᵀ + b), h = in·wᵀ + b
     *   dh = (dout·w) ⊙ act'(h), db = Σ_rows dh */
    int (*linear_bias_act)(tp_compute *c, void *a, void *h, const void *in, const void *w, const void *b, int M, int K,
                           int N, tpmlp_act act);
    int (*linear_dgrad_act_bwd)(tp_compute *c, void *dh, float *db, const void *dout, const void *w, const void *h,
                                int M, int K, int N, tpmlp_act act);
} tp_compute_ops;

struct tp_compute {
    const tp_compute_ops *ops;
    comm_dtype store; /* the storage type: what a communicator sums */
    void *impl;
};

/* The CPU backend (no state: one for every thread). */
tp_compute *tp_compute_cpu(void);

/* base, changed for a benchmark (its destroy frees the wrapper, not base):
 *   TP_WRAP_GEMMS_ONLY  every operation but the GEMMs a no-op: the GEMMs
 *                       alone, the baseline (the results are meaningless);
 *   TP_WRAP_NO_SYNC     sync returns at once: one rank's step timed on the
 *                       device alone, where no communicator reads its buffers
 *                       (a stream's own order and an event's wait suffice).
 * 0, or -1 after one line. */
#define TP_WRAP_GEMMS_ONLY 1
#define TP_WRAP_NO_SYNC 2
int tp_compute_wrap(tp_compute *out, tp_compute *base, int flags);

#ifdef __cplusplus
}
#endif

#endif
