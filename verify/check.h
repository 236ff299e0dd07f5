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

/* The tensors check knows: the eight outputs of a vector file, and the two
 * partial sums a tensor-parallel rank holds before its all-reduces. */
typedef enum { C_H, C_A, C_Y, C_DX, C_DW1, C_DB1, C_DW2, C_DB2, C_YPART, C_DXPART, C_COUNT } tpmlp_check_id;
/* (C_H to C_DB2: the outputs of the step's list, step.h, in its order) */

typedef struct {
    const char *name;
    int vec; /* its tpmlp_vec_id in a vector file, -1 for the partial sums */
    const char *what;
} tpmlp_check_spec;
extern const tpmlp_check_spec tpmlp_check_specs[C_COUNT];

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
    int f0, f1; /* the rank's columns of F (0, F for whole outputs) */
    tpmlp_check_row rows[C_COUNT];
    int present, pass; /* how many tensors were checked; all of them pass */
} tpmlp_check_result;

/* Writes one rank's tensors as `check --tp p --rank r` reads them: t[i] is
 * tensor i (tpmlp_check_specs order) in its rank shape, or NULL to leave it
 * out. Returns 0, or -1 with a message in err. */
int tpmlp_check_write_rank(const char *path, const tpmlp_vec_dims *d, int p, int r, tpmlp_split s,
                           const float *const t[C_COUNT], char *err, size_t errlen);

/* Compares. Returns 0 (res filled), or -1 with a one-line message in err for
 * bad input: shapes that do not match, THEIRS being a vector file, THEIRS's
 * metadata naming other sizes, activation, seed or rank. dump (or NULL): a
 * safetensors file with, per tensor checked, NAME = |theirs - reference| /
 * bound and NAME.bound (F32). */
int tpmlp_check(tpmlp_check_result *res, const st_file *vec, const st_file *theirs, const tpmlp_check_opts *o,
                const char *dump, char *err, size_t errlen);

#endif
