// The cuda backend of the compute interface (compute_cuda.h): cuBLAS for the
// GEMMs, our kernels (kernels/kernels.cu) for everything between them, all on
// one stream per backend. Row-major tensors, weights (out, in), as on the CPU.
#include "config.h"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <vector>

#include "compute_cuda.h"
#include "host.h"
#include "kernels.h"

static_assert(TP_CUDA_KERNEL_VERSIONS == BIAS_ACT_VERSIONS, "compute_cuda.h's count of kernel versions");

namespace {

struct impl {
    int device;
    comm_dtype dt;
    cudaDataType_t type;
    cublasComputeType_t compute;
    int lt, kernels;
    cudaStream_t stream;
    cublasHandle_t h;
    cublasLtHandle_t lth;
    void *ws; /* cuBLASLt's workspace */
    size_t ws_bytes;
    float *scratch; /* act_bwd's partial column sums */
    size_t scratch_n;
    void *bias_grad; /* cuBLASLt's bias gradient, in the storage type */
    size_t bias_grad_n;
};

impl *of(tp_compute *c) { return (impl *)c->impl; }

int cuda_fail(const char *what, cudaError_t e) {
    fprintf(stderr, "tpmlp: compute cuda: %s: %s\n", what, cudaGetErrorString(e));
    return -1;
}
int cublas_fail(const char *what, cublasStatus_t s) {
    fprintf(stderr, "tpmlp: compute cuda: %s: %s\n", what, cublasGetStatusString(s));
    return -1;
}
#define CU(call, what)                                                                                                 \
    do {                                                                                                               \
        cudaError_t e_ = (call);                                                                                       \
        if (e_ != cudaSuccess) return cuda_fail(what, e_);                                                             \
    } while (0)
#define CB(call, what)                                                                                                 \
    do {                                                                                                               \
        cublasStatus_t s_ = (call);                                                                                    \
        if (s_ != CUBLAS_STATUS_SUCCESS) return cublas_fail(what, s_);                                                 \
    } while (0)

comm_dtype dtype_of(const impl *m, tpmlp_kind k) { return k == TPMLP_F32 ? COMM_F32 : m->dt; }
size_t elem(const impl *m, tpmlp_kind k) { return kh_size(dtype_of(m, k)); }

void *cuda_alloc(tp_compute *c, size_t n, tpmlp_kind k, const char *what) {
    impl *m = of(c);
    void *p = NULL;
    const size_t bytes = n * elem(m, k) + 1;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e == cudaSuccess) e = cudaMemsetAsync(p, 0, bytes, m->stream);
    if (e != cudaSuccess) {
        fprintf(stderr, "tpmlp: compute cuda: %s (%zu bytes): %s\n", what, bytes, cudaGetErrorString(e));
        if (p) cudaFree(p);
        return NULL;
    }
    return p;
}

void cuda_release(tp_compute *c, void *p) {
    (void)c;
    cudaError_t e = cudaFree(p);
    if (e != cudaSuccess) cuda_fail("cudaFree", e);
}

int cuda_upload(tp_compute *c, void *dst, const float *src, size_t n, tpmlp_kind k) {
    impl *m = of(c);
    std::vector<unsigned char> buf(n * elem(m, k) + 1);
    kh_pack(buf.data(), src, n, dtype_of(m, k));
    CU(cudaMemcpyAsync(dst, buf.data(), n * elem(m, k), cudaMemcpyHostToDevice, m->stream), "upload");
    CU(cudaStreamSynchronize(m->stream), "upload"); /* buf is freed on return */
    return 0;
}

int cuda_download(tp_compute *c, float *dst, const void *src, size_t n, tpmlp_kind k) {
    impl *m = of(c);
    std::vector<unsigned char> buf(n * elem(m, k) + 1);
    CU(cudaMemcpyAsync(buf.data(), src, n * elem(m, k), cudaMemcpyDeviceToHost, m->stream), "download");
    CU(cudaStreamSynchronize(m->stream), "download");
    kh_unpack(dst, buf.data(), n, dtype_of(m, k));
    return 0;
}

int cuda_copy(tp_compute *c, void *dst, const void *src, size_t n, tpmlp_kind k) {
    impl *m = of(c);
    CU(cudaMemcpyAsync(dst, src, n * elem(m, k), cudaMemcpyDeviceToDevice, m->stream), "copy");
    return 0;
}

// Row-major C (M,N) = op(A)·op(B), with cblas's arguments (leading dimensions
// are row lengths). cuBLAS is column-major, and a row-major matrix is its
// transpose in column-major order, so this is Cᵀ = op(B)ᵀ·op(A)ᵀ: the same
// call with A and B (and M and N) swapped.
int gemm_rm(impl *m, int ta, int tb, int M, int N, int K, const void *A, int lda, const void *B, int ldb, void *C,
            int ldc) {
    const float one = 1.0f, zero = 0.0f;
    CB(cublasGemmEx(m->h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &one, B, m->type,
                    ldb, A, m->type, lda, &zero, C, m->type, ldc, m->compute, CUBLAS_GEMM_DEFAULT),
       "cublasGemmEx");
    return 0;
}

int cuda_linear(tp_compute *c, void *out, const void *in, const void *w, int M, int K, int N) {
    return gemm_rm(of(c), 0, 1, M, N, K, in, K, w, K, out, N); /* out = in·wᵀ */
}
int cuda_linear_dgrad(tp_compute *c, void *din, const void *dout, const void *w, int M, int K, int N) {
    return gemm_rm(of(c), 0, 0, M, K, N, dout, N, w, K, din, K); /* din = dout·w */
}
int cuda_linear_wgrad(tp_compute *c, void *dw, const void *dout, const void *in, int M, int K, int N) {
    return gemm_rm(of(c), 1, 0, N, K, M, dout, N, in, K, dw, K); /* dw = doutᵀ·in */
}

// The kernel versions: by default the fastest measured on an H200 (bias_act
// v4, act_bwd v3), or version V of each (kernels = V, capped at the kernel's
// last version); each falls back to a lower one where the row length is not
// a whole number of 16-byte packs.
int fwd_version(const impl *m, int n) {
    return kernel_fits_pack(m->dt, n) ? (m->kernels ? std::min(m->kernels, BIAS_ACT_VERSIONS) : 4) : 1;
}
int bwd_version(const impl *m, int n) {
    const int v = m->kernels ? std::min(m->kernels, ACT_BWD_VERSIONS) : 3;
    return kernel_fits_pack(m->dt, n) ? v : std::min(v, 2);
}

int ensure_scratch(impl *m, int M, int N) {
    const size_t need = kernel_act_bwd_scratch(M, N);
    if (need <= m->scratch_n) return 0;
    if (m->scratch) CU(cudaFree(m->scratch), "scratch");
    m->scratch = NULL, m->scratch_n = 0;
    CU(cudaMalloc(&m->scratch, sizeof(float) * need), "scratch");
    m->scratch_n = need;
    return 0;
}

int cuda_bias_act(tp_compute *c, void *h, void *a, void *dact, const void *b, int M, int N, tpmlp_act act) {
    impl *m = of(c);
    return kernel_bias_act(fwd_version(m, N), m->dt, h, a, dact, b, M, N, act, m->stream);
}
int cuda_act_bwd(tp_compute *c, void *dh, float *db, const void *dact, int M, int N) {
    impl *m = of(c);
    if (ensure_scratch(m, M, N) != 0) return -1;
    return kernel_act_bwd(bwd_version(m, N), m->dt, dh, db, dact, M, N, m->scratch, m->stream);
}
int cuda_bias_add(tp_compute *c, void *y, const void *b, int M, int N) {
    impl *m = of(c);
    return kernel_bias_add(m->dt, y, b, M, N, m->stream);
}
int cuda_col_sums(tp_compute *c, float *db, const void *g, int M, int N) {
    impl *m = of(c);
    if (ensure_scratch(m, M, N) != 0) return -1;
    /* act_bwd with no dact: the column sums alone, g untouched */
    return kernel_act_bwd(bwd_version(m, N), m->dt, (void *)g, db, NULL, M, N, m->scratch, m->stream);
}
int cuda_sync(tp_compute *c) {
    CU(cudaStreamSynchronize(of(c)->stream), "cudaStreamSynchronize");
    return 0;
}

// The same product as gemm_rm through cuBLASLt with an epilogue on C: in the
// column-major view C is (N rows, M columns), so a bias "per row of D" is one
// value per column of our row-major C (per feature of H), and the bias
// gradient sums over our rows (tokens). aux is (N, M) with leading dimension ldc.
//   GELU_AUX_BIAS: C = gelu_tanh(A·Bᵀ + bias), aux = A·Bᵀ + bias
//   DGELU_BGRAD:   C = (A·B) ⊙ gelu_tanh'(aux), bias = Σ_rows C
int lt_gemm_rm(impl *m, cublasLtEpilogue_t epi, int ta, int tb, int M, int N, int K, const void *A, int lda,
               const void *B, int ldb, void *C, int ldc, const void *bias, const void *aux) {
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t best;
    const cublasOperation_t opa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int64_t ld_aux = ldc;
    const float one = 1.0f, zero = 0.0f;
    int found = 0, rc = -1;
    const char *what = "cublasLtMatmulDescCreate";
    cublasStatus_t st = cublasLtMatmulDescCreate(&op, m->compute, CUDA_R_32F);
#define LT_STEP(call, name)                                                                                            \
    if (st == CUBLAS_STATUS_SUCCESS) what = name, st = (call)
    LT_STEP(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa), "TRANSA");
    LT_STEP(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb), "TRANSB");
    LT_STEP(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi), "EPILOGUE");
    LT_STEP(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias), "BIAS_POINTER");
    LT_STEP(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux),
            "EPILOGUE_AUX_POINTER");
    LT_STEP(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld_aux, sizeof ld_aux),
            "EPILOGUE_AUX_LD");
    // the stored (column-major) shapes of the first operand (our B), the second (our A) and C
    LT_STEP(cublasLtMatrixLayoutCreate(&la, m->type, tb ? K : N, tb ? N : K, ldb), "cublasLtMatrixLayoutCreate");
    LT_STEP(cublasLtMatrixLayoutCreate(&lb, m->type, ta ? M : K, ta ? K : M, lda), "cublasLtMatrixLayoutCreate");
    LT_STEP(cublasLtMatrixLayoutCreate(&lc, m->type, N, M, ldc), "cublasLtMatrixLayoutCreate");
    LT_STEP(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    LT_STEP(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &m->ws_bytes,
                                                 sizeof m->ws_bytes),
            "MAX_WORKSPACE_BYTES");
    LT_STEP(cublasLtMatmulAlgoGetHeuristic(m->lth, op, la, lb, lc, lc, pref, 1, &best, &found),
            "cublasLtMatmulAlgoGetHeuristic");
    if (st == CUBLAS_STATUS_SUCCESS && found == 0)
        fprintf(stderr, "tpmlp: compute cuda: cuBLASLt has no algorithm for the %d x %d x %d epilogue GEMM\n", M, N, K);
    else {
        LT_STEP(cublasLtMatmul(m->lth, op, &one, B, la, A, lb, &zero, C, lc, C, lc, &best.algo, m->ws, m->ws_bytes,
                               m->stream),
                "cublasLtMatmul");
        rc = st == CUBLAS_STATUS_SUCCESS ? 0 : cublas_fail(what, st);
    }
#undef LT_STEP
    if (pref) cublasLtMatmulPreferenceDestroy(pref); /* whatever happened above */
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (op) cublasLtMatmulDescDestroy(op);
    return rc;
}

int lt_linear_bias_act(tp_compute *c, void *a, void *h, const void *in, const void *w, const void *b, int M, int K,
                       int N, tpmlp_act act) {
    if (act != TPMLP_GELU_TANH) {
        fprintf(stderr, "tpmlp: compute cuda: cuBLASLt's GELU epilogue is the tanh form, not %s\n",
                tpmlp_act_name(act));
        return -1;
    }
    /* a = gelu_tanh(in·wᵀ + b), h = in·wᵀ + b */
    return lt_gemm_rm(of(c), CUBLASLT_EPILOGUE_GELU_AUX_BIAS, 0, 1, M, N, K, in, K, w, K, a, N, b, h);
}

int lt_linear_dgrad_act_bwd(tp_compute *c, void *dh, float *db, const void *dout, const void *w, const void *h, int M,
                            int K, int N, tpmlp_act act) {
    impl *m = of(c);
    (void)act;                        /* the forward refused any other */
    if ((size_t)K > m->bias_grad_n) { /* the epilogue writes the bias gradient in the storage type */
        if (m->bias_grad) CU(cudaFree(m->bias_grad), "bias gradient");
        m->bias_grad = NULL, m->bias_grad_n = 0;
        CU(cudaMalloc(&m->bias_grad, (size_t)K * kh_size(m->dt)), "bias gradient");
        m->bias_grad_n = (size_t)K;
    }
    /* dh = (dout·w) ⊙ gelu_tanh'(h), bias_grad = Σ_rows dh; then db in float32 */
    if (lt_gemm_rm(m, CUBLASLT_EPILOGUE_DGELU_BGRAD, 0, 0, M, K, N, dout, N, w, K, dh, K, m->bias_grad, h) != 0)
        return -1;
    return kernel_to_f32(m->dt, db, m->bias_grad, (size_t)K, m->stream);
}

void cuda_destroy(tp_compute *c) {
    impl *m = of(c);
    if (m == NULL) return;
    cudaSetDevice(m->device);
    if (m->scratch) cudaFree(m->scratch);
    if (m->bias_grad) cudaFree(m->bias_grad);
    if (m->ws) cudaFree(m->ws);
    if (m->lth) cublasLtDestroy(m->lth);
    if (m->h) cublasDestroy(m->h);
    if (m->stream) cudaStreamDestroy(m->stream);
    free(m);
    c->impl = NULL;
}

const tp_compute_ops cuda_ops = {
    "cuda",        cuda_alloc,        cuda_release,      cuda_upload,   cuda_download, cuda_copy,
    cuda_linear,   cuda_linear_dgrad, cuda_linear_wgrad, cuda_bias_act, cuda_act_bwd,  cuda_bias_add,
    cuda_col_sums, cuda_sync,         cuda_destroy,      NULL,          NULL,
};
const tp_compute_ops cuda_lt_ops = {
    "cuda-lt",
    cuda_alloc,
    cuda_release,
    cuda_upload,
    cuda_download,
    cuda_copy,
    cuda_linear,
    cuda_linear_dgrad,
    cuda_linear_wgrad,
    cuda_bias_act,
    cuda_act_bwd,
    cuda_bias_add,
    cuda_col_sums,
    cuda_sync,
    cuda_destroy,
    lt_linear_bias_act,
    lt_linear_dgrad_act_bwd,
};

// ---- the local communicator's memory: one GPU's, each rank on its stream

int mem_sum(void *ctx, void *out, const void *const *slots, int size, size_t offset, size_t n, comm_dtype t) {
    impl *m = of((tp_compute *)ctx);
    if (t != COMM_F32 && t != COMM_BF16) {
        fprintf(stderr, "tpmlp: comm local (GPU): sums float32 and bf16 only\n");
        return -1;
    }
    const size_t es = kh_size(t); /* (the communicator's type is the kernels': one vocabulary) */
    CU(cudaMemcpyAsync(out, (const char *)slots[0] + offset * es, n * es, cudaMemcpyDeviceToDevice, m->stream),
       "all-reduce copy");
    for (int r = 1; r < size; r++) /* in rank order: every rank gets the same bits */
        if (kernel_add(t, out, (const char *)slots[r] + offset * es, n, m->stream) != 0) return -1;
    return 0;
}
int mem_copy(void *ctx, void *dst, const void *src, size_t bytes) {
    CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, of((tp_compute *)ctx)->stream), "collective copy");
    return 0;
}
void *mem_alloc(void *ctx, size_t bytes) {
    (void)ctx;
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes + 1);
    if (e != cudaSuccess) {
        fprintf(stderr, "tpmlp: comm local (GPU): %zu bytes: %s\n", bytes, cudaGetErrorString(e));
        return NULL;
    }
    return p;
}
void mem_release(void *ctx, void *p) {
    (void)ctx;
    cudaFree(p);
}
int mem_sync(void *ctx) { return cuda_sync((tp_compute *)ctx); }
const comm_local_memory gpu_memory = {mem_sum, mem_copy, mem_alloc, mem_release, mem_sync};

} // namespace

int tp_cuda_mode_parse(const char *name, tp_cuda_mode *out) {
    if (strcmp(name, "fp32") == 0) return *out = TP_CUDA_FP32, 0;
    if (strcmp(name, "tf32") == 0) return *out = TP_CUDA_TF32, 0;
    if (strcmp(name, "bf16") == 0) return *out = TP_CUDA_BF16, 0;
    return -1;
}

int tp_cuda_no_gpu(char *why, size_t len) { return kh_no_gpu(why, len); }

int tp_cuda_device_count(void) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    return e == cudaSuccess ? n : cuda_fail("cudaGetDeviceCount", e);
}

int tp_compute_cuda_create(tp_compute *c, int device, tp_cuda_mode mode, int lt, int kernels) {
    impl *m = (impl *)calloc(1, sizeof *m);
    if (m == NULL) {
        fprintf(stderr, "tpmlp: compute cuda: out of host memory\n");
        return -1;
    }
    m->device = device, m->lt = lt, m->kernels = kernels, m->ws_bytes = (size_t)32 << 20;
    m->dt = mode == TP_CUDA_BF16 ? COMM_BF16 : COMM_F32;
    m->type = mode == TP_CUDA_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    m->compute = mode == TP_CUDA_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    *c = (tp_compute){lt ? &cuda_lt_ops : &cuda_ops, mode == TP_CUDA_BF16 ? COMM_BF16 : COMM_F32, m};
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaMalloc(&m->ws, m->ws_bytes);
    if (e != cudaSuccess) return cuda_fail("set-up", e), cuda_destroy(c), -1;
    cublasStatus_t s = cublasCreate(&m->h);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetStream(m->h, m->stream);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtCreate(&m->lth);
    if (s != CUBLAS_STATUS_SUCCESS) return cublas_fail("set-up", s), cuda_destroy(c), -1;
    return 0;
}

int tp_compute_cuda_bind(tp_compute *c) {
    CU(cudaSetDevice(of(c)->device), "cudaSetDevice");
    return 0;
}

int tp_compute_cuda_time(tp_compute *c, int (*fn)(void *), void *arg, float *ms) {
    impl *m = of(c);
    cudaEvent_t e0 = NULL, e1 = NULL;
    const char *what = "cudaEventCreate";
    cudaError_t e = cudaEventCreate(&e0);
    if (e == cudaSuccess) e = cudaEventCreate(&e1);
    if (e == cudaSuccess) what = "cudaEventRecord", e = cudaEventRecord(e0, m->stream);
    int rc = e == cudaSuccess ? fn(arg) : -1;
    if (e == cudaSuccess) e = cudaEventRecord(e1, m->stream);
    if (e == cudaSuccess) what = "cudaEventSynchronize", e = cudaEventSynchronize(e1);
    if (e == cudaSuccess) what = "cudaEventElapsedTime", e = cudaEventElapsedTime(ms, e0, e1);
    if (e != cudaSuccess) rc = cuda_fail(what, e);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    return rc;
}

int comm_cuda_local_create(tpmlp_comm *comms, int size, tp_compute *const *cpts) {
    return comm_local_create_on(comms, size, &gpu_memory, (void *const *)cpts);
}
