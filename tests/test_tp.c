/* Property tests of tensor parallelism at p = 1..4 ranks, on two kinds of
 * ranks:
 *   tests/test_tp          p threads of this process over the local
 *                          communicator, every case at p = 1, 2, 3 and 4
 *                          (built with or without MPI)
 *   mpiexec -n P tests/test_tp --mpi
 *                          P processes over the mpi and ring backends
 *                          (tests/tp-pP.mpi, P = 1..4; built with MPI)
 * Every rank checks; the verdicts are combined before any assertion (an
 * all-reduce over MPI_COMM_WORLD, or the threads' own barrier: never the
 * communicator under test), so a failing rank never leaves the others
 * waiting in a collective. Only rank 0 writes TAP. A thread never asserts
 * (CMocka's assertions belong to the main thread): a failed check ends every
 * rank's run of the case, and the main thread fails the case after the join.
 *
 * What is asserted, and what is only reported: every shard's H_r, A_r,
 * dW1_r, db1_r and dW2_r must equal the slices of the unsharded float64
 * oracle within the error bound, and Y and dX (sums over shards) too, on
 * every rank, bitwise the same on all ranks. Whether a shard is *bitwise*
 * the unsharded float32 result depends on OpenBLAS: each element is the same
 * dot product, but OpenBLAS picks kernels by matrix size (small-matrix
 * kernels, other blockings) and those sum in other orders. So bitwise
 * equality is printed as a TAP comment, not asserted. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#ifdef TPMLP_HAVE_MPI
#include <mpi.h>
#endif

#include "bound.h"
#include "check.h"
#include "comm.h"
#include "testutil.h"
#include "sp_mlp.h"
#include "tp_mlp.h"
#include "util.h"
#include "vectors.h"

#define MAX_RANKS 4
#define MAX_BACKENDS 2

/* What the threads of a local run share for the test's own bookkeeping. */
typedef struct {
    pthread_barrier_t barrier;
    pthread_mutex_t lock;
    int ok[MAX_RANKS];
    unsigned long long hash[MAX_RANKS];
    const double *vec[MAX_RANKS];
    int failed;
    char first[512]; /* the message of the first rank whose check failed */
} threads;

/* One rank's view of a run. */
typedef struct {
    int rank, size;
    tpmlp_comm *b[MAX_BACKENDS]; /* the rank's communicator of each backend under test */
    int nb;
    threads *t;   /* NULL: the ranks are MPI processes */
    jmp_buf stop; /* threads: a failed check ends the rank's run of the case here */
} rk;

typedef struct tcase {
    void (*body)(rk *e, const struct tcase *tc);
    int p;       /* threads: how many; 0: the MPI processes */
    int backend; /* index into rk.b */
    tpmlp_act act;
} tcase;

#ifdef TPMLP_HAVE_MPI
static int world_rank, world_size;
static tpmlp_comm mpi_comms[2]; /* mpi, ring */
#endif

/* every thread of the run reaches this point before any goes on */
static void wait_for_all(threads *t) { pthread_barrier_wait(&t->barrier); }

/* 1 if ok on every rank */
static int agree(rk *e, int ok) {
#ifdef TPMLP_HAVE_MPI
    if (!e->t) {
        int all = 0;
        MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        return all;
    }
#endif
    e->t->ok[e->rank] = ok;
    wait_for_all(e->t);
    int all = 1;
    for (int r = 0; r < e->size; r++) all &= e->t->ok[r] != 0;
    wait_for_all(e->t); /* every verdict read before the next is written */
    return all;
}

static void note_failure(rk *e, const char *msg) {
    fprintf(stderr, "rank %d: %s\n", e->rank, msg);
    if (!e->t) return;
    pthread_mutex_lock(&e->t->lock);
    if (!e->t->failed++) snprintf(e->t->first, sizeof e->t->first, "rank %d: %s", e->rank, msg);
    pthread_mutex_unlock(&e->t->lock);
}

/* Every rank gets here together (the verdict was agreed). */
static void failed_on_some_rank(rk *e) {
#ifdef TPMLP_HAVE_MPI
    if (!e->t) fail_msg("failed on some rank (see stderr; p = %d, seed %llu)", e->size, test_seed());
#endif
    longjmp(e->stop, 1);
}

#define CHECK_ALL(e, ok, ...)                                                                                          \
    do {                                                                                                               \
        int ok_ = (ok);                                                                                                \
        if (!ok_) {                                                                                                    \
            char msg_[600];                                                                                            \
            snprintf(msg_, sizeof msg_, __VA_ARGS__);                                                                  \
            note_failure((e), msg_);                                                                                   \
        }                                                                                                              \
        if (!agree((e), ok_)) failed_on_some_rank(e);                                                                  \
    } while (0)

/* a checksum of bytes: equal on all ranks? */
static int same_on_all_ranks(rk *e, const void *p, size_t n) {
    unsigned long long h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ULL;
#ifdef TPMLP_HAVE_MPI
    if (!e->t) {
        unsigned long long lo, hi;
        MPI_Allreduce(&h, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
        MPI_Allreduce(&h, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
        return lo == hi;
    }
#endif
    e->t->hash[e->rank] = h;
    wait_for_all(e->t);
    int same = 1;
    for (int r = 0; r < e->size; r++) same &= e->t->hash[r] == e->t->hash[0];
    wait_for_all(e->t);
    return same;
}

/* out (n) = Σ over ranks of in (n), in float64 (exact enough: float inputs, ≤ 4 terms) */
static void sum_over_ranks(rk *e, const double *in, double *out, size_t n) {
#ifdef TPMLP_HAVE_MPI
    if (!e->t) {
        MPI_Allreduce(in, out, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        return;
    }
#endif
    e->t->vec[e->rank] = in;
    wait_for_all(e->t);
    for (size_t i = 0; i < n; i++) {
        out[i] = 0;
        for (int r = 0; r < e->size; r++) out[i] += e->t->vec[r][i];
    }
    wait_for_all(e->t);
}

/* ---------------------------------------------------------------- TP MLP */

/* Full float32 reference and its float64 oracle + bound, on every rank. */
typedef struct {
    tpmlp_mlp32 full;
    tpmlp_mlp64 ref, bd;
    tpmlp_vec_dims d;
} setup;

static void make_setup(setup *su, tpmlp_act act, int N, int D, int F) {
    su->d = (tpmlp_vec_dims){.B = 1, .T = N, .D = D, .F = F, .act = act, .seed = test_seed()};
    tpmlp_mlp32_alloc(&su->full, N, D, F, act);
    tpmlp_vec_fill_inputs(&su->full, &su->d);
    tpmlp_mlp64_alloc(&su->ref, N, D, F, act);
    tpmlp_mlp64_alloc(&su->bd, N, D, F, act);
    tpmlp_mlp64_inputs_from32(&su->ref, &su->full);
    tpmlp_mlp64_run(&su->ref);
    tpmlp_mlp32_run(&su->full);
    tpmlp_mlp64_bounds(&su->bd, &su->ref, tpmlp_format_find("fp32"));
}
static void free_setup(setup *su) {
    tpmlp_mlp32_free(&su->full), tpmlp_mlp64_free(&su->ref), tpmlp_mlp64_free(&su->bd);
}

/* A shard against its slice: R rows of `width` values starting at column
 * `off` of rows of `stride` (columns of a (R, F) matrix: width Fr, off f0,
 * stride F; rows of an (F, C) matrix: R = 1, width Fr·C, off f0·C). Asserts
 * the bound against the float64 oracle; reports bitwise equality with the
 * unsharded float32 result. */
static void slice_check(rk *e, const char *what, const char *backend, const float *part, const float *full32,
                        const double *ref, const double *bound, int R, int width, int off, int stride) {
    int within_all = 1, bitwise = 1;
    for (int r = 0; r < R; r++) {
        size_t at = (size_t)r * stride + off;
        size_t w;
        double err;
        within_all &= tpmlp_budget_used(part + (size_t)r * width, ref + at, bound + at, (size_t)width, &w, &err) <= 1.0;
        bitwise &= memcmp(part + (size_t)r * width, full32 + at, sizeof(float) * (size_t)width) == 0;
    }
    CHECK_ALL(e, within_all, "%s: %s is outside the bound of its slice of the unsharded result", backend, what);
    int all_bitwise = agree(e, bitwise);
    if (e->rank == 0)
        printf("# p=%d %s: %s bitwise equal to the unsharded float32 slice on every rank: %s\n", e->size, backend, what,
               all_bitwise ? "yes" : "no");
}

static int within(const float *got, const double *ref, const double *bound, size_t n) {
    size_t w;
    double err;
    return tpmlp_budget_used(got, ref, bound, n, &w, &err) <= 1.0;
}

/* The F-sharded tensors of a shard (TP or SP alike) against their slices. */
static void shard_slices(rk *e, const tp_shard *t, const setup *su, const char *b) {
    const int N = t->N, D = t->D, F = t->F;
    slice_check(e, "H_r", b, t->h, su->full.h, su->ref.h, su->bd.h, N, t->Fr, t->f0, F);
    slice_check(e, "A_r", b, t->a, su->full.a, su->ref.a, su->bd.a, N, t->Fr, t->f0, F);
    slice_check(e, "dW2_r", b, t->dw2, su->full.dw2, su->ref.dw2, su->bd.dw2, D, t->Fr, t->f0, F);
    slice_check(e, "dW1_r", b, t->dw1, su->full.dw1, su->ref.dw1, su->bd.dw1, 1, t->Fr * D, t->f0 * D, F * D);
    slice_check(e, "db1_r", b, t->db1, su->full.db1, su->ref.db1, su->bd.db1, 1, t->Fr, t->f0, F);
}

static void tp_properties(rk *e, const tcase *tc) {
    tpmlp_comm *c = e->b[tc->backend];
    const char *b = c->ops->name;
    const int N = 7, D = 13, F = 53; /* odd: uneven shards for every p > 1 */
    setup su;
    make_setup(&su, tc->act, N, D, F);
    tp_shard s;
    CHECK_ALL(e,
              tp_shard_alloc(&s, tp_compute_cpu(), N, D, F, e->size, e->rank, tc->act) == 0 &&
                  tp_shard_from_full(&s, &su.full) == 0,
              "tp shard");
    CHECK_ALL(e, tp_forward(&s, c) == 0 && tp_backward(&s, c) == 0, "tp step failed");
    shard_slices(e, &s, &su, b);
    CHECK_ALL(e, within(s.y, su.ref.y, su.bd.y, (size_t)N * D), "%s: Y = Σ Y_r + b2 is outside the bound", b);
    CHECK_ALL(e, same_on_all_ranks(e, s.y, sizeof(float) * N * D), "%s: Y differs between ranks", b);
    CHECK_ALL(e, same_on_all_ranks(e, s.db2, sizeof(float) * D) && memcmp(s.db2, su.full.db2, sizeof(float) * D) == 0,
              "%s: db2 differs", b);
    CHECK_ALL(e, within(s.dx, su.ref.dx, su.bd.dx, (size_t)N * D), "%s: dX is outside the bound on this rank", b);
    CHECK_ALL(e, same_on_all_ranks(e, s.dx, sizeof(float) * N * D), "%s: dX differs between ranks", b);
    tp_shard_free(&s);
    free_setup(&su);
}

/* Sequence parallelism: the same properties, with X, Y, dY, dX split by rows. */
static void sp_properties(rk *e, const tcase *tc) {
    tpmlp_comm *c = e->b[tc->backend];
    const char *b = c->ops->name;
    const int N = 12, D = 13, F = 53; /* N a multiple of every p in 1..4 */
    setup su;
    make_setup(&su, tc->act, N, D, F);
    sp_shard s;
    CHECK_ALL(e,
              sp_shard_alloc(&s, tp_compute_cpu(), N, D, F, e->size, e->rank, tc->act) == 0 &&
                  sp_shard_from_full(&s, &su.full) == 0,
              "sp shard");
    CHECK_ALL(e, sp_forward(&s, c) == 0 && sp_backward(&s, c) == 0, "sp step failed");
    const tp_shard *t = &s.t;
    const size_t r0 = (size_t)s.n0 * D, rd = (size_t)s.Nr * D;
    CHECK_ALL(e, memcmp(t->x, su.full.x, sizeof(float) * N * D) == 0, "%s: all-gathered X differs from X", b);
    shard_slices(e, t, &su, b);
    CHECK_ALL(e, within(s.y_rows, su.ref.y + r0, su.bd.y + r0, rd), "%s: rank's rows of Y outside the bound", b);
    CHECK_ALL(e, within(s.dx_rows, su.ref.dx + r0, su.bd.dx + r0, rd), "%s: rank's rows of dX outside the bound", b);
    CHECK_ALL(e, memcmp(t->db2, su.full.db2, sizeof(float) * D) == 0, "%s: db2 differs from the reference's", b);
    sp_shard_free(&s);
    free_setup(&su);
}

/* A shard generated alone equals the slice of the full tensors. */
static void shard_generated_alone(rk *e, const tcase *tc) {
    (void)tc;
    setup su;
    make_setup(&su, TPMLP_GELU, 5, 9, 31);
    tp_shard a, g;
    tp_compute *cpu = tp_compute_cpu();
    CHECK_ALL(e,
              tp_shard_alloc(&a, cpu, 5, 9, 31, e->size, e->rank, TPMLP_GELU) == 0 &&
                  tp_shard_alloc(&g, cpu, 5, 9, 31, e->size, e->rank, TPMLP_GELU) == 0 &&
                  tp_shard_from_full(&a, &su.full) == 0 && tp_shard_generate(&g, &su.d) == 0,
              "shards");
    int ok = memcmp(a.w1, g.w1, sizeof(float) * a.Fr * 9) == 0 && memcmp(a.w2, g.w2, sizeof(float) * a.Fr * 9) == 0 &&
             memcmp(a.b1, g.b1, sizeof(float) * a.Fr) == 0 && memcmp(a.x, g.x, sizeof(float) * 45) == 0;
    CHECK_ALL(e, ok, "shard generated alone differs from the slice");
    tp_shard_free(&a), tp_shard_free(&g), free_setup(&su);
}

/* Every golden vector file: the gathered outputs pass check. */
static void golden_vectors_pass_check(rk *e, const tcase *tc) {
    tpmlp_comm *c = e->b[tc->backend];
    const char *src = getenv("TPMLP_SRCDIR");
    const char *names[] = {"gelu-2x3-d8-f20",       "gelu_tanh-1x7-d13-f53", "relu-3x5-d16-f64",
                           "gelu_tanh-2x4-d24-f40", "relu-2x8-d32-f96",      "gelu-1x1-d1-f1"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char path[512], err[512] = "";
        snprintf(path, sizeof path, "%s/tests/vectors/%s.safetensors", src ? src : ".", names[i]);
        st_file f;
        tpmlp_mlp32 in, full;
        tpmlp_vec_dims d;
        CHECK_ALL(e,
                  st_open(&f, path, err, sizeof err) == 0 && tpmlp_vec_load_inputs(&f, &in, &d, err, sizeof err) == 0,
                  "%s", err);
        if (e->size > d.F) { /* p > F is refused by the stages */
            tpmlp_mlp32_free(&in), st_close(&f);
            continue;
        }
        tp_shard s;
        tpmlp_mlp32 mine;
        CHECK_ALL(e,
                  tp_shard_alloc(&s, tp_compute_cpu(), in.N, in.D, in.F, e->size, e->rank, in.act) == 0 &&
                      tp_shard_from_full(&s, &in) == 0,
                  "tp shard");
        if (e->rank == 0) tpmlp_mlp32_alloc(&full, in.N, in.D, in.F, in.act);
        CHECK_ALL(e,
                  tp_forward(&s, c) == 0 && tp_backward(&s, c) == 0 && tp_shard_download(&s, &mine) == 0 &&
                      tp_gather_outputs(&mine, in.F, c, e->rank == 0 ? &full : NULL) == 0,
                  "tp step");
        tpmlp_mlp32_free(&mine);
        int ok = 1;
        if (e->rank == 0) {
            char out[64];
            snprintf(out, sizeof out, "/tmp/tpmlp-tp-%d.safetensors", (int)getpid());
            st_file theirs;
            tpmlp_check_result res;
            const tpmlp_check_opts o = {tpmlp_format_find("fp32"), 0, 0, TPMLP_SPLIT_BALANCED};
            ok = tpmlp_vec_write_outputs(out, &full, &d, err, sizeof err) == 0 &&
                 st_open(&theirs, out, err, sizeof err) == 0 &&
                 tpmlp_check(&res, &f, &theirs, &o, NULL, err, sizeof err) == 0 && res.present == 8 && res.pass;
            if (ok) st_close(&theirs);
            unlink(out);
            tpmlp_mlp32_free(&full);
        }
        CHECK_ALL(e, ok, "%s at p = %d on %s: check fails %s", names[i], e->size, c->ops->name, err);
        tp_shard_free(&s), tpmlp_mlp32_free(&in), st_close(&f);
    }
}

/* --------------------------------------------------------- collectives */

/* Integer-valued inputs: every partial sum is exact, so every backend gives
 * the exact sum, bitwise, on every rank — for any n, including n < p. */
static void allreduce_integers_exact(rk *e, const tcase *tc) {
    tpmlp_comm *c = e->b[tc->backend];
    const int rank = e->rank, size = e->size;
    const size_t sizes[] = {1, 3, 64, 1001};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        float *f = malloc(n * sizeof *f);
        double *d = malloc(n * sizeof *d);
        CHECK_ALL(e, f && d, "out of memory");
        for (size_t i = 0; i < n; i++) f[i] = (float)(rank * 1000 + (int)(i % 997) - 300), d[i] = f[i] * 0.5;
        int rc = c->ops->allreduce(c, f, n, COMM_F32); /* both on every rank, whatever the first returns */
        rc |= c->ops->allreduce(c, d, n, COMM_F64);
        CHECK_ALL(e, rc == 0, "allreduce");
        int ok = same_on_all_ranks(e, f, n * sizeof *f); /* first: every rank takes part */
        for (size_t i = 0; i < n; i++) {
            double want = 1000.0 * size * (size - 1) / 2 + size * ((double)(i % 997) - 300);
            ok &= f[i] == (float)want && d[i] == want * 0.5;
        }
        CHECK_ALL(e, ok, "%s: integer sums not exact (n = %zu)", c->ops->name, n);
        free(f), free(d);
    }
}

/* Random floats: within (p-1)·u·Σ|x_i| of the float64 sum on every backend,
 * bitwise equal on all ranks; from run to run too on the backends that fix
 * their order of summation (ring, local; not mpi: MPI_Allreduce may choose). */
static void allreduce_random_floats(rk *e, const tcase *tc) {
    (void)tc;
    const size_t n = 4099;
    float *x = malloc(n * sizeof *x), *got = malloc(n * sizeof *got), *again = malloc(n * sizeof *again);
    double *exact = malloc(n * sizeof *exact), *absum = malloc(n * sizeof *absum), *mine = malloc(n * sizeof *mine);
    CHECK_ALL(e, x && got && again && exact && absum && mine, "out of memory");
    tpmlp_fill_uniform_f32(x, n, test_seed() * 31 + (unsigned long long)e->rank, 1.0f);
    for (size_t i = 0; i < n; i++) mine[i] = x[i];
    sum_over_ranks(e, mine, exact, n);
    for (size_t i = 0; i < n; i++) mine[i] = fabs(x[i]);
    sum_over_ranks(e, mine, absum, n);
    for (int k = 0; k < e->nb; k++) {
        tpmlp_comm *c = e->b[k];
        const int repeatable = strcmp(c->ops->name, "mpi") != 0;
        memcpy(got, x, n * sizeof *x), memcpy(again, x, n * sizeof *x);
        int rc = c->ops->allreduce(c, got, n, COMM_F32);
        if (repeatable) rc |= c->ops->allreduce(c, again, n, COMM_F32);
        CHECK_ALL(e, rc == 0, "%s: allreduce", c->ops->name);
        int ok = 1;
        for (size_t i = 0; i < n; i++) ok &= fabs(got[i] - exact[i]) <= (e->size - 1) * 0x1p-24 * absum[i];
        CHECK_ALL(e, ok, "%s: a sum is outside (p-1)·u·Σ|x|", c->ops->name);
        CHECK_ALL(e, same_on_all_ranks(e, got, n * sizeof *got), "%s: sums differ between ranks", c->ops->name);
        if (repeatable)
            CHECK_ALL(e, memcmp(got, again, n * sizeof *got) == 0, "%s: a second run gives other bits", c->ops->name);
    }
    free(x), free(got), free(again), free(exact), free(absum), free(mine);
}

/* all-gather and reduce-scatter, exactly, on integer data. */
static void allgather_reduce_scatter(rk *e, const tcase *tc) {
    tpmlp_comm *c = e->b[tc->backend];
    const int rank = e->rank, size = e->size;
    const size_t n = 5;
    float send[5], *all = malloc(sizeof(float) * n * size), *big = malloc(sizeof(float) * n * size), recv[5];
    CHECK_ALL(e, all && big, "out of memory");
    for (size_t i = 0; i < n; i++) send[i] = (float)(rank * 10 + (int)i);
    CHECK_ALL(e, c->ops->allgather(c, send, all, n, COMM_F32) == 0, "allgather");
    int ok = 1;
    for (int r = 0; r < size; r++)
        for (size_t i = 0; i < n; i++) ok &= all[r * n + i] == (float)(r * 10 + (int)i);
    for (size_t i = 0; i < n * (size_t)size; i++) big[i] = (float)(rank + (int)i);
    CHECK_ALL(e, c->ops->reduce_scatter(c, big, recv, n, COMM_F32) == 0, "reduce-scatter");
    for (size_t i = 0; i < n; i++) ok &= recv[i] == (float)(size * (size - 1) / 2 + size * (int)(rank * n + i));
    CHECK_ALL(e, ok, "%s: all-gather or reduce-scatter gave wrong values", c->ops->name);
    free(all), free(big);
}

/* Why nobody should expect bitwise equality across p: float addition is not
 * associative. */
static void summation_order_matters(void **s_) {
    (void)s_;
    volatile float big = 1e8f, one = 1.0f;
    float left = (big + one) - big; /* 1e8 + 1 rounds to 1e8: the 1 is lost */
    float right = (big - big) + one;
    assert_true(left == 0.0f);
    assert_true(right == 1.0f);
}

/* ------------------------------------------------------------- the runs */

typedef struct {
    rk e;
    const tcase *tc;
} rank_arg;

static void *rank_thread(void *arg) {
    rank_arg *a = arg;
    if (setjmp(a->e.stop) == 0) a->tc->body(&a->e, a->tc);
    return NULL;
}

/* One case on every rank: this process's under MPI, else tc->p threads over
 * a local communicator of their own. */
static void run_case(void **state) {
    const tcase *tc = *state;
#ifdef TPMLP_HAVE_MPI
    if (tc->p == 0) {
        rk e = {.rank = world_rank, .size = world_size, .b = {&mpi_comms[0], &mpi_comms[1]}, .nb = 2};
        tc->body(&e, tc);
        return;
    }
#endif
    const int p = tc->p;
    threads t = {.failed = 0};
    tpmlp_comm comms[MAX_RANKS];
    pthread_t th[MAX_RANKS];
    rank_arg args[MAX_RANKS];
    assert_in_range(p, 1, MAX_RANKS);
    assert_int_equal(comm_local_create(comms, p), 0);
    assert_int_equal(pthread_barrier_init(&t.barrier, NULL, (unsigned)p), 0);
    assert_int_equal(pthread_mutex_init(&t.lock, NULL), 0);
    for (int r = 0; r < p; r++) {
        args[r] = (rank_arg){.e = {.rank = r, .size = p, .b = {&comms[r]}, .nb = 1, .t = &t}, .tc = tc};
        assert_int_equal(pthread_create(&th[r], NULL, rank_thread, &args[r]), 0);
    }
    for (int r = 0; r < p; r++) pthread_join(th[r], NULL);
    for (int r = 0; r < p; r++) comms[r].ops->destroy(&comms[r]);
    pthread_barrier_destroy(&t.barrier), pthread_mutex_destroy(&t.lock);
    if (t.failed) fail_msg("failed at p = %d (seed %llu); %s", p, test_seed(), t.first);
}

/* A case of body fn at p ranks (0: the MPI processes) on backend b. */
#define CASE(fn, label, p, b, act)                                                                                     \
    {                                                                                                                  \
#fn " " label, run_case, NULL, NULL, &(tcase) { fn, p, b, act }                                                \
    }

/* the local communicator's cases at p threads */
#define LOCAL_CASES(p)                                                                                                 \
    CASE(tp_properties, "local p=" #p " gelu", p, 0, TPMLP_GELU),                                                      \
        CASE(tp_properties, "local p=" #p " gelu_tanh", p, 0, TPMLP_GELU_TANH),                                        \
        CASE(tp_properties, "local p=" #p " relu", p, 0, TPMLP_RELU),                                                  \
        CASE(tp_properties, "local p=" #p " silu", p, 0, TPMLP_SILU),                                                  \
        CASE(sp_properties, "sequence local p=" #p " gelu", p, 0, TPMLP_GELU),                                         \
        CASE(sp_properties, "sequence local p=" #p " gelu_tanh", p, 0, TPMLP_GELU_TANH),                               \
        CASE(sp_properties, "sequence local p=" #p " relu", p, 0, TPMLP_RELU),                                         \
        CASE(shard_generated_alone, "p=" #p, p, 0, TPMLP_GELU),                                                        \
        CASE(golden_vectors_pass_check, "local p=" #p, p, 0, TPMLP_GELU),                                              \
        CASE(allreduce_integers_exact, "local p=" #p, p, 0, TPMLP_GELU),                                               \
        CASE(allreduce_random_floats, "local p=" #p, p, 0, TPMLP_GELU),                                                \
        CASE(allgather_reduce_scatter, "local p=" #p, p, 0, TPMLP_GELU)

#ifdef TPMLP_HAVE_MPI
static void world_size_is_expected(void **s) {
    (void)s;
    const char *want = getenv("TPMLP_EXPECT_RANKS");
    assert_non_null(want);
    assert_int_equal(world_size, atoi(want)); /* an MPICH launcher on an Open MPI binary would start singletons */
}

static int run_mpi(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    if (world_rank != 0 && freopen("/dev/null", "w", stdout) == NULL) return 1; /* only rank 0 speaks TAP */
    unsigned long long seed = world_rank == 0 ? test_seed() : 0;
    MPI_Bcast(&seed, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", seed);
    setenv("TPMLP_TEST_SEED", buf, 1); /* every rank uses rank 0's seed */
    if (world_rank != 0) test_seed();
    if (comm_mpi_create(&mpi_comms[0]) != 0 || comm_ring_create(&mpi_comms[1]) != 0) return 1;
    const struct CMUnitTest tests[] = {
        {"world_size", world_size_is_expected, NULL, NULL, NULL},
        CASE(tp_properties, "mpi gelu", 0, 0, TPMLP_GELU),
        CASE(tp_properties, "mpi gelu_tanh", 0, 0, TPMLP_GELU_TANH),
        CASE(tp_properties, "mpi relu", 0, 0, TPMLP_RELU),
        CASE(tp_properties, "ring gelu", 0, 1, TPMLP_GELU),
        CASE(tp_properties, "ring gelu_tanh", 0, 1, TPMLP_GELU_TANH),
        CASE(tp_properties, "ring relu", 0, 1, TPMLP_RELU),
        CASE(tp_properties, "mpi silu", 0, 0, TPMLP_SILU),
        CASE(sp_properties, "sequence mpi gelu", 0, 0, TPMLP_GELU),
        CASE(sp_properties, "sequence mpi gelu_tanh", 0, 0, TPMLP_GELU_TANH),
        CASE(sp_properties, "sequence mpi relu", 0, 0, TPMLP_RELU),
        CASE(sp_properties, "sequence ring gelu", 0, 1, TPMLP_GELU),
        CASE(shard_generated_alone, "", 0, 0, TPMLP_GELU),
        CASE(golden_vectors_pass_check, "mpi", 0, 0, TPMLP_GELU),
        CASE(golden_vectors_pass_check, "ring", 0, 1, TPMLP_GELU),
        CASE(allreduce_integers_exact, "mpi", 0, 0, TPMLP_GELU),
        CASE(allreduce_integers_exact, "ring", 0, 1, TPMLP_GELU),
        CASE(allreduce_random_floats, "mpi and ring", 0, 0, TPMLP_GELU),
        CASE(allgather_reduce_scatter, "mpi", 0, 0, TPMLP_GELU),
        CASE(allgather_reduce_scatter, "ring", 0, 1, TPMLP_GELU),
        NAMED_TEST(summation_order_matters, "1e8 + 1 - 1e8", 0),
    };
    int rc = cmocka_run_group_tests_name("tensor parallelism under MPI", tests, NULL, NULL);
    MPI_Finalize();
    return rc;
}
#endif

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--mpi") == 0) {
#ifdef TPMLP_HAVE_MPI
        return run_mpi(argc, argv);
#else
        printf("1..0 # SKIP built without MPI\n");
        return 0;
#endif
    }
    test_seed();
    alarm(120); /* a rank left at a barrier: fail, not hang */
    const struct CMUnitTest tests[] = {
        LOCAL_CASES(1),
        LOCAL_CASES(2),
        LOCAL_CASES(3),
        LOCAL_CASES(4),
        NAMED_TEST(summation_order_matters, "1e8 + 1 - 1e8", 0),
    };
    return cmocka_run_group_tests_name("tensor parallelism over threads", tests, NULL, NULL);
}
