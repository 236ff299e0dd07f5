// Host-side helpers shared by the CUDA programs: checked CUDA calls and moving
// float data to and from a device buffer in the kernels' storage type.
#ifndef TPMLP_KERNELS_HOST_H
#define TPMLP_KERNELS_HOST_H

#include <cuda_bf16.h>
#include <string.h>
#include <vector>

#include "kernels.h"
#include "util.h"

#define CUDA_OK(call)                                                                                                  \
    do {                                                                                                               \
        cudaError_t e_ = (call);                                                                                       \
        if (e_ != cudaSuccess) tpmlp_die(1, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(e_));       \
    } while (0)

static inline size_t kh_size(kernel_dtype dt) { return dt == KDT_F32 ? 4 : 2; }

// x as stored: itself in fp32, rounded to nearest bf16 in bf16
static inline float kh_round(float x, kernel_dtype dt) {
    return dt == KDT_F32 ? x : __bfloat162float(__float2bfloat16_rn(x));
}

// a device copy of n floats, converted to dt
static inline void *kh_upload(const float *host, size_t n, kernel_dtype dt) {
    std::vector<unsigned char> buf(n * kh_size(dt) + 1);
    for (size_t i = 0; i < n; i++) {
        if (dt == KDT_F32)
            memcpy(&buf[4 * i], &host[i], 4);
        else {
            __nv_bfloat16 b = __float2bfloat16_rn(host[i]);
            memcpy(&buf[2 * i], &b, 2);
        }
    }
    void *d;
    CUDA_OK(cudaMalloc(&d, buf.size()));
    CUDA_OK(cudaMemcpy(d, buf.data(), buf.size(), cudaMemcpyHostToDevice));
    return d;
}

// n values of dt on the device, back as floats
static inline void kh_download(float *host, const void *dev, size_t n, kernel_dtype dt) {
    std::vector<unsigned char> buf(n * kh_size(dt) + 1);
    CUDA_OK(cudaMemcpy(buf.data(), dev, n * kh_size(dt), cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++) {
        if (dt == KDT_F32)
            memcpy(&host[i], &buf[4 * i], 4);
        else {
            __nv_bfloat16 b;
            memcpy(&b, &buf[2 * i], 2);
            host[i] = __bfloat162float(b);
        }
    }
}

static inline void *kh_alloc(size_t n, kernel_dtype dt) {
    void *d;
    CUDA_OK(cudaMalloc(&d, n * kh_size(dt) + 1));
    return d;
}

#endif
