/* The ring backend: all-reduce written by hand, as NCCL does it inside, over
 * MPI point-to-point (MPI_Sendrecv to the right neighbour, from the left).
 *
 * The buffer is cut into p chunks. Reduce-scatter: in p-1 steps each rank
 * passes one chunk to the right and adds the chunk arriving from the left to
 * its own copy; afterwards rank r holds chunk r summed over all ranks.
 * All-gather: in p-1 more steps the finished chunks travel once around the
 * ring. Each rank sends 2(p-1)/p of the buffer in all — the bus-bandwidth
 * factor nccl-tests reports. Every chunk is summed once, along the ring, and
 * then copied: all ranks end with the same bits. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "comm_mpi.h"

/* chunk i of a buffer of n elements cut into p: the first n mod p chunks one longer */
static void chunk(size_t n, int p, int i, size_t *off, size_t *len) {
    size_t q = n / (size_t)p, r = n % (size_t)p, ui = (size_t)i;
    *off = ui * q + (ui < r ? ui : r);
    *len = q + (ui < r ? 1 : 0);
}

static void add_into(void *dst, const void *src, size_t n, comm_dtype t) {
    if (t == COMM_F32)
        for (size_t i = 0; i < n; i++) ((float *)dst)[i] += ((const float *)src)[i];
    else
        for (size_t i = 0; i < n; i++) ((double *)dst)[i] += ((const double *)src)[i];
}

static int mod(int a, int p) { return ((a % p) + p) % p; }

/* In place on buf (n): afterwards chunk [rank] holds the sum over ranks. */
static int ring_reduce_scatter_inplace(tpmlp_comm *c, void *buf, size_t n, comm_dtype t, void *tmp) {
    const int p = c->size, right = mod(c->rank + 1, p), left = mod(c->rank - 1, p);
    const size_t es = comm_dtype_size(t);
    for (int s = 0; s < p - 1; s++) {
        size_t so, sl, ro, rl;
        chunk(n, p, mod(c->rank - s - 1, p), &so, &sl); /* what I pass on */
        chunk(n, p, mod(c->rank - s - 2, p), &ro, &rl); /* what arrives, to add to mine */
        if (comm_mpi_check(MPI_Sendrecv((char *)buf + so * es, (int)sl, comm_mpi_type(t), right, s, tmp, (int)rl,
                                        comm_mpi_type(t), left, s, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
                           "ring", "reduce-scatter MPI_Sendrecv"))
            return -1;
        add_into((char *)buf + ro * es, tmp, rl, t);
    }
    return 0;
}

/* In place on buf (n): chunk [r] comes from rank r, for every r. */
static int ring_allgather_inplace(tpmlp_comm *c, void *buf, size_t n, comm_dtype t) {
    const int p = c->size, right = mod(c->rank + 1, p), left = mod(c->rank - 1, p);
    const size_t es = comm_dtype_size(t);
    for (int s = 0; s < p - 1; s++) {
        size_t so, sl, ro, rl;
        chunk(n, p, mod(c->rank - s, p), &so, &sl);
        chunk(n, p, mod(c->rank - s - 1, p), &ro, &rl);
        if (comm_mpi_check(MPI_Sendrecv((char *)buf + so * es, (int)sl, comm_mpi_type(t), right, 100 + s,
                                        (char *)buf + ro * es, (int)rl, comm_mpi_type(t), left, 100 + s, MPI_COMM_WORLD,
                                        MPI_STATUS_IGNORE),
                           "ring", "all-gather MPI_Sendrecv"))
            return -1;
    }
    return 0;
}

static int ring_allreduce(tpmlp_comm *c, void *buf, size_t n, comm_dtype t) {
    if (c->size == 1) return 0;
    if (comm_mpi_count(n, "ring", "all-reduce")) return -1;
    size_t first, biggest;
    chunk(n, c->size, 0, &first, &biggest);
    void *tmp = malloc(biggest * comm_dtype_size(t) + 1);
    if (tmp == NULL) return comm_mpi_check(MPI_ERR_NO_MEM, "ring", "all-reduce buffer");
    int rc = ring_reduce_scatter_inplace(c, buf, n, t, tmp);
    if (rc == 0) rc = ring_allgather_inplace(c, buf, n, t);
    free(tmp);
    return rc;
}

static int ring_allgather(tpmlp_comm *c, const void *send, void *recv, size_t n, comm_dtype t) {
    size_t bytes = n * comm_dtype_size(t);
    if (comm_mpi_count(n * (size_t)c->size, "ring", "all-gather")) return -1;
    memcpy((char *)recv + (size_t)c->rank * bytes, send, bytes);
    return c->size == 1 ? 0 : ring_allgather_inplace(c, recv, n * (size_t)c->size, t);
}

static int ring_reduce_scatter(tpmlp_comm *c, const void *send, void *recv, size_t n, comm_dtype t) {
    size_t bytes = n * comm_dtype_size(t), total = bytes * (size_t)c->size;
    if (comm_mpi_count(n * (size_t)c->size, "ring", "reduce-scatter")) return -1;
    void *work = malloc(total + 1), *tmp = malloc(bytes + 1);
    if (work == NULL || tmp == NULL) {
        free(work), free(tmp);
        return comm_mpi_check(MPI_ERR_NO_MEM, "ring", "reduce-scatter buffer");
    }
    memcpy(work, send, total);
    int rc = c->size == 1 ? 0 : ring_reduce_scatter_inplace(c, work, n * (size_t)c->size, t, tmp);
    if (rc == 0) memcpy(recv, (char *)work + (size_t)c->rank * bytes, bytes);
    free(work), free(tmp);
    return rc;
}

static void ring_destroy(tpmlp_comm *c) { (void)c; }

static const tpmlp_comm_ops ring_ops = {
    "ring", ring_allreduce, ring_allgather, ring_reduce_scatter, comm_mpi_barrier, ring_destroy, NULL, NULL,
    NULL}; /* blocking only */

int comm_ring_create(tpmlp_comm *c) {
    if (comm_mpi_create(c) != 0) return -1;
    c->ops->destroy(c); /* the rank and size are all it keeps of the mpi backend */
    c->ops = &ring_ops;
    return 0;
}
