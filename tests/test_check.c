/* tpmlp check's bound must catch real bugs and pass correct work:
 *   FAIL: the fc2 bias added twice; b2 added on every rank before the
 *   all-reduce; gelu swapped for gelu_tanh; one shard missing from the
 *   all-reduce; a weight read in the transposed layout; a shard slice off by
 *   one column; dX doubled; one element of y off by 1 %; a NaN;
 *   PASS: float32 with other summation orders (naive, blocked, reversed) and
 *   bf16-computed outputs with --dtype bf16 (which FAIL at fp32). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "bound.h"
#include "check.h"
#include "testutil.h"
#include "vectors.h"

static char dir[] = "/tmp/tpmlp-check-XXXXXX";
static char vec_path[256], out_path[256];
static tpmlp_vec_dims dims = {.B = 2, .T = 12, .D = 32, .F = 96, .act = TPMLP_GELU, .seed = 0};

static void make_vectors(void) {
    char err[512];
    dims.seed = test_seed();
    if (tpmlp_vec_generate(vec_path, &dims, err, sizeof err) != 0) fail_msg("%s", err);
}

/* Runs check on t's outputs; returns how many of the eight tensors fail. */
static int failures(const tpmlp_mlp32 *t, double u, const char *expect_failing) {
    char err[512];
    if (tpmlp_vec_write_outputs(out_path, t, &dims, err, sizeof err) != 0) fail_msg("%s", err);
    st_file vec, theirs;
    if (st_open(&vec, vec_path, err, sizeof err) || st_open(&theirs, out_path, err, sizeof err)) fail_msg("%s", err);
    tpmlp_check_row rows[TPMLP_CHECK_OUTPUTS];
    if (tpmlp_check(rows, &vec, &theirs, u, err, sizeof err) != 0) fail_msg("%s", err);
    int nfail = 0;
    for (int i = 0; i < TPMLP_CHECK_OUTPUTS; i++) {
        nfail += !rows[i].pass;
        printf("#   %-24s %8.1f%% %s\n", tpmlp_vec_specs[rows[i].id].name, 100 * rows[i].used,
               rows[i].pass ? "" : "FAIL");
        if (expect_failing && strcmp(tpmlp_vec_specs[rows[i].id].name, expect_failing) == 0 && rows[i].pass)
            fail_msg("%s was expected to fail (used %.1f%% of its bound; seed %llu)", expect_failing,
                     100 * rows[i].used, dims.seed);
    }
    st_close(&vec), st_close(&theirs);
    return nfail;
}

static void load_and_run(tpmlp_mlp32 *t) {
    char err[512];
    st_file vec;
    tpmlp_vec_dims d;
    if (st_open(&vec, vec_path, err, sizeof err) || tpmlp_vec_load_inputs(&vec, t, &d, err, sizeof err))
        fail_msg("%s", err);
    st_close(&vec);
    tpmlp_mlp32_run(t);
}

static void correct_passes(void **s) {
    (void)s;
    tpmlp_mlp32 t;
    load_and_run(&t);
    assert_int_equal(failures(&t, 0x1p-24, NULL), 0);
    tpmlp_mlp32_free(&t);
}

/* ---- bugs ---- */
enum bug {
    BIAS_TWICE,
    BIAS_PER_RANK,
    GELU_TANH,
    MISSING_SHARD,
    TRANSPOSED,
    OFF_BY_ONE,
    DX_DOUBLED,
    Y_ONE_PERCENT,
    NAN_DX
};

/* y = Σ_f a[n,f]·W2[d, col(f)] + b2, with a chosen column map (for the slicing bugs). */
static void fc2_with_columns(tpmlp_mlp32 *t, int shard_end, int shift) {
    const int N = t->N, D = t->D, F = t->F;
    for (int n = 0; n < N; n++)
        for (int d = 0; d < D; d++) {
            float acc = 0;
            for (int f = 0; f < (shard_end ? shard_end : F); f++) {
                int col = f >= F / 2 ? f - shift : f; /* shift: rank 1 reads W2 one column early */
                acc += t->a[(size_t)n * F + f] * t->w2[(size_t)d * F + col];
            }
            t->y[(size_t)n * D + d] = acc + t->b2[d];
        }
}

static void bug_fails(void **state) {
    enum bug b = (enum bug)STATE_INT(state);
    tpmlp_mlp32 t;
    load_and_run(&t);
    const char *expect = "y";
    switch (b) {
    case BIAS_TWICE: bias_add_f32(t.y, t.b2, t.N, t.D); break;
    case BIAS_PER_RANK: /* p = 4: every rank adds b2 before the all-reduce */
        for (int r = 1; r < 4; r++) bias_add_f32(t.y, t.b2, t.N, t.D);
        break;
    case GELU_TANH:
        t.act = TPMLP_GELU_TANH;
        tpmlp_mlp32_run(&t);
        expect = "a";
        break;
    case MISSING_SHARD: fc2_with_columns(&t, t.F / 2, 0); break; /* p = 2, rank 1's partial never arrives */
    case TRANSPOSED: /* W1 (F,D) read as if it were stored (D,F): h[n,f] = Σ_d x[n,d]·w1flat[d·F + f] */
        for (int n = 0; n < t.N; n++)
            for (int f = 0; f < t.F; f++) {
                float acc = 0;
                for (int d = 0; d < t.D; d++) acc += t.x[(size_t)n * t.D + d] * t.w1[(size_t)d * t.F + f];
                t.h[(size_t)n * t.F + f] = acc + t.b1[f];
            }
        expect = "h";
        break;
    case OFF_BY_ONE: fc2_with_columns(&t, 0, 1); break;
    case DX_DOUBLED:
        for (int k = 0; k < t.N * t.D; k++) t.dx[k] *= 2;
        expect = "dx";
        break;
    case Y_ONE_PERCENT: { /* an element of median size, not the largest: typical, not easy */
        int k = 0, nd = t.N * t.D;
        for (int i = 0; i < nd; i++) {
            int below = 0;
            for (int j = 0; j < nd; j++) below += fabsf(t.y[j]) < fabsf(t.y[i]);
            if (below == nd / 2) k = i;
        }
        t.y[k] *= 1.01f;
        break;
    }
    case NAN_DX:
        t.dx[5] = NAN;
        expect = "dx";
        break;
    }
    assert_true(failures(&t, 0x1p-24, expect) > 0);
    tpmlp_mlp32_free(&t);
}

/* ---- correct work in other orders ---- */
enum order { NAIVE, BLOCKED, REVERSED };

/* C (M,N) = Σ_k A(m,k)·B(k,n), A and B given by strides, float32, in the given order. */
static void matmul(float *C, const float *A, long am, long ak, const float *B, long bk, long bn, int M, int N, int K,
                   enum order o) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float acc = 0;
            if (o == NAIVE)
                for (int k = 0; k < K; k++) acc += A[m * am + k * ak] * B[k * bk + n * bn];
            else if (o == REVERSED)
                for (int k = K - 1; k >= 0; k--) acc += A[m * am + k * ak] * B[k * bk + n * bn];
            else
                for (int k0 = 0; k0 < K; k0 += 8) { /* blocks of 8, each summed on its own, then added */
                    float part = 0;
                    for (int k = k0; k < K && k < k0 + 8; k++) part += A[m * am + k * ak] * B[k * bk + n * bn];
                    acc += part;
                }
            C[(size_t)m * N + n] = acc;
        }
}

/* The MLP in float32 with every GEMM in order o; if bf16, every tensor is
 * stored in bfloat16 (inputs, h, a, dA, dH, outputs) while sums run in fp32. */
static float r16(float v, int bf16) { return bf16 ? (float)st_bf16_to_f64(st_f32_to_bf16(v)) : v; }
static void round_all(float *p, size_t n, int bf16) {
    for (size_t i = 0; i < n; i++) p[i] = r16(p[i], bf16);
}

static void mlp_in_order(tpmlp_mlp32 *t, enum order o, int bf16) {
    const int N = t->N, D = t->D, F = t->F;
    const size_t nd = (size_t)N * D, nf = (size_t)N * F, fd = (size_t)F * D;
    round_all(t->x, nd, bf16), round_all(t->w1, fd, bf16), round_all(t->b1, F, bf16);
    round_all(t->w2, fd, bf16), round_all(t->b2, D, bf16), round_all(t->dy, nd, bf16);
    matmul(t->h, t->x, D, 1, t->w1, 1, D, N, F, D, o); /* H = X·W1ᵀ */
    for (size_t k = 0; k < nf; k++) {
        t->h[k] = r16(t->h[k] + t->b1[k % F], bf16);
        t->a[k] = r16(tpmlp_act_f32(t->act, t->h[k]), bf16);
    }
    matmul(t->y, t->a, F, 1, t->w2, 1, F, N, D, F, o); /* Y = A·W2ᵀ + b2 */
    for (size_t k = 0; k < nd; k++) t->y[k] = r16(t->y[k] + t->b2[k % D], bf16);
    matmul(t->dw2, t->dy, 1, D, t->a, F, 1, D, F, N, o); /* dW2 = dYᵀ·A */
    matmul(t->dh, t->dy, D, 1, t->w2, F, 1, N, F, D, o); /* dA = dY·W2 */
    for (size_t k = 0; k < nf; k++) t->dh[k] = r16(r16(t->dh[k], bf16) * tpmlp_act_grad_f32(t->act, t->h[k]), bf16);
    matmul(t->dw1, t->dh, 1, F, t->x, D, 1, F, D, N, o); /* dW1 = dHᵀ·X */
    matmul(t->dx, t->dh, F, 1, t->w1, D, 1, N, D, F, o); /* dX = dH·W1 */
    for (int f = 0; f < F; f++) {
        float s = 0;
        for (int n = 0; n < N; n++) s += t->dh[(size_t)(o == REVERSED ? N - 1 - n : n) * F + f];
        t->db1[f] = s;
    }
    for (int d = 0; d < D; d++) {
        float s = 0;
        for (int n = 0; n < N; n++) s += t->dy[(size_t)(o == REVERSED ? N - 1 - n : n) * D + d];
        t->db2[d] = s;
    }
    round_all(t->dx, nd, bf16), round_all(t->dw1, fd, bf16), round_all(t->db1, F, bf16);
    round_all(t->dw2, fd, bf16), round_all(t->db2, D, bf16);
}

static void other_order_passes(void **state) {
    tpmlp_mlp32 t;
    load_and_run(&t);
    mlp_in_order(&t, (enum order)STATE_INT(state), 0);
    assert_int_equal(failures(&t, 0x1p-24, NULL), 0);
    tpmlp_mlp32_free(&t);
}

static void bf16_passes_with_bf16_dtype_only(void **state) {
    (void)state;
    tpmlp_mlp32 t;
    load_and_run(&t);
    mlp_in_order(&t, BLOCKED, 1);
    assert_int_equal(failures(&t, tpmlp_dtype_u("bf16"), NULL), 0);
    assert_true(failures(&t, tpmlp_dtype_u("fp32"), NULL) > 0);
    tpmlp_mlp32_free(&t);
}

int main(void) {
    if (mkdtemp(dir) == NULL) return 1;
    snprintf(vec_path, sizeof vec_path, "%s/v.safetensors", dir);
    snprintf(out_path, sizeof out_path, "%s/o.safetensors", dir);
    make_vectors();
    const struct CMUnitTest tests[] = {
        NAMED_TEST(correct_passes, "float32 reference", 0),
        NAMED_TEST(bug_fails, "fc2 bias added twice", BIAS_TWICE),
        NAMED_TEST(bug_fails, "b2 added on each of 4 ranks", BIAS_PER_RANK),
        NAMED_TEST(bug_fails, "gelu swapped for gelu_tanh", GELU_TANH),
        NAMED_TEST(bug_fails, "one shard missing from the all-reduce", MISSING_SHARD),
        NAMED_TEST(bug_fails, "transposed-layout weight", TRANSPOSED),
        NAMED_TEST(bug_fails, "slice off by one column", OFF_BY_ONE),
        NAMED_TEST(bug_fails, "dX doubled", DX_DOUBLED),
        NAMED_TEST(bug_fails, "one element of y off by 1%", Y_ONE_PERCENT),
        NAMED_TEST(bug_fails, "a NaN", NAN_DX),
        NAMED_TEST(other_order_passes, "naive loop", NAIVE),
        NAMED_TEST(other_order_passes, "blocked", BLOCKED),
        NAMED_TEST(other_order_passes, "reversed", REVERSED),
        NAMED_TEST(bf16_passes_with_bf16_dtype_only, "", 0),
    };
    int rc = cmocka_run_group_tests_name("tpmlp check: bugs fail, correct work passes", tests, NULL, NULL);
    unlink(vec_path), unlink(out_path), rmdir(dir);
    return rc;
}
