/* The CPU tensor-parallel stages as runnable steps: read a vector file, run
 * the TP MLP on p ranks, write the full outputs under the vector names. */
#ifndef TPMLP_STAGES_H
#define TPMLP_STAGES_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes: 0 done, 1 failed while running, 2 bad input (err has one line). */

/* rank_dir (or NULL): each rank also writes DIR/rank-R.safetensors, its own
 * tensors as `tpmlp check --tp P --rank R` reads them (shard-shaped h, a and
 * weight gradients; y, dx, db2; y.partial and dx.partial). */

/* overlap: dX's all-reduce during the weight gradients (tp_shard.overlap);
 * the same operations either way, except that a backend's non-blocking
 * all-reduce may add the ranks' dX in another order (MPI_Iallreduce and
 * MPI_Allreduce pick their algorithms apart): at p > 2, dX may differ in its
 * last bits, within the check's all-reduce terms. */

/* shard: p ranks as threads of this process, local communicator. */
int tp_run_shard(const char *vectors, const char *out, int p, int overlap, const char *rank_dir, char *err,
                 size_t errlen);

#ifdef TPMLP_HAVE_MPI
/* dist_init: MPI_Init, rank and size, BLAS/OpenMP threads from the local rank
 * (the node's cores shared among its ranks). 0, or -1 if MPI_Init fails. */
int tp_dist_init(int *rank, int *size);

/* mpi, ring or sequence (on the mpi backend): this process is one rank of MPI_COMM_WORLD, whose size must be
 * p; rank 0 writes out. Follows dist_init: MPI_Init, threads from the local
 * rank, run, barrier, MPI_Finalize. *root is set on rank 0. */
int tp_run_mpi(const char *stage, const char *vectors, const char *out, int p, int overlap, const char *rank_dir,
               int *root, char *err, size_t errlen);
#endif

#ifdef __cplusplus
}
#endif

#endif
