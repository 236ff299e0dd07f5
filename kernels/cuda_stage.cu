// tpmlp-cuda: stage 5, the MLP on one GPU. cuBLAS for the six GEMMs, our
// kernels (kernels.cu) for everything between them. Math modes:
//   fp32  fp32 storage, fp32 GEMMs
//   tf32  fp32 storage, GEMMs on TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32)
//   bf16  bf16 storage, fp32 accumulation (CUBLAS_COMPUTE_32F)
// Reads a vector file, writes the outputs under the vector names (F32), so
// `tpmlp check --dtype MODE VECTORS OUT` verifies them. `tpmlp run --stage
// cuda` runs this program. Without a GPU it says so and exits 77.
//   tpmlp-cuda [--dtype fp32|tf32|bf16] VECTORS -o OUT
//   tpmlp-cuda [--dtype ...] --bench N D F      fwd+bwd against the six GEMMs alone
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <vector>

#include "bound.h"
#include "host.h"
#include "kernels.h"
#include "safetensors.h"
#include "util.h"
#include "vectors.h"

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
    if (!gemms_only) KERNEL_OK(kernel_bias_add(dt, b.y, b.b2, N, D, 0));                            // Y += b2
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

int main(int argc, char **argv) {
    const char *dtype = "fp32", *in = NULL, *out = NULL;
    int bench_dims[3] = {0, 0, 0}; /* --bench N D F */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dtype") == 0 && i + 1 < argc)
            dtype = argv[++i];
        else if (strcmp(argv[i], "--bench") == 0 && i + 3 < argc)
            for (int k = 0; k < 3; k++) bench_dims[k] = atoi(argv[++i]);
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
    const size_t nd = (size_t)N * D, nf = (size_t)N * F, fd = (size_t)F * D;
    const kernel_dtype dt = m.dt;
    const int pack = dt == KDT_F32 ? 4 : 8, version = F % pack == 0 ? 2 : 1; // v2 needs whole packs per row

    cublasHandle_t h;
    CUBLAS_OK(cublasCreate(&h));
    void *x = kh_upload(t.x, nd, dt), *w1 = kh_upload(t.w1, fd, dt), *b1 = kh_upload(t.b1, F, dt);
    void *w2 = kh_upload(t.w2, fd, dt), *b2 = kh_upload(t.b2, D, dt), *dy = kh_upload(t.dy, nd, dt);
    void *hh = kh_alloc(nf, dt), *a = kh_alloc(nf, dt), *dact = kh_alloc(nf, dt), *dh = kh_alloc(nf, dt);
    void *y = kh_alloc(nd, dt), *dx = kh_alloc(nd, dt), *dw1 = kh_alloc(fd, dt), *dw2 = kh_alloc(fd, dt);
    float *db1, *db2, *scratch;
    CUDA_OK(cudaMalloc(&db1, sizeof(float) * F));
    CUDA_OK(cudaMalloc(&db2, sizeof(float) * D));
    size_t sc = kernel_act_bwd_scratch(N, F) > kernel_act_bwd_scratch(N, D) ? kernel_act_bwd_scratch(N, F)
                                                                            : kernel_act_bwd_scratch(N, D);
    CUDA_OK(cudaMalloc(&scratch, sizeof(float) * sc));

    buffers b = {x, w1, b1, w2, b2, dy, hh, a, dact, dh, y, dx, dw1, dw2, db1, db2, scratch};
    if (bench_dims[0]) {
        bench(h, m, b, N, D, F, t.act, version, dtype);
        return 0;
    }
    step(h, m, b, N, D, F, t.act, version, 0);
    CUDA_OK(cudaDeviceSynchronize());

    kh_download(t.h, hh, nf, dt), kh_download(t.a, a, nf, dt), kh_download(t.y, y, nd, dt),
        kh_download(t.dx, dx, nd, dt);
    kh_download(t.dw1, dw1, fd, dt), kh_download(t.dw2, dw2, fd, dt);
    kh_download(t.db1, db1, F, KDT_F32), kh_download(t.db2, db2, D, KDT_F32);
    if (tpmlp_vec_write_outputs(out, &t, &d, err, sizeof err) != 0) tpmlp_die(1, "%s", err);
    void *bufs[] = {x, w1, b1, w2, b2, dy, hh, a, dact, dh, y, dx, dw1, dw2, db1, db2, scratch};
    for (void *p : bufs) CUDA_OK(cudaFree(p));
    CUBLAS_OK(cublasDestroy(h));
    tpmlp_mlp32_free(&t);
    printf("stage cuda (%s): outputs written to %s; verify with: tpmlp check --dtype %s %s %s\n", dtype, out, dtype, in,
           out);
    return 0;
}
