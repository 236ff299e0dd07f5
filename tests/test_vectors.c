/* Test vectors: deterministic generation, shards generated alone equal the
 * slices of the full tensors, the committed golden files regenerate byte for
 * byte, the float32 reference passes check against each, and the
 * deterministic float64 outputs agree with the BLAS/libm oracle; the
 * oracle's blocked, threaded GEMM gives the bits of the plain loop. */
#include <dirent.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bound.h"
#include "check.h"
#include "seqgemm.h"
#include "testutil.h"
#include "util.h"
#include "vectors.h"

static char dir[] = "/tmp/tpmlp-vec-XXXXXX";

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n ? *n : 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void gen(const char *path, const tpmlp_vec_dims *d) {
    char err[512];
    if (tpmlp_vec_generate(path, d, err, sizeof err) != 0) fail_msg("%s", err);
}

/* Same arguments, 1 thread and 2 threads: the same bytes. */
static void generation_is_deterministic(void **s) {
    (void)s;
    tpmlp_vec_dims d = {.B = 2, .T = 5, .D = 12, .F = 37, .act = TPMLP_GELU, .seed = test_seed()};
    char p1[300], p2[300];
    snprintf(p1, sizeof p1, "%s/one.safetensors", dir), snprintf(p2, sizeof p2, "%s/two.safetensors", dir);
    omp_set_num_threads(1);
    gen(p1, &d);
    omp_set_num_threads(2);
    gen(p2, &d);
    size_t n1, n2;
    unsigned char *a = slurp(p1, &n1), *b = slurp(p2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);
    free(a), free(b), unlink(p1), unlink(p2);
}

/* Rows r0..r1 of W1 and columns c0..c1 of W2, generated alone, are the slices of the full tensors. */
static void shards_equal_slices(void **s) {
    (void)s;
    tpmlp_vec_dims d = {.B = 1, .T = 3, .D = 7, .F = 29, .act = TPMLP_RELU, .seed = test_seed()};
    float *w1 = malloc(sizeof(float) * 29 * 7), *w2 = malloc(sizeof(float) * 7 * 29),
          *part = malloc(sizeof(float) * 29 * 7);
    assert_non_null(w1), assert_non_null(w2), assert_non_null(part);
    tpmlp_vec_fill(w1, V_W1, &d, 0, 29, 0, 7);
    tpmlp_vec_fill(w2, V_W2, &d, 0, 7, 0, 29);
    const int cuts[] = {0, 8, 15, 22, 29}; /* p = 4, uneven: 8, 7, 7, 7 */
    for (int r = 0; r < 4; r++) {
        int f0 = cuts[r], f1 = cuts[r + 1];
        tpmlp_vec_fill(part, V_W1, &d, (uint64_t)f0, (uint64_t)f1, 0, 7);
        assert_memory_equal(part, w1 + f0 * 7, sizeof(float) * (size_t)(f1 - f0) * 7);
        tpmlp_vec_fill(part, V_W2, &d, 0, 7, (uint64_t)f0, (uint64_t)f1);
        for (int dd = 0; dd < 7; dd++)
            assert_memory_equal(part + dd * (f1 - f0), w2 + dd * 29 + f0, sizeof(float) * (size_t)(f1 - f0));
    }
    free(w1), free(w2), free(part);
}

/* The step's table keeps its promises: rows in role order (inputs, outputs,
 * partial sums, temporaries) with V_FIRST_OUTPUT and V_COUNT at the
 * boundaries; F at most once, last or first of two (what tpmlp_step_block
 * can cut); float32 kind exactly for the array bounds; unique names; a
 * gradient shaped as its input. */
static void table_is_consistent(void **s) {
    (void)s;
    for (int i = 0; i < V_ALL; i++) {
        const tpmlp_vec_spec *t = &tpmlp_vec_specs[i];
        if (i > 0) assert_true(tpmlp_vec_specs[i - 1].role <= t->role);
        assert_int_equal(t->role == TPMLP_ROLE_IN, i < V_FIRST_OUTPUT);
        assert_int_equal(t->role == TPMLP_ROLE_IN || t->role == TPMLP_ROLE_OUT, i < V_COUNT);
        const char *f = strchr(t->dims, 'F');
        const int n = (int)strlen(t->dims), ax = tpmlp_step_f_axis((tpmlp_vec_id)i);
        assert_true(n >= 1 && n <= 3);
        if (f) assert_null(strchr(f + 1, 'F')), assert_true(ax == n - 1 || (ax == 0 && n == 2));
        if (t->role == TPMLP_ROLE_PART)
            assert_null(f), assert_int_equal(tpmlp_step_shard((tpmlp_vec_id)i), TPMLP_PARTIAL);
        assert_int_equal(t->kind == TPMLP_F32, t->bound == TPMLP_BOUND_ARRAY);
        /* the error model fills the ARRAY bounds by name (bound_db1, bound_db2): the table must agree */
        assert_int_equal(t->bound == TPMLP_BOUND_ARRAY, i == V_DB1 || i == V_DB2);
        assert_int_equal(t->bound == TPMLP_BOUND_NONE, t->role == TPMLP_ROLE_IN || t->role == TPMLP_ROLE_TMP);
        for (int k = 0; k < i; k++) assert_string_not_equal(t->name, tpmlp_vec_specs[k].name);
        if (t->grad_of != V_ALL) { /* a gradient: an output, shaped as the input it is the gradient of */
            assert_int_equal(t->role, TPMLP_ROLE_OUT);
            assert_int_equal(tpmlp_vec_specs[t->grad_of].role, TPMLP_ROLE_IN);
            assert_string_equal(t->dims, tpmlp_vec_specs[t->grad_of].dims);
        }
    }
}

/* The blocks of the p ranks (either split) tile every sharded tensor exactly
 * once and are the shard's size; a replicated tensor's block is all of it;
 * an input's block generated alone equals the block taken from the whole. */
static void blocks_tile_every_tensor(void **s) {
    (void)s;
    const unsigned long long seed = test_seed();
    const int N = 5, D = 7, F = 23 + (int)(seed % 11);
    const tpmlp_vec_dims d = {.B = 1, .T = N, .D = D, .F = F, .act = TPMLP_GELU, .seed = seed};
    for (int i = 0; i < V_ALL; i++) {
        const tpmlp_vec_id id = (tpmlp_vec_id)i;
        const size_t n = tpmlp_step_numel(id, N, D, F);
        float *whole = malloc(n * sizeof *whole), *back = calloc(n, sizeof *back), *blk = malloc(n * sizeof *blk),
              *gen = malloc(n * sizeof *gen);
        int *hits = calloc(n, sizeof *hits);
        assert_true(whole && back && blk && gen && hits);
        for (size_t k = 0; k < n; k++) whole[k] = (float)k;
        const tpmlp_block all = tpmlp_step_block(id, N, D, F, 0, F);
        if (tpmlp_vec_specs[i].role == TPMLP_ROLE_IN) tpmlp_vec_fill(whole, id, &d, all.r0, all.r1, all.c0, all.c1);
        for (int sp = TPMLP_SPLIT_BALANCED; sp <= TPMLP_SPLIT_CHUNK; sp++)
            for (int p = 1; p <= 6; p++) {
                memset(hits, 0, n * sizeof *hits);
                int holders = 0; /* the ranks with a block of F (a chunk split may leave the last ones none) */
                for (int r = 0; r < p; r++) {
                    int f0, fr;
                    if (tpmlp_split_slice((tpmlp_split)sp, F, p, r, &f0, &fr) != 0) continue;
                    holders++;
                    const tpmlp_block b = tpmlp_step_block(id, N, D, F, f0, fr);
                    assert_int_equal(b.rows * b.cols, n);
                    assert_int_equal(tpmlp_block_numel(&b), tpmlp_step_numel(id, N, D, fr));
                    tpmlp_block_take(blk, whole, &b, sizeof *blk);
                    tpmlp_block_put(back, blk, &b, sizeof *blk);
                    for (size_t rr = b.r0; rr < b.r1; rr++)
                        for (size_t c = b.c0; c < b.c1; c++) hits[rr * b.cols + c]++;
                    if (tpmlp_vec_specs[i].role == TPMLP_ROLE_IN) {
                        tpmlp_vec_fill(gen, id, &d, b.r0, b.r1, b.c0, b.c1);
                        assert_memory_equal(gen, blk, tpmlp_block_numel(&b) * sizeof *gen);
                    }
                }
                const int sharded = tpmlp_step_f_axis(id) >= 0;
                for (size_t k = 0; k < n; k++)
                    if (hits[k] != (sharded ? 1 : holders))
                        fail_msg("%s, p = %d, %s split: element %zu held by %d ranks (seed %llu)",
                                 tpmlp_vec_specs[i].name, p, tpmlp_split_name((tpmlp_split)sp), k, hits[k], seed);
                assert_memory_equal(back, whole, n * sizeof *back);
            }
        free(whole), free(back), free(blk), free(gen), free(hits);
    }
}

/* The one float64 oracle against the block written out plainly in long
 * double with libm's erfl/expl/tanhl: another order, another erfc, more bits. */
static long double ld_act(tpmlp_act act, long double x, int grad) {
    const long double k = 0.79788456080286535587989211986876373L, c = 0.044715L;
    if (act == TPMLP_RELU) return grad ? (x > 0) : (x > 0 ? x : 0);
    if (act == TPMLP_SILU) { /* σ by tanh: another formula than the oracle's */
        const long double sg = 0.5L * (1 + tanhl(0.5L * x));
        return grad ? sg + x * sg * (1 - sg) : x * sg;
    }
    if (act == TPMLP_GELU) {
        long double cdf = 0.5L * erfcl(-x / sqrtl(2.0L)),
                    pdf = expl(-0.5L * x * x) / sqrtl(2.0L * 3.14159265358979323846L);
        return grad ? cdf + x * pdf : x * cdf;
    }
    long double u = k * (x + c * x * x * x), t = tanhl(u);
    return grad ? 0.5L * (1 + t) + 0.5L * x * (1 - t * t) * k * (1 + 3 * c * x * x) : 0.5L * x * (1 + t);
}

static void reference_matches_long_double(void **state) {
    tpmlp_act act = (tpmlp_act)STATE_INT(state);
    tpmlp_vec_dims d = {.B = 2, .T = 6, .D = 19, .F = 45, .act = act, .seed = test_seed()};
    const int N = 12, D = d.D, F = d.F;
    tpmlp_mlp32 t;
    tpmlp_mlp64 o;
    tpmlp_mlp32_alloc(&t, N, D, F, act);
    tpmlp_mlp64_alloc(&o, N, D, F, act);
    tpmlp_vec_fill_inputs(&t, &d);
    tpmlp_mlp64_inputs_from32(&o, &t);
    tpmlp_mlp64_run(&o);
    long double h[12 * 45], a[12 * 45], dh[12 * 45], y[12 * 19], dx[12 * 19], dw1[45 * 19], db1[45], dw2[19 * 45],
        db2[19];
    for (int n = 0; n < N; n++) { /* the block, in the naive order */
        for (int f = 0; f < F; f++) {
            long double s = t.b1[f];
            for (int k = D - 1; k >= 0; k--) s += (long double)t.x[n * D + k] * t.w1[f * D + k];
            h[n * F + f] = s, a[n * F + f] = ld_act(act, s, 0);
        }
        for (int k = 0; k < D; k++) {
            long double s = t.b2[k];
            for (int f = F - 1; f >= 0; f--) s += a[n * F + f] * t.w2[k * F + f];
            y[n * D + k] = s;
        }
        for (int f = 0; f < F; f++) {
            long double s = 0;
            for (int k = 0; k < D; k++) s += (long double)t.dy[n * D + k] * t.w2[k * F + f];
            dh[n * F + f] = s * ld_act(act, h[n * F + f], 1);
        }
        for (int k = 0; k < D; k++) {
            long double s = 0;
            for (int f = 0; f < F; f++) s += dh[n * F + f] * t.w1[f * D + k];
            dx[n * D + k] = s;
        }
    }
    for (int f = 0; f < F; f++) {
        db1[f] = 0;
        for (int n = 0; n < N; n++) db1[f] += dh[n * F + f];
        for (int k = 0; k < D; k++) {
            long double s1 = 0, s2 = 0;
            for (int n = 0; n < N; n++)
                s1 += dh[n * F + f] * t.x[n * D + k], s2 += (long double)t.dy[n * D + k] * a[n * F + f];
            dw1[f * D + k] = s1, dw2[k * F + f] = s2;
        }
    }
    for (int k = 0; k < D; k++) {
        db2[k] = 0;
        for (int n = 0; n < N; n++) db2[k] += t.dy[n * D + k];
    }
    const struct {
        const char *name;
        const double *got;
        const long double *want;
        size_t n;
    } pairs[] = {{"h", o.h, h, (size_t)N * F},       {"a", o.a, a, (size_t)N * F},       {"y", o.y, y, (size_t)N * D},
                 {"dx", o.dx, dx, (size_t)N * D},    {"dw1", o.dw1, dw1, (size_t)F * D}, {"db1", o.db1, db1, (size_t)F},
                 {"dw2", o.dw2, dw2, (size_t)D * F}, {"db2", o.db2, db2, (size_t)D}};
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        long double scale = 0, diff = 0;
        for (size_t k = 0; k < pairs[i].n; k++)
            scale = fmaxl(scale, fabsl(pairs[i].want[k])),
            diff = fmaxl(diff, fabsl(pairs[i].got[k] - pairs[i].want[k]));
        /* float64 sums of ≤ 45 terms: 1e-12 of the tensor's scale is orders above their rounding */
        if (!(diff <= 1e-12L * scale))
            fail_msg("%s: the oracle and long double differ by %.3Lg (scale %.3Lg, seed %llu)", pairs[i].name, diff,
                     scale, d.seed);
    }
    tpmlp_mlp32_free(&t), tpmlp_mlp64_free(&o);
}

/* Each committed golden file: regenerated from its own metadata, byte for byte;
 * and the float32 reference's outputs pass check against it. */
/* tpmlp_seq_gemm against the plain loop, bit for bit: shapes that cross
 * every block size and edge (MR 4, NR 8, KC 256, MC 128, NC 2048), both
 * layouts of each operand, 1 and 2 threads. Values of mixed signs and
 * magnitudes, so a sum in another order would differ. */
static void seq_gemm_is_the_plain_loop(void **state) {
    (void)state;
    const int shapes[][3] = {{1, 1, 1},    {4, 8, 256}, {5, 13, 7},    {130, 19, 300},
                             {3, 2051, 5}, {7, 9, 0},   {129, 17, 513}};
    unsigned long long seed = test_seed();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        const size_t na = (size_t)M * K + 1, nb = (size_t)K * N + 1;
        double *A = tpmlp_alloc(na, sizeof *A, "A"), *B = tpmlp_alloc(nb, sizeof *B, "B");
        double *C = tpmlp_alloc((size_t)M * N + 1, sizeof *C, "C"), *R = tpmlp_alloc((size_t)M * N + 1, sizeof *R, "R");
        float *u = tpmlp_alloc(na + nb, sizeof *u, "u");
        tpmlp_fill_uniform_f32(u, na + nb, seed + s, 1.0f);
        for (size_t i = 0; i < na; i++) A[i] = ldexp(u[i], (int)(i % 23) - 11);
        for (size_t i = 0; i < nb; i++) B[i] = ldexp(u[na + i], (int)(i % 17) - 8);
        for (int layout = 0; layout < 4; layout++) {
            /* A (M×K) row-major or stored K×M; B (K×N) row-major or stored N×K */
            const tpmlp_dview av = layout & 1 ? (tpmlp_dview){A, 1, (size_t)M} : (tpmlp_dview){A, (size_t)K, 1};
            const tpmlp_dview bv = layout & 2 ? (tpmlp_dview){B, 1, (size_t)K} : (tpmlp_dview){B, (size_t)N, 1};
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double acc = 0.0;
                    for (int k = 0; k < K; k++) acc = acc + av.p[i * av.rs + k * av.cs] * bv.p[k * bv.rs + j * bv.cs];
                    R[(size_t)i * N + j] = acc;
                }
            for (int threads = 1; threads <= 2; threads++) {
                omp_set_num_threads(threads);
                memset(C, 0xff, ((size_t)M * N + 1) * sizeof *C); /* NaNs: every element must be written */
                tpmlp_seq_gemm(M, N, K, av, bv, C, (size_t)N);
                if (memcmp(C, R, (size_t)M * N * sizeof *C) != 0)
                    fail_msg("seed %llu: M=%d N=%d K=%d layout %d, %d thread(s): not the plain loop's bits", seed, M, N,
                             K, layout, threads);
            }
        }
        free(A), free(B), free(C), free(R), free(u);
    }
}

static void golden(void **s) {
    (void)s;
    const char *src = getenv("TPMLP_SRCDIR");
    char vdir[512];
    snprintf(vdir, sizeof vdir, "%s/tests/vectors", src ? src : ".");
    DIR *dp = opendir(vdir);
    if (dp == NULL) fail_msg("cannot open %s (set TPMLP_SRCDIR)", vdir);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL) {
        if (strstr(e->d_name, ".safetensors") == NULL) continue;
        char path[1024], regen[600], out[600], err[512];
        snprintf(path, sizeof path, "%s/%s", vdir, e->d_name);
        snprintf(regen, sizeof regen, "%s/regen.safetensors", dir);
        snprintf(out, sizeof out, "%s/out.safetensors", dir);
        st_file f;
        tpmlp_vec_dims d;
        if (st_open(&f, path, err, sizeof err) || tpmlp_vec_read_dims(&f, &d, err, sizeof err)) fail_msg("%s", err);
        gen(regen, &d);
        size_t n1, n2;
        unsigned char *a = slurp(path, &n1), *b = slurp(regen, &n2);
        if (n1 != n2 || memcmp(a, b, n1) != 0) fail_msg("%s does not regenerate byte for byte", path);
        free(a), free(b);
        if (tpmlp_run_reference_file(&f, out, err, sizeof err) != 0) fail_msg("%s", err);
        st_file theirs;
        tpmlp_check_result res;
        const tpmlp_check_opts o = {tpmlp_format_find("fp32"), 0, 0, TPMLP_SPLIT_BALANCED};
        if (st_open(&theirs, out, err, sizeof err) || tpmlp_check(&res, &f, &theirs, &o, NULL, err, sizeof err))
            fail_msg("%s", err);
        for (int i = 0; i < V_ALL; i++)
            if (tpmlp_vec_specs[i].role == TPMLP_ROLE_OUT && tpmlp_vec_has((tpmlp_vec_id)i, &d) &&
                (!res.rows[i].present || !res.rows[i].pass))
                fail_msg("%s: float32 reference %s fails check (%.1f%% of its bound)", path, tpmlp_vec_specs[i].name,
                         100 * res.rows[i].used);
        st_close(&theirs), st_close(&f), unlink(regen), unlink(out);
        count++;
    }
    closedir(dp);
    printf("# %d golden vector files regenerated and checked\n", count);
    assert_true(count >= 5);
}

int main(void) {
    if (mkdtemp(dir) == NULL) return 1;
    test_seed();
    const struct CMUnitTest tests[] = {
        NAMED_TEST(generation_is_deterministic, "", 0),
        NAMED_TEST(shards_equal_slices, "", 0),
        NAMED_TEST(table_is_consistent, "", 0),
        NAMED_TEST(blocks_tile_every_tensor, "", 0),
        NAMED_TEST(reference_matches_long_double, "gelu", TPMLP_GELU),
        NAMED_TEST(reference_matches_long_double, "gelu_tanh", TPMLP_GELU_TANH),
        NAMED_TEST(reference_matches_long_double, "relu", TPMLP_RELU),
        NAMED_TEST(reference_matches_long_double, "silu", TPMLP_SILU),
        NAMED_TEST(seq_gemm_is_the_plain_loop, "", 0),
        NAMED_TEST(golden, "", 0),
    };
    int rc = cmocka_run_group_tests_name("test vectors", tests, NULL, NULL);
    rmdir(dir);
    return rc;
}
