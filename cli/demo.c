/* tpmlp demo: what the README's first command shows. Runs the float32
 * reference on a default shape, checks every output against the float64
 * oracle within the error-analysis bound, and checks the float64 gradients by
 * central finite differences. Exit 0 only if everything holds. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "args.h"
#include "bound.h"
#include "commands.h"
#include "gradcheck.h"
#include "util.h"

static const char demo_usage[] =
    "usage: tpmlp demo [--batch B] [--seq T] [--hidden D] [--ffn F] [--act A] [--seed S] [--threads N]\n"
    "Runs the float32 reference MLP (default B=4 T=64 D=256 F=1024, every activation unless\n"
    "--act is given), verifies it against the float64 oracle and the float64 gradients by\n"
    "finite differences, and prints what it verified.\n";

static int verify_f32(const tpmlp_shape_args *s, int N) {
    tpmlp_mlp32 t;
    tpmlp_mlp64 ref, bound;
    tpmlp_mlp32_alloc(&t, N, s->hidden, s->ffn, s->act);
    tpmlp_mlp64_alloc(&ref, N, s->hidden, s->ffn, s->act);
    tpmlp_mlp64_alloc(&bound, N, s->hidden, s->ffn, s->act);
    tpmlp_mlp32_random_inputs(&t, s->seed);
    tpmlp_mlp64_inputs_from32(&ref, &t);
    tpmlp_mlp32_run(&t);
    tpmlp_mlp64_run(&ref);
    tpmlp_mlp64_bounds(&bound, &ref, tpmlp_format_find("fp32"));
    tpmlp_output_view v[TPMLP_NUM_OUTPUTS];
    tpmlp_output_views(v, &t, &ref, &bound);
    printf("float32 reference vs float64 oracle: N=%d D=%d F=%d act=%s seed=%llu\n", N, s->hidden, s->ffn,
           tpmlp_act_name(s->act), s->seed);
    printf("  share of its error bound (docs/vectors.md, fp32, λ=%g) used by the worst element\n", TPMLP_LAMBDA);
    printf("  %-24s %9s  %9s  %*s  %8s\n", "tensor", "elements", "max |err|", ARGS_SHARE_WIDTH, "budget", "at index");
    int ok = 1;
    for (int i = 0; i < TPMLP_NUM_OUTPUTS; i++) {
        size_t at;
        double maxerr, used = tpmlp_budget_used(v[i].got, v[i].ref, v[i].bound, v[i].n, &at, &maxerr);
        int pass = used <= 1.0;
        ok &= pass;
        char share[24];
        args_share_str(share, sizeof share, used);
        printf("  %-24s %9zu  %9.2e  %*s  %8zu  %s\n", v[i].name, v[i].n, maxerr, ARGS_SHARE_WIDTH, share, at,
               pass ? "PASS" : "FAIL");
    }
    tpmlp_mlp32_free(&t), tpmlp_mlp64_free(&ref), tpmlp_mlp64_free(&bound);
    return ok;
}

static int verify_gradients(tpmlp_act act, unsigned long long seed) {
    const int N = 3, D = 5, F = 7; /* odd sizes: no accidental symmetry */
    tpmlp_mlp32 t;
    tpmlp_mlp64 ref;
    tpmlp_mlp32_alloc(&t, N, D, F, act);
    tpmlp_mlp64_alloc(&ref, N, D, F, act);
    tpmlp_mlp32_random_inputs(&t, seed);
    tpmlp_mlp64_inputs_from32(&ref, &t);
    tpmlp_mlp64_run(&ref);
    double err[V_ALL];
    tpmlp_gradcheck_f64(&ref, 1e-6, err);
    int ok = 1;
    printf("float64 gradients vs central finite differences: N=%d D=%d F=%d act=%s\n", N, D, F, tpmlp_act_name(act));
    for (int g = 0; g < V_ALL; g++) {
        if (tpmlp_vec_specs[g].grad_of == V_ALL) continue;
        int pass = err[g] < 1e-6;
        ok &= pass;
        printf("  %-24s rel err %.2e (< 1e-6)  %s\n", tpmlp_vec_specs[g].name, err[g], pass ? "PASS" : "FAIL");
    }
    tpmlp_mlp32_free(&t), tpmlp_mlp64_free(&ref);
    return ok;
}

int cmd_demo(int argc, char **argv) {
    tpmlp_shape_args s = {.batch = 4, .seq = 64, .hidden = 256, .act = TPMLP_GELU, .seed = 1};
    int one_act = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(demo_usage, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--act") == 0) one_act = 1;
        if (!args_shape_flag(&s, argc, argv, &i))
            tpmlp_die(TPMLP_EXIT_USAGE, "demo: unknown argument '%s' (tpmlp demo --help)", argv[i]);
    }
    if (s.no_bias)
        tpmlp_die(
            TPMLP_EXIT_USAGE,
            "--no-bias: not an option of demo (gen and bench take it; run and check read it from the vector file)");
    int N = args_shape_finish(&s);
    args_apply_threads(&s);
    int ok = 1;
    for (int a = 0; a < TPMLP_NUM_ACTS; a++) {
        if (one_act && (tpmlp_act)a != s.act) continue;
        s.act = (tpmlp_act)a;
        ok &= verify_f32(&s, N);
        ok &= verify_gradients(s.act, s.seed);
    }
    printf("%s\n", ok ? "demo: all checks PASS" : "demo: some checks FAILED");
    return ok ? 0 : 1;
}
