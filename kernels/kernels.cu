// The elementwise CUDA kernels of the MLP; see kernels.h for the versions.
// Arithmetic is fp32 for both storage types (bf16 is converted on load and
// rounded to nearest on store). No fast-math: erfcf and expf are CUDA's
// accurate ones (a few ulp).
#include <cuda_bf16.h>
#include <stdio.h>

#include "kernels.h"
// The CPU reference's own float32 activations (reference/act.h), compiled for
// the device too: bias_act version 3 runs the very same arithmetic.
#define ACT_INLINE static __forceinline__ __host__ __device__
#include "act.h"

static int check(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return 0;
    fprintf(stderr, "tpmlp: kernel %s: %s\n", what, cudaGetErrorString(e));
    return -1;
}

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// act(x) and act'(x) together (they share erfc/exp), as reference/act.h does on the CPU.
template <int ACT> __device__ __forceinline__ void act_both(float x, float *g, float *d) {
    if (ACT == TPMLP_GELU) {
        float cdf = 0.5f * erfcf(-x * 0.70710678f);    // Φ(x), accurate in the tail
        float pdf = 0.39894228f * expf(-0.5f * x * x); // φ(x)
        *g = x * cdf;
        *d = cdf + x * pdf;
    } else if (ACT == TPMLP_GELU_TANH) {
        float u = 0.79788456f * (x + 0.044715f * x * x * x);
        float e = expf(-2.0f * fabsf(u)), inv = 1.0f / (1.0f + e), einv = e * inv; // σ(2u) without overflow
        float s = u >= 0.0f ? inv : einv;
        *g = x * s;
        *d = s + x * (einv * inv) * 2.0f * 0.79788456f * (1.0f + 3.0f * 0.044715f * x * x);
    } else if (ACT == TPMLP_SILU) {
        float e = expf(-fabsf(x)), inv = 1.0f / (1.0f + e), einv = e * inv; // σ(x) without overflow
        float s = x >= 0.0f ? inv : einv;
        float xc = fminf(fmaxf(x, -120.0f), 120.0f); // σ(1-σ) is 0 beyond: keeps inf·0 out, as act.h does
        *g = x * s;
        *d = s + xc * (einv * inv);
    } else {
        *g = x > 0.0f ? x : 0.0f;
        *d = x > 0.0f ? 1.0f : 0.0f;
    }
}

// ---------------------------------------------------------------- bias_act

// v1: one thread per element.
template <typename T, int ACT> __global__ void bias_act_v1(T *h, T *a, T *dact, const T *b, size_t n, int F) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    float v = to_f(h[i]) + to_f(b[i % F]), g, d;
    act_both<ACT>(v, &g, &d);
    h[i] = from_f<T>(v);
    a[i] = from_f<T>(g);
    if (dact) dact[i] = from_f<T>(d);
}

// 16 bytes of T, loaded and stored as one transaction.
template <typename T> struct alignas(16) pack16 {
    static constexpr int n = 16 / sizeof(T);
    T v[n];
};

// act(x) and act'(x) by the CPU reference's code (act.h): GELU from a fitted
// erfc that shares one exp with φ, all in FMAs, no branches.
template <int ACT> __device__ __forceinline__ void act_both_ref(float x, float *g, float *d) {
    if (ACT == TPMLP_GELU)
        act_gelu_both_f32(x, g, d);
    else if (ACT == TPMLP_GELU_TANH)
        act_gelu_tanh_both_f32(x, g, d);
    else if (ACT == TPMLP_SILU)
        act_silu_both_f32(x, g, d);
    else
        *g = act_relu_f32(x), *d = act_relu_grad_f32(x);
}

// act(x) and act'(x) with one exp for GELU: CUDA's erfcf(z) is erfcx(z)·e^(-z²)
// inside, and e^(-z²) = e^(-x²/2) is φ's exp too, so take erfcxf and share
// one expf: Φ(x) = erfcx(|x|/√2)·e/2 for x ≤ 0, 1 − that for x > 0 (the tail
// keeps its relative accuracy). expf's argument -x²/2 is rounded: a relative
// error of about x²/2 ulp, below the function's own sensitivity |x·act'(x)|.
template <int ACT> __device__ __forceinline__ void act_both_shared_exp(float x, float *g, float *d) {
    if (ACT == TPMLP_GELU) {
        float e = expf(-0.5f * x * x);
        float tail = 0.5f * erfcxf(fabsf(x) * 0.70710678f) * e; /* Φ(-|x|) */
        float cdf = x > 0.0f ? 1.0f - tail : tail;
        *g = x * cdf;
        *d = cdf + x * (0.39894228f * e);
    } else {
        act_both<ACT>(x, g, d);
    }
}

// The activation of bias_act version V: 2 CUDA's erfcf and expf (act_both),
// 3 the CPU reference's code (act.h), 4 erfcxf with the exp shared.
template <int V, int ACT> __device__ __forceinline__ void act_version(float x, float *g, float *d) {
    if (V == 2)
        act_both<ACT>(x, g, d);
    else if (V == 3)
        act_both_ref<ACT>(x, g, d);
    else
        act_both_shared_exp<ACT>(x, g, d);
}

// v2, v3, v4: each thread handles 16 bytes (4 floats or 8 bf16) of one row;
// F must be a multiple of that, so a pack never crosses a row. They differ
// only in how the activation is computed (act_version).
template <typename T, int ACT, int V>
__global__ void bias_act_packed(T *h, T *a, T *dact, const T *b, size_t n, int F) {
    using P = pack16<T>;
    size_t i = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) * P::n;
    if (i >= n) return;
    P hv = *reinterpret_cast<const P *>(h + i), bv = *reinterpret_cast<const P *>(b + i % F), av, dv;
#pragma unroll
    for (int k = 0; k < P::n; k++) {
        float v = to_f(hv.v[k]) + to_f(bv.v[k]), g, d;
        act_version<V, ACT>(v, &g, &d);
        hv.v[k] = from_f<T>(v), av.v[k] = from_f<T>(g), dv.v[k] = from_f<T>(d);
    }
    *reinterpret_cast<P *>(h + i) = hv;
    *reinterpret_cast<P *>(a + i) = av;
    if (dact) *reinterpret_cast<P *>(dact + i) = dv;
}

template <typename T, int ACT>
static int launch_bias_act(int version, void *h, void *a, void *dact, const void *b, int N, int F, cudaStream_t s) {
    size_t n = (size_t)N * F;
    const int threads = 256;
    if (version == 1) {
        bias_act_v1<T, ACT>
            <<<(unsigned)((n + threads - 1) / threads), threads, 0, s>>>((T *)h, (T *)a, (T *)dact, (const T *)b, n, F);
    } else {
        const int per = pack16<T>::n;
        if (F % per != 0) {
            fprintf(stderr, "tpmlp: kernel bias_act v%d: F = %d is not a multiple of %d\n", version, F, per);
            return -1;
        }
        const unsigned blocks = (unsigned)((n / per + threads - 1) / threads);
        if (version == 2)
            bias_act_packed<T, ACT, 2><<<blocks, threads, 0, s>>>((T *)h, (T *)a, (T *)dact, (const T *)b, n, F);
        else if (version == 3)
            bias_act_packed<T, ACT, 3><<<blocks, threads, 0, s>>>((T *)h, (T *)a, (T *)dact, (const T *)b, n, F);
        else
            bias_act_packed<T, ACT, 4><<<blocks, threads, 0, s>>>((T *)h, (T *)a, (T *)dact, (const T *)b, n, F);
    }
    return check(cudaGetLastError(), "bias_act launch");
}

template <typename T>
static int bias_act_dt(int version, void *h, void *a, void *dact, const void *b, int N, int F, tpmlp_act act,
                       cudaStream_t s) {
    switch (act) {
    case TPMLP_GELU: return launch_bias_act<T, TPMLP_GELU>(version, h, a, dact, b, N, F, s);
    case TPMLP_GELU_TANH: return launch_bias_act<T, TPMLP_GELU_TANH>(version, h, a, dact, b, N, F, s);
    case TPMLP_SILU: return launch_bias_act<T, TPMLP_SILU>(version, h, a, dact, b, N, F, s);
    default: return launch_bias_act<T, TPMLP_RELU>(version, h, a, dact, b, N, F, s);
    }
}

int kernel_bias_act(int version, comm_dtype dt, void *h, void *a, void *dact, const void *b, int N, int F,
                    tpmlp_act act, cudaStream_t stream) {
    if (version < 1 || version > BIAS_ACT_VERSIONS) {
        fprintf(stderr, "tpmlp: kernel bias_act: no version %d (1..%d)\n", version, BIAS_ACT_VERSIONS);
        return -1;
    }
    return dt == COMM_F32 ? bias_act_dt<float>(version, h, a, dact, b, N, F, act, stream)
                          : bias_act_dt<__nv_bfloat16>(version, h, a, dact, b, N, F, act, stream);
}

// ---------------------------------------------------------------- act_bwd

// dh[k] = dh[k] · dact[k] (stored back; with no dact, dh[k] itself); returns it.
template <typename T> __device__ __forceinline__ float grad_at(T *dh, const T *dact, size_t k) {
    float g = to_f(dh[k]);
    if (dact) {
        g *= to_f(dact[k]);
        dh[k] = from_f<T>(g);
    }
    return g;
}

// v1: thread j owns column j and walks all N rows: neighbouring threads read
// neighbouring addresses (coalesced), and db[j] is summed in row order.
template <typename T> __global__ void act_bwd_v1(T *dh, float *db, const T *dact, int N, int F) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= F) return;
    float s = 0.0f;
    for (int i = 0; i < N; i++) s += grad_at(dh, dact, (size_t)i * F + j);
    db[j] = s;
}

#define BWD_COLS 32   // columns per block (one warp wide)
#define BWD_YS 8      // rows handled at once by a block
#define BWD_CHUNK 256 // rows per block in v2

// v2, pass 1: block (x, c) sums rows [c·CHUNK, (c+1)·CHUNK) of 32 columns; the
// 8 thread rows stride through the chunk, then are summed in a fixed order.
template <typename T> __global__ void act_bwd_v2_partial(T *dh, float *scratch, const T *dact, int N, int F) {
    __shared__ float part[BWD_YS][BWD_COLS];
    int j = blockIdx.x * BWD_COLS + threadIdx.x, r0 = blockIdx.y * BWD_CHUNK;
    float s = 0.0f;
    if (j < F)
        for (int i = r0 + threadIdx.y; i < N && i < r0 + BWD_CHUNK; i += BWD_YS)
            s += grad_at(dh, dact, (size_t)i * F + j);
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && j < F) {
        float t = 0.0f;
        for (int y = 0; y < BWD_YS; y++) t += part[y][threadIdx.x];
        scratch[(size_t)blockIdx.y * F + j] = t;
    }
}

// v2, pass 2: db[j] = Σ over chunks in order.
__global__ void act_bwd_v2_final(float *db, const float *scratch, int chunks, int F) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= F) return;
    float s = 0.0f;
    for (int c = 0; c < chunks; c++) s += scratch[(size_t)c * F + j];
    db[j] = s;
}

// v3, pass 1: as v2, but each thread owns a 16-byte pack of columns (4 floats
// or 8 bf16) and loads and stores whole packs, so a warp moves 512 bytes of a
// row at once instead of 128 (fp32) or 64 (bf16). F must be a multiple of the
// pack. The sums per column run in the same order as v2's.
template <typename T>
__global__ void act_bwd_v3_partial(T *__restrict__ dh, float *__restrict__ scratch, const T *__restrict__ dact, int N,
                                   int F) {
    using P = pack16<T>;
    __shared__ float part[BWD_YS][BWD_COLS * P::n];
    const int j0 = (blockIdx.x * BWD_COLS + threadIdx.x) * P::n, r0 = blockIdx.y * BWD_CHUNK;
    const int r1 = min(N, r0 + BWD_CHUNK);
    float s[P::n];
#pragma unroll
    for (int k = 0; k < P::n; k++) s[k] = 0.0f;
    if (j0 < F) {
#pragma unroll 4
        for (int i = r0 + threadIdx.y; i < r1; i += BWD_YS) {
            const size_t at = (size_t)i * F + j0;
            P g = *reinterpret_cast<const P *>(dh + at);
            if (dact) {
                P d = *reinterpret_cast<const P *>(dact + at);
#pragma unroll
                for (int k = 0; k < P::n; k++) g.v[k] = from_f<T>(to_f(g.v[k]) * to_f(d.v[k]));
                *reinterpret_cast<P *>(dh + at) = g;
            }
#pragma unroll
            for (int k = 0; k < P::n; k++) s[k] += to_f(g.v[k]);
        }
    }
#pragma unroll
    for (int k = 0; k < P::n; k++) part[threadIdx.y][threadIdx.x * P::n + k] = s[k];
    __syncthreads();
    // the 8 thread rows' partials, summed in row order; every thread of the
    // block writes one column (coalesced)
    const int c = threadIdx.y * BWD_COLS + threadIdx.x; /* 0 .. 255 */
    for (int col = c; col < BWD_COLS * P::n; col += BWD_COLS * BWD_YS) {
        const int j = blockIdx.x * BWD_COLS * P::n + col;
        if (j >= F) continue;
        float t = 0.0f;
        for (int y = 0; y < BWD_YS; y++) t += part[y][col];
        scratch[(size_t)blockIdx.y * F + j] = t;
    }
}

size_t kernel_act_bwd_scratch(int N, int F) { return (size_t)((N + BWD_CHUNK - 1) / BWD_CHUNK) * F; }

template <typename T>
static int act_bwd_dt(int version, void *dh, float *db, const void *dact, int N, int F, float *scratch,
                      cudaStream_t s) {
    if (version == 1) {
        act_bwd_v1<T><<<(F + 255) / 256, 256, 0, s>>>((T *)dh, db, (const T *)dact, N, F);
    } else {
        if (scratch == NULL) {
            fprintf(stderr, "tpmlp: kernel act_bwd v%d: needs a scratch array (kernel_act_bwd_scratch)\n", version);
            return -1;
        }
        const int chunks = (N + BWD_CHUNK - 1) / BWD_CHUNK, per = pack16<T>::n;
        dim3 block(BWD_COLS, BWD_YS);
        if (version == 2) {
            dim3 grid((F + BWD_COLS - 1) / BWD_COLS, chunks);
            act_bwd_v2_partial<T><<<grid, block, 0, s>>>((T *)dh, scratch, (const T *)dact, N, F);
        } else {
            if (F % per != 0) {
                fprintf(stderr, "tpmlp: kernel act_bwd v3: F = %d is not a multiple of %d\n", F, per);
                return -1;
            }
            dim3 grid((F / per + BWD_COLS - 1) / BWD_COLS, chunks);
            act_bwd_v3_partial<T><<<grid, block, 0, s>>>((T *)dh, scratch, (const T *)dact, N, F);
        }
        if (check(cudaGetLastError(), "act_bwd partial launch")) return -1;
        act_bwd_v2_final<<<(F + 255) / 256, 256, 0, s>>>(db, scratch, chunks, F);
    }
    return check(cudaGetLastError(), "act_bwd launch");
}

int kernel_act_bwd(int version, comm_dtype dt, void *dh, float *db, const void *dact, int N, int F, float *scratch,
                   cudaStream_t stream) {
    if (version < 1 || version > ACT_BWD_VERSIONS) {
        fprintf(stderr, "tpmlp: kernel act_bwd: no version %d (1..%d)\n", version, ACT_BWD_VERSIONS);
        return -1;
    }
    return dt == COMM_F32 ? act_bwd_dt<float>(version, dh, db, dact, N, F, scratch, stream)
                          : act_bwd_dt<__nv_bfloat16>(version, dh, db, dact, N, F, scratch, stream);
}

// ---------------------------------------------------------------- bias_add

template <typename T> __global__ void bias_add_k(T *y, const T *b, size_t n, int D) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) y[i] = from_f<T>(to_f(y[i]) + to_f(b[i % D]));
}

int kernel_bias_add(comm_dtype dt, void *y, const void *b, int N, int D, cudaStream_t stream) {
    size_t n = (size_t)N * D;
    unsigned blocks = (unsigned)((n + 255) / 256);
    if (dt == COMM_F32)
        bias_add_k<float><<<blocks, 256, 0, stream>>>((float *)y, (const float *)b, n, D);
    else
        bias_add_k<__nv_bfloat16><<<blocks, 256, 0, stream>>>((__nv_bfloat16 *)y, (const __nv_bfloat16 *)b, n, D);
    return check(cudaGetLastError(), "bias_add launch");
}

template <typename T> __global__ void add_k(T *y, const T *x, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) y[i] = from_f<T>(to_f(y[i]) + to_f(x[i]));
}

int kernel_add(comm_dtype dt, void *y, const void *x, size_t n, cudaStream_t stream) {
    unsigned blocks = (unsigned)((n + 255) / 256);
    if (dt == COMM_F32)
        add_k<float><<<blocks, 256, 0, stream>>>((float *)y, (const float *)x, n);
    else
        add_k<__nv_bfloat16><<<blocks, 256, 0, stream>>>((__nv_bfloat16 *)y, (const __nv_bfloat16 *)x, n);
    return check(cudaGetLastError(), "add launch");
}

template <typename T> __global__ void to_f32_k(float *out, const T *in, size_t n) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) out[i] = to_f(in[i]);
}

int kernel_to_f32(comm_dtype dt, float *out, const void *in, size_t n, cudaStream_t stream) {
    unsigned blocks = (unsigned)((n + 255) / 256);
    if (dt == COMM_F32)
        to_f32_k<float><<<blocks, 256, 0, stream>>>(out, (const float *)in, n);
    else
        to_f32_k<__nv_bfloat16><<<blocks, 256, 0, stream>>>(out, (const __nv_bfloat16 *)in, n);
    return check(cudaGetLastError(), "to_f32 launch");
}
