/* The local backend: p ranks are p threads of one process. Each collective
 * publishes every rank's buffer, waits at a barrier, and lets every rank sum
 * the published buffers in rank order 0..p-1 — so all ranks compute the same
 * bits — before a second barrier lets the buffers be reused. The buffers are
 * host memory, or another memory (one GPU's) through comm_local_memory. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "util.h"

typedef struct {
    pthread_barrier_t barrier;
    const void **slot; /* per rank: the buffer it published */
    void **ctx;        /* per rank: its memory context (NULL for host memory) */
    comm_local_memory mem;
    int refs;
    pthread_mutex_t lock;
} local_group;

static int local_barrier(tpmlp_comm *c) {
    int rc = pthread_barrier_wait(&((local_group *)c->impl)->barrier);
    return rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD ? 0 : -1;
}

/* ---- host memory */
static int host_sum(void *ctx, void *out, const void *const *slot, int size, size_t offset, size_t n, comm_dtype t) {
    (void)ctx;
    if (t == COMM_F32) {
        float *o = out;
        for (size_t i = 0; i < n; i++) o[i] = ((const float *)slot[0])[offset + i];
        for (int r = 1; r < size; r++)
            for (size_t i = 0; i < n; i++) o[i] += ((const float *)slot[r])[offset + i];
    } else if (t == COMM_F64) {
        double *o = out;
        for (size_t i = 0; i < n; i++) o[i] = ((const double *)slot[0])[offset + i];
        for (int r = 1; r < size; r++)
            for (size_t i = 0; i < n; i++) o[i] += ((const double *)slot[r])[offset + i];
    } else {
        fprintf(stderr, "tpmlp: comm local: host memory sums float32 and float64 only\n");
        return -1;
    }
    return 0;
}
static int host_copy(void *ctx, void *dst, const void *src, size_t bytes) {
    (void)ctx, memcpy(dst, src, bytes);
    return 0;
}
static void *host_alloc(void *ctx, size_t bytes) {
    (void)ctx;
    void *p = malloc(bytes + 1);
    if (p == NULL) fprintf(stderr, "tpmlp: comm local: cannot allocate %zu bytes\n", bytes);
    return p;
}
static void host_release(void *ctx, void *p) { (void)ctx, free(p); }
static int host_sync(void *ctx) { return (void)ctx, 0; }
static const comm_local_memory host_memory = {host_sum, host_copy, host_alloc, host_release, host_sync};

static void *ctx_of(const tpmlp_comm *c) {
    const local_group *g = c->impl;
    return g->ctx ? g->ctx[c->rank] : NULL;
}

static int local_allreduce(tpmlp_comm *c, void *buf, size_t n, comm_dtype t) {
    if (c->size == 1) return 0; /* the sum of one buffer is itself */
    local_group *g = c->impl;
    void *ctx = ctx_of(c);
    const size_t bytes = n * comm_dtype_size(t);
    void *tmp = g->mem.alloc(ctx, bytes);
    if (tmp == NULL) return -1; /* the other ranks wait at the barrier: the caller ends the process */
    g->slot[c->rank] = buf;
    int rc = g->mem.sync(ctx) | local_barrier(c);
    rc |= g->mem.sum(ctx, tmp, g->slot, c->size, 0, n, t) | g->mem.sync(ctx);
    rc |= local_barrier(c);                                                 /* everyone has read every buffer */
    if (rc == 0) rc = g->mem.copy(ctx, buf, tmp, bytes) | g->mem.sync(ctx); /* a failed sum leaves buf alone */
    g->mem.release(ctx, tmp);
    return rc ? -1 : 0;
}

static int local_allgather(tpmlp_comm *c, const void *send, void *recv, size_t n, comm_dtype t) {
    local_group *g = c->impl;
    void *ctx = ctx_of(c);
    size_t bytes = n * comm_dtype_size(t);
    g->slot[c->rank] = send;
    int rc = g->mem.sync(ctx) | local_barrier(c);
    for (int r = 0; r < c->size; r++) rc |= g->mem.copy(ctx, (char *)recv + (size_t)r * bytes, g->slot[r], bytes);
    rc |= g->mem.sync(ctx);
    return rc | local_barrier(c) ? -1 : 0;
}

static int local_reduce_scatter(tpmlp_comm *c, const void *send, void *recv, size_t n, comm_dtype t) {
    local_group *g = c->impl;
    void *ctx = ctx_of(c);
    g->slot[c->rank] = send;
    int rc = g->mem.sync(ctx) | local_barrier(c);
    rc |= g->mem.sum(ctx, recv, g->slot, c->size, (size_t)c->rank * n, n, t) | g->mem.sync(ctx);
    return rc | local_barrier(c) ? -1 : 0;
}

static void local_destroy(tpmlp_comm *c) {
    local_group *g = c->impl;
    pthread_mutex_lock(&g->lock);
    int last = --g->refs == 0;
    pthread_mutex_unlock(&g->lock);
    if (last) {
        pthread_barrier_destroy(&g->barrier);
        pthread_mutex_destroy(&g->lock);
        free(g->slot), free(g->ctx);
        free(g);
    }
}

static const tpmlp_comm_ops local_ops = {
    "local", local_allreduce, local_allgather, local_reduce_scatter, local_barrier, local_destroy, NULL, NULL,
    NULL}; /* blocking only */

int comm_local_create_on(tpmlp_comm *comms, int size, const comm_local_memory *mem, void *const *ctx) {
    local_group *g = calloc(1, sizeof *g);
    if (g == NULL || (g->slot = calloc((size_t)size, sizeof *g->slot)) == NULL ||
        (ctx && (g->ctx = calloc((size_t)size, sizeof *g->ctx)) == NULL) ||
        pthread_barrier_init(&g->barrier, NULL, (unsigned)size) != 0 || pthread_mutex_init(&g->lock, NULL) != 0) {
        fprintf(stderr, "tpmlp: comm local: cannot create a group of %d rank%s\n", size, tpmlp_plural(size));
        if (g) free(g->slot), free(g->ctx);
        free(g);
        return -1;
    }
    for (int r = 0; ctx && r < size; r++) g->ctx[r] = ctx[r]; /* a copy: the caller's array may go */
    g->mem = *mem;
    g->refs = size;
    for (int r = 0; r < size; r++) comms[r] = (tpmlp_comm){&local_ops, r, size, g};
    return 0;
}

int comm_local_create(tpmlp_comm *comms, int size) { return comm_local_create_on(comms, size, &host_memory, NULL); }
