#include "config.h"

#include "stages.h"

#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "comm.h"
#include "safetensors.h"
#include "sp_mlp.h"
#include "tp_mlp.h"
#include "util.h"
#include "vectors.h"

/* Reads the vector file's inputs and checks p against it: 0, or 2 with err. */
static int load(const char *vectors, int p, tpmlp_mlp32 *full, tpmlp_vec_dims *d, char *err, size_t errlen) {
    st_file f;
    if (st_open(&f, vectors, err, errlen) != 0) return 2;
    int rc = tpmlp_vec_load_inputs(&f, full, d, err, errlen);
    st_close(&f);
    if (rc != 0) return 2;
    if (p < 1 || p > d->F) {
        snprintf(err, errlen, "--tp: %d ranks for F = %d (allowed: 1 to F, so that every rank holds a block)", p, d->F);
        tpmlp_mlp32_free(full);
        return 2;
    }
    return 0;
}

/* fault injection for the test that a dying rank ends the job: TPMLP_TEST_DIE_RANK=r */
static void maybe_die(int rank) {
    const char *die = getenv("TPMLP_TEST_DIE_RANK");
    if (die && atoi(die) == rank) {
        fprintf(stderr, "tpmlp: rank %d: dying on purpose (TPMLP_TEST_DIE_RANK)\n", rank);
        raise(SIGKILL);
    }
}

/* DIR/rank-R.safetensors: the rank's tensors, for `check --tp P --rank R`. */
static int write_rank(const char *dir, const tp_shard *s, const tpmlp_vec_dims *d) {
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/rank-%d.safetensors", dir, s->rank);
    const float *const t[C_COUNT] = {
        [C_H] = s->h,     [C_A] = s->a,     [C_Y] = s->y,     [C_DX] = s->dx,           [C_DW1] = s->dw1,
        [C_DB1] = s->db1, [C_DW2] = s->dw2, [C_DB2] = s->db2, [C_YPART] = s->y_partial, [C_DXPART] = s->dx_partial};
    if (tpmlp_check_write_rank(path, d, s->p, s->rank, TPMLP_SPLIT_BALANCED, t, err, sizeof err) != 0) {
        fprintf(stderr, "tpmlp: rank %d: %s\n", s->rank, err);
        return -1;
    }
    return 0;
}

/* One rank's whole step; full (rank 0) receives the assembled outputs.
 * sequence: Megatron's sequence-parallel variant (rows split too).
 * rank_dir: also write the rank's own file there (tensor parallel only). */
static int run_rank(tpmlp_comm *c, const tpmlp_mlp32 *in, tpmlp_mlp32 *out_full, int sequence, int overlap,
                    const char *rank_dir, const tpmlp_vec_dims *d) {
    int rc;
    if (sequence) {
        sp_shard s;
        sp_shard_alloc(&s, in->N, in->D, in->F, c->size, c->rank, in->act);
        sp_shard_from_full(&s, in->x, in->w1, in->b1, in->w2, in->b2, in->dy);
        rc = sp_forward(&s, c);
        maybe_die(c->rank); /* between the collectives: the others wait in the backward's */
        rc = rc ? rc : sp_backward(&s, c);
        rc = rc ? rc : sp_gather_outputs(&s, c, out_full);
        sp_shard_free(&s);
    } else {
        tp_shard s;
        tp_shard_alloc(&s, in->N, in->D, in->F, c->size, c->rank, in->act);
        tp_shard_from_full(&s, in->x, in->w1, in->b1, in->w2, in->b2, in->dy);
        if (rank_dir) tp_shard_keep_partials(&s);
        s.overlap = overlap;
        rc = tp_forward(&s, c);
        maybe_die(c->rank); /* between the collectives: the others wait in the backward's */
        rc = rc ? rc : tp_backward(&s, c);
        if (rc == 0 && rank_dir) rc = write_rank(rank_dir, &s, d);
        rc = rc ? rc : tp_gather_outputs(&s, c, out_full);
        tp_shard_free(&s);
    }
    return rc;
}

typedef struct {
    tpmlp_comm *comm;
    const tpmlp_mlp32 *in;
    tpmlp_mlp32 *out;
    const char *rank_dir;
    const tpmlp_vec_dims *d;
    int overlap, rc;
} shard_job;

static void *shard_thread(void *arg) {
    shard_job *j = arg;
    omp_set_num_threads(1); /* one core per rank, as one process per rank would have */
    j->rc = run_rank(j->comm, j->in, j->comm->rank == 0 ? j->out : NULL, 0, j->overlap, j->rank_dir, j->d);
    if (j->rc != 0) { /* the other ranks may be waiting in a collective: end the process */
        fprintf(stderr, "tpmlp: shard stage: rank %d failed\n", j->comm->rank);
        exit(1);
    }
    return NULL;
}

static int write_out(const char *path, tpmlp_mlp32 *full, const tpmlp_vec_dims *d, char *err, size_t errlen) {
    return tpmlp_vec_write_outputs(path, full, d, err, errlen) == 0 ? 0 : 1;
}

int tp_run_shard(const char *vectors, const char *out, int p, int overlap, const char *rank_dir, char *err,
                 size_t errlen) {
    tpmlp_mlp32 in, full;
    tpmlp_vec_dims d;
    int rc = load(vectors, p, &in, &d, err, errlen);
    if (rc) return rc;
    tpmlp_mlp32_alloc(&full, in.N, in.D, in.F, in.act);
    openblas_set_num_threads(1);
    tpmlp_comm *comms = tpmlp_alloc((size_t)p, sizeof *comms, "communicators");
    shard_job *jobs = tpmlp_alloc((size_t)p, sizeof *jobs, "jobs");
    pthread_t *th = tpmlp_alloc((size_t)p, sizeof *th, "threads");
    if (comm_local_create(comms, p) != 0)
        return snprintf(err, errlen, "shard stage: cannot create %d rank%s", p, tpmlp_plural(p)), 1;
    for (int r = 0; r < p; r++) {
        jobs[r] = (shard_job){&comms[r], &in, &full, rank_dir, &d, overlap, 0};
        if (pthread_create(&th[r], NULL, shard_thread, &jobs[r]) != 0)
            tpmlp_die(1, "shard stage: cannot start the thread of rank %d", r);
    }
    for (int r = 0; r < p; r++) pthread_join(th[r], NULL);
    for (int r = 0; r < p; r++) comms[r].ops->destroy(&comms[r]);
    rc = write_out(out, &full, &d, err, errlen);
    tpmlp_mlp32_free(&in), tpmlp_mlp32_free(&full);
    free(comms), free(jobs), free(th);
    return rc;
}

#ifdef TPMLP_HAVE_MPI
#include <mpi.h>

#include "comm_mpi.h"

/* Threads for this rank: the node's cores shared among the ranks on it. */
static void threads_from_local_rank(void) {
    const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    long cores = sysconf(_SC_NPROCESSORS_ONLN), local = ls ? atol(ls) : 1;
    int t = (int)(local > 0 && cores / local > 1 ? cores / local : 1);
    openblas_set_num_threads(t);
    omp_set_num_threads(t);
}

int tp_dist_init(int *rank, int *size) {
    int provided;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) return -1;
    if (comm_mpi_check(MPI_Comm_rank(MPI_COMM_WORLD, rank), "mpi", "MPI_Comm_rank") ||
        comm_mpi_check(MPI_Comm_size(MPI_COMM_WORLD, size), "mpi", "MPI_Comm_size"))
        return -1;
    threads_from_local_rank();
    return 0;
}

int tp_run_mpi(const char *stage, const char *vectors, const char *out, int p, int overlap, const char *rank_dir,
               int *root, char *err, size_t errlen) {
    int rank = 0, size = 1;
    if (tp_dist_init(&rank, &size) != 0) return snprintf(err, errlen, "%s stage: MPI_Init failed", stage), 1;
    *root = rank == 0;
    tpmlp_mlp32 in, full;
    tpmlp_vec_dims d;
    /* every rank reads the same file and reaches the same verdict: no rank waits for another */
    int rc = 2;
    if (size != p)
        snprintf(err, errlen, "--tp %d but the job has %d rank%s (run it as mpiexec -n %d ...)", p, size,
                 tpmlp_plural(size), p);
    else
        rc = load(vectors, p, &in, &d, err, errlen);
    const int sequence = strcmp(stage, "sequence") == 0;
    if (rc == 0 && sequence && in.N % p != 0) {
        snprintf(err, errlen,
                 "--tp: the sequence stage splits the N = %d rows over %d ranks: N must be a multiple of p", in.N, p);
        tpmlp_mlp32_free(&in);
        rc = 2;
    }
    if (rc == 0) {
        tpmlp_comm c;
        rc = (strcmp(stage, "ring") == 0 ? comm_ring_create(&c) : comm_mpi_create(&c)) != 0;
        if (rc == 0) {
            if (rank == 0) tpmlp_mlp32_alloc(&full, in.N, in.D, in.F, in.act);
            rc = run_rank(&c, &in, rank == 0 ? &full : NULL, sequence, overlap, rank_dir, &d) != 0;
            if (rc == 0 && rank == 0) rc = write_out(out, &full, &d, err, errlen);
            if (rank == 0) tpmlp_mlp32_free(&full);
            c.ops->destroy(&c);
        }
        tpmlp_mlp32_free(&in);
        if (rc == 0) comm_mpi_check(MPI_Barrier(MPI_COMM_WORLD), "mpi", "MPI_Barrier");
    }
    if (rc == 1) { /* a failure on one rank: end the job rather than leave the others waiting */
        if (err[0]) fprintf(stderr, "tpmlp: %s\n", err);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (rc == 2) { /* bad input, the same verdict on every rank: rank 0 says it before anyone exits */
        if (rank == 0) fprintf(stderr, "tpmlp: %s\n", err), fflush(stderr);
        err[0] = '\0';
        comm_mpi_check(MPI_Barrier(MPI_COMM_WORLD), "mpi", "MPI_Barrier");
    }
    MPI_Finalize();
    return rc;
}
#endif
