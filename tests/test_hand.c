/* A case small enough to work out by hand: N=2, D=2, F=3.
 *
 *   X = [ 1  2 ]   W1 = [ 1  0 ]   b1 = [0, -1, 0.5]   H = X·W1ᵀ + b1 = [ 1    1   -0.5 ]
 *       [-1 .5 ]        [ 0  1 ]                                         [-1  -0.5  -1   ]
 *                       [ 1 -1 ]
 *   W2 = [ 1  2  0 ]   b2 = [0.25, -0.5]   dY = [ 1  -1 ]
 *        [ 0 -1  1 ]                            [.5   2 ]
 *
 * So A holds act(1), act(-0.5), act(-1) only, and every output is a short sum
 * of those values. relu gives exact binary fractions; for the GeLUs the
 * expected values below were evaluated at 30 digits (mpmath) from
 *   gelu(1) = Φ(1) = 0.841344746068542949, gelu(-0.5) = -Φ(-0.5)/2, gelu(-1) = -Φ(-1),
 *   gelu'(x) = Φ(x) + x·φ(x); gelu_tanh(x) = x/2·(1 + tanh(√(2/π)(x + 0.044715x³))).
 * e.g. relu: Y[0] = [1·1 + 1·2 + 0·0 + 0.25, 1·0 + 1·(-1) + 0·1 - 0.5] = [3.25, -1.5]. */
#include <math.h>
#include <string.h>

#include "bound.h"
#include "vectors.h"
#include "testutil.h"

static const float X[] = {1, 2, -1, 0.5f}, W1[] = {1, 0, 0, 1, 1, -1}, B1[] = {0, -1, 0.5f};
static const float W2[] = {1, 2, 0, 0, -1, 1}, B2[] = {0.25f, -0.5f}, DY[] = {1, -1, 0.5f, 2};

struct expected {
    double a[6], y[4], dx[4], dw1[6], db1[3], dw2[6], db2[2];
};

static const struct expected want[TPMLP_NUM_ACTS] =
    {
        [TPMLP_GELU] =
            {
                .a = {0.84134474606854294859, 0.84134474606854294859, -0.15426876936299344818, -0.15865525393145705141,
                      -0.15426876936299344818, -0.15865525393145705141},
                .y = {2.7740342382056288458, -1.4956135154315363968, -0.21719279265744394778, -0.50438648456846360323},
                .dx = {0.95081059524384914091, 3.3824512871068960526, -0.20828867646921574596, 0.034126065831535439291},
                .dw1 = {1.1249732058815294476, 2.1458020735284510222, 3.3824512871068960526, 6.4336403858541992116,
                        0.034126065831535439291, -0.34832522127536061333},
                .db1 = {1.0416577352938431492, 3.1174415364192217377, -0.29913581651920975424},
                .dw2 = {0.76201711910281442288, 0.76421036138704622449, -0.23359639632872197389, -1.1586552539314570514,
                        -1.1498822847945298449, -0.16304173849992065465},
                .db2 = {1.5, 1},
            },
        [TPMLP_GELU_TANH] =
            {
                .a = {0.84119199060827670478, 0.84119199060827670478, -0.15428599017485607796, -0.15880800939172329522,
                      -0.15428599017485607796, -0.15880800939172329522},
                .y = {2.7735759718248301143, -1.4954779807831327827, -0.21737998974143545114, -0.50452201921686721726},
                .dx = {0.9503339873804248667, 3.3815223480027053539, -0.20741020961445638785, 0.033298071226207421839},
                .dw1 = {1.1244461257686738327, 2.1451871467301194715, 3.3815223480027053539, 6.4314694548420164866,
                        0.033298071226207421839, -0.34822427677649793202},
                .db1 = {1.0414820419228912776, 3.116262155071989977, -0.29855826415692279872},
                .dw2 = {0.76178798591241505717, 0.7640489955208486658, -0.23368999487071772557, -1.1588080093917232952,
                        -1.1497639709579888607, -0.16333002860859051247},
                .db2 = {1.5, 1},
            },
        [TPMLP_SILU] = /* x·σ(x), worked in 50-digit arithmetic */
        {
            .a = {0.73105857863000487925, 0.73105857863000487925, -0.18877033439907271768, -0.26894142136999512075,
                  -0.18877033439907271768, -0.26894142136999512075},
            .y = {2.4431757358900146378, -1.4198289130290775969, -0.39648209016814055611, -0.58017108697092240307},
            .dx = {0.66763169917413854096, 3.0430503483118083862, 0.18082372032128317053, -0.40469778895437472725},
            .dw1 = {0.89150576780723009768, 1.8734233957751017806, 3.0430503483118083862, 5.4360036648802462953,
                    -0.40469778895437472725, -0.44774813726618311344},
            .db1 = {0.96383525593574336589, 2.5229727229171120045, -0.1153798364403216544},
            .dw2 = {0.59658786794500731888, 0.63667341143046852041, -0.32324104508407027805, -1.2689414213699951207,
                    -1.1085992474281503146, -0.34911250834091752382},
            .db2 = {1.5, 1},
        },
        [TPMLP_RELU] =
            {
                .a = {1, 1, 0, 0, 0, 0},
                .y = {3.25, -1.5, 0.25, -0.5},
                .dx = {1, 3, 0, 0},
                .dw1 = {1, 2, 3, 6, 0, 0},
                .db1 = {1, 3, 0},
                .dw2 = {1, 1, 0, -1, -1, 0},
                .db2 = {1.5, 1},
            },
};

static void setup_inputs(tpmlp_mlp32 *t, tpmlp_act act) {
    tpmlp_mlp32_alloc(t, 2, 2, 3, act);
    memcpy(t->x, X, sizeof X), memcpy(t->w1, W1, sizeof W1), memcpy(t->b1, B1, sizeof B1);
    memcpy(t->w2, W2, sizeof W2), memcpy(t->b2, B2, sizeof B2), memcpy(t->dy, DY, sizeof DY);
}

/* |got - want| ≤ rel·max(|want|, 1): the values are O(1), so rel is in units of u. */
static void near32(const char *what, const float *got, const double *exp, int n, double rel) {
    for (int k = 0; k < n; k++)
        if (!(fabs(got[k] - exp[k]) <= rel * fmax(fabs(exp[k]), 1.0)))
            fail_msg("%s[%d] = %.9g, expected %.12g (tolerance %.1e)", what, k, got[k], exp[k], rel);
}
static void near64(const char *what, const double *got, const double *exp, int n, double rel) {
    for (int k = 0; k < n; k++)
        if (!(fabs(got[k] - exp[k]) <= rel * fmax(fabs(exp[k]), 1.0)))
            fail_msg("%s[%d] = %.17g, expected %.17g (tolerance %.1e)", what, k, got[k], exp[k], rel);
}

#define CHECK_ALL(near, t, w, rel)                                                                                     \
    do {                                                                                                               \
        near("a", t.a, w->a, 6, rel), near("y", t.y, w->y, 4, rel), near("dx", t.dx, w->dx, 4, rel);                   \
        near("dW1", t.dw1, w->dw1, 6, rel), near("db1", t.db1, w->db1, 3, rel);                                        \
        near("dW2", t.dw2, w->dw2, 6, rel), near("db2", t.db2, w->db2, 2, rel);                                        \
    } while (0)

static void hand_f32(void **state) {
    tpmlp_act act = (tpmlp_act)STATE_INT(state);
    tpmlp_mlp32 t;
    setup_inputs(&t, act);
    tpmlp_mlp32_run(&t);
    /* sums of ≤ 3 products of O(1) terms, plus the activation's few ulp: 16 u is ample */
    CHECK_ALL(near32, t, (&want[act]), 16 * 0x1p-24);
    tpmlp_mlp32_free(&t);
}

static void hand_f64(void **state) {
    tpmlp_act act = (tpmlp_act)STATE_INT(state);
    tpmlp_mlp32 t32;
    tpmlp_mlp64 t;
    setup_inputs(&t32, act);
    tpmlp_mlp64_alloc(&t, 2, 2, 3, act);
    tpmlp_mlp64_inputs_from32(&t, &t32);
    tpmlp_mlp64_run(&t);
    CHECK_ALL(near64, t, (&want[act]), 16 * 0x1p-53);
    tpmlp_mlp32_free(&t32), tpmlp_mlp64_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        NAMED_TEST(hand_f32, "gelu", TPMLP_GELU),           NAMED_TEST(hand_f32, "gelu_tanh", TPMLP_GELU_TANH),
        NAMED_TEST(hand_f32, "relu", TPMLP_RELU),           NAMED_TEST(hand_f64, "gelu", TPMLP_GELU),
        NAMED_TEST(hand_f64, "gelu_tanh", TPMLP_GELU_TANH), NAMED_TEST(hand_f64, "relu", TPMLP_RELU),
        NAMED_TEST(hand_f32, "silu", TPMLP_SILU),           NAMED_TEST(hand_f64, "silu", TPMLP_SILU),
    };
    return cmocka_run_group_tests_name("hand-worked N=2 D=2 F=3", tests, NULL, NULL);
}
