/* Flag parsing shared by the tpmlp sub-commands. Bad values end the program
 * with one line naming the flag and what is allowed, exit code 2. Also the
 * one way their tables print a share of an error budget. */
#ifndef TPMLP_ARGS_H
#define TPMLP_ARGS_H

#include "mlp.h"
#include "vectors.h"

/* The shape flags every sub-command spells the same way. */
typedef struct {
    int batch, seq, hidden, ffn; /* ffn 0: not given (4·hidden) */
    tpmlp_act act;
    unsigned long long seed;
    int threads; /* 0: leave OpenBLAS/OpenMP defaults */
    int no_bias; /* --no-bias: layers without biases */
} tpmlp_shape_args;

#define TPMLP_EXIT_USAGE 2

/* The file -o names (flag), or dies (exit 2) when it is missing or names a folder. */
const char *args_output(const char *flag, const char *path);

/* Opens the safetensors file a command line names, or dies (exit 2) with the reader's one line. */
void args_open_or_die(st_file *f, const char *path);

/* A positive int (1..INT_MAX) for flag; dies on anything else. */
int args_positive_int(const char *flag, const char *value);
/* "on" 1 or "off" 0 for flag; dies on anything else. */
int args_on_off(const char *flag, const char *value);
unsigned long long args_u64(const char *flag, const char *value);
tpmlp_act args_act(const char *flag, const char *value);

/* If argv[*i] is one of the shape flags, consumes it and its value (advancing
 * *i) and returns 1; returns 0 for other arguments. */
int args_shape_flag(tpmlp_shape_args *s, int argc, char **argv, int *i);

/* Fills defaults (ffn = 4·hidden) and checks that N = batch·seq and the
 * tensor sizes fit; dies naming the flags otherwise. Returns N. */
int args_shape_finish(tpmlp_shape_args *s);

/* --tp P --rank R --split S, for gen and check (tp 0: not given). */
typedef struct {
    int tp, rank; /* 0, -1: not given */
    tpmlp_split split;
    int split_given;
} tpmlp_rank_args;
int args_rank_flag(tpmlp_rank_args *r, int argc, char **argv, int *i);
/* Checks the combination (dies naming the flag): --rank and --split need --tp;
 * --tp needs --rank if need_rank. */
void args_rank_finish(const tpmlp_rank_args *r, int need_rank);

/* Applies --threads to OpenBLAS and OpenMP. */
void args_apply_threads(const tpmlp_shape_args *s);

/* A share of an error budget (used = |err| / bound) as a table cell of at most
 * ARGS_SHARE_WIDTH characters, whatever its size: "12.3%", "99999.9%", then
 * "2.1e+06%" (never "2094618.9%", which pushes the columns after it), and
 * "NaN/Inf". Print it with "%*s", ARGS_SHARE_WIDTH. */
#define ARGS_SHARE_WIDTH 9
void args_share_str(char *buf, size_t len, double used);

#endif
