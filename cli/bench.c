/* tpmlp bench: the reference fwd+bwd against the same six GEMMs alone, timed
 * alternately in one run (median of --reps after a warm-up), so the ratio is
 * taken under the same conditions. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "bound.h"
#include "commands.h"
#include "util.h"

static const char bench_usage[] =
    "usage: tpmlp bench --batch B --seq T --hidden D [--ffn F] [--act gelu|gelu_tanh|relu]\n"
    "                   [--threads N] [--reps R] [--seed S]\n"
    "Times the float32 reference forward+backward and, alternating in the same run, its six\n"
    "GEMMs alone on the same shapes; prints the medians and their ratio.\n"
    "  --ffn      default 4 × hidden      --act      default gelu\n"
    "  --threads  OpenBLAS and OpenMP threads (default: their own defaults)\n"
    "  --reps     timed repetitions after one warm-up (default 11)\n";

/* The six GEMMs of mlp_forward_f32 + mlp_backward_f32, same shapes and layouts. */
static void gemms_only(tpmlp_mlp32 *t) {
    const int N = t->N, D = t->D, F = t->F;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, F, D, 1.0f, t->x, D, t->w1, D, 0.0f, t->h, F);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, D, F, 1.0f, t->a, F, t->w2, F, 0.0f, t->y, D);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, F, N, 1.0f, t->dy, D, t->a, F, 0.0f, t->dw2, F);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, F, D, 1.0f, t->dy, D, t->w2, F, 0.0f, t->dh, F);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, F, D, N, 1.0f, t->dh, F, t->x, D, 0.0f, t->dw1, D);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, D, F, 1.0f, t->dh, F, t->w1, D, 0.0f, t->dx, D);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int cmd_bench(int argc, char **argv) {
    tpmlp_shape_args s = {.act = TPMLP_GELU, .seed = 1};
    int reps = 11;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(bench_usage, stdout);
            return 0;
        }
        if (args_shape_flag(&s, argc, argv, &i)) continue;
        if (strcmp(argv[i], "--reps") == 0) {
            reps = args_positive_int("--reps", i + 1 < argc ? argv[i + 1] : NULL);
            i++;
            continue;
        }
        tpmlp_die(TPMLP_EXIT_USAGE, "bench: unknown argument '%s' (tpmlp bench --help)", argv[i]);
    }
    if (s.batch == 0 || s.seq == 0 || s.hidden == 0)
        tpmlp_die(TPMLP_EXIT_USAGE, "bench: --batch, --seq and --hidden are required (tpmlp bench --help)");
    int N = args_shape_finish(&s);
    args_apply_threads(&s);

    tpmlp_mlp32 t;
    tpmlp_mlp32_alloc(&t, N, s.hidden, s.ffn, s.act);
    tpmlp_mlp32_random_inputs(&t, s.seed);
    double *tm = tpmlp_alloc((size_t)reps, sizeof *tm, "bench times"),
           *tg = tpmlp_alloc((size_t)reps, sizeof *tg, "bench times");
    tpmlp_mlp32_run(&t); /* warm-up: page faults, thread pools */
    gemms_only(&t);
    tpmlp_mlp32_run(&t); /* leaves real activations in t for the GEMM-only runs */
    for (int r = 0; r < reps; r++) {
        double t0 = tpmlp_now();
        tpmlp_mlp32_run(&t);
        double t1 = tpmlp_now();
        gemms_only(&t);
        double t2 = tpmlp_now();
        tm[r] = t1 - t0, tg[r] = t2 - t1;
    }
    qsort(tm, (size_t)reps, sizeof *tm, cmp_double);
    qsort(tg, (size_t)reps, sizeof *tg, cmp_double);
    double mlp = tm[reps / 2], gemm = tg[reps / 2];
    double flops = 6.0 * 2.0 * N * (double)s.hidden * s.ffn;
    printf("shape N=%d (batch %d × seq %d) D=%d F=%d act=%s threads=%d reps=%d\n", N, s.batch, s.seq, s.hidden, s.ffn,
           tpmlp_act_name(s.act), openblas_get_num_threads(), reps);
    printf("fwd+bwd %.2f ms, gemms alone %.2f ms, ratio %.3f  (GEMMs at %.1f GFLOP/s)\n", mlp * 1e3, gemm * 1e3,
           mlp / gemm, flops / gemm * 1e-9);
    free(tm), free(tg);
    tpmlp_mlp32_free(&t);
    return 0;
}
