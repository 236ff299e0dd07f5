/* Shared by the CMocka tests: headers in the order CMocka needs, the test
 * seed (printed so a failure can be replayed), and float helpers. */
#ifndef TPMLP_TESTUTIL_H
#define TPMLP_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

/* TPMLP_TEST_SEED=S replays a run; otherwise a new seed each run. The seed is
 * printed as a TAP comment up front and again by every failing assertion. */
static inline unsigned long long test_seed(void) {
    static unsigned long long seed;
    static int have;
    if (!have) {
        const char *s = getenv("TPMLP_TEST_SEED");
        seed = s ? strtoull(s, NULL, 10) : (unsigned long long)time(NULL);
        have = 1;
        printf("# seed %llu (replay: TPMLP_TEST_SEED=%llu)\n", seed, seed);
    }
    return seed;
}

/* A test case named "<function> <label>" with an initial state. */
#define NAMED_TEST(fn, label, state)                                                                                   \
    { #fn " " label, fn, NULL, NULL, (void *)(intptr_t)(state) }
#define STATE_INT(state) ((int)(intptr_t) * (state))

#endif
