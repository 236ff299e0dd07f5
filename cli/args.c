#include "config.h"

#include "args.h"

#include <cblas.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

const char *args_output(const char *flag, const char *path) {
    struct stat sb;
    if (path == NULL) tpmlp_die(TPMLP_EXIT_USAGE, "%s: missing file name", flag);
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        tpmlp_die(TPMLP_EXIT_USAGE, "%s: '%s' is a folder; expected the name of the file to write", flag, path);
    return path;
}

void args_open_or_die(st_file *f, const char *path) {
    char err[512];
    if (st_open(f, path, err, sizeof err) != 0) tpmlp_die(TPMLP_EXIT_USAGE, "%s", err);
}

int args_positive_int(const char *flag, const char *value) {
    if (value == NULL)
        tpmlp_die(TPMLP_EXIT_USAGE, "%s: missing value (expected an integer from 1 to %d)", flag, INT_MAX);
    char *end;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (end == value || *end != '\0' || errno == ERANGE || v < 1 || v > INT_MAX)
        tpmlp_die(TPMLP_EXIT_USAGE, "%s: '%s' is not an integer from 1 to %d", flag, value, INT_MAX);
    return (int)v;
}

unsigned long long args_u64(const char *flag, const char *value) {
    if (value == NULL) tpmlp_die(TPMLP_EXIT_USAGE, "%s: missing value (expected an integer from 0 to 2^64-1)", flag);
    char *end;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    if (end == value || *end != '\0' || errno == ERANGE || value[0] == '-' || value[0] == '+')
        tpmlp_die(TPMLP_EXIT_USAGE, "%s: '%s' is not an integer from 0 to 2^64-1", flag, value);
    return v;
}

tpmlp_act args_act(const char *flag, const char *value) {
    tpmlp_act act;
    if (value == NULL || tpmlp_act_parse(value, &act) != 0)
        tpmlp_die(TPMLP_EXIT_USAGE, "%s: '%s' is not an activation (allowed: gelu, gelu_tanh, relu, silu)", flag,
                  value ? value : "(missing)");
    return act;
}

int args_shape_flag(tpmlp_shape_args *s, int argc, char **argv, int *i) {
    const char *f = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (strcmp(f, "--no-bias") == 0) /* (a flag: no value to consume) */
        return s->no_bias = 1, 1;
    if (strcmp(f, "--batch") == 0)
        s->batch = args_positive_int(f, v);
    else if (strcmp(f, "--seq") == 0)
        s->seq = args_positive_int(f, v);
    else if (strcmp(f, "--hidden") == 0)
        s->hidden = args_positive_int(f, v);
    else if (strcmp(f, "--ffn") == 0)
        s->ffn = args_positive_int(f, v);
    else if (strcmp(f, "--act") == 0)
        s->act = args_act(f, v);
    else if (strcmp(f, "--seed") == 0)
        s->seed = args_u64(f, v);
    else if (strcmp(f, "--threads") == 0)
        s->threads = args_positive_int(f, v);
    else
        return 0;
    *i += 1;
    return 1;
}

int args_shape_finish(tpmlp_shape_args *s) {
    if (s->ffn == 0) {
        if (s->hidden > INT_MAX / 4)
            tpmlp_die(TPMLP_EXIT_USAGE, "--ffn: default 4 × --hidden (%d) exceeds %d; give --ffn", s->hidden, INT_MAX);
        s->ffn = 4 * s->hidden;
    }
    long long n = (long long)s->batch * s->seq;
    if (n > INT_MAX)
        tpmlp_die(TPMLP_EXIT_USAGE, "--batch × --seq = %lld rows exceeds %d (the BLAS index limit)", n, INT_MAX);
    size_t bytes;
    int big = s->hidden > s->ffn ? s->hidden : s->ffn;
    if (tpmlp_mul3((size_t)n, (size_t)big, sizeof(double), &bytes) != 0 ||
        tpmlp_mul3((size_t)s->hidden, (size_t)s->ffn, sizeof(double), &bytes) != 0 || bytes > (size_t)PTRDIFF_MAX)
        tpmlp_die(TPMLP_EXIT_USAGE, "--batch/--seq/--hidden/--ffn: tensor sizes overflow (%d·%d rows, D=%d, F=%d)",
                  s->batch, s->seq, s->hidden, s->ffn);
    return (int)n;
}

int args_on_off(const char *flag, const char *value) {
    if (value && strcmp(value, "on") == 0) return 1;
    if (value && strcmp(value, "off") == 0) return 0;
    tpmlp_die(TPMLP_EXIT_USAGE, "%s: expected on or off, got '%s'", flag, value ? value : "nothing");
}

void args_share_str(char *buf, size_t len, double used) {
    const double pct = 100 * used;
    if (!isfinite(used))
        snprintf(buf, len, "NaN/Inf");
    else if (pct < 99999.95) /* "%.1f" would round it up to 100000.0 */
        snprintf(buf, len, "%.1f%%", pct);
    else if (isfinite(pct)) /* "2.1e+06%" to "1.8e+308%" */
        snprintf(buf, len, "%.1e%%", pct);
    else
        snprintf(buf, len, ">1e+308%%");
}

void args_apply_threads(const tpmlp_shape_args *s) {
    if (s->threads <= 0) return;
    openblas_set_num_threads(s->threads);
    omp_set_num_threads(s->threads);
}

int args_rank_flag(tpmlp_rank_args *r, int argc, char **argv, int *i) {
    const char *f = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (strcmp(f, "--tp") == 0)
        r->tp = args_positive_int(f, v);
    else if (strcmp(f, "--rank") == 0) {
        unsigned long long k = args_u64(f, v);
        if (k > INT_MAX) tpmlp_die(TPMLP_EXIT_USAGE, "--rank: '%s' is not a rank (0 to P-1)", v);
        r->rank = (int)k;
    } else if (strcmp(f, "--split") == 0) {
        if (v == NULL || tpmlp_split_parse(v, &r->split) != 0)
            tpmlp_die(TPMLP_EXIT_USAGE, "--split: expected balanced or chunk, got '%s'", v ? v : "nothing");
        r->split_given = 1;
    } else
        return 0;
    (*i)++;
    return 1;
}

void args_rank_finish(const tpmlp_rank_args *r, int need_rank) {
    if (r->tp && r->rank < 0 && need_rank)
        tpmlp_die(TPMLP_EXIT_USAGE, "--tp %d: give the rank too (--rank R, 0 to %d)", r->tp, r->tp - 1);
    if (!r->tp && r->rank >= 0)
        tpmlp_die(TPMLP_EXIT_USAGE, "--rank %d: give the number of ranks too (--tp P)", r->rank);
    if (!r->tp && r->split_given) tpmlp_die(TPMLP_EXIT_USAGE, "--split: only with --tp P");
    if (r->tp && r->rank >= r->tp)
        tpmlp_die(TPMLP_EXIT_USAGE, "--rank %d: out of range for --tp %d (0 to %d)", r->rank, r->tp, r->tp - 1);
}
