/* The stages: their table (stages.h), and the CPU stages as the program runs
 * them: which backends, how the ranks start and share the cores, and the test
 * hook. The step and the runner are in parallel/ (tp_mlp.h, runner.h). */
#include "config.h"

#include <cblas.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "comm.h"
#include "launch.h"
#include "runner.h"
#include "stages.h"
#include "util.h"

const tpmlp_stage tpmlp_stages[] = {
    {"reference", "cpu", STAGE_ONE_PROCESS, "the float32 MLP in one process\n"},
    {"shard", "cpu, local", STAGE_TP | STAGE_RANK_OUTPUTS | STAGE_OVERLAP | STAGE_ONE_PROCESS,
     "P ranks as threads of one process, summing their partial outputs\n"},
    {"mpi", "cpu, mpi", STAGE_TP | STAGE_RANK_OUTPUTS | STAGE_OVERLAP | STAGE_MPI | STAGE_BENCH,
     "P processes, MPI_Allreduce; started without mpiexec, tpmlp starts the P ranks\n"
     "             itself (on this machine; mpiexec -n P --host ... to span machines)\n"},
    {"ring", "cpu, ring", STAGE_TP | STAGE_RANK_OUTPUTS | STAGE_OVERLAP | STAGE_MPI | STAGE_BENCH,
     "P processes, a hand-written ring all-reduce over MPI point-to-point\n"},
    {"sequence", "cpu, mpi", STAGE_TP | STAGE_MPI,
     "P processes, Megatron's sequence parallelism: rows split too, all-gather\n"
     "             before fc1 and reduce-scatter after fc2 (N a multiple of P)\n"},
    {"cuda", "cuda, local", STAGE_TP | STAGE_DTYPE | STAGE_OVERLAP | STAGE_LT | STAGE_ONE_PROCESS | STAGE_GPU,
     "one GPU, cuBLAS + our kernels; --dtype fp32|tf32|bf16; with --tp P, P shards on\n"
     "             that GPU, their partials summed there (runs tpmlp-cuda)\n"
     "             --lt: bias + GELU (tanh) and its backward fused into cuBLASLt's GEMM epilogues\n"},
    {"nccl", "cuda, nccl", STAGE_TP | STAGE_DTYPE | STAGE_OVERLAP | STAGE_LT | STAGE_LAUNCH | STAGE_GPU,
     "P GPUs, ncclAllReduce; one process per GPU: mpiexec -n P tpmlp run --stage nccl --tp P,\n"
     "             or one process driving P local GPUs, no MPI: tpmlp run --stage nccl --launch local --tp P\n"},
};
const int tpmlp_nstages = sizeof tpmlp_stages / sizeof *tpmlp_stages;

const tpmlp_stage *stage_find(const char *name) {
    for (int i = 0; i < tpmlp_nstages; i++)
        if (strcmp(tpmlp_stages[i].name, name) == 0) return &tpmlp_stages[i];
    return NULL;
}

void stage_names(char *buf, size_t len, unsigned mask, const char *last) {
    int n = 0, k = 0;
    for (int i = 0; i < tpmlp_nstages; i++) n += (tpmlp_stages[i].takes & mask) == mask;
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < tpmlp_nstages && at < len; i++) {
        if ((tpmlp_stages[i].takes & mask) != mask) continue;
        const char *sep = k == 0 ? "" : k == n - 1 ? last : ", ";
        at += (size_t)snprintf(buf + at, len - at, "%s%s", sep, tpmlp_stages[i].name), k++;
    }
}

static void one_core(int rank, tp_compute *cpt) {
    (void)rank, (void)cpt;
    omp_set_num_threads(1); /* one core per rank, as one process per rank would have */
}

int stage_shard(const char *vectors, const char *out, int p, int overlap, const char *rank_dir, char *err,
                size_t errlen) {
    const tp_run_opts o = {.p = p, .overlap = overlap, .rank_dir = rank_dir, .thread_init = one_core};
    tpmlp_mlp32 in, full;
    tpmlp_vec_dims d;
    int rc = tp_run_load(vectors, &o, &in, &d, err, errlen);
    if (rc) return rc;
    tpmlp_mlp32_alloc(&full, in.N, in.D, in.F, in.act);
    openblas_set_num_threads(1);
    tpmlp_comm *comms = tpmlp_alloc((size_t)p, sizeof *comms, "communicators");
    tp_compute **cpts = tpmlp_alloc((size_t)p, sizeof *cpts, "compute backends");
    for (int r = 0; r < p; r++) cpts[r] = tp_compute_cpu();
    if (comm_local_create(comms, p) != 0)
        return snprintf(err, errlen, "shard stage: cannot create %d rank%s", p, tpmlp_plural(p)), 1;
    rc = tp_run_threads(comms, comms, cpts, &in, &full, &o, &d); /* host memory: the communicator gathers too */
    for (int r = 0; r < p; r++) comms[r].ops->destroy(&comms[r]);
    rc = rc ? rc : tp_run_write(out, &full, &d, err, errlen);
    tpmlp_mlp32_free(&in), tpmlp_mlp32_free(&full);
    free(comms), free(cpts);
    return rc;
}

#ifdef TPMLP_HAVE_MPI
/* fault injection for the test that a dying rank ends the job: TPMLP_TEST_DIE_RANK=r
 * (between the collectives: the others wait in the backward's) */
static void maybe_die(int rank) {
    const char *die = getenv("TPMLP_TEST_DIE_RANK");
    if (die && atoi(die) == rank) {
        fprintf(stderr, "tpmlp: rank %d: dying on purpose (TPMLP_TEST_DIE_RANK)\n", rank);
        raise(SIGKILL);
    }
}
#include <mpi.h>

#include "comm_mpi.h"

int stage_mpi(const char *stage, const char *vectors, const char *out, int p, int overlap, const char *rank_dir,
              int *root, char *err, size_t errlen) {
    int rank = 0, size = 1;
    if (launch_mpi_init(&rank, &size) != 0) return snprintf(err, errlen, "%s stage: MPI_Init failed", stage), 1;
    *root = rank == 0;
    const tp_run_opts o = {.p = p,
                           .overlap = overlap,
                           .sequence = strcmp(stage, "sequence") == 0,
                           .rank_dir = rank_dir,
                           .between = maybe_die};
    tpmlp_mlp32 in, full;
    tpmlp_vec_dims d;
    /* every rank reads the same file and reaches the same verdict: no rank waits for another */
    int rc = 2;
    if (size != p)
        snprintf(err, errlen, "--tp %d but the job has %d rank%s (run it as mpiexec -n %d ...)", p, size,
                 tpmlp_plural(size), p);
    else
        rc = tp_run_load(vectors, &o, &in, &d, err, errlen);
    if (rc == 0) {
        tpmlp_comm c;
        rc = (strcmp(stage, "ring") == 0 ? comm_ring_create(&c) : comm_mpi_create(&c)) != 0;
        if (rc == 0) {
            if (rank == 0) tpmlp_mlp32_alloc(&full, in.N, in.D, in.F, in.act);
            rc = tp_run_rank(&c, &c, tp_compute_cpu(), &in, rank == 0 ? &full : NULL, &o, &d) != 0;
            if (rc == 0 && rank == 0) rc = tp_run_write(out, &full, &d, err, errlen);
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
