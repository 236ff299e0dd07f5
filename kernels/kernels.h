/* CUDA kernels of the MLP's elementwise work, after llm.c's dev/cuda: each op
 * has numbered versions, from the plainest to the fastest, all validated
 * against the CPU reference by kernels/kernel_check.cu, which also prints a
 * table of time, GB/s and % of the measured device copy bandwidth.
 *
 *   bias_act   h = h + b; a = act(h); dact = act'(h)               (N,F)
 *     1  one thread per element
 *     2  16-byte vector loads and stores (float4, or 8 bf16); F % 4 (8) == 0
 *     3  as 2, with the CPU reference's activation code (reference/act.h: a
 *        fitted erfc sharing one exp with φ) instead of CUDA's erfcf and expf
 *     4  as 2, GELU from CUDA's erfcxf and one expf shared by Φ and φ
 *   act_bwd    dh = dh ⊙ dact; db = Σ_rows dh   (dact NULL: db = Σ_rows dh only, for db2)
 *     1  one thread per column, looping over all rows (coalesced across the warp)
 *     2  row chunks per block, partial column sums in a scratch array, then a
 *        second pass summing the chunks in order (deterministic, no atomics)
 *     3  as 2 with 16-byte vector loads and stores per thread; F % 4 (8) == 0
 * Data in fp32 or bf16 (bf16 storage, fp32 arithmetic); db is always fp32.
 * Launchers return 0 or -1 after one line naming the kernel and the CUDA error. */
#ifndef TPMLP_KERNELS_H
#define TPMLP_KERNELS_H

#include <cuda_runtime.h>

#include "comm.h"
#include "mlp.h"

/* A buffer's storage type is the communicators' comm_dtype (comm.h), one
 * vocabulary for both: COMM_F32 or COMM_BF16 here (no kernel takes COMM_F64). */

/* h, a, dact: N·F elements of dtype dt; b: F elements of dt; dact may be NULL. */
int kernel_bias_act(int version, comm_dtype dt, void *h, void *a, void *dact, const void *b, int N, int F,
                    tpmlp_act act, cudaStream_t stream);
/* dh (N·F, dt) in: dA, out: dH (untouched when dact is NULL); db: F floats;
 * scratch: (N/rows_per_chunk + 1)·F floats for version 2 (kernel_act_bwd_scratch). */
int kernel_act_bwd(int version, comm_dtype dt, void *dh, float *db, const void *dact, int N, int F, float *scratch,
                   cudaStream_t stream);
size_t kernel_act_bwd_scratch(int N, int F);
/* y = y + x, elementwise: n values of dt (the local sum of shard partials). */
int kernel_add(comm_dtype dt, void *y, const void *x, size_t n, cudaStream_t stream);
/* out (n floats) = in (n values of dt), exactly (bf16 widens). */
int kernel_to_f32(comm_dtype dt, float *out, const void *in, size_t n, cudaStream_t stream);
/* y = y + b on every row: y (N·D, dt), b (D, dt). */
int kernel_bias_add(comm_dtype dt, void *y, const void *b, int N, int D, cudaStream_t stream);

/* Rows of n values of dt are whole 16-byte packs (4 floats, 8 bf16): what
 * bias_act v2-v4 and act_bwd v3 need. */
static inline int kernel_fits_pack(comm_dtype dt, int n) { return n % (dt == COMM_F32 ? 4 : 8) == 0; }

#define BIAS_ACT_VERSIONS 4
#define ACT_BWD_VERSIONS 3

#endif
