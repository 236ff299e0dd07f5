// tpmlp-cuda: stage 5, the MLP on one GPU. cuBLAS for the six GEMMs, our
// kernels (kernels.cu) for everything between them. Math modes:
//   fp32  fp32 storage, fp32 GEMMs
//   tf32  fp32 storage, GEMMs on TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32)
//   bf16  bf16 storage, fp32 accumulation (CUBLAS_COMPUTE_32F)
// Reads a vector file, writes the outputs under the vector names (F32), so
// `tpmlp check --dtype MODE VECTORS OUT` verifies them. `tpmlp run --stage
// cuda` runs this program. Without a GPU it says so and exits 77.
//   tpmlp-cuda [--dtype fp32|tf32|bf16] VECTORS -o OUT
//   tpmlp-cuda [--dtype ...] --tp P VECTORS -o OUT   P shards on this GPU, partials summed on it
//   mpiexec -n P tpmlp-cuda --nccl --tp P ...        stage 6: one rank per GPU, ncclAllReduce
//   tpmlp-cuda [--dtype ...] --bench N D F      fwd+bwd against the six GEMMs alone
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <vector>

#include "bound.h"
#ifdef TPMLP_HAVE_NCCL
#include "comm_nccl.h"
#endif
#include "host.h"
#include "kernels.h"
#include "safetensors.h"
#include "util.h"
#include "tp_mlp.h"
#include "vectors.h"
#ifdef TPMLP_HAVE_MPI
#include <mpi.h>

#include "comm_mpi.h"
#include "stages.h"
#endif

#define CUBLAS_OK(call)                                                                                                \
    do {                                                                                                               \
        cublasStatus_t s_ = (call);                                                                                    \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                                               \
            tpmlp_die(1, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cublasGetStatusString(s_));                       \
    } while (0)
#define KERNEL_OK(call)                                                                                                \
    do {                                                                                                               \
        if ((call) != 0) tpmlp_die(1, "%s:%d: %s failed", __FILE__, __LINE__, #call);                                  \
    } while (0)

struct mode {
    kernel_dtype dt;
    cudaDataType_t type;
    cublasComputeType_t compute;
};

// Row-major C (M,N) = op(A)·op(B), with cblas's arguments (leading dimensions
// are row lengths). cuBLAS is column-major, and a row-major matrix is its
// transpose in column-major order, so this is Cᵀ = op(B)ᵀ·op(A)ᵀ: the same
// call with A and B (and M and N) swapped.
static void gemm_rm(cublasHandle_t h, const mode &m, int ta, int tb, int M, int N, int K, const void *A, int lda,
                    const void *B, int ldb, void *C, int ldc) {
    const float one = 1.0f, zero = 0.0f;
    CUBLAS_OK(cublasGemmEx(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &one, B, m.type,
                           ldb, A, m.type, lda, &zero, C, m.type, ldc, m.compute, CUBLAS_GEMM_DEFAULT));
}

struct buffers {
    void *x, *w1, *b1, *w2, *b2, *dy, *h, *a, *dact, *dh, *y, *dx, *dw1, *dw2;
    float *db1, *db2, *scratch;
};

// One forward + backward; gemms_only: the same six GEMMs and nothing else.
static void step(cublasHandle_t h, const mode &m, const buffers &b, int N, int D, int F, tpmlp_act act, int version,
                 int gemms_only) {
    const kernel_dtype dt = m.dt;
    // forward: the same four steps as mlp_forward_f32
    gemm_rm(h, m, 0, 1, N, F, D, b.x, D, b.w1, D, b.h, F);                                          // H = X·W1ᵀ
    if (!gemms_only) KERNEL_OK(kernel_bias_act(version, dt, b.h, b.a, b.dact, b.b1, N, F, act, 0)); // H += b1; A; act'
    gemm_rm(h, m, 0, 1, N, D, F, b.a, F, b.w2, F, b.y, D);                                          // Y = A·W2ᵀ
    // (Y += b2 comes after the sum over shards: see main)
    // backward: as mlp_backward_f32
    if (!gemms_only) KERNEL_OK(kernel_act_bwd(2, dt, b.dy, b.db2, NULL, N, D, b.scratch, 0));   // db2 = Σ_rows dY
    gemm_rm(h, m, 1, 0, D, F, N, b.dy, D, b.a, F, b.dw2, F);                                    // dW2 = dYᵀ·A
    gemm_rm(h, m, 0, 0, N, F, D, b.dy, D, b.w2, F, b.dh, F);                                    // dA = dY·W2
    if (!gemms_only) KERNEL_OK(kernel_act_bwd(2, dt, b.dh, b.db1, b.dact, N, F, b.scratch, 0)); // dH, db1
    gemm_rm(h, m, 1, 0, F, D, N, b.dh, F, b.x, D, b.dw1, D);                                    // dW1 = dHᵀ·X
    gemm_rm(h, m, 0, 0, N, D, F, b.dh, F, b.w1, D, b.dx, D);                                    // dX = dH·W1
}

// fwd+bwd against the six GEMMs alone, alternating in one run; medians.
static void bench(cublasHandle_t h, const mode &m, const buffers &b, int N, int D, int F, tpmlp_act act, int version,
                  const char *dtype) {
    cudaEvent_t e0, e1, e2;
    CUDA_OK(cudaEventCreate(&e0));
    CUDA_OK(cudaEventCreate(&e1));
    CUDA_OK(cudaEventCreate(&e2));
    const int reps = 21;
    std::vector<float> full(reps), gemm(reps);
    step(h, m, b, N, D, F, act, version, 0), step(h, m, b, N, D, F, act, version, 1); // warm-up
    for (int r = 0; r < reps; r++) {
        CUDA_OK(cudaEventRecord(e0));
        step(h, m, b, N, D, F, act, version, 0);
        KERNEL_OK(kernel_bias_add(m.dt, b.y, b.b2, N, D, 0));
        CUDA_OK(cudaEventRecord(e1));
        step(h, m, b, N, D, F, act, version, 1);
        CUDA_OK(cudaEventRecord(e2));
        CUDA_OK(cudaEventSynchronize(e2));
        CUDA_OK(cudaEventElapsedTime(&full[r], e0, e1));
        CUDA_OK(cudaEventElapsedTime(&gemm[r], e1, e2));
    }
    std::sort(full.begin(), full.end()), std::sort(gemm.begin(), gemm.end());
    double f = full[reps / 2], g = gemm[reps / 2], flops = 12.0 * N * D * (double)F;
    printf("cuda %s N=%d D=%d F=%d act=%s: fwd+bwd %.3f ms, gemms alone %.3f ms, ratio %.3f (GEMMs at %.1f TFLOP/s)\n",
           dtype, N, D, F, tpmlp_act_name(act), f, g, f / g, flops / (g * 1e-3) / 1e12);
}

// One shard on the device: its block of W1, b1, W2 (sliced on the host by
// the same tp_shard_from_full the CPU stages use) and its own buffers; x, dy
// and b2 are shared. With p = 1 the shard is the whole MLP.
struct dev_shard {
    tp_shard host; /* the shard's inputs, and its outputs once downloaded */
    buffers b;
    int version;
};

static dev_shard shard_upload(const tpmlp_mlp32 &t, int F, int p, int r, kernel_dtype dt, void *x, void *b2, void *dy) {
    dev_shard s;
    tp_shard_alloc(&s.host, t.N, t.D, F, p, r, t.act);
    tp_shard_from_full(&s.host, t.x, t.w1, t.b1, t.w2, t.b2, t.dy);
    const int N = t.N, D = t.D, Fr = s.host.Fr;
    const size_t nd = (size_t)N * D, nr = (size_t)N * Fr, rd = (size_t)Fr * D;
    s.version = Fr % (dt == KDT_F32 ? 4 : 8) == 0 ? 2 : 1; // v2 needs whole 16-byte packs per row
    s.b.x = x, s.b.dy = dy, s.b.b2 = b2;
    s.b.w1 = kh_upload(s.host.w1, rd, dt), s.b.b1 = kh_upload(s.host.b1, Fr, dt), s.b.w2 = kh_upload(s.host.w2, rd, dt);
    s.b.h = kh_alloc(nr, dt), s.b.a = kh_alloc(nr, dt), s.b.dact = kh_alloc(nr, dt), s.b.dh = kh_alloc(nr, dt);
    s.b.y = kh_alloc(nd, dt), s.b.dx = kh_alloc(nd, dt), s.b.dw1 = kh_alloc(rd, dt), s.b.dw2 = kh_alloc(rd, dt);
    CUDA_OK(cudaMalloc(&s.b.db1, sizeof(float) * Fr));
    CUDA_OK(cudaMalloc(&s.b.db2, sizeof(float) * D));
    size_t sc = kernel_act_bwd_scratch(N, Fr > D ? Fr : D);
    CUDA_OK(cudaMalloc(&s.b.scratch, sizeof(float) * sc));
    return s;
}

static void shard_download(dev_shard &s, kernel_dtype dt) {
    const size_t nr = (size_t)s.host.N * s.host.Fr, rd = (size_t)s.host.Fr * s.host.D;
    kh_download(s.host.h, s.b.h, nr, dt), kh_download(s.host.a, s.b.a, nr, dt);
    kh_download(s.host.dw1, s.b.dw1, rd, dt), kh_download(s.host.dw2, s.b.dw2, rd, dt);
    kh_download(s.host.db1, s.b.db1, s.host.Fr, KDT_F32);
}

static void shard_free(dev_shard &s) {
    void *own[] = {s.b.w1, s.b.b1, s.b.w2,  s.b.h,   s.b.a,   s.b.dact, s.b.dh,
                   s.b.y,  s.b.dx, s.b.dw1, s.b.dw2, s.b.db1, s.b.db2,  s.b.scratch};
    for (void *q : own) CUDA_OK(cudaFree(q));
    tp_shard_free(&s.host);
}

// The shard's blocks into the full outputs: columns of h, a, dW2; rows of dW1; db1.
static void place_shard(tpmlp_mlp32 &t, const tp_shard &s) {
    for (int n = 0; n < t.N; n++) {
        memcpy(t.h + (size_t)n * t.F + s.f0, s.h + (size_t)n * s.Fr, sizeof(float) * s.Fr);
        memcpy(t.a + (size_t)n * t.F + s.f0, s.a + (size_t)n * s.Fr, sizeof(float) * s.Fr);
    }
    for (int d = 0; d < t.D; d++)
        memcpy(t.dw2 + (size_t)d * t.F + s.f0, s.dw2 + (size_t)d * s.Fr, sizeof(float) * s.Fr);
    memcpy(t.dw1 + (size_t)s.f0 * t.D, s.dw1, sizeof(float) * s.Fr * t.D);
    memcpy(t.db1 + s.f0, s.db1, sizeof(float) * s.Fr);
}

int main(int argc, char **argv) {
    const char *dtype = "fp32", *in = NULL, *out = NULL;
    int bench_dims[3] = {0, 0, 0}; /* --bench N D F */
    int p = 1, nccl = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dtype") == 0 && i + 1 < argc)
            dtype = argv[++i];
        else if (strcmp(argv[i], "--bench") == 0 && i + 3 < argc)
            for (int k = 0; k < 3; k++) bench_dims[k] = atoi(argv[++i]);
        else if (strcmp(argv[i], "--tp") == 0 && i + 1 < argc)
            p = atoi(argv[++i]);
        else if (strcmp(argv[i], "--nccl") == 0)
            nccl = 1;
        else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc)
            out = argv[++i];
        else if (argv[i][0] != '-' && in == NULL)
            in = argv[i];
        else
            tpmlp_die(
                2, "tpmlp-cuda: unexpected argument '%s' (usage: tpmlp-cuda [--dtype fp32|tf32|bf16] VECTORS -o OUT)",
                argv[i]);
    }
    if (!bench_dims[0] && (in == NULL || out == NULL))
        tpmlp_die(2, "tpmlp-cuda: VECTORS and -o OUT are required (or --bench N D F)");
    mode m;
    if (strcmp(dtype, "fp32") == 0)
        m = {KDT_F32, CUDA_R_32F, CUBLAS_COMPUTE_32F};
    else if (strcmp(dtype, "tf32") == 0)
        m = {KDT_F32, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32};
    else if (strcmp(dtype, "bf16") == 0)
        m = {KDT_BF16, CUDA_R_16BF, CUBLAS_COMPUTE_32F};
    else
        tpmlp_die(2, "--dtype: '%s' is not one of fp32, tf32, bf16", dtype);

    int count = 0;
    cudaError_t ce = cudaGetDeviceCount(&count);
    if (ce != cudaSuccess || count == 0) {
        fprintf(stderr, "tpmlp: no GPU (%s)\n", ce != cudaSuccess ? cudaGetErrorString(ce) : "no device");
        return 77;
    }
    char err[512];
    st_file vec;
    tpmlp_mlp32 t;
    tpmlp_vec_dims d;
    if (bench_dims[0]) { /* benchmark: generated inputs of the given sizes */
        if (bench_dims[0] < 1 || bench_dims[1] < 1 || bench_dims[2] < 1)
            tpmlp_die(2, "--bench: N D F must be positive");
        d = {1, bench_dims[0], bench_dims[1], bench_dims[2], TPMLP_GELU, 1};
        tpmlp_mlp32_alloc(&t, bench_dims[0], bench_dims[1], bench_dims[2], TPMLP_GELU);
        tpmlp_mlp32_random_inputs(&t, 1);
    } else {
        if (st_open(&vec, in, err, sizeof err) != 0 || tpmlp_vec_load_inputs(&vec, &t, &d, err, sizeof err) != 0)
            tpmlp_die(2, "%s", err);
        st_close(&vec);
    }
    const int N = t.N, D = t.D, F = t.F;
    const size_t nd = (size_t)N * D;
    const kernel_dtype dt = m.dt;
    cublasHandle_t h;
    CUBLAS_OK(cublasCreate(&h));
    void *x = kh_upload(t.x, nd, dt), *b2 = kh_upload(t.b2, D, dt), *dy = kh_upload(t.dy, nd, dt);
    if (bench_dims[0]) {
        dev_shard one = shard_upload(t, F, 1, 0, dt, x, b2, dy);
        bench(h, m, one.b, N, D, F, t.act, one.version, dtype);
        return 0;
    }

    // tensor parallelism: this process runs every shard on its one GPU and
    // sums the partials there (--tp P), or is one rank of P with NCCL (--nccl)
    int rank = 0, size = 1;
#ifdef TPMLP_HAVE_MPI
    tpmlp_comm host_comm; /* to assemble the outputs on rank 0 */
    if (nccl) {
        if (tp_dist_init(&rank, &size) != 0) tpmlp_die(1, "tpmlp-cuda: MPI_Init failed");
        if (size != p) tpmlp_die(2, "--tp %d but the job has %d ranks", p, size);
        if (comm_mpi_create(&host_comm) != 0) tpmlp_die(1, "tpmlp-cuda: no MPI communicator");
    }
#endif
    if (p < 1 || p > F) tpmlp_die(2, "--tp: %d ranks for F = %d (allowed: 1 to F)", p, F);
    if (nccl && dt != KDT_F32) tpmlp_die(2, "--nccl: the nccl stage runs fp32 or tf32 (the communicator sums floats)");
    const int first = nccl ? rank : 0, last = nccl ? rank : p - 1;
    std::vector<dev_shard> sh;
    for (int r = first; r <= last; r++) sh.push_back(shard_upload(t, F, p, r, dt, x, b2, dy));
    for (auto &s : sh) step(h, m, s.b, N, D, s.host.Fr, t.act, s.version, 0); // each shard's partial Y and dX
    for (size_t k = 1; k < sh.size(); k++) { // the local sum over shards, in rank order
        KERNEL_OK(kernel_add(dt, sh[0].b.y, sh[k].b.y, nd, 0));
        KERNEL_OK(kernel_add(dt, sh[0].b.dx, sh[k].b.dx, nd, 0));
    }
#ifdef TPMLP_HAVE_NCCL
    tpmlp_comm nc;
    if (nccl) { /* g and f's conjugate across processes */
        char id[COMM_NCCL_ID_BYTES] = {0};
        if (rank == 0 && comm_nccl_unique_id(id, sizeof id) != 0) tpmlp_die(1, "tpmlp-cuda: ncclGetUniqueId failed");
#ifdef TPMLP_HAVE_MPI
        if (size > 1 && comm_mpi_check(MPI_Bcast(id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD), "mpi", "MPI_Bcast"))
            return 1;
#endif
        int count2 = 0;
        CUDA_OK(cudaGetDeviceCount(&count2));
        if (comm_nccl_create(&nc, id, rank, size, rank % count2) != 0) return 1;
        if (nc.ops->allreduce(&nc, sh[0].b.y, nd, COMM_F32) || nc.ops->allreduce(&nc, sh[0].b.dx, nd, COMM_F32))
            return 1;
    }
#else
    if (nccl) tpmlp_die(2, "--nccl: this build found no NCCL");
#endif
    KERNEL_OK(kernel_bias_add(dt, sh[0].b.y, b2, N, D, 0)); // b2 once, after the sum
    CUDA_OK(cudaDeviceSynchronize());

    for (auto &s : sh) shard_download(s, dt);
    kh_download(t.y, sh[0].b.y, nd, dt), kh_download(t.dx, sh[0].b.dx, nd, dt);
    kh_download(t.db2, sh[0].b.db2, D, KDT_F32);
    if (!nccl || size == 1) {
        for (auto &s : sh) place_shard(t, s.host);
    } else {
#ifdef TPMLP_HAVE_MPI
        tp_shard &hs = sh[0].host; /* y, dx, db2 are the summed ones on every rank */
        memcpy(hs.y, t.y, sizeof(float) * nd), memcpy(hs.dx, t.dx, sizeof(float) * nd);
        memcpy(hs.db2, t.db2, sizeof(float) * D);
        if (tp_gather_outputs(&hs, &host_comm, rank == 0 ? &t : NULL) != 0) return 1;
#endif
    }
    if (rank == 0 && tpmlp_vec_write_outputs(out, &t, &d, err, sizeof err) != 0) tpmlp_die(1, "%s", err);
    for (auto &s : sh) shard_free(s);
    CUDA_OK(cudaFree(x));
    CUDA_OK(cudaFree(b2));
    CUDA_OK(cudaFree(dy));
    CUBLAS_OK(cublasDestroy(h));
#ifdef TPMLP_HAVE_NCCL
    if (nccl) nc.ops->destroy(&nc);
#endif
#ifdef TPMLP_HAVE_MPI
    if (nccl) MPI_Finalize();
#endif
    tpmlp_mlp32_free(&t);
    if (rank == 0)
        printf("stage %s (%s, p = %d): outputs written to %s; verify with: tpmlp check --dtype %s %s %s\n",
               nccl ? "nccl" : "cuda", dtype, p, out, dtype, in, out);
    return 0;
}
