/* tpmlp check: another implementation's outputs against a vector file's
 * float64 reference, element by element, within the bounds of the one error
 * model (errmodel.h, docs/vectors.md). Whole outputs, or one tensor-parallel
 * rank's tensors (shard-shaped, plus the partial sums before the all-reduce). */
#ifndef TPMLP_CHECK_H
#define TPMLP_CHECK_H

#include <stdint.h>

#include "errmodel.h"
#include "safetensors.h"
#include "vectors.h"

/* The tensors check knows are the rows of the step's table (step.h) of
 * role OUT (the outputs of a vector file) and PART (the partial sums a
 * tensor-parallel rank holds before its all-reduces, checked per rank). */
int tpmlp_check_knows(tpmlp_vec_id id);

/* What THEIRS holds: tp = 0, the whole outputs of one process; tp = P and
 * rank = -1, the whole outputs of a P-way tensor-parallel run (y and dx then
 * carry the all-reduces' roundings); tp = P and rank = R, rank R's tensors. */
typedef struct {
    const tpmlp_format *fmt;
    int tp, rank;
    tpmlp_split split;
} tpmlp_check_opts;

typedef struct {
    int present;    /* THEIRS holds the tensor */
    st_dtype dtype; /* its dtype there */
    int ndim;       /* its shape there */
    uint64_t shape[ST_MAX_DIMS];
    uint64_t n;         /* elements */
    double max_abs_err; /* max |theirs - reference| */
    double used;        /* max |theirs - reference| / bound; INFINITY for NaN/Inf */
    uint64_t worst;     /* flat index (in THEIRS's shape) of the element using the most of its bound */
    double worst_got, worst_ref, worst_bound;
    double beta, beta_noise; /* a: the form test (errmodel.h); noise INFINITY where not run */
    int pass;
    char note[160]; /* why it failed, when the budget does not say it */
} tpmlp_check_row;

typedef struct {
    tpmlp_vec_dims dims;
    int f0, f1;                  /* the rank's columns of F (0, F for whole outputs) */
    tpmlp_check_row rows[V_ALL]; /* by the table's ids; only the tensors check knows are filled */
    int present, pass;           /* how many tensors were checked; all of them pass */
} tpmlp_check_result;

/* Writes one rank's tensors as `check --tp p --rank r` reads them: t[id] is
 * tensor id (the table's) in its rank shape, or NULL to leave it out; only
 * the tensors check knows that d's step has are written. Returns 0, or -1 with a message in err. */
int tpmlp_check_write_rank(const char *path, const tpmlp_vec_dims *d, int p, int r, tpmlp_split s,
                           const float *const t[V_ALL], char *err, size_t errlen);

/* Compares. Returns 0 (res filled), or -1 with a one-line message in err for
 * bad input: shapes that do not match, THEIRS being a vector file, THEIRS's
 * metadata naming other sizes, activation, seed or rank. dump (or NULL): a
 * safetensors file with, per tensor checked, NAME = |theirs - reference| /
 * bound and NAME.bound (F32). */
int tpmlp_check(tpmlp_check_result *res, const st_file *vec, const st_file *theirs, const tpmlp_check_opts *o,
                const char *dump, char *err, size_t errlen);

#endif
