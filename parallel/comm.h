/* The communicator interface the tensor-parallel MLP is written against, as
 * torch.distributed is written against its backends (gloo, NCCL). Backends:
 *   local  p ranks as threads of one process (the shard stage, unit tests),
 *          over host memory or, with memory hooks, one GPU's (comm_local.c)
 *   mpi    MPI_Allreduce and friends over Open MPI (comm_mpi.c)
 *   ring   ring reduce-scatter + all-gather by hand over MPI point-to-point
 *          (comm_ring.c)
 *   nccl   ncclAllReduce and friends on a CUDA stream (comm_nccl.cu)
 * mpi (MPI_Iallreduce) and nccl (its own stream) have a non-blocking
 * all-reduce; on local and ring, comm_iallreduce runs the blocking one.
 * Every call returns 0, or -1 after printing one line that names the
 * backend, the call and what failed. All collectives are in place or
 * out of place as documented; counts are per rank where they say so. */
#ifndef TPMLP_COMM_H
#define TPMLP_COMM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* COMM_BF16 (bfloat16; each addition's result rounded to bf16, as NCCL's
 * ring and the one-GPU local sum do it) only on the backends that sum device
 * buffers: nccl and local on one GPU. */
typedef enum { COMM_F32, COMM_F64, COMM_BF16 } comm_dtype;

typedef struct tpmlp_comm tpmlp_comm;
typedef struct {
    const char *name;
    /* buf (n) = Σ over ranks of buf (n), in place; every rank gets the same bits */
    int (*allreduce)(tpmlp_comm *c, void *buf, size_t n, comm_dtype t);
    /* recv (size·n) = the ranks' send (n) blocks in rank order */
    int (*allgather)(tpmlp_comm *c, const void *send, void *recv, size_t n, comm_dtype t);
    /* recv (n) = Σ over ranks of block [rank] of send (size·n) */
    int (*reduce_scatter)(tpmlp_comm *c, const void *send, void *recv, size_t n, comm_dtype t);
    int (*barrier)(tpmlp_comm *c);
    void (*destroy)(tpmlp_comm *c);
    /* The non-blocking all-reduce (optional: NULL in a backend without one,
     * and comm_iallreduce below then runs the blocking one). iallreduce
     * starts buf (n) = Σ over ranks in place and returns; buf is neither read
     * nor written until wait returns. One at a time per communicator.
     * progress gives the backend the CPU for a moment to move it on, as MPI
     * implementations without a progress thread need. */
    int (*iallreduce)(tpmlp_comm *c, void *buf, size_t n, comm_dtype t);
    int (*progress)(tpmlp_comm *c);
    int (*wait)(tpmlp_comm *c);
} tpmlp_comm_ops;

struct tpmlp_comm {
    const tpmlp_comm_ops *ops;
    int rank, size;
    void *impl;
};

static inline size_t comm_dtype_size(comm_dtype t) { return t == COMM_F32 ? 4 : t == COMM_F64 ? 8 : 2; }

/* The non-blocking all-reduce on any backend: where it has none, start does
 * the whole all-reduce and wait has nothing left to do. */
static inline int comm_iallreduce(tpmlp_comm *c, void *buf, size_t n, comm_dtype t) {
    return c->ops->iallreduce ? c->ops->iallreduce(c, buf, n, t) : c->ops->allreduce(c, buf, n, t);
}
static inline int comm_progress(tpmlp_comm *c) {
    return c->ops->iallreduce && c->ops->progress ? c->ops->progress(c) : 0;
}
static inline int comm_wait(tpmlp_comm *c) { return c->ops->iallreduce ? c->ops->wait(c) : 0; }

/* local: creates size communicators sharing one group, for size threads,
 * over host memory. */
int comm_local_create(tpmlp_comm *comms, int size);

/* The memory a local group's buffers live in, for ranks whose buffers are
 * not host memory (p shards on one GPU). ctx is the calling rank's. */
typedef struct {
    /* out (n) = Σ over r = 0..size-1, in that order, of slots[r][offset .. offset+n) */
    int (*sum)(void *ctx, void *out, const void *const *slots, int size, size_t offset, size_t n, comm_dtype t);
    int (*copy)(void *ctx, void *dst, const void *src, size_t bytes);
    void *(*alloc)(void *ctx, size_t bytes); /* NULL after one line */
    void (*release)(void *ctx, void *p);
    int (*sync)(void *ctx); /* the rank's queued work is done */
} comm_local_memory;
/* The same over that memory: rank r's calls use ctx[r]. */
int comm_local_create_on(tpmlp_comm *comms, int size, const comm_local_memory *mem, void *const *ctx);

#ifdef TPMLP_HAVE_MPI
/* mpi and ring over MPI_COMM_WORLD (MPI must be initialised). */
int comm_mpi_create(tpmlp_comm *c);
int comm_ring_create(tpmlp_comm *c);
#endif

#ifdef __cplusplus
}
#endif

#endif
