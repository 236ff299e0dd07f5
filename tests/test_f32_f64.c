/* The float32 reference against the float64 oracle on random shapes, every
 * output within the fp32 bound of the one error model (errmodel.h; valid for
 * any summation order, so for any OpenBLAS kernel and thread count), using
 * at most half of it. And the bound is not vacuous: a 1 % error in one
 * element of y fails it. */
#include <math.h>

#include "bound.h"
#include "vectors.h"
#include "testutil.h"
#include "util.h"

struct run {
    tpmlp_mlp32 t;
    tpmlp_mlp64 ref, bd;
};

static void run_case(struct run *r, int N, int D, int F, tpmlp_act act, unsigned long long seed) {
    tpmlp_mlp32_alloc(&r->t, N, D, F, act);
    tpmlp_mlp64_alloc(&r->ref, N, D, F, act);
    tpmlp_mlp64_alloc(&r->bd, N, D, F, act);
    tpmlp_mlp32_random_inputs(&r->t, seed);
    tpmlp_mlp64_inputs_from32(&r->ref, &r->t);
    tpmlp_mlp32_run(&r->t);
    tpmlp_mlp64_run(&r->ref);
    tpmlp_mlp64_bounds(&r->bd, &r->ref, tpmlp_format_find("fp32"));
}

static void free_case(struct run *r) { tpmlp_mlp32_free(&r->t), tpmlp_mlp64_free(&r->ref), tpmlp_mlp64_free(&r->bd); }

/* Returns the largest share of the bound used over all outputs (> 1: fail). */
static double worst_share(const struct run *r, const char **which, size_t *where) {
    tpmlp_output_view v[TPMLP_NUM_OUTPUTS];
    tpmlp_output_views(v, &r->t, &r->ref, &r->bd);
    double worst = -1;
    for (int i = 0; i < TPMLP_NUM_OUTPUTS; i++) {
        size_t w;
        double maxerr, used = tpmlp_budget_used(v[i].got, v[i].ref, v[i].bound, v[i].n, &w, &maxerr);
        if (used > worst) worst = used, *which = v[i].name, *where = w;
    }
    return worst;
}

static void f32_within_bound(void **state) {
    tpmlp_act act = (tpmlp_act)STATE_INT(state);
    unsigned long long seed = test_seed() + (unsigned long long)act;
    uint64_t s = seed;
    for (int rep = 0; rep < 6; rep++) {
        /* random shapes, odd sizes included, F sometimes not a multiple of D */
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        int N = 1 + (int)((s >> 33) % 70), D = 1 + (int)((s >> 45) % 90), F = 1 + (int)((s >> 20) % 300);
        struct run r;
        run_case(&r, N, D, F, act, seed + (unsigned long long)rep);
        const char *which;
        size_t where;
        double share = worst_share(&r, &which, &where);
        if (!(share <= 0.5))
            fail_msg("N=%d D=%d F=%d act=%s: %s[%zu] used %.0f%% of its bound (seed %llu)", N, D, F,
                     tpmlp_act_name(act), which, where, 100 * share, seed);
        free_case(&r);
    }
}

/* A large reduction length, where a wrong bound would show. */
static void f32_within_bound_long_k(void **state) {
    (void)state;
    struct run r;
    unsigned long long seed = test_seed();
    run_case(&r, 64, 512, 2048, TPMLP_GELU, seed);
    const char *which;
    size_t where;
    double share = worst_share(&r, &which, &where);
    printf("# N=64 D=512 F=2048: worst output %s used %.1f%% of the worst-case bound\n", which, 100 * share);
    if (!(share <= 1.0)) fail_msg("%s[%zu] used %.0f%% of its bound (seed %llu)", which, where, 100 * share, seed);
    free_case(&r);
}

/* The bound catches a 1 % error in one element, a bias added twice, and a NaN. */
static void bound_catches_errors(void **state) {
    (void)state;
    struct run r;
    const char *which;
    size_t where;
    run_case(&r, 16, 32, 96, TPMLP_GELU, test_seed());
    assert_true(worst_share(&r, &which, &where) <= 1.0);
    float keep = r.t.y[7];
    r.t.y[7] *= 1.01f;
    assert_true(worst_share(&r, &which, &where) > 1.0);
    assert_string_equal(which, "y");
    assert_int_equal(where, 7);
    r.t.y[7] = keep;
    bias_add_f32(r.t.y, r.t.b2, r.t.N, r.t.D); /* b2 twice */
    assert_true(worst_share(&r, &which, &where) > 1.0);
    tpmlp_mlp32_run(&r.t); /* recompute rather than subtract: subtraction would round */
    assert_true(worst_share(&r, &which, &where) <= 1.0);
    r.t.dx[3] = NAN;
    assert_true(isinf(worst_share(&r, &which, &where)));
    free_case(&r);
}

int main(void) {
    test_seed();
    const struct CMUnitTest tests[] = {
        NAMED_TEST(f32_within_bound, "gelu", TPMLP_GELU), NAMED_TEST(f32_within_bound, "gelu_tanh", TPMLP_GELU_TANH),
        NAMED_TEST(f32_within_bound, "relu", TPMLP_RELU), NAMED_TEST(f32_within_bound, "silu", TPMLP_SILU),
        NAMED_TEST(f32_within_bound_long_k, "", 0),       NAMED_TEST(bound_catches_errors, "", 0),
    };
    return cmocka_run_group_tests_name("float32 vs float64", tests, NULL, NULL);
}
