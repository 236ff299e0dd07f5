/* tpmlp check: THEIRS against a vector file, whole outputs or one rank's
 * tensors; the table, the JSON and the verdict it prints. The comparison
 * itself is verify/check.c's. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "check.h"
#include "commands.h"
#include "json.h"
#include "safetensors.h"
#include "util.h"

static const char check_usage[] =
    "usage: tpmlp check [--dtype fp32|tf32|bf16|fp16] [--tp P --rank R [--split balanced|chunk]]\n"
    "                   [--json | -q] [--dump FILE] VECTORS THEIRS\n"
    "Compares every output tensor in THEIRS (safetensors; F32, F64, BF16 or F16; the names of\n"
    "docs/vectors.md) with the float64 reference in VECTORS, element by element, within the\n"
    "bound of tpmlp's error model for arithmetic in --dtype (default fp32): docs/vectors.md.\n"
    "  --tp P --rank R   THEIRS holds rank R's tensors: h, a, the fc1 weight and bias and fc2\n"
    "                    weight gradients cut to its block of F; y, dx, linear_fc2.bias.grad\n"
    "                    whole; and y.partial, dx.partial, its sums before the all-reduce\n"
    "  --tp P            (no --rank) THEIRS holds the whole outputs of a P-way run: y and dx\n"
    "                    may carry the all-reduces' roundings too\n"
    "  --split S         how F is cut: balanced (default: the first F mod P ranks one larger)\n"
    "                    or chunk (torch.chunk, DTensor: ceil(F/P) each, the last smaller)\n"
    "  --json            one JSON object: per tensor the max |err|, budget used, worst index,\n"
    "                    verdict; the verdict, dtype, u, lambda and the tpmlp version\n"
    "  -q                print only the verdict line\n"
    "  --dump FILE       per element |theirs - reference| / bound (NAME) and the bound (NAME.bound)\n"
    "Exit 0: every tensor present passes; 1: some tensor fails (or none is present); 2: bad input.\n";

/* "[n, f]" for flat index k of a tensor of the given shape */
static void index_str(char *buf, size_t len, const uint64_t *shape, int nd, uint64_t k) {
    uint64_t idx[ST_MAX_DIMS];
    for (int i = nd - 1; i >= 0; i--) idx[i] = k % shape[i], k /= shape[i];
    size_t at = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < nd && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%llu", i ? "," : "", (unsigned long long)idx[i]);
    if (at < len) snprintf(buf + at, len - at, "]");
}

/* Tensor i is one THEIRS should hold: an output of the step, or with --rank also a partial sum. */
static int expected(const tpmlp_check_result *res, int i, const tpmlp_check_opts *o) {
    return tpmlp_check_knows((tpmlp_vec_id)i) && tpmlp_vec_has((tpmlp_vec_id)i, &res->dims) &&
           (tpmlp_vec_specs[i].role == TPMLP_ROLE_OUT || o->rank >= 0);
}

/* The table's id of THEIRS's tensor name, or -1 if check knows no such tensor. */
static int known_id(const char *name) {
    for (int k = 0; k < V_ALL; k++)
        if (tpmlp_check_knows((tpmlp_vec_id)k) && strcmp(name, tpmlp_vec_specs[k].name) == 0) return k;
    return -1;
}

static void print_json(const tpmlp_check_result *res, const st_file *theirs, const char *vec_path,
                       const tpmlp_check_opts *o) {
    printf("{\"tpmlp_version\": \"%s\", \"verdict\": \"%s\", \"dtype\": \"%s\", \"u\": %.9g, \"lambda\": %g, ",
           PACKAGE_VERSION, res->pass ? "PASS" : "FAIL", o->fmt->name, o->fmt->u, TPMLP_LAMBDA);
    printf("\"vectors\": "), json_str(vec_path), printf(", \"theirs\": "), json_str(theirs->path);
    if (o->tp && o->rank >= 0)
        printf(", \"tp\": %d, \"rank\": %d, \"split\": \"%s\", \"slice\": [%d, %d]", o->tp, o->rank,
               tpmlp_split_name(o->split), res->f0, res->f1);
    else if (o->tp)
        printf(", \"tp\": %d, \"rank\": null", o->tp);
    else
        printf(", \"tp\": null, \"rank\": null");
    printf(", \"checked\": %d, \"tensors\": [", res->present);
    int first = 1;
    for (int i = 0; i < V_ALL; i++) {
        const tpmlp_check_row *r = &res->rows[i];
        if (!r->present) continue;
        printf("%s\n  {\"name\": \"%s\", \"dtype\": \"%s\", \"shape\": ", first ? "" : ",", tpmlp_vec_specs[i].name,
               st_dtype_name(r->dtype));
        json_dims(r->shape, r->ndim);
        printf(", \"n\": %llu, \"max_abs_err\": ", (unsigned long long)r->n), json_num(r->max_abs_err);
        printf(", \"budget_used\": "), json_num(r->used);
        printf(", \"worst_index\": [");
        uint64_t k = r->worst, idx[ST_MAX_DIMS];
        for (int d = r->ndim - 1; d >= 0; d--) idx[d] = k % r->shape[d], k /= r->shape[d];
        for (int d = 0; d < r->ndim; d++) printf("%s%llu", d ? ", " : "", (unsigned long long)idx[d]);
        printf("], \"got\": "), json_num(r->worst_got), printf(", \"reference\": "), json_num(r->worst_ref);
        printf(", \"bound\": "), json_num(r->worst_bound);
        if (isfinite(r->beta_noise))
            printf(", \"form_beta\": "), json_num(r->beta), printf(", \"form_noise\": "), json_num(r->beta_noise);
        printf(", \"verdict\": \"%s\"", r->pass ? "PASS" : "FAIL");
        if (r->note[0]) printf(", \"note\": "), json_str(r->note);
        printf("}");
        first = 0;
    }
    printf("],\n \"not_provided\": [");
    first = 1;
    for (int i = 0; i < V_ALL; i++)
        if (!res->rows[i].present && expected(res, i, o))
            printf("%s\"%s\"", first ? "" : ", ", tpmlp_vec_specs[i].name), first = 0;
    printf("], \"ignored\": [");
    first = 1;
    for (int i = 0; i < theirs->ntensors; i++) {
        const int k = known_id(theirs->tensors[i].name);
        if (k < 0 || !expected(res, k, o))
            printf("%s", first ? "" : ", "), json_str(theirs->tensors[i].name), first = 0;
    }
    printf("]}\n");
}

static void print_table(const tpmlp_check_result *res, const st_file *theirs, const char *vec_path,
                        const tpmlp_check_opts *o) {
    const tpmlp_vec_dims *d = &res->dims;
    printf("check %s against %s: B=%d T=%d D=%d F=%d act=%s, --dtype %s (u = 2^%d), λ=%g\n", theirs->path, vec_path,
           d->B, d->T, d->D, d->F, tpmlp_act_name(d->act), o->fmt->name, (int)log2(o->fmt->u), TPMLP_LAMBDA);
    if (o->tp && o->rank < 0)
        printf("the outputs of a %d-way tensor-parallel run: y and dx may carry the all-reduces' roundings\n", o->tp);
    if (o->tp && o->rank >= 0)
        printf("rank %d of %d (%s split): columns [%d, %d) of F, %d of %d\n", o->rank, o->tp,
               tpmlp_split_name(o->split), res->f0, res->f1, res->f1 - res->f0, d->F);
    /* fixed widths, but the worst element's column as wide as its widest index */
    int where_w = (int)strlen("worst element");
    for (int i = 0; i < V_ALL; i++) {
        char where[64];
        if (!res->rows[i].present) continue;
        index_str(where, sizeof where, res->rows[i].shape, res->rows[i].ndim, res->rows[i].worst);
        if ((int)strlen(where) > where_w) where_w = (int)strlen(where);
    }
    printf("  %-24s %-5s %10s %*s  %-*s %s\n", "tensor", "dtype", "max |err|", ARGS_SHARE_WIDTH, "budget", where_w,
           "worst element", "verdict");
    for (int i = 0; i < V_ALL; i++) {
        const tpmlp_check_row *r = &res->rows[i];
        if (!r->present) continue;
        char where[64], budget[24];
        index_str(where, sizeof where, r->shape, r->ndim, r->worst);
        args_share_str(budget, sizeof budget, r->used);
        printf("  %-24s %-5s %10.3e %*s  %-*s %s\n", tpmlp_vec_specs[i].name, st_dtype_name(r->dtype), r->max_abs_err,
               ARGS_SHARE_WIDTH, budget, where_w, where, r->pass ? "PASS" : "FAIL");
        if (r->used > 1.0)
            printf("      worst: got %.9g, reference %.9g, bound %.3g%s\n", r->worst_got, r->worst_ref, r->worst_bound,
                   isfinite(r->worst_got) ? "" : " (NaN or Inf never passes)");
        if (r->note[0]) printf("      %s\n", r->note);
    }
    int missing = 0;
    for (int i = 0; i < V_ALL; i++)
        if (!res->rows[i].present && expected(res, i, o))
            printf("%s%s", missing++ ? ", " : "  not provided: ", tpmlp_vec_specs[i].name);
    if (missing) printf("\n");
    for (int i = 0; i < theirs->ntensors; i++) {
        const int k = known_id(theirs->tensors[i].name);
        if (k < 0 || !expected(res, k, o))
            printf("  ignored (%s): %s\n", k >= 0 ? "checked only with --tp --rank" : "not a vector name",
                   theirs->tensors[i].name);
    }
}

/* How many outputs the step has (8; 6 without biases). */
static int outputs_of(const tpmlp_check_result *res) {
    int n = 0;
    for (int i = 0; i < V_ALL; i++)
        n += tpmlp_vec_specs[i].role == TPMLP_ROLE_OUT && tpmlp_vec_has((tpmlp_vec_id)i, &res->dims);
    return n;
}

static void print_verdict(const tpmlp_check_result *res, const char *theirs_path, const tpmlp_check_opts *o) {
    if (res->present == 0)
        printf("FAIL: %s holds none of the output tensors\n", theirs_path);
    else if (res->pass && o->tp && o->rank >= 0)
        printf("PASS: rank %d of %d, %d tensor%s checked\n", o->rank, o->tp, res->present, tpmlp_plural(res->present));
    else if (res->pass)
        printf("PASS: %d of %d tensors checked\n", res->present, outputs_of(res));
    else { /* how many failed, and the first in the step's order: where the bug enters */
        int failed = 0, first = -1;
        for (int i = 0; i < V_ALL; i++)
            if (res->rows[i].present && !res->rows[i].pass) failed++, first = first < 0 ? i : first;
        char who[48] = "";
        if (o->tp && o->rank >= 0) snprintf(who, sizeof who, "rank %d of %d, ", o->rank, o->tp);
        printf("FAIL: %s%d of %d tensor%s failed; the first in the step's order, %s, is where to look\n", who, failed,
               res->present, tpmlp_plural(res->present), tpmlp_vec_specs[first].name);
    }
}

int check_report(const char *vec_path, const char *theirs_path, const tpmlp_check_opts *o, const char *dump, int mode) {
    st_file vec, theirs;
    args_open_or_die(&vec, vec_path);
    args_open_or_die(&theirs, theirs_path);
    tpmlp_check_result res;
    char err[512];
    if (tpmlp_check(&res, &vec, &theirs, o, dump, err, sizeof err) != 0) tpmlp_die(TPMLP_EXIT_USAGE, "%s", err);
    if (mode == 'j')
        print_json(&res, &theirs, vec_path, o);
    else {
        if (mode != 'q') print_table(&res, &theirs, vec_path, o);
        print_verdict(&res, theirs_path, o);
    }
    st_close(&vec), st_close(&theirs);
    return res.present > 0 && res.pass ? 0 : 1;
}

const tpmlp_format *check_format_or_die(const char *v) {
    if (v == NULL) tpmlp_die(TPMLP_EXIT_USAGE, "--dtype: missing value (allowed: fp32, tf32, bf16, fp16)");
    const tpmlp_format *f = tpmlp_format_find(v);
    if (f == NULL) tpmlp_die(TPMLP_EXIT_USAGE, "--dtype: '%s' is not one of fp32, tf32, bf16, fp16", v);
    return f;
}

int cmd_check(int argc, char **argv) {
    const char *files[2] = {NULL, NULL}, *dump = NULL;
    tpmlp_check_opts o = {tpmlp_format_find("fp32"), 0, -1, TPMLP_SPLIT_BALANCED};
    tpmlp_rank_args ra = {0, -1, TPMLP_SPLIT_BALANCED, 0};
    int nfiles = 0, mode = 't', mode_flags = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0) {
            fputs(check_usage, stdout);
            return 0;
        }
        if (args_rank_flag(&ra, argc, argv, &i)) continue;
        if (strcmp(argv[i], "--dtype") == 0) {
            o.fmt = check_format_or_die(i + 1 < argc ? argv[++i] : NULL);
            continue;
        }
        if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-q") == 0) {
            mode = argv[i][1] == 'q' ? 'q' : 'j', mode_flags++;
            continue;
        }
        if (strcmp(argv[i], "--dump") == 0) {
            if (i + 1 >= argc) tpmlp_die(TPMLP_EXIT_USAGE, "--dump: missing file name");
            dump = argv[++i];
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1] != '\0')
            tpmlp_die(TPMLP_EXIT_USAGE, "check: unknown option '%s' (tpmlp check --help)", argv[i]);
        if (nfiles == 2)
            tpmlp_die(TPMLP_EXIT_USAGE, "check: expected two files, VECTORS and THEIRS; got a third '%s'", argv[i]);
        files[nfiles++] = argv[i];
    }
    if (nfiles != 2) tpmlp_die(TPMLP_EXIT_USAGE, "check: expected two files, VECTORS and THEIRS (tpmlp check --help)");
    args_rank_finish(&ra, 0);
    if (mode_flags > 1) tpmlp_die(TPMLP_EXIT_USAGE, "check: --json and -q are two answers; give one");
    o.tp = ra.tp, o.rank = ra.rank, o.split = ra.split;
    if (strcmp(files[0], files[1]) == 0)
        tpmlp_die(TPMLP_EXIT_USAGE, "check: VECTORS and THEIRS are the same file '%s'", files[0]);
    return check_report(files[0], files[1], &o, dump, mode);
}
