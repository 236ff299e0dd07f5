/* The mpi backend: the collectives of MPI (Open MPI), MPI_COMM_WORLD. Errors
 * are returned, not fatal (MPI_ERRORS_RETURN), so each is reported in one line
 * and the job is ended with MPI_Abort: a failing rank never leaves the others
 * waiting in a collective. */
#include "config.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "comm.h"
#include "comm_mpi.h"

int comm_mpi_check(int rc, const char *backend, const char *what) {
    if (rc == MPI_SUCCESS) return 0;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0, rank = -1;
    MPI_Error_string(rc, msg, &len);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    fprintf(stderr, "tpmlp: rank %d: comm %s: %s failed: %s\n", rank, backend, what, msg);
    MPI_Abort(MPI_COMM_WORLD, 1);
    return -1;
}

int comm_mpi_count(size_t n, const char *backend, const char *what) {
    if (n <= INT_MAX) return 0;
    fprintf(stderr, "tpmlp: comm %s: %s: %zu elements exceed MPI's int count\n", backend, what, n);
    MPI_Abort(MPI_COMM_WORLD, 1);
    return -1;
}

MPI_Datatype comm_mpi_type(comm_dtype t) { return t == COMM_F32 ? MPI_FLOAT : MPI_DOUBLE; }

static int mpi_allreduce(tpmlp_comm *c, void *buf, size_t n, comm_dtype t) {
    (void)c;
    if (comm_mpi_count(n, "mpi", "MPI_Allreduce")) return -1;
    return comm_mpi_check(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, comm_mpi_type(t), MPI_SUM, MPI_COMM_WORLD), "mpi",
                          "MPI_Allreduce");
}

static int mpi_allgather(tpmlp_comm *c, const void *send, void *recv, size_t n, comm_dtype t) {
    (void)c;
    if (comm_mpi_count(n, "mpi", "MPI_Allgather")) return -1;
    return comm_mpi_check(MPI_Allgather(send, (int)n, comm_mpi_type(t), recv, (int)n, comm_mpi_type(t), MPI_COMM_WORLD),
                          "mpi", "MPI_Allgather");
}

static int mpi_reduce_scatter(tpmlp_comm *c, const void *send, void *recv, size_t n, comm_dtype t) {
    (void)c;
    if (comm_mpi_count(n, "mpi", "MPI_Reduce_scatter_block")) return -1;
    return comm_mpi_check(MPI_Reduce_scatter_block(send, recv, (int)n, comm_mpi_type(t), MPI_SUM, MPI_COMM_WORLD),
                          "mpi", "MPI_Reduce_scatter_block");
}

int comm_mpi_barrier(tpmlp_comm *c) {
    (void)c;
    return comm_mpi_check(MPI_Barrier(MPI_COMM_WORLD), "mpi", "MPI_Barrier");
}

/* The one outstanding non-blocking all-reduce (c->impl) */
static int mpi_iallreduce(tpmlp_comm *c, void *buf, size_t n, comm_dtype t) {
    if (comm_mpi_count(n, "mpi", "MPI_Iallreduce")) return -1;
    return comm_mpi_check(
        MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, comm_mpi_type(t), MPI_SUM, MPI_COMM_WORLD, (MPI_Request *)c->impl),
        "mpi", "MPI_Iallreduce");
}

/* Open MPI moves a non-blocking collective on only inside MPI calls: a test
 * now and then between the GEMMs lets the next round of it start. */
static int mpi_progress(tpmlp_comm *c) {
    int done;
    return comm_mpi_check(MPI_Test((MPI_Request *)c->impl, &done, MPI_STATUS_IGNORE), "mpi", "MPI_Test");
}

static int mpi_wait(tpmlp_comm *c) {
    return comm_mpi_check(MPI_Wait((MPI_Request *)c->impl, MPI_STATUS_IGNORE), "mpi", "MPI_Wait");
}

static void mpi_destroy(tpmlp_comm *c) {
    free(c->impl);
    c->impl = NULL;
}

static const tpmlp_comm_ops mpi_ops = {
    "mpi",          mpi_allreduce, mpi_allgather, mpi_reduce_scatter, comm_mpi_barrier, mpi_destroy,
    mpi_iallreduce, mpi_progress,  mpi_wait};

int comm_mpi_create(tpmlp_comm *c) {
    MPI_Request *req = malloc(sizeof *req);
    if (req == NULL) {
        fprintf(stderr, "tpmlp: comm mpi: out of memory for a request\n");
        return -1;
    }
    *req = MPI_REQUEST_NULL;
    c->ops = &mpi_ops, c->impl = req;
    if (comm_mpi_check(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "mpi", "MPI_Comm_set_errhandler"))
        return -1;
    if (comm_mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, &c->rank), "mpi", "MPI_Comm_rank")) return -1;
    return comm_mpi_check(MPI_Comm_size(MPI_COMM_WORLD, &c->size), "mpi", "MPI_Comm_size");
}
