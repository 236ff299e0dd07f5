/* The one runner of the tensor-parallel stages, CPU and GPU: load the vector
 * file and check p, set up each rank's shard, run the step, write each rank's
 * own file if asked, gather the outputs and write them. Which communicator
 * and compute backend each rank uses, how the processes start (MPI_Init) and
 * what runs between forward and backward are the program's choices, passed
 * in. Return codes: 0 done, -1 (or 1) failed while running, 2 bad input (err
 * has one line). */
#ifndef TPMLP_RUNNER_H
#define TPMLP_RUNNER_H

#include <stddef.h>

#include "comm.h"
#include "compute.h"
#include "step.h"
#include "vectors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int p;                /* ranks */
    int overlap;          /* dX's all-reduce during the weight gradients (tp_shard.overlap) */
    int sequence;         /* Megatron's sequence-parallel variant (rows split too; CPU) */
    const char *rank_dir; /* or NULL: each rank also writes DIR/rank-R.safetensors, its own
                           * tensors as `tpmlp check --tp P --rank R` reads them */
    /* the program's hooks, or NULL: thread_init runs first in each rank's
     * thread (tp_run_threads); between runs in each rank between forward and backward */
    void (*thread_init)(int rank, tp_compute *cpt);
    void (*between)(int rank);
} tp_run_opts;

/* overlap: the same operations either way, except that a backend's
 * non-blocking all-reduce may add the ranks' dX in another order
 * (MPI_Iallreduce and MPI_Allreduce pick their algorithms apart): at p > 2,
 * dX may differ in its last bits, within the check's all-reduce terms. */

/* p against the sizes: 1 to F ranks, and N a multiple of p for sequence. 0, or 2 with err. */
int tp_run_check_p(int p, int N, int F, int sequence, char *err, size_t errlen);

/* The vector file's inputs into in (allocated) and d, and tp_run_check_p. 0, or 2 with err. */
int tp_run_load(const char *vectors, const tp_run_opts *o, tpmlp_mlp32 *in, tpmlp_vec_dims *d, char *err,
                size_t errlen);

/* One rank: its shard of in on cpt, the step over c, its own file, and its
 * outputs gathered over host (a communicator of host buffers: c itself on
 * the CPU) into full on rank 0 (allocated by the caller; NULL elsewhere).
 * host NULL: no gather (ranks started apart, each writing its own file). 0 or -1. */
int tp_run_rank(tpmlp_comm *c, tpmlp_comm *host, tp_compute *cpt, const tpmlp_mlp32 *in, tpmlp_mlp32 *full,
                const tp_run_opts *o, const tpmlp_vec_dims *d);

/* o->p ranks as threads of this process, rank r on comms[r], hosts[r] and
 * cpts[r]. A failing rank ends the process: the others may be waiting in a
 * collective. 0, or 1 if a thread cannot start. */
int tp_run_threads(tpmlp_comm *comms, tpmlp_comm *hosts, tp_compute *const *cpts, const tpmlp_mlp32 *in,
                   tpmlp_mlp32 *full, const tp_run_opts *o, const tpmlp_vec_dims *d);

/* The full outputs under the vector names. 0, or 1 with err. */
int tp_run_write(const char *out, const tpmlp_mlp32 *full, const tpmlp_vec_dims *d, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
