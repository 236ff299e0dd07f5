/* tpmlp bench: the step fwd+bwd against the same six GEMMs alone, timed
 * alternately in one run (median of --reps after a warm-up), so the ratio is
 * taken under the same conditions. */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "bound.h"
#include "commands.h"
#include "stages.h"
#include "comm.h"
#include "launch.h"
#include "tp_mlp.h"
#include "util.h"
#ifdef TPMLP_HAVE_MPI
#include <mpi.h>

#include "comm_mpi.h"
#include "runner.h"
#endif

static const char bench_usage[] =
    "usage: tpmlp bench --batch B --seq T --hidden D [--ffn F] [--act gelu|gelu_tanh|relu|silu]\n"
    "                   [--no-bias] [--threads N] [--reps R] [--seed S]\n"
    "Times the float32 step forward+backward (the cpu backend, one rank) and, alternating in\n"
    "the same run, its six GEMMs alone on the same buffers; prints the medians and their ratio.\n"
    "  --ffn      default 4 × hidden      --act      default gelu\n"
    "  --threads  OpenBLAS and OpenMP threads (default: their own defaults)\n"
    "  --reps     timed repetitions after one warm-up (default 11)\n"
    "  --stage mpi|ring --tp P   the tensor-parallel step on P ranks instead (started here, or\n"
    "             under mpiexec -n P), with the all-reduce timed alone and its bus bandwidth\n"
    "             2(p-1)/p · bytes / time; and the step with dX's all-reduce overlapped with\n"
    "             the weight gradients and not, in the same run, with the share of it hidden\n"
    "  --overlap on|off   the mode of the step's main line (default on)\n";

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Half the spread, min to max, of n sorted times, as a share of their median. */
static double half_spread(const double *sorted, int n) { return 0.5 * (sorted[n - 1] - sorted[0]) / sorted[n / 2]; }

/* On stderr: when the times' spread is larger than the effect a line reports. */
static void warn_if_noise(const char *what, double effect, double noise, int reps) {
    if (noise > effect)
        fprintf(stderr,
                "tpmlp: bench: %s: the times spread by ±%.1f%% over %d reps, more than the %.1f%% it reports; "
                "rerun on a quieter machine or with more --reps\n",
                what, 100 * noise, reps, 100 * effect);
}

#ifdef TPMLP_HAVE_MPI
/* the slowest rank's time for one call of fn, after a barrier */
static double timed_max(int (*fn)(void *), void *arg) {
    comm_mpi_check(MPI_Barrier(MPI_COMM_WORLD), "mpi", "MPI_Barrier");
    double t0 = tpmlp_now();
    if (fn(arg) != 0) MPI_Abort(MPI_COMM_WORLD, 1);
    double t = tpmlp_now() - t0, worst;
    comm_mpi_check(MPI_Allreduce(&t, &worst, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD), "mpi", "MPI_Allreduce");
    return worst;
}

static int tp_allreduce_only(void *a) {
    tp_step_job *j = a;
    return j->c->ops->allreduce(j->c, j->s->y, (size_t)j->s->N * j->s->D, COMM_F32);
}

static int bench_tp(const char *stage, int p, tpmlp_shape_args *s, int reps, int overlap) {
    int rank, size;
    if (launch_mpi_init(&rank, &size) != 0) tpmlp_die(1, "bench: MPI_Init failed");
    if (size != p) {
        if (rank == 0)
            fprintf(stderr, "tpmlp: --tp %d but the job has %d rank%s (mpiexec -n %d ...)\n", p, size,
                    tpmlp_plural(size), p);
        MPI_Finalize();
        return TPMLP_EXIT_USAGE;
    }
    int N = args_shape_finish(s);
    char err[256];
    if (tp_run_check_p(p, N, s->ffn, 0, err, sizeof err) != 0) { /* the runner's rule, as for run */
        if (rank == 0) fprintf(stderr, "tpmlp: %s\n", err);
        MPI_Finalize();
        return TPMLP_EXIT_USAGE;
    }
    args_apply_threads(s); /* --threads overrides the share of cores from the local rank */
    tpmlp_comm c;
    if ((strcmp(stage, "ring") == 0 ? comm_ring_create(&c) : comm_mpi_create(&c)) != 0) MPI_Abort(MPI_COMM_WORLD, 1);
    tp_shard sh;
    tpmlp_vec_dims d = {
        .B = 1, .T = N, .D = s->hidden, .F = s->ffn, .act = s->act, .seed = s->seed, .no_bias = s->no_bias};
    if (tp_shard_alloc(&sh, tp_compute_cpu(), N, s->hidden, s->ffn, p, rank, s->act) != 0 ||
        tp_shard_generate(&sh, &d) != 0)
        MPI_Abort(MPI_COMM_WORLD, 1);
    tp_step_job j = {&sh, &c};
    /* p = 1 in the same run: rank 0 alone runs the unsharded step with the
     * same threads while the other ranks wait (one core each, so they do
     * not slow it down when there are at least p cores) */
    tpmlp_mlp32 one;
    if (rank == 0) {
        tpmlp_mlp32_alloc(&one, N, s->hidden, s->ffn, s->act);
        tpmlp_vec_fill_inputs(&one, &d);
    }
    double *ts = tpmlp_alloc((size_t)reps, sizeof *ts, "times"), *ta = tpmlp_alloc((size_t)reps, sizeof *ta, "times");
    double *t1 = tpmlp_alloc((size_t)reps, sizeof *t1, "times");
    double *tother = tpmlp_alloc((size_t)reps, sizeof *tother, "times");
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        /* the step in both modes (t[m]: overlap m), for the overlap line;
         * which goes first alternates */
        double t[2];
        for (int k = 0; k < 2; k++) {
            sh.overlap = (r & 1) ^ k;
            t[sh.overlap] = timed_max(tp_step, &j);
        }
        sh.overlap = overlap;
        double a = t[overlap], other = t[!overlap], b = timed_max(tp_allreduce_only, &j);
        comm_mpi_check(MPI_Barrier(MPI_COMM_WORLD), "mpi", "MPI_Barrier");
        double t0 = tpmlp_now();
        if (rank == 0) tpmlp_mlp32_run(&one);
        double single = tpmlp_now() - t0;
        comm_mpi_check(MPI_Barrier(MPI_COMM_WORLD), "mpi", "MPI_Barrier");
        if (r >= 0) ts[r] = a, ta[r] = b, t1[r] = single, tother[r] = other;
    }
    qsort(ts, (size_t)reps, sizeof *ts, cmp_double);
    qsort(ta, (size_t)reps, sizeof *ta, cmp_double);
    qsort(t1, (size_t)reps, sizeof *t1, cmp_double);
    qsort(tother, (size_t)reps, sizeof *tother, cmp_double);
    double step = ts[reps / 2], ar = ta[reps / 2], single = t1[reps / 2], bytes = 4.0 * N * s->hidden;
    double t_on = overlap ? step : tother[reps / 2], t_off = overlap ? tother[reps / 2] : step;
    if (rank == 0) {
        int threads = openblas_get_num_threads();
        printf("stage %s, p=%d, N=%d D=%d F=%d act=%s, %d BLAS thread%s per rank, reps=%d, overlap %s\n", stage, p, N,
               s->hidden, s->ffn, tpmlp_act_name(s->act), threads, tpmlp_plural(threads), reps, overlap ? "on" : "off");
        printf("fwd+bwd %.2f ms at p=%d, %.2f ms at p=1 (same run, same threads per rank): speedup %.2f\n", step * 1e3,
               p, single * 1e3, single / step);
        /* what overlapping dX's all-reduce with the weight gradients saved,
         * as a share of that all-reduce's own time (the y all-reduce timed
         * alone: the same size) */
        if (p > 1 && c.ops->iallreduce)
            printf("overlap: fwd+bwd %.2f ms off, %.2f ms on: %.0f%% of the dX all-reduce's %.2f ms hidden\n",
                   t_off * 1e3, t_on * 1e3, 100.0 * (t_off - t_on) / ar, ar * 1e3);
        else if (p > 1) /* any difference is the measurement's noise */
            printf("overlap: fwd+bwd %.2f ms off, %.2f ms on (the %s backend's all-reduce blocks: nothing to hide)\n",
                   t_off * 1e3, t_on * 1e3, c.ops->name);
        if (p > 1)
            printf("all-reduce of %.2f MB alone: %.3f ms, algbw %.2f GB/s, busbw %.2f GB/s (= algbw · 2(p-1)/p)\n",
                   bytes / 1e6, ar * 1e3, bytes / ar / 1e9, 2.0 * (p - 1) / p * bytes / ar / 1e9);
        /* min to max beside the medians, and a word where the spread outweighs an effect */
        printf("spread over %d reps (min to max): fwd+bwd %.2f-%.2f ms at p=%d, %.2f-%.2f ms at p=1, the other overlap "
               "mode %.2f-%.2f ms, all-reduce %.3f-%.3f ms\n",
               reps, ts[0] * 1e3, ts[reps - 1] * 1e3, p, t1[0] * 1e3, t1[reps - 1] * 1e3, tother[0] * 1e3,
               tother[reps - 1] * 1e3, ta[0] * 1e3, ta[reps - 1] * 1e3);
        const double noise_step = half_spread(ts, reps), noise_one = half_spread(t1, reps);
        warn_if_noise("the speedup", fabs(single / step - 1), noise_step > noise_one ? noise_step : noise_one, reps);
        if (p > 1 && c.ops->iallreduce)
            warn_if_noise("the overlap's saving", fabs(t_off - t_on) / step,
                          noise_step > half_spread(tother, reps) ? noise_step : half_spread(tother, reps), reps);
        tpmlp_mlp32_free(&one);
    }
    free(ts), free(ta), free(t1), free(tother);
    tp_shard_free(&sh);
    c.ops->destroy(&c);
    MPI_Finalize();
    return 0;
}
#endif

int cmd_bench(int argc, char **argv) {
    tpmlp_shape_args s = {.act = TPMLP_GELU, .seed = 1};
    int reps = 11, p = 1, overlap = 1;
    const char *stage = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(bench_usage, stdout);
            return 0;
        }
        if (args_shape_flag(&s, argc, argv, &i)) continue;
        if (strcmp(argv[i], "--stage") == 0) {
            char timed[64];
            stage_names(timed, sizeof timed, STAGE_BENCH, ", ");
            if (i + 1 >= argc) tpmlp_die(TPMLP_EXIT_USAGE, "--stage: missing value (allowed: %s)", timed);
            stage = argv[++i];
            const tpmlp_stage *st = stage_find(stage);
            if (st == NULL || !(st->takes & STAGE_BENCH))
                tpmlp_die(TPMLP_EXIT_USAGE, "--stage: '%s' is not a stage bench times (allowed: %s)", stage, timed);
            continue;
        }
        if (strcmp(argv[i], "--tp") == 0) {
            p = args_positive_int("--tp", i + 1 < argc ? argv[i + 1] : NULL);
            i++;
            continue;
        }
        if (strcmp(argv[i], "--overlap") == 0) {
            overlap = args_on_off("--overlap", i + 1 < argc ? argv[i + 1] : NULL);
            i++;
            continue;
        }
        if (strcmp(argv[i], "--reps") == 0) {
            reps = args_positive_int("--reps", i + 1 < argc ? argv[i + 1] : NULL);
            i++;
            continue;
        }
        tpmlp_die(TPMLP_EXIT_USAGE, "bench: unknown argument '%s' (tpmlp bench --help)", argv[i]);
    }
    if (s.batch == 0 || s.seq == 0 || s.hidden == 0)
        tpmlp_die(TPMLP_EXIT_USAGE, "bench: --batch, --seq and --hidden are required (tpmlp bench --help)");
    if (stage != NULL) {
#ifdef TPMLP_HAVE_MPI
        char err[256];                       /* every argument checked before any rank starts */
        const int N = args_shape_finish(&s); /* (fills in the default F) */
        if (tp_run_check_p(p, N, s.ffn, 0, err, sizeof err) != 0) tpmlp_die(TPMLP_EXIT_USAGE, "%s", err);
        launch_ranks(p, argc, argv); /* typed at a shell: start the p ranks */
        return bench_tp(stage, p, &s, reps, overlap);
#else
        (void)overlap; /* (the mpi and ring stages' option) */
        tpmlp_die(TPMLP_EXIT_USAGE, "--stage %s: this tpmlp was built without MPI", stage);
#endif
    }
    if (p != 1) tpmlp_die(TPMLP_EXIT_USAGE, "--tp: give --stage mpi or ring to run on %d ranks", p);
    int N = args_shape_finish(&s);
    args_apply_threads(&s);

    /* The step at p = 1 on the cpu backend against the same step with every
     * operation but its six GEMMs a no-op (tp_compute_wrap's GEMMS_ONLY, as
     * tpmlp-cuda --bench times a GPU's), on the same buffers, alternating. */
    const tpmlp_vec_dims d = {
        .B = 1, .T = N, .D = s.hidden, .F = s.ffn, .act = s.act, .seed = s.seed, .no_bias = s.no_bias};
    tp_compute gemms;
    tp_shard sh, sg;
    tpmlp_comm one;
    if (tp_compute_wrap(&gemms, tp_compute_cpu(), TP_WRAP_GEMMS_ONLY) != 0) return 1; /* (each said why) */
    if (tp_shard_alloc(&sh, tp_compute_cpu(), N, s.hidden, s.ffn, 1, 0, s.act) != 0)
        return gemms.ops->destroy(&gemms), 1;
    if (tp_shard_generate(&sh, &d) != 0 || comm_local_create(&one, 1) != 0)
        return tp_shard_free(&sh), gemms.ops->destroy(&gemms), 1;
    sg = sh, sg.cpt = &gemms; /* the same buffers */
    tp_step_job step = {&sh, &one}, gemms_job = {&sg, &one};
    double *tm = tpmlp_alloc((size_t)reps, sizeof *tm, "bench times"),
           *tg = tpmlp_alloc((size_t)reps, sizeof *tg, "bench times");
    tpmlp_progress("bench: warm-up", 1, 1);
    int rc = tp_step(&step) || tp_step(&gemms_job); /* warm-up: page faults, thread pools */
    rc = rc || tp_step(&step);                      /* leaves real activations for the GEMM-only runs */
    for (int r = 0; r < reps && rc == 0; r++) {
        tpmlp_progress("bench: timed repetition", r + 1, reps);
        double t0 = tpmlp_now();
        rc = tp_step(&step);
        double t1 = tpmlp_now();
        rc = rc || tp_step(&gemms_job);
        double t2 = tpmlp_now();
        tm[r] = t1 - t0, tg[r] = t2 - t1;
    }
    tpmlp_progress_done();
    one.ops->destroy(&one), tp_shard_free(&sh), gemms.ops->destroy(&gemms);
    if (rc != 0) { /* the backend said which call failed */
        fprintf(stderr, "tpmlp: bench: the step failed\n");
        return free(tm), free(tg), 1;
    }
    qsort(tm, (size_t)reps, sizeof *tm, cmp_double);
    qsort(tg, (size_t)reps, sizeof *tg, cmp_double);
    double mlp = tm[reps / 2], gemm = tg[reps / 2];
    double flops = 6.0 * 2.0 * N * (double)s.hidden * s.ffn;
    printf("shape N=%d (batch %d × seq %d) D=%d F=%d act=%s threads=%d reps=%d\n", N, s.batch, s.seq, s.hidden, s.ffn,
           tpmlp_act_name(s.act), openblas_get_num_threads(), reps);
    printf("fwd+bwd %.2f ms, gemms alone %.2f ms, ratio %.3f  (GEMMs at %.1f GFLOP/s; min to max over %d reps: "
           "%.2f-%.2f ms, %.2f-%.2f ms)\n",
           mlp * 1e3, gemm * 1e3, mlp / gemm, flops / gemm * 1e-9, reps, tm[0] * 1e3, tm[reps - 1] * 1e3, tg[0] * 1e3,
           tg[reps - 1] * 1e3);
    const double noise_m = half_spread(tm, reps), noise_g = half_spread(tg, reps);
    warn_if_noise("the ratio", fabs(mlp / gemm - 1), noise_m > noise_g ? noise_m : noise_g, reps);
    free(tm), free(tg);
    return 0;
}
