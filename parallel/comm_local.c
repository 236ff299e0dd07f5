/* The local backend: p ranks are p threads of one process. Each collective
 * publishes every rank's buffer, waits at a barrier, and lets every rank sum
 * the published buffers in rank order 0..p-1 — so all ranks compute the same
 * bits — before a second barrier lets the buffers be reused. */
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
    int refs;
    pthread_mutex_t lock;
} local_group;

static int local_barrier(tpmlp_comm *c) {
    int rc = pthread_barrier_wait(&((local_group *)c->impl)->barrier);
    return rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD ? 0 : -1;
}

/* out (n) = Σ_r block (offset) of rank r's slot, in rank order */
static void sum_slots(const local_group *g, int size, void *out, size_t offset, size_t n, comm_dtype t) {
    if (t == COMM_F32) {
        float *o = out;
        for (size_t i = 0; i < n; i++) o[i] = ((const float *)g->slot[0])[offset + i];
        for (int r = 1; r < size; r++)
            for (size_t i = 0; i < n; i++) o[i] += ((const float *)g->slot[r])[offset + i];
    } else {
        double *o = out;
        for (size_t i = 0; i < n; i++) o[i] = ((const double *)g->slot[0])[offset + i];
        for (int r = 1; r < size; r++)
            for (size_t i = 0; i < n; i++) o[i] += ((const double *)g->slot[r])[offset + i];
    }
}

static int local_allreduce(tpmlp_comm *c, void *buf, size_t n, comm_dtype t) {
    local_group *g = c->impl;
    void *tmp = malloc(n * comm_dtype_size(t) + 1);
    if (tmp == NULL) {
        fprintf(stderr, "tpmlp: comm local: all-reduce: cannot allocate %zu bytes\n", n * comm_dtype_size(t));
        return -1; /* the other ranks wait at the barrier: the caller aborts the process */
    }
    g->slot[c->rank] = buf;
    int rc = local_barrier(c);
    sum_slots(g, c->size, tmp, 0, n, t);
    rc |= local_barrier(c); /* everyone has read every buffer */
    memcpy(buf, tmp, n * comm_dtype_size(t));
    free(tmp);
    return rc;
}

static int local_allgather(tpmlp_comm *c, const void *send, void *recv, size_t n, comm_dtype t) {
    local_group *g = c->impl;
    size_t bytes = n * comm_dtype_size(t);
    g->slot[c->rank] = send;
    int rc = local_barrier(c);
    for (int r = 0; r < c->size; r++) memcpy((char *)recv + (size_t)r * bytes, g->slot[r], bytes);
    return rc | local_barrier(c);
}

static int local_reduce_scatter(tpmlp_comm *c, const void *send, void *recv, size_t n, comm_dtype t) {
    local_group *g = c->impl;
    g->slot[c->rank] = send;
    int rc = local_barrier(c);
    sum_slots(g, c->size, recv, (size_t)c->rank * n, n, t);
    return rc | local_barrier(c);
}

static void local_destroy(tpmlp_comm *c) {
    local_group *g = c->impl;
    pthread_mutex_lock(&g->lock);
    int last = --g->refs == 0;
    pthread_mutex_unlock(&g->lock);
    if (last) {
        pthread_barrier_destroy(&g->barrier);
        pthread_mutex_destroy(&g->lock);
        free(g->slot);
        free(g);
    }
}

static const tpmlp_comm_ops local_ops = {
    "local", local_allreduce, local_allgather, local_reduce_scatter, local_barrier, local_destroy, NULL, NULL,
    NULL}; /* blocking only */

int comm_local_create(tpmlp_comm *comms, int size) {
    local_group *g = calloc(1, sizeof *g);
    if (g == NULL || (g->slot = calloc((size_t)size, sizeof *g->slot)) == NULL ||
        pthread_barrier_init(&g->barrier, NULL, (unsigned)size) != 0 || pthread_mutex_init(&g->lock, NULL) != 0) {
        fprintf(stderr, "tpmlp: comm local: cannot create a group of %d rank%s\n", size, tpmlp_plural(size));
        if (g) free(g->slot);
        free(g);
        return -1;
    }
    g->refs = size;
    for (int r = 0; r < size; r++) comms[r] = (tpmlp_comm){&local_ops, r, size, g};
    return 0;
}
