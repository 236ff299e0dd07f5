/* Central finite differences in float64 on dX, dW1, db1, dW2, db2, for every
 * activation, on odd shapes. Step 1e-6·max(1,|θ|): truncation O(s²) ≈ 1e-12,
 * cancellation O(u/s) ≈ 1e-10, so 1e-6 leaves four orders of margin and any
 * wrong term in a backward formula (errors O(1)) fails. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include "bound.h"
#include "vectors.h"
#include "gradcheck.h"
#include "testutil.h"

static const struct { int N, D, F; } shapes[] = {{3, 5, 7}, {1, 1, 1}, {4, 6, 2}};

static void fd_case(void **state) {
    int code = STATE_INT(state);
    tpmlp_act act = (tpmlp_act)(code % TPMLP_NUM_ACTS);
    int N = shapes[code / TPMLP_NUM_ACTS].N, D = shapes[code / TPMLP_NUM_ACTS].D, F = shapes[code / TPMLP_NUM_ACTS].F;
    unsigned long long seed = test_seed();
    tpmlp_mlp32 t32;
    tpmlp_mlp64 t;
    tpmlp_mlp32_alloc(&t32, N, D, F, act);
    tpmlp_mlp64_alloc(&t, N, D, F, act);
    /* relu has a kink at 0: draw until every |H| ≥ 1e-3, far beyond the step */
    for (unsigned long long s = seed;; s++) {
        tpmlp_mlp32_random_inputs(&t32, s);
        tpmlp_mlp64_inputs_from32(&t, &t32);
        tpmlp_mlp64_run(&t);
        double minh = INFINITY;
        for (size_t k = 0; k < (size_t)N * F; k++) minh = fmin(minh, fabs(t.h[k]));
        if (act != TPMLP_RELU || minh >= 1e-3) break;
    }
    double err[V_ALL];
    tpmlp_gradcheck_f64(&t, 1e-6, err);
    int checked = 0;
    for (int g = 0; g < V_ALL; g++) {
        if (tpmlp_vec_specs[g].grad_of == V_ALL) continue;
        checked++;
        if (!(err[g] < 1e-6))
            fail_msg("%s: N=%d D=%d F=%d act=%s: relative error %.3e ≥ 1e-6 (seed %llu)", tpmlp_vec_specs[g].name, N, D,
                     F, tpmlp_act_name(act), err[g], seed);
    }
    assert_int_equal(checked, 5); /* dx and the four parameters' gradients */
    tpmlp_mlp32_free(&t32), tpmlp_mlp64_free(&t);
}

/* The check itself must be able to fail: a backward that forgets act' (uses
 * dH = dA) is caught. */
static void fd_catches_wrong_gradient(void **state) {
    (void)state;
    tpmlp_mlp32 t32;
    tpmlp_mlp64 t;
    tpmlp_mlp32_alloc(&t32, 3, 5, 7, TPMLP_GELU);
    tpmlp_mlp64_alloc(&t, 3, 5, 7, TPMLP_GELU);
    tpmlp_mlp32_random_inputs(&t32, test_seed());
    tpmlp_mlp64_inputs_from32(&t, &t32);
    tpmlp_mlp64_run(&t);
    t.dw1[3] *= 1.001; /* a 0.1 % error in one element */
    double err[V_ALL];
    tpmlp_gradcheck_f64(&t, 1e-6, err);
    assert_true(err[V_DW1] > 1e-6);
    assert_true(err[V_DX] < 1e-6);
    tpmlp_mlp32_free(&t32), tpmlp_mlp64_free(&t);
}

int main(void) {
    test_seed();
    enum { NSHAPES = sizeof shapes / sizeof *shapes, NT = NSHAPES * TPMLP_NUM_ACTS + 1 };
    static struct CMUnitTest tests[NT];
    static char names[NT][64];
    for (int code = 0; code < NSHAPES * TPMLP_NUM_ACTS; code++) { /* every activation on every shape */
        const int k = code / TPMLP_NUM_ACTS;
        snprintf(names[code], sizeof names[code], "fd_case %s N=%d D=%d F=%d",
                 tpmlp_act_name((tpmlp_act)(code % TPMLP_NUM_ACTS)), shapes[k].N, shapes[k].D, shapes[k].F);
        tests[code] = (struct CMUnitTest){names[code], fd_case, NULL, NULL, (void *)(intptr_t)code};
    }
    tests[NT - 1] = (struct CMUnitTest){"fd_catches_wrong_gradient", fd_catches_wrong_gradient, NULL, NULL, NULL};
    return cmocka_run_group_tests_name("finite differences, float64", tests, NULL, NULL);
}
