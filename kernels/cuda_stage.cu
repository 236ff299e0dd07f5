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
//   tpmlp-cuda --lt ...                              bias + GELU (tanh) in cuBLASLt's GEMM epilogues
//   mpiexec -n P tpmlp-cuda --nccl --tp P ...        stage 6: one process per GPU, ncclAllReduce
//   tpmlp-cuda --nccl --launch local --tp P ...      stage 6: one process, one thread per local GPU
//   tpmlp-cuda [--dtype ...] --bench N D F           fwd+bwd against the six GEMMs alone
#include "config.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <thread>
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

// One device's libraries: cuBLAS for the plain GEMMs and, for the --lt
// variant, cuBLASLt with a workspace for the GEMMs with fused epilogues.
struct gpu {
    mode m;
    cublasHandle_t h;
    cublasLtHandle_t lt;
    void *ws;
    size_t ws_bytes;
};

static gpu gpu_open(const mode &m) {
    gpu g = {m, NULL, NULL, NULL, (size_t)32 << 20};
    CUBLAS_OK(cublasCreate(&g.h));
    CUBLAS_OK(cublasLtCreate(&g.lt));
    CUDA_OK(cudaMalloc(&g.ws, g.ws_bytes));
    return g;
}

static void gpu_close(gpu &g) {
    CUDA_OK(cudaFree(g.ws));
    CUBLAS_OK(cublasLtDestroy(g.lt));
    CUBLAS_OK(cublasDestroy(g.h));
}

// Row-major C (M,N) = op(A)·op(B), with cblas's arguments (leading dimensions
// are row lengths). cuBLAS is column-major, and a row-major matrix is its
// transpose in column-major order, so this is Cᵀ = op(B)ᵀ·op(A)ᵀ: the same
// call with A and B (and M and N) swapped.
static void gemm_rm(const gpu &g, int ta, int tb, int M, int N, int K, const void *A, int lda, const void *B, int ldb,
                    void *C, int ldc) {
    const float one = 1.0f, zero = 0.0f;
    CUBLAS_OK(cublasGemmEx(g.h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &one, B,
                           g.m.type, ldb, A, g.m.type, lda, &zero, C, g.m.type, ldc, g.m.compute, CUBLAS_GEMM_DEFAULT));
}

// The same product through cuBLASLt with an epilogue on C: in the column-major
// view C is (N rows, M columns), so a bias "per row of D" is one value per
// column of our row-major C (per feature of H), and the bias gradient sums
// over our rows (tokens). aux is (N, M) with leading dimension ldc.
//   GELU_AUX_BIAS: C = gelu_tanh(A·Bᵀ + bias), aux = A·Bᵀ + bias
//   DGELU_BGRAD:   C = (A·B) ⊙ gelu_tanh'(aux), bias = Σ_rows C
static void lt_gemm_rm(const gpu &g, cublasLtEpilogue_t epi, int ta, int tb, int M, int N, int K, const void *A,
                       int lda, const void *B, int ldb, void *C, int ldc, void *bias, void *aux) {
    cublasLtMatmulDesc_t op;
    CUBLAS_OK(cublasLtMatmulDescCreate(&op, g.m.compute, CUDA_R_32F));
    cublasOperation_t opa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int64_t ld_aux = ldc;
    CUBLAS_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    CUBLAS_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    CUBLAS_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    CUBLAS_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    CUBLAS_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
    CUBLAS_OK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld_aux, sizeof ld_aux));
    // the stored (column-major) shapes of the first operand (our B), the second (our A) and C
    cublasLtMatrixLayout_t la, lb, lc;
    CUBLAS_OK(cublasLtMatrixLayoutCreate(&la, g.m.type, tb ? K : N, tb ? N : K, ldb));
    CUBLAS_OK(cublasLtMatrixLayoutCreate(&lb, g.m.type, ta ? M : K, ta ? K : M, lda));
    CUBLAS_OK(cublasLtMatrixLayoutCreate(&lc, g.m.type, N, M, ldc));
    cublasLtMatmulPreference_t pref;
    CUBLAS_OK(cublasLtMatmulPreferenceCreate(&pref));
    CUBLAS_OK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &g.ws_bytes,
                                                   sizeof g.ws_bytes));
    cublasLtMatmulHeuristicResult_t best;
    int found = 0;
    CUBLAS_OK(cublasLtMatmulAlgoGetHeuristic(g.lt, op, la, lb, lc, lc, pref, 1, &best, &found));
    if (found == 0) tpmlp_die(1, "--lt: cuBLASLt has no algorithm for the %d x %d x %d epilogue GEMM", M, N, K);
    const float one = 1.0f, zero = 0.0f;
    CUBLAS_OK(cublasLtMatmul(g.lt, op, &one, B, la, A, lb, &zero, C, lc, C, lc, &best.algo, g.ws, g.ws_bytes, 0));
    CUBLAS_OK(cublasLtMatmulPreferenceDestroy(pref));
    CUBLAS_OK(cublasLtMatrixLayoutDestroy(la));
    CUBLAS_OK(cublasLtMatrixLayoutDestroy(lb));
    CUBLAS_OK(cublasLtMatrixLayoutDestroy(lc));
    CUBLAS_OK(cublasLtMatmulDescDestroy(op));
}

struct buffers {
    void *x, *w1, *b1, *w2, *b2, *dy, *h, *a, *dact, *dh, *y, *dx, *dw1, *dw2;
    float *db1, *db2, *scratch;
    void *db1_lt; /* db1 as cuBLASLt's bias gradient writes it: in the storage type */
};

enum variant { OURS, LT, GEMMS_ONLY };

// The kernel versions the stage uses: by default the fastest measured on an
// H200 (bias_act v4, act_bwd v3), or version V of each (--kernels V, capped
// at the kernel's last version); each falls back to a lower one where the row
// length is not a whole number of 16-byte packs.
static int kernel_choice = 0; /* 0: the fastest; else --kernels V */
static int fwd_version(kernel_dtype dt, int n) {
    return kernel_fits_pack(dt, n) ? (kernel_choice ? std::min(kernel_choice, BIAS_ACT_VERSIONS) : 4) : 1;
}
static int bwd_version(kernel_dtype dt, int n) {
    const int v = kernel_choice ? std::min(kernel_choice, ACT_BWD_VERSIONS) : 3;
    return kernel_fits_pack(dt, n) ? v : std::min(v, 2);
}

// One forward + backward on the compute stream (0). OURS: cuBLAS GEMMs and
// our kernels; LT: bias + GELU and its backward + db1 fused into the GEMM
// epilogues (tanh GELU only; F % 8 == 0); GEMMS_ONLY: the six GEMMs alone.
static void step(const gpu &g, const buffers &b, int N, int D, int F, tpmlp_act act, int version, variant v) {
    const kernel_dtype dt = g.m.dt;
    // forward: the same four steps as mlp_forward_f32
    if (v == LT) // H = X·W1ᵀ + b1 and A = gelu(H) in one GEMM
        lt_gemm_rm(g, CUBLASLT_EPILOGUE_GELU_AUX_BIAS, 0, 1, N, F, D, b.x, D, b.w1, D, b.a, F, b.b1, b.h);
    else
        gemm_rm(g, 0, 1, N, F, D, b.x, D, b.w1, D, b.h, F);                                       // H = X·W1ᵀ
    if (v == OURS) KERNEL_OK(kernel_bias_act(version, dt, b.h, b.a, b.dact, b.b1, N, F, act, 0)); // H += b1; A; act'
    gemm_rm(g, 0, 1, N, D, F, b.a, F, b.w2, F, b.y, D);                                           // Y = A·W2ᵀ
    // (Y += b2 comes after the sum over shards: see main)
    // backward: as mlp_backward_f32
    if (v != GEMMS_ONLY) KERNEL_OK(kernel_act_bwd(bwd_version(dt, D), dt, b.dy, b.db2, NULL, N, D, b.scratch, 0));
    gemm_rm(g, 1, 0, D, F, N, b.dy, D, b.a, F, b.dw2, F); // dW2 = dYᵀ·A
    if (v == LT)                                          // dH = (dY·W2) ⊙ gelu'(H) and db1 = Σ_rows dH in one GEMM
        lt_gemm_rm(g, CUBLASLT_EPILOGUE_DGELU_BGRAD, 0, 0, N, F, D, b.dy, D, b.w2, F, b.dh, F, b.db1_lt, b.h);
    else
        gemm_rm(g, 0, 0, N, F, D, b.dy, D, b.w2, F, b.dh, F); // dA = dY·W2
    if (v == OURS)
        KERNEL_OK(kernel_act_bwd(bwd_version(dt, F), dt, b.dh, b.db1, b.dact, N, F, b.scratch, 0)); // dH, db1
    gemm_rm(g, 1, 0, F, D, N, b.dh, F, b.x, D, b.dw1, D);                                           // dW1 = dHᵀ·X
    gemm_rm(g, 0, 0, N, D, F, b.dh, F, b.w1, D, b.dx, D);                                           // dX = dH·W1
}

// fwd+bwd (ours, and cuBLASLt's with lt) against the six GEMMs alone,
// alternating in one run; medians.
static void bench(const gpu &g, const buffers &b, int N, int D, int F, tpmlp_act act, int version, int lt,
                  const char *dtype) {
    const int nv = lt ? 3 : 2, reps = 21;
    const variant order[3] = {OURS, GEMMS_ONLY, LT};
    cudaEvent_t ev[4];
    for (auto &e : ev) CUDA_OK(cudaEventCreate(&e));
    std::vector<float> t[3];
    for (int k = 0; k < nv; k++) step(g, b, N, D, F, act, version, order[k]); // warm-up
    for (int r = 0; r < reps; r++) {
        CUDA_OK(cudaEventRecord(ev[0]));
        for (int k = 0; k < nv; k++) {
            step(g, b, N, D, F, act, version, order[k]);
            if (order[k] != GEMMS_ONLY) KERNEL_OK(kernel_bias_add(g.m.dt, b.y, b.b2, N, D, 0));
            CUDA_OK(cudaEventRecord(ev[k + 1]));
        }
        CUDA_OK(cudaEventSynchronize(ev[nv]));
        for (int k = 0; k < nv; k++) {
            float ms;
            CUDA_OK(cudaEventElapsedTime(&ms, ev[k], ev[k + 1]));
            t[k].push_back(ms);
        }
    }
    for (auto &e : ev) CUDA_OK(cudaEventDestroy(e));
    double med[3];
    for (int k = 0; k < nv; k++) std::sort(t[k].begin(), t[k].end()), med[k] = t[k][reps / 2];
    const double flops = 12.0 * N * D * (double)F;
    printf("cuda %s N=%d D=%d F=%d act=%s: fwd+bwd %.3f ms, gemms alone %.3f ms, ratio %.3f (GEMMs at %.1f TFLOP/s)\n",
           dtype, N, D, F, tpmlp_act_name(act), med[0], med[1], med[0] / med[1], flops / (med[1] * 1e-3) / 1e12);
    if (lt)
        printf("cuda %s N=%d D=%d F=%d act=%s: cublasLt epilogues fwd+bwd %.3f ms, ratio %.3f to the GEMMs alone; "
               "ours / cublasLt %.3f\n",
               dtype, N, D, F, tpmlp_act_name(act), med[2], med[2] / med[1], med[0] / med[2]);
    // each GEMM alone: which of the six holds the step back
    struct one {
        const char *name;
        int ta, tb, M, N, K;
        const void *A;
        int lda;
        const void *B;
        int ldb;
        void *C;
        int ldc;
    } gemms[6] = {{"H = X W1^T", 0, 1, N, F, D, b.x, D, b.w1, D, b.h, F},
                  {"Y = A W2^T", 0, 1, N, D, F, b.a, F, b.w2, F, b.y, D},
                  {"dW2 = dY^T A", 1, 0, D, F, N, b.dy, D, b.a, F, b.dw2, F},
                  {"dA = dY W2", 0, 0, N, F, D, b.dy, D, b.w2, F, b.dh, F},
                  {"dW1 = dH^T X", 1, 0, F, D, N, b.dh, F, b.x, D, b.dw1, D},
                  {"dX = dH W1", 0, 0, N, D, F, b.dh, F, b.w1, D, b.dx, D}};
    cudaEvent_t e0, e1;
    CUDA_OK(cudaEventCreate(&e0));
    CUDA_OK(cudaEventCreate(&e1));
    for (const one &q : gemms) {
        std::vector<float> ms(11);
        for (float &x : ms) {
            CUDA_OK(cudaEventRecord(e0));
            gemm_rm(g, q.ta, q.tb, q.M, q.N, q.K, q.A, q.lda, q.B, q.ldb, q.C, q.ldc);
            CUDA_OK(cudaEventRecord(e1));
            CUDA_OK(cudaEventSynchronize(e1));
            CUDA_OK(cudaEventElapsedTime(&x, e0, e1));
        }
        std::sort(ms.begin(), ms.end());
        printf("  %-13s %5d x %5d x %5d (%s%s): %7.3f ms, %6.1f TFLOP/s\n", q.name, q.M, q.N, q.K, q.ta ? "T" : "N",
               q.tb ? "T" : "N", ms[5], 2.0 * q.M * q.N * (double)q.K / (ms[5] * 1e-3) / 1e12);
    }
    CUDA_OK(cudaEventDestroy(e0));
    CUDA_OK(cudaEventDestroy(e1));
}

// One shard on the device: its block of W1, b1, W2 (sliced on the host by
// the same tp_shard_from_full the CPU stages use) and its own buffers; x, dy
// and b2 are shared. With p = 1 the shard is the whole MLP.
struct dev_shard {
    tp_shard host; /* the shard's inputs, and its outputs once downloaded */
    buffers b;
    int version;
};

// What every shard on a device shares: X, dY and b2 in the storage type.
struct shared_in {
    void *x, *b2, *dy;
};

static shared_in shared_upload(const tpmlp_mlp32 &t, kernel_dtype dt) {
    const size_t nd = (size_t)t.N * t.D;
    return {kh_upload(t.x, nd, dt), kh_upload(t.b2, t.D, dt), kh_upload(t.dy, nd, dt)};
}

static void shared_free(shared_in &in) {
    CUDA_OK(cudaFree(in.x));
    CUDA_OK(cudaFree(in.b2));
    CUDA_OK(cudaFree(in.dy));
}

static dev_shard shard_upload(const tpmlp_mlp32 &t, int p, int r, kernel_dtype dt, const shared_in &in) {
    dev_shard s;
    tp_shard_alloc(&s.host, t.N, t.D, t.F, p, r, t.act);
    tp_shard_from_full(&s.host, t.x, t.w1, t.b1, t.w2, t.b2, t.dy);
    const int N = t.N, D = t.D, Fr = s.host.Fr;
    const size_t nd = (size_t)N * D, nr = (size_t)N * Fr, rd = (size_t)Fr * D;
    s.version = fwd_version(dt, Fr);
    s.b.x = in.x, s.b.dy = in.dy, s.b.b2 = in.b2;
    s.b.w1 = kh_upload(s.host.w1, rd, dt), s.b.b1 = kh_upload(s.host.b1, Fr, dt), s.b.w2 = kh_upload(s.host.w2, rd, dt);
    s.b.h = kh_alloc(nr, dt), s.b.a = kh_alloc(nr, dt), s.b.dact = kh_alloc(nr, dt), s.b.dh = kh_alloc(nr, dt);
    s.b.y = kh_alloc(nd, dt), s.b.dx = kh_alloc(nd, dt), s.b.dw1 = kh_alloc(rd, dt), s.b.dw2 = kh_alloc(rd, dt);
    s.b.db1_lt = kh_alloc(Fr, dt);
    CUDA_OK(cudaMalloc(&s.b.db1, sizeof(float) * Fr));
    CUDA_OK(cudaMalloc(&s.b.db2, sizeof(float) * D));
    size_t sc = kernel_act_bwd_scratch(N, Fr > D ? Fr : D);
    CUDA_OK(cudaMalloc(&s.b.scratch, sizeof(float) * sc));
    return s;
}

static void shard_download(dev_shard &s, kernel_dtype dt, int lt) {
    const size_t nr = (size_t)s.host.N * s.host.Fr, rd = (size_t)s.host.Fr * s.host.D;
    kh_download(s.host.h, s.b.h, nr, dt), kh_download(s.host.a, s.b.a, nr, dt);
    kh_download(s.host.dw1, s.b.dw1, rd, dt), kh_download(s.host.dw2, s.b.dw2, rd, dt);
    if (lt) /* cuBLASLt's bias gradient is in the storage type */
        kh_download(s.host.db1, s.b.db1_lt, s.host.Fr, dt);
    else
        kh_download(s.host.db1, s.b.db1, s.host.Fr, KDT_F32);
}

// The shard's device buffers (the host side stays, with the outputs).
static void shard_free_device(dev_shard &s) {
    void *own[] = {s.b.w1, s.b.b1,  s.b.w2,  s.b.h,   s.b.a,   s.b.dact,    s.b.dh,    s.b.y,
                   s.b.dx, s.b.dw1, s.b.dw2, s.b.db1, s.b.db2, s.b.scratch, s.b.db1_lt};
    for (void *q : own) CUDA_OK(cudaFree(q));
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

// What every launch shares: the full problem on the host and how to run it.
struct job {
    tpmlp_mlp32 *t;
    mode m;
    int p, lt;
};

#ifdef TPMLP_HAVE_NCCL
// Stage 6, one rank: rank r's shard on its own GPU (device), then the two
// all-reduces of the TP block through the communicator (g after fc2 in
// forward, f's conjugate after the dX GEMM in backward), then b2 once. The
// rank's outputs land in sh->host: its blocks, and the summed y, dx, db2.
// Called by the process of an MPI rank, or by one thread per GPU.
static int nccl_rank(const job &j, int r, int device, tpmlp_comm *comm, dev_shard *sh) {
    const tpmlp_mlp32 &t = *j.t;
    const size_t nd = (size_t)t.N * t.D;
    const kernel_dtype dt = j.m.dt;
    CUDA_OK(cudaSetDevice(device)); /* per thread: each rank drives its own GPU */
    gpu g = gpu_open(j.m);
    shared_in in = shared_upload(t, dt);
    *sh = shard_upload(t, j.p, r, dt, in);
    step(g, sh->b, t.N, t.D, sh->host.Fr, t.act, sh->version, j.lt ? LT : OURS); // the partial Y and dX
    // the communicator's stream does not wait for the compute stream: the
    // buffers must be complete before the collective is called
    CUDA_OK(cudaDeviceSynchronize());
    if (comm->ops->allreduce(comm, sh->b.y, nd, COMM_F32) || comm->ops->allreduce(comm, sh->b.dx, nd, COMM_F32))
        return -1;
    KERNEL_OK(kernel_bias_add(dt, sh->b.y, in.b2, t.N, t.D, 0)); // b2 once, after the sum
    CUDA_OK(cudaDeviceSynchronize());
    shard_download(*sh, dt, j.lt);
    kh_download(sh->host.y, sh->b.y, nd, dt), kh_download(sh->host.dx, sh->b.dx, nd, dt);
    kh_download(sh->host.db2, sh->b.db2, t.D, KDT_F32);
    shard_free_device(*sh);
    shared_free(in);
    gpu_close(g);
    return 0;
}

// One process drives all p local GPUs: the communicators made together
// (ncclCommInitRank per device inside ncclGroupStart/End), then one thread
// per GPU runs nccl_rank with the blocking collectives of its communicator.
static int run_nccl_local(const job &j) {
    int count = 0;
    CUDA_OK(cudaGetDeviceCount(&count));
    if (j.p > count)
        tpmlp_die(2, "--launch local: --tp %d needs %d GPUs, this machine has %d (NCCL takes one rank per GPU)", j.p,
                  j.p, count);
    std::vector<int> devices(j.p);
    for (int r = 0; r < j.p; r++) devices[r] = r;
    std::vector<tpmlp_comm> comms(j.p);
    if (comm_nccl_create_local(comms.data(), j.p, devices.data()) != 0) return 1;
    std::vector<dev_shard> sh(j.p);
    std::vector<std::thread> threads;
    for (int r = 0; r < j.p; r++)
        threads.emplace_back([&, r] {
            // a rank that fails leaves the others waiting in their collectives: stop them all
            if (nccl_rank(j, r, devices[r], &comms[r], &sh[r]) != 0)
                tpmlp_die(1, "tpmlp-cuda: rank %d failed; stopping every rank", r);
        });
    for (auto &th : threads) th.join();
    for (auto &c : comms) c.ops->destroy(&c);
    tpmlp_mlp32 &t = *j.t;
    const size_t nd = (size_t)t.N * t.D;
    for (int r = 0; r < j.p; r++) place_shard(t, sh[r].host);
    memcpy(t.y, sh[0].host.y, sizeof(float) * nd), memcpy(t.dx, sh[0].host.dx, sizeof(float) * nd);
    memcpy(t.db2, sh[0].host.db2, sizeof(float) * t.D);
    for (auto &s : sh) tp_shard_free(&s.host);
    return 0;
}

#ifdef TPMLP_HAVE_MPI
// One process per GPU under mpiexec: rank 0 makes the ncclUniqueId and
// broadcasts it over MPI; rank 0 assembles the outputs over MPI.
static int run_nccl_mpi(const job &j) {
    int rank = 0, size = 1;
    if (tp_dist_init(&rank, &size) != 0) tpmlp_die(1, "tpmlp-cuda: MPI_Init failed");
    if (size != j.p)
        tpmlp_die(2, "--tp %d but the job has %d rank%s (mpiexec -n %d ...)", j.p, size, tpmlp_plural(size), j.p);
    tpmlp_comm host_comm; /* to assemble the outputs on rank 0 */
    if (comm_mpi_create(&host_comm) != 0) tpmlp_die(1, "tpmlp-cuda: no MPI communicator");
    char id[COMM_NCCL_ID_BYTES] = {0};
    if (rank == 0 && comm_nccl_unique_id(id, sizeof id) != 0) tpmlp_die(1, "tpmlp-cuda: ncclGetUniqueId failed");
    if (comm_mpi_check(MPI_Bcast(id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD), "mpi", "MPI_Bcast")) return 1;
    int count = 0;
    CUDA_OK(cudaGetDeviceCount(&count));
    // one GPU per rank on each node: the rank among those sharing this node
    MPI_Comm node;
    int local = 0;
    if (comm_mpi_check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node), "mpi",
                       "MPI_Comm_split_type") ||
        comm_mpi_check(MPI_Comm_rank(node, &local), "mpi", "MPI_Comm_rank") ||
        comm_mpi_check(MPI_Comm_free(&node), "mpi", "MPI_Comm_free"))
        return 1;
    const int device = local % count;
    tpmlp_comm nc;
    if (comm_nccl_create(&nc, id, rank, size, device) != 0) return 1;
    dev_shard sh;
    if (nccl_rank(j, rank, device, &nc, &sh) != 0) { /* the other ranks may wait in a collective: stop them */
        fprintf(stderr, "tpmlp: rank %d failed; stopping every rank\n", rank);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    nc.ops->destroy(&nc);
    if (tp_gather_outputs(&sh.host, &host_comm, rank == 0 ? j.t : NULL) != 0) return 1; /* any size, 1 too */
    tp_shard_free(&sh.host);
    host_comm.ops->destroy(&host_comm);
    return rank == 0 ? 0 : -1; /* -1: not the rank that writes */
}
#endif
#endif

// Stage 5: all p shards on this one GPU, their partials summed there.
static int run_one_gpu(const job &j) {
    tpmlp_mlp32 &t = *j.t;
    const size_t nd = (size_t)t.N * t.D;
    const kernel_dtype dt = j.m.dt;
    gpu g = gpu_open(j.m);
    shared_in in = shared_upload(t, dt);
    std::vector<dev_shard> sh;
    for (int r = 0; r < j.p; r++) sh.push_back(shard_upload(t, j.p, r, dt, in));
    for (auto &s : sh) step(g, s.b, t.N, t.D, s.host.Fr, t.act, s.version, j.lt ? LT : OURS); // partial Y and dX
    for (size_t k = 1; k < sh.size(); k++) { // the local sum over shards, in rank order
        KERNEL_OK(kernel_add(dt, sh[0].b.y, sh[k].b.y, nd, 0));
        KERNEL_OK(kernel_add(dt, sh[0].b.dx, sh[k].b.dx, nd, 0));
    }
    KERNEL_OK(kernel_bias_add(dt, sh[0].b.y, in.b2, t.N, t.D, 0)); // b2 once, after the sum
    CUDA_OK(cudaDeviceSynchronize());
    for (auto &s : sh) shard_download(s, dt, j.lt), place_shard(t, s.host);
    kh_download(t.y, sh[0].b.y, nd, dt), kh_download(t.dx, sh[0].b.dx, nd, dt);
    kh_download(t.db2, sh[0].b.db2, t.D, KDT_F32);
    for (auto &s : sh) shard_free_device(s), tp_shard_free(&s.host);
    shared_free(in);
    gpu_close(g);
    return 0;
}

static const char usage[] =
    "usage: tpmlp-cuda [--dtype fp32|tf32|bf16] [--lt] [--tp P] VECTORS -o OUT\n"
    "       tpmlp-cuda --nccl [--launch mpi|local] --tp P [--dtype fp32|tf32] [--lt] VECTORS -o OUT\n"
    "       tpmlp-cuda [--dtype ...] [--lt] --bench N D F\n"
    "       tpmlp-cuda --version | --help\n"
    "  --kernels V: run version V of every kernel, or its last (1 to 4; default: the fastest measured)";

int main(int argc, char **argv) {
    const char *dtype = "fp32", *in = NULL, *out = NULL, *launch = "mpi";
    int bench_dims[3] = {0, 0, 0}; /* --bench N D F */
    int p = 1, nccl = 0, lt = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--version") == 0) {
            printf("tpmlp-cuda %s\n", PACKAGE_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0) {
            printf("%s\n", usage);
            return 0;
        } else if (strcmp(argv[i], "--dtype") == 0 && i + 1 < argc)
            dtype = argv[++i];
        else if (strcmp(argv[i], "--bench") == 0 && i + 3 < argc)
            for (int k = 0; k < 3; k++) bench_dims[k] = atoi(argv[++i]);
        else if (strcmp(argv[i], "--tp") == 0 && i + 1 < argc)
            p = atoi(argv[++i]);
        else if (strcmp(argv[i], "--nccl") == 0)
            nccl = 1;
        else if (strcmp(argv[i], "--launch") == 0 && i + 1 < argc)
            launch = argv[++i];
        else if (strcmp(argv[i], "--kernels") == 0 && i + 1 < argc)
            kernel_choice = atoi(argv[++i]);
        else if (strcmp(argv[i], "--lt") == 0)
            lt = 1;
        else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc)
            out = argv[++i];
        else if (argv[i][0] != '-' && in == NULL)
            in = argv[i];
        else
            tpmlp_die(2, "tpmlp-cuda: unexpected argument '%s'\n%s", argv[i], usage);
    }
    if (!bench_dims[0] && (in == NULL || out == NULL))
        tpmlp_die(2, "tpmlp-cuda: VECTORS and -o OUT are required (or --bench N D F)\n%s", usage);
    if (kernel_choice < 0 || kernel_choice > BIAS_ACT_VERSIONS)
        tpmlp_die(2, "--kernels: expected a version from 1 to %d", BIAS_ACT_VERSIONS);
    if (strcmp(launch, "mpi") != 0 && strcmp(launch, "local") != 0)
        tpmlp_die(2, "--launch: '%s' is not one of mpi (one process per GPU), local (one process, all local GPUs)",
                  launch);
    mode m;
    if (strcmp(dtype, "fp32") == 0)
        m = {KDT_F32, CUDA_R_32F, CUBLAS_COMPUTE_32F};
    else if (strcmp(dtype, "tf32") == 0)
        m = {KDT_F32, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32};
    else if (strcmp(dtype, "bf16") == 0)
        m = {KDT_BF16, CUDA_R_16BF, CUBLAS_COMPUTE_32F};
    else
        tpmlp_die(2, "--dtype: '%s' is not one of fp32, tf32, bf16", dtype);

    char why[160];
    if (kh_no_gpu(why, sizeof why)) {
        fprintf(stderr, "tpmlp: %s\n", why);
        return 77;
    }
    char err[512];
    st_file vec;
    tpmlp_mlp32 t;
    tpmlp_vec_dims d;
    if (bench_dims[0]) { /* benchmark: generated inputs of the given sizes */
        if (bench_dims[0] < 1 || bench_dims[1] < 1 || bench_dims[2] < 1)
            tpmlp_die(2, "--bench: N D F must be positive");
        // cuBLASLt's GELU epilogue is the tanh form: with --lt all variants use it
        const tpmlp_act act = lt ? TPMLP_GELU_TANH : TPMLP_GELU;
        d = {1, bench_dims[0], bench_dims[1], bench_dims[2], act, 1};
        tpmlp_mlp32_alloc(&t, bench_dims[0], bench_dims[1], bench_dims[2], act);
        tpmlp_mlp32_random_inputs(&t, 1);
    } else {
        if (st_open(&vec, in, err, sizeof err) != 0 || tpmlp_vec_load_inputs(&vec, &t, &d, err, sizeof err) != 0)
            tpmlp_die(2, "%s", err);
        st_close(&vec);
    }
    const int N = t.N, D = t.D, F = t.F;
    if (lt && t.act != TPMLP_GELU_TANH)
        tpmlp_die(2,
                  "--lt: cuBLASLt's GELU epilogue is the tanh approximation; %s has act = %s (use a gelu_tanh "
                  "vector file, or leave out --lt)",
                  in, tpmlp_act_name(t.act));
    if (p < 1 || p > F) tpmlp_die(2, "--tp: %d ranks for F = %d (allowed: 1 to F)", p, F);
    for (int r = 0; lt && r < p; r++) {
        int f0, Fr;
        tp_slice(F, p, r, &f0, &Fr);
        if (Fr % 8 != 0)
            tpmlp_die(2,
                      "--lt: cuBLASLt's GELU epilogue needs the shard width F/p to be a multiple of 8 (rank %d "
                      "has %d)",
                      r, Fr);
    }
    if (bench_dims[0]) {
        gpu g = gpu_open(m);
        dev_shard one = shard_upload(t, 1, 0, m.dt, shared_upload(t, m.dt));
        bench(g, one.b, N, D, F, t.act, one.version, lt, dtype);
        return 0;
    }
    const job j = {&t, m, p, lt};
    int rc;
    if (!nccl) {
        rc = run_one_gpu(j);
    } else {
#ifdef TPMLP_HAVE_NCCL
        if (m.dt != KDT_F32) tpmlp_die(2, "--nccl: the nccl stage runs fp32 or tf32 (the communicator sums floats)");
        if (strcmp(launch, "local") == 0) {
            rc = run_nccl_local(j);
        } else {
#ifdef TPMLP_HAVE_MPI
            rc = run_nccl_mpi(j);
#else
            tpmlp_die(2, "--launch mpi: this build has no MPI (use --launch local)");
#endif
        }
#else
        tpmlp_die(2, "--nccl: this build found no NCCL");
#endif
    }
    if (rc == 0 && tpmlp_vec_write_outputs(out, &t, &d, err, sizeof err) != 0) tpmlp_die(1, "%s", err);
#ifdef TPMLP_HAVE_MPI
    if (nccl && strcmp(launch, "mpi") == 0) MPI_Finalize();
#endif
    tpmlp_mlp32_free(&t);
    if (rc > 0) return rc;
    if (rc == 0)
        printf("stage %s (%s%s, p = %d): outputs written to %s; verify with: tpmlp check --dtype %s %s %s\n",
               nccl ? "nccl" : "cuda", dtype, lt ? ", cuBLASLt epilogues" : "", p, out, dtype, in, out);
    return 0;
}
