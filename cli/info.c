/* tpmlp info: a safetensors file's metadata and tensors; with --json, also
 * every tensor of its step from the one table (step.h): name, role, shape,
 * how it is sharded, and with --tp each rank's block of F. The Python
 * package, the examples, the sweep and the notebooks read the tensor list
 * and the split rule from it (python/tpmlp/step.py). */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "json.h"
#include "safetensors.h"
#include "util.h"
#include "vectors.h"

static const char info_usage[] =
    "usage: tpmlp info [--json [--tp P [--split balanced|chunk]]] FILE\n"
    "Prints a safetensors file's metadata and a table of its tensors.\n"
    "  --json    one JSON object: the metadata, and every tensor of the step the file\n"
    "            belongs to (present in it or not) with its role (input, output, partial,\n"
    "            temporary), dims, shape, how tensor parallelism shards it (replicated,\n"
    "            rows or columns of F, partial) and the axis of F; the file's own\n"
    "            tensors with their dtype and shape\n"
    "  --tp P    with --json: each rank's block [f0, f1) of F under --split (default the\n"
    "            file's own split if it is a rank's file, else balanced)\n";

static void print_table(const st_file *f) {
    printf("%s: %zu bytes, header %zu bytes, %d tensor%s\n", f->path, f->size, f->data_start - 8, f->ntensors,
           tpmlp_plural(f->ntensors));
    for (int i = 0; i < f->nmeta; i++) printf("  %-18s %s\n", f->meta_keys[i], f->meta_values[i]);
    printf("  %-24s %-5s %-22s %12s\n", "tensor", "dtype", "shape", "bytes");
    for (int i = 0; i < f->ntensors; i++) {
        const st_tensor *t = &f->tensors[i];
        char shape[96] = "[";
        for (int k = 0; k < t->ndim; k++) {
            size_t len = strlen(shape);
            snprintf(shape + len, sizeof shape - len, "%s%llu", k ? ", " : "", (unsigned long long)t->shape[k]);
        }
        strncat(shape, "]", sizeof shape - strlen(shape) - 1);
        printf("  %-24s %-5s %-22s %12zu\n", t->name, st_dtype_name(t->dtype), shape, t->end - t->begin);
    }
}

/* The step's tensors, one object each, in the table's order (without
 * biases, none of the bias tensors: the step has none). */
static void print_step_json(const st_file *f, const tpmlp_vec_dims *d) {
    printf(",\n \"step\": [");
    for (int i = 0, first = 1; i < V_ALL; i++) {
        const tpmlp_vec_spec *sp = &tpmlp_vec_specs[i];
        if (!tpmlp_vec_has((tpmlp_vec_id)i, d)) continue;
        const st_tensor *t = st_find(f, sp->name);
        uint64_t shape[ST_MAX_DIMS];
        const int nd = tpmlp_vec_shape((tpmlp_vec_id)i, d, shape), ax = tpmlp_step_f_axis((tpmlp_vec_id)i);
        printf("%s\n  {\"name\": ", first ? "" : ","), json_str(sp->name), first = 0;
        printf(", \"role\": \"%s\", \"dims\": \"%s\", \"shape\": ", tpmlp_role_name(sp->role), sp->dims);
        json_dims(shape, nd);
        printf(", \"shard\": \"%s\", \"f_axis\": ", tpmlp_shard_name(tpmlp_step_shard((tpmlp_vec_id)i)));
        if (ax >= 0)
            printf("%d", ax);
        else
            printf("null");
        printf(", \"present\": %s, \"what\": ", t ? "true" : "false"), json_str(sp->what);
        printf("}");
    }
    printf("]");
}

/* Each rank's block of F: [[f0, f1], ...] (p checked by the caller). */
static void print_tp_json(const tpmlp_vec_dims *d, int p, tpmlp_split s) {
    printf(",\n \"tp\": {\"p\": %d, \"split\": \"%s\", \"ranks\": [", p, tpmlp_split_name(s));
    for (int r = 0; r < p; r++) {
        int f0, fr;
        tpmlp_split_slice(s, d->F, p, r, &f0, &fr); /* fr = 0: a chunk split that leaves the rank nothing */
        printf("%s[%d, %d]", r ? ", " : "", f0, f0 + fr);
    }
    printf("]}");
}

/* s: the split for --tp (ra->tp 0: none asked). */
static void print_json(const st_file *f, const tpmlp_rank_args *ra, tpmlp_split s) {
    printf("{\"tpmlp_version\": \"%s\", \"file\": ", PACKAGE_VERSION), json_str(f->path);
    printf(", \"bytes\": %zu, \"metadata\": {", f->size);
    for (int i = 0; i < f->nmeta; i++)
        printf("%s", i ? ", " : ""), json_str(f->meta_keys[i]), printf(": "), json_str(f->meta_values[i]);
    printf("},\n \"tensors\": [");
    for (int i = 0; i < f->ntensors; i++) {
        const st_tensor *t = &f->tensors[i];
        printf("%s\n  {\"name\": ", i ? "," : ""), json_str(t->name);
        printf(", \"dtype\": \"%s\", \"shape\": ", st_dtype_name(t->dtype)), json_dims(t->shape, t->ndim);
        printf("}");
    }
    printf("]");
    tpmlp_vec_dims d;
    char err[512];
    if (tpmlp_vec_read_case(f, &d, err, sizeof err) == 0) {
        printf(",\n \"B\": %d, \"T\": %d, \"D\": %d, \"F\": %d, \"activation\": \"%s\", \"seed\": %llu", d.B, d.T, d.D,
               d.F, tpmlp_act_name(d.act), d.seed);
        printf(", \"bias\": %s, \"gated\": false", d.no_bias ? "false" : "true");
        print_step_json(f, &d);
        if (ra->tp) print_tp_json(&d, ra->tp, s);
    } else
        printf(",\n \"step\": null"); /* not a file of a step tpmlp knows */
    printf("}\n");
}

int cmd_info(int argc, char **argv) {
    int json = 0;
    const char *path = NULL;
    tpmlp_rank_args ra = {0, -1, TPMLP_SPLIT_BALANCED, 0};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(info_usage, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
            continue;
        }
        if (args_rank_flag(&ra, argc, argv, &i)) continue;
        if (argv[i][0] == '-' || path)
            tpmlp_die(TPMLP_EXIT_USAGE, "info: unexpected argument '%s' (tpmlp info --help)", argv[i]);
        path = argv[i];
    }
    if (path == NULL) tpmlp_die(TPMLP_EXIT_USAGE, "info: expected one FILE (tpmlp info --help)");
    if (ra.rank >= 0) tpmlp_die(TPMLP_EXIT_USAGE, "info: --rank is not an option of info (--tp lists every rank)");
    args_rank_finish(&ra, 0);
    if (ra.tp && !json) tpmlp_die(TPMLP_EXIT_USAGE, "info: --tp and --split only with --json");
    st_file f;
    char err[512];
    if (st_open(&f, path, err, sizeof err) != 0) tpmlp_die(TPMLP_EXIT_USAGE, "%s", err);
    tpmlp_split s = ra.split; /* --split, else a rank file's own split */
    const char *fs = st_meta(&f, "split");
    if (!ra.split_given && fs) tpmlp_split_parse(fs, &s);
    tpmlp_vec_dims d;
    if (ra.tp && (tpmlp_vec_read_case(&f, &d, err, sizeof err) != 0 ||
                  tpmlp_split_check(s, d.F, ra.tp, -1, err, sizeof err) != 0))
        tpmlp_die(TPMLP_EXIT_USAGE, "%s", err);
    if (json)
        print_json(&f, &ra, s);
    else
        print_table(&f);
    st_close(&f);
    return 0;
}
