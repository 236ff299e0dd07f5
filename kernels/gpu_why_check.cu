// The one line the GPU programs print when they cannot use a GPU
// (kh_gpu_why in host.h), for each answer the CUDA runtime can give: no
// driver, a driver older than the runtime, a driver and no device, other
// errors. Runs without a GPU: the answers are given, not asked. Speaks TAP.
#include <stdio.h>
#include <string.h>

#include "host.h"

static int n = 0, failed = 0;

static void expect(const char *what, cudaError_t e, int count, int drv, int rt, int module, const char *want) {
    char why[160] = "(none)";
    int none = kh_gpu_why(why, sizeof why, e, count, drv, rt, module);
    int ok = want == NULL ? !none : none && strcmp(why, want) == 0 && strchr(why, '\n') == NULL;
    printf("%s %d - %s: %s\n", ok ? "ok" : "not ok", ++n, what, none ? why : "a GPU");
    if (!ok) printf("# expected: %s\n", want ? want : "a GPU"), failed++;
}

int main(void) {
    printf("1..7\n");
    expect("a device", cudaSuccess, 1, 13000, 13000, 1, NULL);
    expect("no driver library", cudaErrorInsufficientDriver, 0, 0, 13000, 0, "no GPU (no NVIDIA driver)");
    expect("the CUDA stub library only", cudaErrorStubLibrary, 0, 13000, 13000, 0, "no GPU (no NVIDIA driver)");
    expect("a driver older than the runtime", cudaErrorInsufficientDriver, 0, 12040, 13000, 1,
           "no usable GPU (a GPU driver older than this CUDA runtime: the driver is for CUDA 12.4, the runtime is "
           "CUDA 13.0)");
    expect("a driver library but no kernel module", cudaErrorNoDevice, 0, 13000, 13000, 0,
           "no GPU (no NVIDIA driver loaded)");
    expect("a driver and no device", cudaErrorNoDevice, 0, 13000, 13000, 1, "no GPU");
    char other[160];
    snprintf(other, sizeof other, "no usable GPU (%s)", cudaGetErrorString(cudaErrorDevicesUnavailable));
    expect("another error", cudaErrorDevicesUnavailable, 0, 13000, 13000, 1, other);
    return failed ? 1 : 0;
}
