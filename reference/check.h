/* tpmlp check: another implementation's outputs against a vector file's
 * float64 reference, element by element, within a bound from rounding-error
 * analysis (the model is described in check.c and docs/vectors.md). */
#ifndef TPMLP_CHECK_H
#define TPMLP_CHECK_H

#include <stdint.h>

#include "safetensors.h"
#include "vectors.h"

#define TPMLP_CHECK_OUTPUTS (V_COUNT - V_FIRST_OUTPUT)

typedef struct {
    tpmlp_vec_id id;
    int present;        /* THEIRS holds the tensor */
    st_dtype dtype;     /* its dtype there */
    uint64_t n;         /* elements */
    double max_abs_err; /* max |theirs - reference| */
    double used;        /* max |theirs - reference| / bound; INFINITY for NaN/Inf */
    uint64_t worst;     /* flat index of the element using the most of its bound */
    double worst_got, worst_ref, worst_bound;
    int pass;
} tpmlp_check_row;

/* u of a --dtype name (fp32, tf32, bf16, fp16); -1 if unknown. */
double tpmlp_dtype_u(const char *name);

/* Compares. Returns 0 (rows filled), or -1 with a one-line message in err for
 * bad input (shapes that do not match, a vector file without its reference). */
int tpmlp_check(tpmlp_check_row rows[TPMLP_CHECK_OUTPUTS], const st_file *vec, const st_file *theirs, double u,
                char *err, size_t errlen);

/* The same, also writing to dump (if not NULL) a safetensors file with, per
 * output present, NAME = |theirs - reference| / bound and NAME.bound (F32). */
int tpmlp_check_dump(tpmlp_check_row rows[TPMLP_CHECK_OUTPUTS], const st_file *vec, const st_file *theirs, double u,
                     const char *dump, char *err, size_t errlen);

#endif
