// The nccl backend of the communicator interface (parallel/comm.h): buffers
// are device pointers, collectives run on the backend's stream; the blocking
// ones are waited for before returning, the non-blocking all-reduce when
// wait is called.
// Every NCCL result is checked; on an error the communicator is aborted with
// ncclCommAbort so no rank is left waiting, and the call returns -1.
#include "config.h"

#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm_nccl.h"

struct nccl_impl {
    ncclComm_t comm;
    cudaStream_t stream;
};

static int nccl_fail(tpmlp_comm *c, const char *what, ncclResult_t r) {
    fprintf(stderr, "tpmlp: rank %d: comm nccl: %s: %s\n", c->rank, what, ncclGetErrorString(r));
    ncclCommAbort(((nccl_impl *)c->impl)->comm);
    return -1;
}

// Waits for the backend's stream, asking NCCL meanwhile whether the
// communicator has failed (a peer gone, a network error): a blocking
// cudaStreamSynchronize would wait forever for a dead peer.
static int wait(tpmlp_comm *c, const char *what) {
    nccl_impl *im = (nccl_impl *)c->impl;
    for (;;) {
        cudaError_t e = cudaStreamQuery(im->stream);
        if (e == cudaSuccess) return 0;
        if (e != cudaErrorNotReady) {
            fprintf(stderr, "tpmlp: rank %d: comm nccl: %s: %s\n", c->rank, what, cudaGetErrorString(e));
            ncclCommAbort(im->comm);
            return -1;
        }
        ncclResult_t async = ncclSuccess;
        ncclResult_t r = ncclCommGetAsyncError(im->comm, &async);
        if (r != ncclSuccess || (async != ncclSuccess && async != ncclInProgress))
            return nccl_fail(c, what, r != ncclSuccess ? r : async);
        const struct timespec pause = {0, 20000}; /* 20 µs */
        nanosleep(&pause, NULL);
    }
}

static ncclDataType_t type_of(comm_dtype t) {
    return t == COMM_F32 ? ncclFloat32 : t == COMM_F64 ? ncclFloat64 : ncclBfloat16;
}

// started on the backend's stream; wait ends it
static int nccl_iallreduce(tpmlp_comm *c, void *buf, size_t n, comm_dtype t) {
    nccl_impl *im = (nccl_impl *)c->impl;
    ncclResult_t r = ncclAllReduce(buf, buf, n, type_of(t), ncclSum, im->comm, im->stream);
    return r != ncclSuccess ? nccl_fail(c, "ncclAllReduce", r) : 0;
}

static int nccl_wait(tpmlp_comm *c) { return wait(c, "ncclAllReduce (non-blocking)"); }

static int nccl_allreduce(tpmlp_comm *c, void *buf, size_t n, comm_dtype t) {
    return nccl_iallreduce(c, buf, n, t) != 0 ? -1 : wait(c, "ncclAllReduce");
}

static int nccl_allgather(tpmlp_comm *c, const void *send, void *recv, size_t n, comm_dtype t) {
    nccl_impl *im = (nccl_impl *)c->impl;
    ncclResult_t r = ncclAllGather(send, recv, n, type_of(t), im->comm, im->stream);
    return r != ncclSuccess ? nccl_fail(c, "ncclAllGather", r) : wait(c, "ncclAllGather");
}

static int nccl_reduce_scatter(tpmlp_comm *c, const void *send, void *recv, size_t n, comm_dtype t) {
    nccl_impl *im = (nccl_impl *)c->impl;
    ncclResult_t r = ncclReduceScatter(send, recv, n, type_of(t), ncclSum, im->comm, im->stream);
    return r != ncclSuccess ? nccl_fail(c, "ncclReduceScatter", r) : wait(c, "ncclReduceScatter");
}

static int nccl_barrier(tpmlp_comm *c) {
    // NCCL has no barrier: an all-reduce of one value serves
    nccl_impl *im = (nccl_impl *)c->impl;
    float *one;
    if (cudaMalloc(&one, sizeof *one) != cudaSuccess) return -1;
    ncclResult_t r = ncclAllReduce(one, one, 1, ncclFloat32, ncclSum, im->comm, im->stream);
    int rc = r != ncclSuccess ? nccl_fail(c, "barrier", r) : wait(c, "barrier");
    cudaFree(one);
    return rc;
}

// A rank's state gone: its communicator ended (at_once: aborted, so that no
// peer waits on it; else destroyed in order), its stream and itself freed.
static void impl_free(nccl_impl *im, int at_once) {
    if (im->comm && at_once) ncclCommAbort(im->comm);
    if (im->comm && !at_once) {
        ncclResult_t r = ncclCommDestroy(im->comm);
        if (r != ncclSuccess) fprintf(stderr, "tpmlp: comm nccl: ncclCommDestroy: %s\n", ncclGetErrorString(r));
    }
    cudaStreamDestroy(im->stream);
    free(im);
}

static void nccl_destroy(tpmlp_comm *c) { impl_free((nccl_impl *)c->impl, 0); }

/* no progress call: NCCL's kernels move the all-reduce on by themselves */
static const tpmlp_comm_ops nccl_ops = {"nccl",       nccl_allreduce, nccl_allgather,  nccl_reduce_scatter,
                                        nccl_barrier, nccl_destroy,   nccl_iallreduce, NULL,
                                        nccl_wait};

// A rank's state on its device, made current (the communicator, made next,
// binds to the current device), with its stream; NULL after one line.
static nccl_impl *impl_on_device(int rank, int device) {
    nccl_impl *im = (nccl_impl *)calloc(1, sizeof *im);
    cudaError_t e = im ? cudaSetDevice(device) : cudaErrorMemoryAllocation;
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&im->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) return im;
    fprintf(stderr, "tpmlp: rank %d: comm nccl: device %d: %s\n", rank, device, cudaGetErrorString(e));
    free(im);
    return NULL;
}

int comm_nccl_create(tpmlp_comm *c, const void *unique_id, int rank, int size, int device) {
    nccl_impl *im = impl_on_device(rank, device);
    if (im == NULL) return -1;
    ncclUniqueId id;
    memcpy(&id, unique_id, sizeof id);
    ncclResult_t r = ncclCommInitRank(&im->comm, size, id, rank);
    if (r != ncclSuccess) {
        fprintf(stderr, "tpmlp: rank %d: comm nccl: ncclCommInitRank: %s\n", rank, ncclGetErrorString(r));
        im->comm = NULL; /* (not made) */
        impl_free(im, 1);
        return -1;
    }
    *c = (tpmlp_comm){&nccl_ops, rank, size, im};
    return 0;
}

int comm_nccl_create_local(tpmlp_comm *comms, int size, const int *devices) {
    ncclUniqueId id;
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) {
        fprintf(stderr, "tpmlp: comm nccl: ncclGetUniqueId: %s\n", ncclGetErrorString(r));
        return -1;
    }
    for (int k = 0; k < size; k++) comms[k] = (tpmlp_comm){&nccl_ops, k, size, NULL};
    int made = 0; /* ranks with their impl and stream */
    while (made < size && (comms[made].impl = impl_on_device(made, devices[made])) != NULL) made++;
    // one thread creating every rank: inside a group, or the first
    // ncclCommInitRank would wait for the others forever
    if (made == size) {
        r = ncclGroupStart();
        for (int k = 0; k < size && r == ncclSuccess; k++) {
            if (cudaSetDevice(devices[k]) != cudaSuccess) r = ncclUnhandledCudaError;
            if (r == ncclSuccess) r = ncclCommInitRank(&((nccl_impl *)comms[k].impl)->comm, size, id, k);
        }
        ncclResult_t end = ncclGroupEnd();
        if (r == ncclSuccess) r = end;
        if (r != ncclSuccess)
            fprintf(stderr, "tpmlp: comm nccl: ncclCommInitRank for %d local GPUs: %s\n", size, ncclGetErrorString(r));
    }
    if (made == size && r == ncclSuccess) return 0;
    for (int k = 0; k < made; k++) impl_free((nccl_impl *)comms[k].impl, 1); /* abort what was made: nothing waits */
    return -1;
}

void comm_nccl_abort(tpmlp_comm *c) { impl_free((nccl_impl *)c->impl, 1); }

int comm_nccl_unique_id(void *out, size_t len) {
    if (len < sizeof(ncclUniqueId)) return -1;
    ncclUniqueId id;
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) {
        fprintf(stderr, "tpmlp: comm nccl: ncclGetUniqueId: %s\n", ncclGetErrorString(r));
        return -1;
    }
    memcpy(out, &id, sizeof id);
    return 0;
}
