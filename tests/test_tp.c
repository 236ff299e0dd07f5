/* Property tests of tensor parallelism, run under mpiexec -n P (P = 1..4)
 * on the mpi and ring backends. Every rank checks; the verdicts are combined
 * with an all-reduce before any assertion, so a failing rank never leaves the
 * others waiting in a collective. Only rank 0 writes TAP.
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
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bound.h"
#include "check.h"
#include "comm.h"
#include "testutil.h"
#include "sp_mlp.h"
#include "tp_mlp.h"
#include "util.h"
#include "vectors.h"

static int rank, size;
static tpmlp_comm comms[2]; /* mpi, ring */
static const char *backend_names[2] = {"mpi", "ring"};

/* 1 if ok on every rank */
static int agree(int ok) {
    int all = 0;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all;
}
#define CHECK_ALL(ok, ...)                                                                                             \
    do {                                                                                                               \
        int ok_ = (ok);                                                                                                \
        if (!ok_) fprintf(stderr, "rank %d: ", rank), fprintf(stderr, __VA_ARGS__), fputc('\n', stderr);               \
        if (!agree(ok_)) fail_msg("failed on some rank (see stderr; p = %d, seed %llu)", size, test_seed());           \
    } while (0)

/* a checksum of bytes: equal on all ranks? */
static int same_on_all_ranks(const void *p, size_t n) {
    unsigned long long h = 1469598103934665603ULL, lo, hi;
    for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ULL;
    MPI_Allreduce(&h, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(&h, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    return lo == hi;
}

static void world_size(void **s) {
    (void)s;
    const char *want = getenv("TPMLP_EXPECT_RANKS");
    assert_non_null(want);
    assert_int_equal(size, atoi(want)); /* an MPICH launcher on an Open MPI binary would start singletons */
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
static void slice_check(const char *what, const char *backend, const float *part, const float *full32,
                        const double *ref, const double *bound, int R, int width, int off, int stride) {
    int within_all = 1, bitwise = 1;
    for (int r = 0; r < R; r++) {
        size_t at = (size_t)r * stride + off;
        size_t w;
        double e;
        within_all &= tpmlp_budget_used(part + (size_t)r * width, ref + at, bound + at, (size_t)width, &w, &e) <= 1.0;
        bitwise &= memcmp(part + (size_t)r * width, full32 + at, sizeof(float) * (size_t)width) == 0;
    }
    CHECK_ALL(within_all, "%s: %s is outside the bound of its slice of the unsharded result", backend, what);
    int all_bitwise = agree(bitwise);
    if (rank == 0)
        printf("# p=%d %s: %s bitwise equal to the unsharded float32 slice on every rank: %s\n", size, backend, what,
               all_bitwise ? "yes" : "no");
}

static int within(const float *got, const double *ref, const double *bound, size_t n) {
    size_t w;
    double e;
    return tpmlp_budget_used(got, ref, bound, n, &w, &e) <= 1.0;
}

/* The F-sharded tensors of a shard (TP or SP alike) against their slices. */
static void shard_slices(const tp_shard *t, const setup *su, const char *b) {
    const int N = t->N, D = t->D, F = t->F;
    slice_check("H_r", b, t->h, su->full.h, su->ref.h, su->bd.h, N, t->Fr, t->f0, F);
    slice_check("A_r", b, t->a, su->full.a, su->ref.a, su->bd.a, N, t->Fr, t->f0, F);
    slice_check("dW2_r", b, t->dw2, su->full.dw2, su->ref.dw2, su->bd.dw2, D, t->Fr, t->f0, F);
    slice_check("dW1_r", b, t->dw1, su->full.dw1, su->ref.dw1, su->bd.dw1, 1, t->Fr * D, t->f0 * D, F * D);
    slice_check("db1_r", b, t->db1, su->full.db1, su->ref.db1, su->bd.db1, 1, t->Fr, t->f0, F);
}

static void tp_properties(void **state) {
    int code = STATE_INT(state); /* backend × 3 + activation */
    tpmlp_comm *c = &comms[code / 3];
    tpmlp_act act = (tpmlp_act)(code % 3);
    const int N = 7, D = 13, F = 53; /* odd: uneven shards for every p > 1 */
    setup su;
    make_setup(&su, act, N, D, F);
    tp_shard s;
    CHECK_ALL(tp_shard_alloc(&s, tp_compute_cpu(), N, D, F, size, rank, act) == 0 &&
                  tp_shard_from_full(&s, &su.full) == 0,
              "tp shard");
    CHECK_ALL(tp_forward(&s, c) == 0 && tp_backward(&s, c) == 0, "tp step failed");
    const char *b = backend_names[code / 3];
    shard_slices(&s, &su, b);
    CHECK_ALL(within(s.y, su.ref.y, su.bd.y, (size_t)N * D), "%s: Y = Σ Y_r + b2 is outside the bound", b);
    CHECK_ALL(same_on_all_ranks(s.y, sizeof(float) * N * D), "%s: Y differs between ranks", b);
    CHECK_ALL(same_on_all_ranks(s.db2, sizeof(float) * D) && memcmp(s.db2, su.full.db2, sizeof(float) * D) == 0,
              "%s: db2 differs", b);
    CHECK_ALL(within(s.dx, su.ref.dx, su.bd.dx, (size_t)N * D), "%s: dX is outside the bound on this rank", b);
    CHECK_ALL(same_on_all_ranks(s.dx, sizeof(float) * N * D), "%s: dX differs between ranks", b);
    tp_shard_free(&s);
    free_setup(&su);
}

/* Sequence parallelism: the same properties, with X, Y, dY, dX split by rows. */
static void sp_properties(void **state) {
    int code = STATE_INT(state);
    tpmlp_comm *c = &comms[code / 3];
    tpmlp_act act = (tpmlp_act)(code % 3);
    const int N = 12, D = 13, F = 53; /* N a multiple of every p in 1..4 */
    setup su;
    make_setup(&su, act, N, D, F);
    sp_shard s;
    CHECK_ALL(sp_shard_alloc(&s, tp_compute_cpu(), N, D, F, size, rank, act) == 0 &&
                  sp_shard_from_full(&s, &su.full) == 0,
              "sp shard");
    CHECK_ALL(sp_forward(&s, c) == 0 && sp_backward(&s, c) == 0, "sp step failed");
    const char *b = backend_names[code / 3];
    const tp_shard *t = &s.t;
    const size_t r0 = (size_t)s.n0 * D, rd = (size_t)s.Nr * D;
    CHECK_ALL(memcmp(t->x, su.full.x, sizeof(float) * N * D) == 0, "%s: all-gathered X differs from X", b);
    shard_slices(t, &su, b);
    CHECK_ALL(within(s.y_rows, su.ref.y + r0, su.bd.y + r0, rd), "%s: rank's rows of Y outside the bound", b);
    CHECK_ALL(within(s.dx_rows, su.ref.dx + r0, su.bd.dx + r0, rd), "%s: rank's rows of dX outside the bound", b);
    CHECK_ALL(memcmp(t->db2, su.full.db2, sizeof(float) * D) == 0, "%s: db2 differs from the reference's", b);
    sp_shard_free(&s);
    free_setup(&su);
}

/* A shard generated alone equals the slice of the full tensors. */
static void shard_generated_alone(void **s_) {
    (void)s_;
    setup su;
    make_setup(&su, TPMLP_GELU, 5, 9, 31);
    tp_shard a, g;
    tp_compute *cpu = tp_compute_cpu();
    CHECK_ALL(tp_shard_alloc(&a, cpu, 5, 9, 31, size, rank, TPMLP_GELU) == 0 &&
                  tp_shard_alloc(&g, cpu, 5, 9, 31, size, rank, TPMLP_GELU) == 0 &&
                  tp_shard_from_full(&a, &su.full) == 0 && tp_shard_generate(&g, &su.d) == 0,
              "shards");
    int ok = memcmp(a.w1, g.w1, sizeof(float) * a.Fr * 9) == 0 && memcmp(a.w2, g.w2, sizeof(float) * a.Fr * 9) == 0 &&
             memcmp(a.b1, g.b1, sizeof(float) * a.Fr) == 0 && memcmp(a.x, g.x, sizeof(float) * 45) == 0;
    CHECK_ALL(ok, "shard generated alone differs from the slice");
    tp_shard_free(&a), tp_shard_free(&g), free_setup(&su);
}

/* Every golden vector file, every backend: the gathered outputs pass check. */
static void golden_vectors_pass_check(void **state) {
    tpmlp_comm *c = &comms[STATE_INT(state)];
    const char *src = getenv("TPMLP_SRCDIR");
    const char *names[] = {"gelu-2x3-d8-f20",       "gelu_tanh-1x7-d13-f53", "relu-3x5-d16-f64",
                           "gelu_tanh-2x4-d24-f40", "relu-2x8-d32-f96",      "gelu-1x1-d1-f1"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char path[512], err[512] = "";
        snprintf(path, sizeof path, "%s/tests/vectors/%s.safetensors", src ? src : ".", names[i]);
        st_file f;
        tpmlp_mlp32 in, full;
        tpmlp_vec_dims d;
        CHECK_ALL(st_open(&f, path, err, sizeof err) == 0 && tpmlp_vec_load_inputs(&f, &in, &d, err, sizeof err) == 0,
                  "%s", err);
        if (size > d.F) { /* p > F is refused by the stages */
            tpmlp_mlp32_free(&in), st_close(&f);
            continue;
        }
        tp_shard s;
        tpmlp_mlp32 mine;
        CHECK_ALL(tp_shard_alloc(&s, tp_compute_cpu(), in.N, in.D, in.F, size, rank, in.act) == 0 &&
                      tp_shard_from_full(&s, &in) == 0,
                  "tp shard");
        if (rank == 0) tpmlp_mlp32_alloc(&full, in.N, in.D, in.F, in.act);
        CHECK_ALL(tp_forward(&s, c) == 0 && tp_backward(&s, c) == 0 && tp_shard_download(&s, &mine) == 0 &&
                      tp_gather_outputs(&mine, in.F, c, rank == 0 ? &full : NULL) == 0,
                  "tp step");
        tpmlp_mlp32_free(&mine);
        int ok = 1;
        if (rank == 0) {
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
        CHECK_ALL(ok, "%s at p = %d on %s: check fails %s", names[i], size, c->ops->name, err);
        tp_shard_free(&s), tpmlp_mlp32_free(&in), st_close(&f);
    }
}

/* --------------------------------------------------------- collectives */

/* Integer-valued inputs: every partial sum is exact, so every backend gives
 * the exact sum, bitwise, on every rank — for any n, including n < p. */
static void allreduce_integers_exact(void **state) {
    tpmlp_comm *c = &comms[STATE_INT(state)];
    const size_t sizes[] = {1, 3, 64, 1001};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k];
        float *f = malloc(n * sizeof *f);
        double *d = malloc(n * sizeof *d);
        assert_non_null(f), assert_non_null(d);
        for (size_t i = 0; i < n; i++) f[i] = (float)(rank * 1000 + (int)(i % 997) - 300), d[i] = f[i] * 0.5;
        CHECK_ALL(c->ops->allreduce(c, f, n, COMM_F32) == 0 && c->ops->allreduce(c, d, n, COMM_F64) == 0, "allreduce");
        int ok = 1;
        for (size_t i = 0; i < n; i++) {
            double want = 1000.0 * size * (size - 1) / 2 + size * ((double)(i % 997) - 300);
            ok &= f[i] == (float)want && d[i] == want * 0.5;
        }
        CHECK_ALL(ok && same_on_all_ranks(f, n * sizeof *f), "%s: integer sums not exact (n = %zu)", c->ops->name, n);
        free(f), free(d);
    }
}

/* Random floats: within (p-1)·u·Σ|x_i| of the float64 sum, bitwise equal on all
 * ranks and from run to run; mpi and ring differ only within that bound. */
static void allreduce_random_floats(void **s_) {
    (void)s_;
    const size_t n = 4099;
    float *x = malloc(n * sizeof *x), *m = malloc(n * sizeof *m), *r = malloc(n * sizeof *r),
          *again = malloc(n * sizeof *r);
    double *exact = malloc(n * sizeof *exact), *absum = malloc(n * sizeof *absum), *mine = malloc(n * sizeof *mine);
    assert_non_null(x), assert_non_null(m), assert_non_null(r), assert_non_null(again), assert_non_null(exact);
    assert_non_null(absum), assert_non_null(mine);
    tpmlp_fill_uniform_f32(x, n, test_seed() * 31 + (unsigned long long)rank, 1.0f);
    for (size_t i = 0; i < n; i++) mine[i] = x[i];
    MPI_Allreduce(mine, exact, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD); /* exact enough: float inputs, ≤ 4 terms */
    for (size_t i = 0; i < n; i++) mine[i] = fabs(x[i]);
    MPI_Allreduce(mine, absum, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    memcpy(m, x, n * sizeof *x), memcpy(r, x, n * sizeof *x), memcpy(again, x, n * sizeof *x);
    CHECK_ALL(comms[0].ops->allreduce(&comms[0], m, n, COMM_F32) == 0 &&
                  comms[1].ops->allreduce(&comms[1], r, n, COMM_F32) == 0 &&
                  comms[1].ops->allreduce(&comms[1], again, n, COMM_F32) == 0,
              "allreduce");
    int ok_m = 1, ok_r = 1;
    for (size_t i = 0; i < n; i++) {
        double bound = (size - 1) * 0x1p-24 * absum[i];
        ok_m &= fabs(m[i] - exact[i]) <= bound, ok_r &= fabs(r[i] - exact[i]) <= bound;
    }
    CHECK_ALL(ok_m, "mpi: a sum is outside (p-1)·u·Σ|x|");
    CHECK_ALL(ok_r, "ring: a sum is outside (p-1)·u·Σ|x|");
    CHECK_ALL(same_on_all_ranks(m, n * sizeof *m) && same_on_all_ranks(r, n * sizeof *r), "sums differ between ranks");
    CHECK_ALL(memcmp(r, again, n * sizeof *r) == 0, "ring: a second run gives other bits");
    free(x), free(m), free(r), free(again), free(exact), free(absum), free(mine);
}

/* all-gather and reduce-scatter, exactly, on integer data. */
static void allgather_reduce_scatter(void **state) {
    tpmlp_comm *c = &comms[STATE_INT(state)];
    const size_t n = 5;
    float send[5], *all = malloc(sizeof(float) * n * size), *big = malloc(sizeof(float) * n * size), recv[5];
    assert_non_null(all), assert_non_null(big);
    for (size_t i = 0; i < n; i++) send[i] = (float)(rank * 10 + (int)i);
    CHECK_ALL(c->ops->allgather(c, send, all, n, COMM_F32) == 0, "allgather");
    int ok = 1;
    for (int r = 0; r < size; r++)
        for (size_t i = 0; i < n; i++) ok &= all[r * n + i] == (float)(r * 10 + (int)i);
    for (size_t i = 0; i < n * (size_t)size; i++) big[i] = (float)(rank + (int)i);
    CHECK_ALL(c->ops->reduce_scatter(c, big, recv, n, COMM_F32) == 0, "reduce-scatter");
    for (size_t i = 0; i < n; i++) ok &= recv[i] == (float)(size * (size - 1) / 2 + size * (int)(rank * n + i));
    CHECK_ALL(ok, "%s: all-gather or reduce-scatter gave wrong values", c->ops->name);
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

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank != 0 && freopen("/dev/null", "w", stdout) == NULL) return 1; /* only rank 0 speaks TAP */
    unsigned long long seed = rank == 0 ? test_seed() : 0;
    MPI_Bcast(&seed, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", seed);
    setenv("TPMLP_TEST_SEED", buf, 1); /* every rank uses rank 0's seed */
    if (rank != 0) test_seed();
    if (comm_mpi_create(&comms[0]) != 0 || comm_ring_create(&comms[1]) != 0) return 1;
    const struct CMUnitTest tests[] = {
        NAMED_TEST(world_size, "", 0),
        NAMED_TEST(tp_properties, "mpi gelu", 0),
        NAMED_TEST(tp_properties, "mpi gelu_tanh", 1),
        NAMED_TEST(tp_properties, "mpi relu", 2),
        NAMED_TEST(tp_properties, "ring gelu", 3),
        NAMED_TEST(tp_properties, "ring gelu_tanh", 4),
        NAMED_TEST(tp_properties, "ring relu", 5),
        NAMED_TEST(sp_properties, "sequence mpi gelu", 0),
        NAMED_TEST(sp_properties, "sequence mpi gelu_tanh", 1),
        NAMED_TEST(sp_properties, "sequence mpi relu", 2),
        NAMED_TEST(sp_properties, "sequence ring gelu", 3),
        NAMED_TEST(shard_generated_alone, "", 0),
        NAMED_TEST(golden_vectors_pass_check, "mpi", 0),
        NAMED_TEST(golden_vectors_pass_check, "ring", 1),
        NAMED_TEST(allreduce_integers_exact, "mpi", 0),
        NAMED_TEST(allreduce_integers_exact, "ring", 1),
        NAMED_TEST(allreduce_random_floats, "mpi and ring", 0),
        NAMED_TEST(allgather_reduce_scatter, "mpi", 0),
        NAMED_TEST(allgather_reduce_scatter, "ring", 1),
        NAMED_TEST(summation_order_matters, "1e8 + 1 - 1e8", 0),
    };
    int rc = cmocka_run_group_tests_name("tensor parallelism under MPI", tests, NULL, NULL);
    MPI_Finalize();
    return rc;
}
