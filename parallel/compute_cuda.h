/* The cuda backend of the compute interface (compute.h): a shard's tensors in
 * one GPU's memory, fp32 or bf16 storage; the GEMMs on cuBLAS (or cuBLASLt
 * with bias + GELU and its backward in the epilogues), everything between them
 * on the kernels of kernels/, all on the backend's own stream. Also the local
 * communicator over that memory: p shards on one GPU, their buffers summed
 * there in rank order. Callable from C. */
#ifndef TPMLP_COMPUTE_CUDA_H
#define TPMLP_COMPUTE_CUDA_H

#include <stddef.h>

#include "comm.h"
#include "compute.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The arithmetic: fp32 (fp32 storage and GEMMs), tf32 (fp32 storage, GEMMs
 * on TF32 tensor cores), bf16 (bf16 storage, fp32 accumulation). */
typedef enum { TP_CUDA_FP32, TP_CUDA_TF32, TP_CUDA_BF16 } tp_cuda_mode;
int tp_cuda_mode_parse(const char *name, tp_cuda_mode *out); /* 0, or -1 if unknown */

/* 0 if this process can use a GPU; else 1 and why, in words for one line. */
int tp_cuda_no_gpu(char *why, size_t len);
/* The number of GPUs, or -1 after one line. */
int tp_cuda_device_count(void);

/* Kernel versions: --kernels takes 1 to this (kernels/kernels.h). */
#define TP_CUDA_KERNEL_VERSIONS 4

/* A backend on device: lt 1 uses cuBLASLt's epilogues (tanh GELU only; the
 * shard width a multiple of 8); kernels 0 runs the fastest measured version
 * of each kernel, V version V (or the kernel's last). 0, or -1 after one line. */
int tp_compute_cuda_create(tp_compute *c, int device, tp_cuda_mode mode, int lt, int kernels);
/* Makes c's device current for the calling thread (each thread that uses c). */
int tp_compute_cuda_bind(tp_compute *c);
/* *ms = the time of the work fn(arg) queues on c's stream, from CUDA events. */
int tp_compute_cuda_time(tp_compute *c, int (*fn)(void *), void *arg, float *ms);

/* size communicators for size threads whose buffers live on one GPU, rank r
 * computing on cpts[r] (all on the same device). */
int comm_cuda_local_create(tpmlp_comm *comms, int size, tp_compute *const *cpts);

#ifdef __cplusplus
}
#endif

#endif
