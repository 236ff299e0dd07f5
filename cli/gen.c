/* tpmlp gen: a vector file, or one rank's inputs alone. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "util.h"
#include "vectors.h"

static const char gen_usage[] =
    "usage: tpmlp gen --batch B --seq T --hidden D [--ffn F] [--act gelu|gelu_tanh|relu|silu] [--seed S] -o FILE\n"
    "                 [--no-bias] [--tp P --rank R [--split balanced|chunk]]\n"
    "Writes a test-vector file (safetensors): the float32 inputs and the float64 reference\n"
    "outputs, byte for byte the same on every machine. Names and shapes: docs/vectors.md.\n"
    "  --ffn default 4 × hidden, --act default gelu, --seed default 0, --threads N (same bytes)\n"
    "  --no-bias: layers without biases (Llama's): no linear_fc1.bias, linear_fc2.bias nor\n"
    "  their gradients in the file, and __metadata__ bias = 0\n"
    "  --tp P --rank R: rank R's inputs only (x, dy, linear_fc2.bias whole; its rows of\n"
    "  linear_fc1.weight and .bias, its columns of linear_fc2.weight; no biases with\n"
    "  --no-bias), F cut by --split:\n"
    "  balanced (default: the first F mod P ranks one larger) or chunk (torch.chunk, DTensor)\n";

int cmd_gen(int argc, char **argv) {
    tpmlp_shape_args s = {.act = TPMLP_GELU, .seed = 0};
    const char *out = NULL;
    tpmlp_rank_args ra = {0, -1, TPMLP_SPLIT_BALANCED, 0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(gen_usage, stdout);
            return 0;
        }
        if (args_shape_flag(&s, argc, argv, &i) || args_rank_flag(&ra, argc, argv, &i)) continue;
        if (strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) {
            out = args_output(argv[i], i + 1 < argc ? argv[i + 1] : NULL), i++;
            continue;
        }
        tpmlp_die(TPMLP_EXIT_USAGE, "gen: unknown argument '%s' (tpmlp gen --help)", argv[i]);
    }
    if (s.batch == 0 || s.seq == 0 || s.hidden == 0 || out == NULL)
        tpmlp_die(TPMLP_EXIT_USAGE, "gen: --batch, --seq, --hidden and -o are required (tpmlp gen --help)");
    args_shape_finish(&s);
    args_apply_threads(&s); /* the threads only share out the work: the bytes are the same */
    args_rank_finish(&ra, 1);
    tpmlp_vec_dims d = {
        .B = s.batch, .T = s.seq, .D = s.hidden, .F = s.ffn, .act = s.act, .seed = s.seed, .no_bias = s.no_bias};
    char err[512];
    if (ra.tp) {
        if (tpmlp_split_check(ra.split, d.F, ra.tp, ra.rank, err, sizeof err) != 0)
            tpmlp_die(TPMLP_EXIT_USAGE, "%s", err);
        if (tpmlp_vec_generate_rank(out, &d, ra.tp, ra.rank, ra.split, err, sizeof err) != 0) tpmlp_die(1, "%s", err);
        return 0;
    }
    if (tpmlp_vec_generate(out, &d, err, sizeof err) != 0) tpmlp_die(1, "%s", err);
    return 0;
}
