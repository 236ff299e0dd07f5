/* Activations and their derivatives against long-double evaluations.
 *
 * Bound: |f(x) - F(x)| ≤ (c·S(x) + 2·κ(x)·|F(x)|)·u + floor, where
 *   κ(x) = |x·F'(x)/F(x)| is the function's own condition number: no float
 *     algorithm does better than about κ·u, since rounding inside it acts like
 *     rounding x; the factor 2 because the roundings inside (of x/√2, of
 *     u(x) = √(2/π)(x + 0.044715x³)) act like perturbing x by up to 2 ulp;
 *   S(x) = Σ|terms| of the formula (|F| itself, or Φ + |x|φ for gelu', whose
 *     two terms cancel near its root), c counting the algorithm's own roundings
 *     and its fit error (reference/act.h);
 *   floor = 2^-140 (float32) or 2^-1060 (float64): results that deep in the
 *     subnormal range carry only a few bits anyway.
 * float32: c = 8, u = 2^-24. float64 (libm): c = 8, u = 2^-53. */
#include <float.h>
#include <math.h>

#include <string.h>

#include "mlp.h"
#include "util.h"
#include "testutil.h"

/* long-double references */
static long double phi_l(long double x) { return 0.5L * erfcl(-x / sqrtl(2.0L)); }
static long double pdf_l(long double x) { return expl(-0.5L * x * x) / sqrtl(2.0L * 3.14159265358979323846264338L); }
static long double gt_u(long double x) {
    return sqrtl(2.0L / 3.14159265358979323846264338L) * (x + 0.044715L * x * x * x);
}
static long double ref_f(tpmlp_act act, long double x) {
    switch (act) {
    case TPMLP_GELU: return x * phi_l(x);
    case TPMLP_GELU_TANH: return x / (1.0L + expl(-2.0L * gt_u(x))); /* = x/2·(1 + tanh u), no cancellation */
    case TPMLP_SILU: return x / (1.0L + expl(-x));
    default: return x > 0 ? x : 0;
    }
}
static long double ref_df(tpmlp_act act, long double x) {
    switch (act) {
    case TPMLP_GELU: return phi_l(x) + x * pdf_l(x);
    case TPMLP_GELU_TANH: {
        long double e = expl(-2.0L * fabsl(gt_u(x))), s = gt_u(x) >= 0 ? 1 / (1 + e) : e / (1 + e);
        long double du = sqrtl(2.0L / 3.14159265358979323846264338L) * (1 + 3 * 0.044715L * x * x);
        return s + x * (e / ((1 + e) * (1 + e))) * 2 * du;
    }
    case TPMLP_SILU: {
        long double e = expl(-fabsl(x)), s = x >= 0 ? 1 / (1 + e) : e / (1 + e);
        return s + x * (e / ((1 + e) * (1 + e)));
    }
    default: return x > 0 ? 1 : 0;
    }
}

/* Σ|terms| of the formula each implementation evaluates: for the
 * derivatives, the two terms of F'(x) = P(x) + x·Q(x) can cancel. */
static long double terms(tpmlp_act act, int grad, long double x) {
    if (!grad || act == TPMLP_RELU) return fabsl(grad ? ref_df(act, x) : ref_f(act, x));
    if (act == TPMLP_GELU) return phi_l(x) + fabsl(x) * pdf_l(x);
    if (act == TPMLP_SILU) {
        long double e = expl(-fabsl(x)), s = x >= 0 ? 1 / (1 + e) : e / (1 + e);
        return s + fabsl(x * (e / ((1 + e) * (1 + e))));
    }
    long double e = expl(-2.0L * fabsl(gt_u(x))), s = gt_u(x) >= 0 ? 1 / (1 + e) : e / (1 + e);
    return s + fabsl(x * (e / ((1 + e) * (1 + e))) * 2 * sqrtl(2.0L / 3.14159265358979323846264338L) *
                     (1 + 3 * 0.044715L * x * x));
}

/* κ by a relative central difference in long double */
static long double cond(long double (*f)(tpmlp_act, long double), tpmlp_act act, long double x) {
    long double fx = f(act, x);
    if (fx == 0 || x == 0) return 0;
    long double h = fabsl(x) * 1e-7L;
    long double d = (f(act, x + h) - f(act, x - h)) / (2 * h);
    return fabsl(x * d / fx);
}

/* The sample: a dense sweep of [-20, 20], both signs of 0, tiny and huge |x|. */
static int sample(double *xs) {
    int n = 0;
    for (int i = -40000; i <= 40000; i++) xs[n++] = i * 5e-4;
    const double special[] = {0.0,   -0.0, 1e-30, -1e-30, 1e-6, -1e-6, 7.5,   -7.5,       13.2,      -13.2, 14.5,
                              -14.5, 20,   -20,   1e3,    -1e3, 1e30,  -1e30, -0.7517916, 0.7517916, 88.7,  -88.7};
    for (size_t i = 0; i < sizeof special / sizeof *special; i++) xs[n++] = special[i];
    return n;
}
#define NSAMPLE (80001 + 22)

static void check_f32(tpmlp_act act, int grad) {
    static double xs[NSAMPLE];
    int n = sample(xs);
    double worst = 0, wx = 0;
    for (int i = 0; i < n; i++) {
        float x = (float)xs[i];
        long double want = grad ? ref_df(act, x) : ref_f(act, x);
        float got = grad ? tpmlp_act_grad_f32(act, x) : tpmlp_act_f32(act, x);
        long double k = cond(grad ? ref_df : ref_f, act, x);
        long double bound = (8 * terms(act, grad, x) + 2 * k * fabsl(want)) * 0x1p-24L + 0x1p-140L;
        long double err = fabsl((long double)got - want);
        if (!(err <= bound))
            fail_msg("%s%s(%.9g) = %.9g, expected %.12Lg: error %.3Lg > bound %.3Lg", tpmlp_act_name(act),
                     grad ? "'" : "", x, got, want, err, bound);
        if ((double)(err / bound) > worst) worst = (double)(err / bound), wx = x;
    }
    printf("# %s%s float32: worst error used %.0f%% of its bound (x = %.7g)\n", tpmlp_act_name(act), grad ? "'" : "",
           100 * worst, wx);
}

static void check_f64(tpmlp_act act, int grad) {
    static double xs[NSAMPLE];
    int n = sample(xs);
    for (int i = 0; i < n; i++) {
        double x = xs[i];
        if (fabs(x) > 30) continue; /* long double's own exp/erfc error grows with x² beyond */
        long double want = grad ? ref_df(act, x) : ref_f(act, x);
        double got = grad ? tpmlp_act_grad_f64(act, x) : tpmlp_act_f64(act, x);
        long double k = cond(grad ? ref_df : ref_f, act, x);
        long double bound = (8 * terms(act, grad, x) + 2 * k * fabsl(want)) * 0x1p-53L + 0x1p-1060L;
        long double err = fabsl((long double)got - want);
        if (!(err <= bound))
            fail_msg("%s%s(%.17g) = %.17g, expected %.20Lg: error %.3Lg > bound %.3Lg", tpmlp_act_name(act),
                     grad ? "'" : "", x, got, want, err, bound);
    }
}

static void act_f32(void **state) { check_f32((tpmlp_act)STATE_INT(state), 0); }
static void act_grad_f32(void **state) { check_f32((tpmlp_act)STATE_INT(state), 1); }
static void act_f64(void **state) { check_f64((tpmlp_act)STATE_INT(state), 0); }
static void act_grad_f64(void **state) { check_f64((tpmlp_act)STATE_INT(state), 1); }

/* Values everyone knows: f(0) = 0, f'(0) = 1/2 for both GeLUs, limits, NaN. */
static void act_special_values(void **state) {
    (void)state;
    for (int a = 0; a < TPMLP_NUM_ACTS; a++) {
        assert_true(tpmlp_act_f32((tpmlp_act)a, 0.0f) == 0.0f);
        assert_true(tpmlp_act_f64((tpmlp_act)a, 0.0) == 0.0);
        assert_true(tpmlp_act_f32((tpmlp_act)a, 1e30f) == 1e30f);
        assert_true(tpmlp_act_f32((tpmlp_act)a, -1e30f) == 0.0f);
        assert_true(isnan(tpmlp_act_f32((tpmlp_act)a, NAN)) || a == TPMLP_RELU);
    }
    assert_true(tpmlp_act_grad_f32(TPMLP_GELU, 0.0f) == 0.5f);
    assert_true(tpmlp_act_grad_f32(TPMLP_GELU_TANH, 0.0f) == 0.5f);
    assert_true(tpmlp_act_grad_f64(TPMLP_GELU, 0.0) == 0.5);
    assert_true(tpmlp_act_grad_f32(TPMLP_RELU, 0.0f) == 0.0f); /* PyTorch's choice at the kink */
    assert_true(tpmlp_act_grad_f32(TPMLP_SILU, 0.0f) == 0.5f && tpmlp_act_grad_f64(TPMLP_SILU, 0.0) == 0.5);
    assert_true(tpmlp_act_f32(TPMLP_GELU, INFINITY) == INFINITY);
}

/* The vectorised, threaded row kernels compute exactly the scalar functions
 * (same IEEE operations, whichever CPU clone runs), and db1 is summed in
 * row order, so it equals a plain sequential sum bit for bit. */
static void row_kernels_match_scalar(void **state) {
    tpmlp_act act = (tpmlp_act)STATE_INT(state);
    const int N = 37, F = 1000; /* F not a multiple of any vector width or the column block */
    float *h = malloc(sizeof(float) * N * F), *a = malloc(sizeof(float) * N * F), *b = malloc(sizeof(float) * F);
    float *dh = malloc(sizeof(float) * N * F), *db = malloc(sizeof(float) * F), *keep = malloc(sizeof(float) * N * F);
    assert_non_null(h), assert_non_null(a), assert_non_null(b), assert_non_null(dh), assert_non_null(db);
    float *dact = malloc(sizeof(float) * N * F), *a2 = malloc(sizeof(float) * N * F), *zero = calloc(F, sizeof(float));
    assert_non_null(keep), assert_non_null(dact), assert_non_null(a2), assert_non_null(zero);
    unsigned long long seed = test_seed();
    tpmlp_fill_uniform_f32(h, (size_t)N * F, seed, 9.0f);
    tpmlp_fill_uniform_f32(b, (size_t)F, seed + 1, 3.0f);
    tpmlp_fill_uniform_f32(dh, (size_t)N * F, seed + 2, 1.0f);
    memcpy(keep, h, sizeof(float) * N * F);
    bias_act_forward_f32(h, a, dact, b, N, F, act);
    for (int i = 0; i < N * F; i++) {
        float v = keep[i] + b[i % F];
        if (h[i] != v || a[i] != tpmlp_act_f32(act, v) || dact[i] != tpmlp_act_grad_f32(act, v))
            fail_msg("element %d: kernel gives h=%.9g a=%.9g act'=%.9g, scalar h=%.9g a=%.9g act'=%.9g (seed %llu)", i,
                     h[i], a[i], dact[i], v, tpmlp_act_f32(act, v), tpmlp_act_grad_f32(act, v), seed);
    }
    memcpy(a2, h, sizeof(float) * N * F); /* the inference path (no act') gives the same a */
    bias_act_forward_f32(a2, keep, NULL, zero, N, F, act);
    assert_memory_equal(keep, a, sizeof(float) * N * F);
    memcpy(keep, dh, sizeof(float) * N * F);
    act_backward_bias_f32(dh, db, dact, N, F);
    for (int j = 0; j < F; j++) {
        float s = 0;
        for (int i = 0; i < N; i++) {
            float g = keep[i * F + j] * tpmlp_act_grad_f32(act, h[i * F + j]);
            if (dh[i * F + j] != g) fail_msg("dH[%d,%d] = %.9g, scalar %.9g (seed %llu)", i, j, dh[i * F + j], g, seed);
            s += g;
        }
        if (db[j] != s) fail_msg("db1[%d] = %.9g, sequential sum %.9g (seed %llu)", j, db[j], s, seed);
    }
    free(h), free(a), free(b), free(dh), free(db), free(keep), free(dact), free(a2), free(zero);
}

int main(void) {
    test_seed();
    const struct CMUnitTest tests[] = {
        NAMED_TEST(act_f32, "gelu", TPMLP_GELU),
        NAMED_TEST(act_f32, "gelu_tanh", TPMLP_GELU_TANH),
        NAMED_TEST(act_f32, "relu", TPMLP_RELU),
        NAMED_TEST(act_f32, "silu", TPMLP_SILU),
        NAMED_TEST(act_grad_f32, "gelu", TPMLP_GELU),
        NAMED_TEST(act_grad_f32, "gelu_tanh", TPMLP_GELU_TANH),
        NAMED_TEST(act_grad_f32, "relu", TPMLP_RELU),
        NAMED_TEST(act_grad_f32, "silu", TPMLP_SILU),
        NAMED_TEST(act_f64, "gelu", TPMLP_GELU),
        NAMED_TEST(act_f64, "gelu_tanh", TPMLP_GELU_TANH),
        NAMED_TEST(act_f64, "silu", TPMLP_SILU),
        NAMED_TEST(act_grad_f64, "gelu", TPMLP_GELU),
        NAMED_TEST(act_grad_f64, "gelu_tanh", TPMLP_GELU_TANH),
        NAMED_TEST(act_grad_f64, "silu", TPMLP_SILU),
        NAMED_TEST(act_special_values, "", 0),
        NAMED_TEST(row_kernels_match_scalar, "gelu", TPMLP_GELU),
        NAMED_TEST(row_kernels_match_scalar, "gelu_tanh", TPMLP_GELU_TANH),
        NAMED_TEST(row_kernels_match_scalar, "relu", TPMLP_RELU),
        NAMED_TEST(row_kernels_match_scalar, "silu", TPMLP_SILU),
    };
    return cmocka_run_group_tests_name("activations", tests, NULL, NULL);
}
