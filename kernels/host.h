// Host-side helpers shared by the CUDA programs: checked CUDA calls and moving
// float data to and from a device buffer in the kernels' storage type.
#ifndef TPMLP_KERNELS_HOST_H
#define TPMLP_KERNELS_HOST_H

#include <cuda_bf16.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <vector>

#include "kernels.h"
#include "util.h"

#define CUDA_OK(call)                                                                                                  \
    do {                                                                                                               \
        cudaError_t e_ = (call);                                                                                       \
        if (e_ != cudaSuccess) tpmlp_die(1, "%s:%d: %s: %s", __FILE__, __LINE__, #call, cudaGetErrorString(e_));       \
    } while (0)

// Why there is no GPU to use, in words for one line ("no GPU (no NVIDIA
// driver)"), from what the CUDA runtime and the system say: e and count from
// cudaGetDeviceCount; drv and rt from cudaDriverGetVersion (0 when no driver
// library is installed) and cudaRuntimeGetVersion (1000·major + 10·minor);
// module: the NVIDIA kernel module is loaded. cudaGetDeviceCount answers
// cudaErrorInsufficientDriver both without any driver and with one older than
// this runtime: drv tells which. Returns 0 (and leaves why) if there is a GPU.
static inline int kh_gpu_why(char *why, size_t len, cudaError_t e, int count, int drv, int rt, int module) {
    const int no_gpu_error = e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || e == cudaErrorStubLibrary;
    if (e == cudaSuccess && count > 0) return 0;
    if (e == cudaSuccess)
        snprintf(why, len, "no GPU");
    else if (drv == 0 || e == cudaErrorStubLibrary)
        snprintf(why, len, "no GPU (no NVIDIA driver)");
    else if (e == cudaErrorInsufficientDriver && drv < rt)
        snprintf(why, len,
                 "no usable GPU (a GPU driver older than this CUDA runtime: the driver is for CUDA %d.%d, the runtime "
                 "is CUDA %d.%d)",
                 drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
    else if (no_gpu_error && !module)
        snprintf(why, len, "no GPU (no NVIDIA driver loaded)");
    else if (e == cudaErrorNoDevice)
        snprintf(why, len, "no GPU");
    else
        snprintf(why, len, "no usable GPU (%s)", cudaGetErrorString(e));
    return 1;
}

// 0 if this process can use a GPU; otherwise 1 and why (kh_gpu_why).
static inline int kh_no_gpu(char *why, size_t len) {
    int count = 0, drv = 0, rt = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e == cudaSuccess && count > 0) return 0;
    if (cudaDriverGetVersion(&drv) != cudaSuccess) drv = 0;
    if (cudaRuntimeGetVersion(&rt) != cudaSuccess) rt = 0;
    return kh_gpu_why(why, len, e, count, drv, rt, access("/proc/driver/nvidia/version", F_OK) == 0);
}

static inline size_t kh_size(comm_dtype dt) { return dt == COMM_F32 ? 4 : 2; }

// x as stored: itself in fp32, rounded to nearest bf16 in bf16
static inline float kh_round(float x, comm_dtype dt) {
    return dt == COMM_F32 ? x : __bfloat162float(__float2bfloat16_rn(x));
}

// n floats as stored in dt (bytes: n·kh_size(dt)), and back
static inline void kh_pack(unsigned char *bytes, const float *host, size_t n, comm_dtype dt) {
    if (dt == COMM_F32) return (void)memcpy(bytes, host, n * 4);
    for (size_t i = 0; i < n; i++) {
        __nv_bfloat16 b = __float2bfloat16_rn(host[i]);
        memcpy(&bytes[2 * i], &b, 2);
    }
}
static inline void kh_unpack(float *host, const unsigned char *bytes, size_t n, comm_dtype dt) {
    if (dt == COMM_F32) return (void)memcpy(host, bytes, n * 4);
    for (size_t i = 0; i < n; i++) {
        __nv_bfloat16 b;
        memcpy(&b, &bytes[2 * i], 2);
        host[i] = __bfloat162float(b);
    }
}
// a device copy of n floats, converted to dt
static inline void *kh_upload(const float *host, size_t n, comm_dtype dt) {
    std::vector<unsigned char> buf(n * kh_size(dt) + 1);
    kh_pack(buf.data(), host, n, dt);
    void *d;
    CUDA_OK(cudaMalloc(&d, buf.size()));
    CUDA_OK(cudaMemcpy(d, buf.data(), buf.size(), cudaMemcpyHostToDevice));
    return d;
}

// n values of dt on the device, back as floats
static inline void kh_download(float *host, const void *dev, size_t n, comm_dtype dt) {
    std::vector<unsigned char> buf(n * kh_size(dt) + 1);
    CUDA_OK(cudaMemcpy(buf.data(), dev, n * kh_size(dt), cudaMemcpyDeviceToHost));
    kh_unpack(host, buf.data(), n, dt);
}

static inline void *kh_alloc(size_t n, comm_dtype dt) {
    void *d;
    CUDA_OK(cudaMalloc(&d, n * kh_size(dt) + 1));
    return d;
}

#endif
