// Validates every version of every kernel in kernels.cu against the CPU
// reference, then (with --bench) prints a table of time, GB/s and % of the
// measured device-to-device copy bandwidth. Without a GPU it says so as a
// TAP plan "1..0 # SKIP", so `make check` shows SKIP, never PASS.
//   kernels/kernel_check            validate (TAP), what make check runs
//   kernels/kernel_check --bench [N F]   validate, then time (default N=8192, F=16384)
#include <cuda_bf16.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "host.h"
#include "kernels.h"
#include "util.h"

static int ntest = 0, nfail = 0;
static void report(int ok, const char *what, int version, const char *dt, const char *act, double worst) {
    ntest++;
    nfail += !ok;
    printf("%s %d - %s v%d %s %s (worst error %.2f of tolerance)\n", ok ? "ok" : "not ok", ntest, what, version, dt,
           act, worst);
}

// Tolerance per element: u of the storage type on the value (rounding on
// store) plus 16 u32 for the difference between CUDA's and our erfc/exp
// (both a few ulp), scaled by the function's own sensitivity |x·act'(x)|.
// The kernel adds the bias in fp32 and applies act before rounding h for
// storage; the reference does the same.
static void check_bias_act(int version, comm_dtype dt, tpmlp_act act, int N, int F) {
    const size_t n = (size_t)N * F;
    std::vector<float> h(n), b(F);
    tpmlp_fill_uniform_f32(h.data(), n, 11, 6.0f);
    tpmlp_fill_uniform_f32(b.data(), (size_t)F, 12, 1.0f);
    for (auto &x : h) x = kh_round(x, dt);
    for (auto &x : b) x = kh_round(x, dt);
    void *dh = kh_upload(h.data(), n, dt), *db = kh_upload(b.data(), (size_t)F, dt);
    void *da = kh_alloc(n, dt), *dd = kh_alloc(n, dt);
    int rc = kernel_bias_act(version, dt, dh, da, dd, db, N, F, act, 0);
    CUDA_OK(cudaDeviceSynchronize());
    std::vector<float> gh(n), ga(n), gd(n);
    kh_download(gh.data(), dh, n, dt), kh_download(ga.data(), da, n, dt), kh_download(gd.data(), dd, n, dt);
    const double u = dt == COMM_F32 ? 0x1p-24 : 0x1p-8, u32 = 0x1p-24;
    double worst = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        float v32 = h[i] + b[i % F], v = kh_round(v32, dt); /* the kernel applies act to v32, stores v */
        double g = tpmlp_act_f32(act, v32), d = tpmlp_act_grad_f32(act, v32);
        double tol_h = u * fabs(v) + 1e-30;
        double tol_a = u * fabs(g) + 16 * u32 * (fabs(g) + fabs(v32 * d)) + 1e-30;
        double tol_d = u * fabs(d) + 16 * u32 * (fabs(d) + fabs(v32) * 0.8 + 1) + 1e-30;
        worst = fmax(worst, fmax(fabs(gh[i] - v) / tol_h, fmax(fabs(ga[i] - g) / tol_a, fabs(gd[i] - d) / tol_d)));
    }
    report(rc == 0 && worst <= 1.0, "bias_act", version, dt == COMM_F32 ? "fp32" : "bf16", tpmlp_act_name(act), worst);
    CUDA_OK(cudaFree(dh));
    CUDA_OK(cudaFree(db));
    CUDA_OK(cudaFree(da));
    CUDA_OK(cudaFree(dd));
}

// db against a float64 column sum: N terms, worst-case N·u32·Σ|terms|; dH to the storage type's u.
static void check_act_bwd(int version, comm_dtype dt, int with_dact, int N, int F) {
    const size_t n = (size_t)N * F;
    std::vector<float> dh(n), dact(n);
    tpmlp_fill_uniform_f32(dh.data(), n, 21, 1.0f);
    tpmlp_fill_uniform_f32(dact.data(), n, 22, 1.1f);
    for (auto &x : dh) x = kh_round(x, dt);
    for (auto &x : dact) x = kh_round(x, dt);
    void *ddh = kh_upload(dh.data(), n, dt), *ddact = kh_upload(dact.data(), n, dt);
    float *ddb, *scratch;
    CUDA_OK(cudaMalloc(&ddb, sizeof(float) * F));
    CUDA_OK(cudaMalloc(&scratch, sizeof(float) * kernel_act_bwd_scratch(N, F)));
    int rc = kernel_act_bwd(version, dt, ddh, ddb, with_dact ? ddact : NULL, N, F, scratch, 0);
    CUDA_OK(cudaDeviceSynchronize());
    std::vector<float> gdh(n);
    kh_download(gdh.data(), ddh, n, dt);
    std::vector<float> gdb(F);
    CUDA_OK(cudaMemcpy(gdb.data(), ddb, sizeof(float) * F, cudaMemcpyDeviceToHost));
    const double u = dt == COMM_F32 ? 0x1p-24 : 0x1p-8;
    double worst = 0;
    for (int j = 0; rc == 0 && j < F; j++) {
        double s = 0, sabs = 0;
        for (int i = 0; i < N; i++) {
            size_t k = (size_t)i * F + j;
            double g = with_dact ? (double)dh[k] * dact[k] : dh[k];
            if (with_dact) worst = fmax(worst, fabs(gdh[k] - g) / (u * fabs(g) + 1e-30));
            s += g, sabs += fabs(g);
        }
        worst = fmax(worst, fabs(gdb[j] - s) / ((N + 1) * 0x1p-24 * sabs + u * sabs + 1e-30));
    }
    report(rc == 0 && worst <= 1.0, with_dact ? "act_bwd (dH, db1)" : "colsum (db2)", version,
           dt == COMM_F32 ? "fp32" : "bf16", "", worst);
    CUDA_OK(cudaFree(ddh));
    CUDA_OK(cudaFree(ddact));
    CUDA_OK(cudaFree(ddb));
    CUDA_OK(cudaFree(scratch));
}

static float time_ms(cudaEvent_t a, cudaEvent_t b) {
    float ms;
    CUDA_OK(cudaEventElapsedTime(&ms, a, b));
    return ms;
}

static void bench(int N, int F) {
    const size_t n = (size_t)N * F;
    void *x, *y, *z;
    float *db, *scratch, *bias;
    CUDA_OK(cudaMalloc(&x, 4 * n));
    CUDA_OK(cudaMalloc(&y, 4 * n));
    CUDA_OK(cudaMalloc(&z, 4 * n));
    CUDA_OK(cudaMalloc(&db, 4 * (size_t)F));
    CUDA_OK(cudaMalloc(&bias, 4 * (size_t)F));
    CUDA_OK(cudaMalloc(&scratch, 4 * kernel_act_bwd_scratch(N, F)));
    CUDA_OK(cudaMemset(x, 0, 4 * n));
    CUDA_OK(cudaMemset(bias, 0, 4 * (size_t)F));
    cudaEvent_t e0, e1;
    CUDA_OK(cudaEventCreate(&e0));
    CUDA_OK(cudaEventCreate(&e1));
    const int reps = 20;
    CUDA_OK(cudaMemcpy(y, x, 4 * n, cudaMemcpyDeviceToDevice));
    CUDA_OK(cudaEventRecord(e0));
    for (int r = 0; r < reps; r++) CUDA_OK(cudaMemcpy(y, x, 4 * n, cudaMemcpyDeviceToDevice));
    CUDA_OK(cudaEventRecord(e1));
    CUDA_OK(cudaEventSynchronize(e1));
    double copy_gbs = 2.0 * 4 * n * reps / (time_ms(e0, e1) * 1e6); /* read + write */
    printf("# N=%d F=%d; device copy: %.0f GB/s (read + write)\n", N, F, copy_gbs);
    printf("# %-22s %-4s %-9s %2s %10s %9s %7s\n", "kernel", "dt", "act", "v", "time (us)", "GB/s", "% copy");
    for (const comm_dtype dt : {COMM_F32, COMM_BF16}) {
        const double es = dt == COMM_F32 ? 4 : 2;
        for (int act = 0; act < TPMLP_NUM_ACTS; act++)
            for (int v = 1; v <= BIAS_ACT_VERSIONS; v++) {
                if (kernel_bias_act(v, dt, x, y, z, bias, N, F, (tpmlp_act)act, 0)) continue;
                CUDA_OK(cudaEventRecord(e0));
                for (int r = 0; r < reps; r++)
                    if (kernel_bias_act(v, dt, x, y, z, bias, N, F, (tpmlp_act)act, 0))
                        tpmlp_die(1, "bench: bias_act failed");
                CUDA_OK(cudaEventRecord(e1));
                CUDA_OK(cudaEventSynchronize(e1));
                double us = time_ms(e0, e1) * 1e3 / reps, gbs = 4.0 * es * n / (us * 1e3); /* h read+write, a, dact */
                printf("# %-22s %-4s %-9s %2d %10.1f %9.0f %6.0f%%\n", "bias_act", dt == COMM_BF16 ? "bf16" : "fp32",
                       tpmlp_act_name((tpmlp_act)act), v, us, gbs, 100 * gbs / copy_gbs);
            }
        for (int with = 1; with >= 0; with--)
            for (int v = 1; v <= ACT_BWD_VERSIONS; v++) {
                if (kernel_act_bwd(v, dt, x, db, with ? y : NULL, N, F, scratch, 0))
                    continue; /* warm-up */
                CUDA_OK(cudaEventRecord(e0));
                for (int r = 0; r < reps; r++)
                    if (kernel_act_bwd(v, dt, x, db, with ? y : NULL, N, F, scratch, 0))
                        tpmlp_die(1, "bench: act_bwd failed");
                CUDA_OK(cudaEventRecord(e1));
                CUDA_OK(cudaEventSynchronize(e1));
                double us = time_ms(e0, e1) * 1e3 / reps, gbs = (with ? 3.0 : 1.0) * es * n / (us * 1e3);
                printf("# %-22s %-4s %-9s %2d %10.1f %9.0f %6.0f%%\n", with ? "act_bwd (dH, db1)" : "colsum (db2)",
                       dt == COMM_BF16 ? "bf16" : "fp32", "", v, us, gbs, 100 * gbs / copy_gbs);
            }
    }
    CUDA_OK(cudaFree(x));
    CUDA_OK(cudaFree(y));
    CUDA_OK(cudaFree(z));
    CUDA_OK(cudaFree(db));
    CUDA_OK(cudaFree(scratch));
    CUDA_OK(cudaFree(bias));
}

int main(int argc, char **argv) {
    char why[160];
    if (kh_no_gpu(why, sizeof why)) {
        printf("1..0 # SKIP %s\n", why);
        return 0;
    }
    const int shapes[][2] = {{37, 1000}, {64, 1024}, {300, 256}, {5, 36}};
    const int nshapes = (int)(sizeof shapes / sizeof *shapes);
    printf("1..%d\n", nshapes * 2 * (BIAS_ACT_VERSIONS * TPMLP_NUM_ACTS + ACT_BWD_VERSIONS * 2));
    for (auto &sh : shapes)
        for (const comm_dtype dt : {COMM_F32, COMM_BF16}) {
            for (int v = 1; v <= BIAS_ACT_VERSIONS; v++)
                for (int act = 0; act < TPMLP_NUM_ACTS; act++) {
                    if (v >= 2 && !kernel_fits_pack(dt, sh[1])) {
                        printf("ok %d - bias_act v%d F = %d # SKIP F not a multiple of the pack\n", ++ntest, v, sh[1]);
                        continue;
                    }
                    check_bias_act(v, dt, (tpmlp_act)act, sh[0], sh[1]);
                }
            for (int v = 1; v <= ACT_BWD_VERSIONS; v++)
                for (int with = 1; with >= 0; with--) {
                    if (v == 3 && !kernel_fits_pack(dt, sh[1])) {
                        printf("ok %d - act_bwd v3 F = %d # SKIP F not a multiple of the pack\n", ++ntest, sh[1]);
                        continue;
                    }
                    check_act_bwd(v, dt, with, sh[0], sh[1]);
                }
        }
    if (argc > 1 && strcmp(argv[1], "--bench") == 0)
        bench(argc > 3 ? atoi(argv[2]) : 8192, argc > 3 ? atoi(argv[3]) : 16384);
    return nfail ? 1 : 0;
}
