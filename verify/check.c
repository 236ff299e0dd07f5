/* tpmlp check (check.h): the bounds come from errmodel.c; this file maps
 * THEIRS's tensors (whole, or one rank's) onto the reference and compares. */
#include "config.h"

#include "check.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bound.h"
#include "oracle.h"
#include "util.h"

int tpmlp_check_knows(tpmlp_vec_id id) {
    return tpmlp_vec_specs[id].role == TPMLP_ROLE_OUT || tpmlp_vec_specs[id].role == TPMLP_ROLE_PART;
}

/* The shape THEIRS must give tensor i: the table's, with F cut to the rank's block. */
static int expected_shape(tpmlp_vec_id i, const tpmlp_vec_dims *d, int fr, uint64_t shape[ST_MAX_DIMS]) {
    int nd = tpmlp_vec_shape(i, d, shape);
    if (tpmlp_step_f_axis(i) >= 0 && fr > 0) shape[tpmlp_step_f_axis(i)] = (uint64_t)fr;
    return nd;
}

/* The rank's block of tensor i (its columns [f0, f0 + fr) of F, the whole
 * tensor for fr = 0), as the table gives it. */
static tpmlp_block block_of(tpmlp_vec_id i, const tpmlp_vec_dims *d, int f0, int fr) {
    return tpmlp_step_block(i, d->B * d->T, d->D, d->F, fr > 0 ? f0 : 0, fr > 0 ? fr : d->F);
}

int tpmlp_check_write_rank(const char *path, const tpmlp_vec_dims *d, int p, int r, tpmlp_split s,
                           const float *const t[V_ALL], char *err, size_t errlen) {
    int f0, fr;
    if (tpmlp_split_check(s, d->F, p, r, err, errlen) != 0) return -1;
    tpmlp_split_slice(s, d->F, p, r, &f0, &fr);
    st_out out[V_ALL];
    int n = 0;
    for (int i = 0; i < V_ALL; i++)
        if (t[i] && tpmlp_check_knows((tpmlp_vec_id)i) && tpmlp_vec_has((tpmlp_vec_id)i, d)) {
            out[n] = (st_out){.name = tpmlp_vec_specs[i].name, .dtype = ST_F32, .data = t[i]};
            out[n].ndim = expected_shape((tpmlp_vec_id)i, d, fr, out[n].shape), n++;
        }
    tpmlp_meta m;
    tpmlp_vec_meta(&m, "tpmlp-mlp-rank-outputs", d);
    tpmlp_vec_meta_rank(&m, p, r, s, f0, f0 + fr);
    return st_write(path, out, n, m.keys, m.vals, m.n, err, errlen);
}

static void shape_str(char *buf, size_t len, const uint64_t *shape, int nd) {
    size_t at = (size_t)snprintf(buf, len, "(");
    for (int k = 0; k < nd && at < len; k++)
        at += (size_t)snprintf(buf + at, len - at, "%s%llu", k ? ", " : "", (unsigned long long)shape[k]);
    if (at < len) snprintf(buf + at, len - at, ")");
}

/* THEIRS must be outputs of the same case: refuse a vector file, and
 * metadata that names other sizes, activation, seed, or another rank. */
static int same_case(const st_file *theirs, const st_file *vec, const tpmlp_check_opts *o, char *err, size_t errlen) {
    const char *fmt = st_meta(theirs, "format");
    int inputs = 0; /* the inputs every step has (x, the weights, dy): a vector file holds them */
    for (int i = 0; i < V_FIRST_OUTPUT; i++)
        inputs += !tpmlp_vec_specs[i].bias && st_find(theirs, tpmlp_vec_specs[i].name);
    if ((fmt && strcmp(fmt, TPMLP_FORMAT_NAME) == 0) || inputs > 0)
        return snprintf(err, errlen, "%s: is a vector file (it holds the inputs); THEIRS must hold your outputs",
                        theirs->path),
               -1;
    const char *keys[] = {"B", "T", "D", "F", "activation", "seed", "bias"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const char *t = st_meta(theirs, keys[i]), *v = st_meta(vec, keys[i]);
        if (strcmp(keys[i], "bias") == 0 && (t || fmt)) /* in a file tpmlp wrote, absent is with biases (1) */
            t = t ? t : "1", v = v ? v : "1";
        if (t && v && strcmp(t, v) != 0)
            return snprintf(err, errlen, "%s: __metadata__ %s = '%s', but %s was made with %s = '%s'", theirs->path,
                            keys[i], t, vec->path, keys[i], v),
                   -1;
    }
    char want[24];
    const char *tp = st_meta(theirs, "tp"), *rank = st_meta(theirs, "rank");
    if (tp && o->tp == 0)
        return snprintf(err, errlen, "%s: holds %s%s of --tp %s: check it with --tp %s%s%s", theirs->path,
                        rank ? "rank " : "the outputs", rank ? rank : "", tp, tp, rank ? " --rank " : "",
                        rank ? rank : ""),
               -1;
    snprintf(want, sizeof want, "%d", o->tp);
    if (tp && strcmp(tp, want) != 0)
        return snprintf(err, errlen, "%s: __metadata__ tp = '%s', but --tp %d was given", theirs->path, tp, o->tp), -1;
    snprintf(want, sizeof want, "%d", o->rank);
    if (rank && o->rank >= 0 && strcmp(rank, want) != 0)
        return snprintf(err, errlen, "%s: __metadata__ rank = '%s', but --rank %d was given", theirs->path, rank,
                        o->rank),
               -1;
    if (rank && o->rank < 0)
        return snprintf(err, errlen, "%s: holds rank %s of --tp %s alone: check it with --tp %s --rank %s",
                        theirs->path, rank, tp, tp, rank),
               -1;
    const char *split = st_meta(theirs, "split");
    if (split && o->rank >= 0 && strcmp(split, tpmlp_split_name(o->split)) != 0)
        return snprintf(err, errlen, "%s: __metadata__ split = '%s', but the check uses --split %s", theirs->path,
                        split, tpmlp_split_name(o->split)),
               -1;
    return 0;
}

/* The largest share of its bound an element of THEIRS uses in one tensor,
 * and the largest |error|: what one thread finds, then all of them. The
 * first element wins among equal shares; NaN or Inf is an infinite share.
 * num, den: the form test's sums (a). */
typedef struct {
    double used, err, num, den;
    uint64_t worst;
    double worst_ref, worst_bound;
} cmp_acc;

static void cmp_init(cmp_acc *c) {
    *c = (cmp_acc){.used = -1, .worst = UINT64_MAX}; /* -1: the first element compared takes it */
}

static void cmp_merge(cmp_acc *into, const cmp_acc *c) {
    if (c->used > into->used || (c->used == into->used && c->worst < into->worst))
        into->used = c->used, into->worst = c->worst, into->worst_ref = c->worst_ref,
        into->worst_bound = c->worst_bound;
    if (c->err > into->err) into->err = c->err;
    into->num += c->num, into->den += c->den;
}

/* x86-64: the compare loop is built for AVX-512, AVX2 and baseline SSE2,
 * one picked at load time (as act.c's); a max does not depend on the order. */
#if defined(__x86_64__) && defined(__GNUC__)
#define CHECK_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CHECK_CLONES
#endif

/* e and q of m elements (tpmlp_share, bound.h: the one comparison), and *qmax, *emax the largest share and
 * |e|; got float64 (span_q_f64) or float32 (span_q_f32): one body, two
 * element types, each loop vectorised for its own. */
#define SPAN_Q(name, T)                                                                                                \
    CHECK_CLONES static void name(double *restrict e, double *restrict q, const T *restrict got,                       \
                                  const double *restrict ref, const double *restrict bound, size_t m, double *qmax,    \
                                  double *emax) {                                                                      \
        double qm = 0, em = 0;                                                                                         \
        _Pragma("omp simd reduction(max : qm, em)") for (size_t i = 0; i < m; i++) {                                   \
            double ae;                                                                                                 \
            q[i] = tpmlp_share(got[i], ref[i], bound[i], &e[i], &ae);                                                  \
            qm = q[i] > qm ? q[i] : qm, em = ae > em ? ae : em;                                                        \
        }                                                                                                              \
        *qmax = qm, *emax = em;                                                                                        \
    }
SPAN_Q(span_q_f64, double)
SPAN_Q(span_q_f32, float)
#undef SPAN_Q

/* Elements k0 .. k0 + m - 1 of THEIRS's tensor t against their reference and
 * bound. buf (3m): THEIRS's values where they are not float32 in place, the
 * errors (returned) and the shares. For --dump ratio and bnd (or NULL) get
 * each element's share and bound. Elements come in increasing order per
 * thread. */
static const double *cmp_span(cmp_acc *c, const st_file *theirs, const st_tensor *t, uint64_t k0, size_t m,
                              const double *ref, const double *bound, double *buf, float *ratio, float *bnd) {
    double *got = buf, *e = buf + m, *q = e + m, qm, em;
    st_tensor part = *t;
    part.numel = m, part.begin = t->begin + (size_t)k0 * st_dtype_size(t->dtype);
    const void *p = st_data(theirs, &part);
    if (t->dtype == ST_F32 && (uintptr_t)p % sizeof(float) == 0) /* (the usual case: read in place) */
        span_q_f32(e, q, p, ref, bound, m, &qm, &em);
    else
        st_to_f64(theirs, &part, got), span_q_f64(e, q, got, ref, bound, m, &qm, &em);
    if (qm > c->used) { /* rarely: the first element of the largest share */
        size_t i = 0;
        while (q[i] != qm) i++;
        c->used = qm, c->worst = k0 + i, c->worst_ref = ref[i], c->worst_bound = bound[i];
    }
    if (em > c->err) c->err = em;
    if (ratio)
        for (size_t i = 0; i < m; i++) ratio[k0 + i] = (float)q[i], bnd[k0 + i] = (float)bound[i];
    return e;
}

/* (every tensor has an element: the dims are at least 1, so c->worst is one) */
static void cmp_finish(tpmlp_check_row *r, const st_file *theirs, const st_tensor *t, const cmp_acc *c) {
    r->used = c->used, r->max_abs_err = c->err, r->worst = c->worst;
    r->worst_ref = c->worst_ref, r->worst_bound = c->worst_bound;
    st_tensor one = *t;
    one.numel = 1, one.begin = t->begin + (size_t)c->worst * st_dtype_size(t->dtype);
    st_to_f64(theirs, &one, &r->worst_got);
    r->pass = c->used <= 1.0;
}

/* |theirs - ref| / bound over the elements of THEIRS's tensor t, read in
 * parallel chunks; NaN or Inf never passes. Per element the ratio and the
 * bound for --dump (ratio, bnd). */
static void compare(tpmlp_check_row *r, const st_file *theirs, const st_tensor *t, const double *ref,
                    const double *bound, float *ratio, float *bnd) {
    const uint64_t chunk = 1 << 14, nchunks = (t->numel + chunk - 1) / chunk;
    const int nt = omp_get_max_threads();
    cmp_acc *acc = tpmlp_alloc((size_t)nt, sizeof *acc, "comparison"), all;
    for (int q = 0; q < nt; q++) cmp_init(&acc[q]);
#pragma omp parallel
    {
        cmp_acc *mine = &acc[omp_get_thread_num()];
        double *buf = tpmlp_alloc(3 * chunk, sizeof *buf, "theirs");
#pragma omp for schedule(static)
        for (uint64_t c = 0; c < nchunks; c++) {
            const uint64_t k0 = c * chunk, m = t->numel - k0 < chunk ? t->numel - k0 : chunk;
            cmp_span(mine, theirs, t, k0, (size_t)m, ref + k0, bound + k0, buf, ratio, bnd);
        }
        free(buf);
    }
    cmp_init(&all);
    for (int q = 0; q < nt; q++) cmp_merge(&all, &acc[q]);
    free(acc);
    cmp_finish(r, theirs, t, &all);
}

/* The tensors of THEIRS are compared row by row as their bounds are found
 * (errmodel.h's row function); db1 and db2, from their arrays. A rank's
 * tensor holds its block (tpmlp_step_block): of row r of the whole tensor,
 * the columns [c0, c1) if r is one of the block's rows [r0, r1). */
typedef struct {
    const st_tensor *t; /* THEIRS's tensor, or NULL */
    const double *ref;  /* the reference, full shape */
    tpmlp_block blk;    /* the rank's block, or the whole tensor */
    float *ratio, *bnd; /* --dump, or NULL */
} row_stream;

typedef struct {
    const st_file *theirs;
    const double *h; /* the reference h: the form test's */
    tpmlp_act act;
    int form; /* the form test on a */
    row_stream s[V_ALL];
    cmp_acc *acc; /* [thread · V_ALL + which] */
    double *buf;  /* per thread 3·bufw: cmp_span's */
    size_t bufw;
} row_check;

static void check_row(void *ctx, int thread, tpmlp_vec_id which, int r, const double *bound, const float *a32) {
    row_check *c = ctx;
    const row_stream *s = &c->s[which];
    const tpmlp_block *b = &s->blk;
    if (s->t == NULL || (size_t)r < b->r0 || (size_t)r >= b->r1) return;
    const size_t m = b->c1 - b->c0, off = b->c0, at = (size_t)r * b->cols + off;
    const uint64_t k0 = (uint64_t)((size_t)r - b->r0) * m;
    cmp_acc *acc = &c->acc[(size_t)thread * V_ALL + which];
    const double *e = cmp_span(acc, c->theirs, s->t, k0, m, s->ref + at, bound + off,
                               c->buf + (size_t)thread * 3 * c->bufw, s->ratio, s->bnd);
    if (which == V_A && c->form)
        tpmlp_err_form_sums(c->act, c->h + at, a32 + off, e, bound + off, m, &acc->num, &acc->den);
}

/* The partial references of every rank: the rank's own, and Σ_r |·| for the all-reduce's roundings. */
static void partials(tpmlp_err_tp *tp, double **keep, const tpmlp_err_inputs *in, const tpmlp_check_opts *o) {
    const size_t nd = (size_t)in->N * in->D;
    double *ysum = tpmlp_alloc(nd, sizeof(double), "Σ|Y_r|"), *dxsum = tpmlp_alloc(nd, sizeof(double), "Σ|dX_r|");
    double *yr = tpmlp_alloc(nd, sizeof(double), "Y_r"), *dxr = tpmlp_alloc(nd, sizeof(double), "dX_r");
    double *yq = tpmlp_alloc(nd, sizeof(double), "Y_q"), *dxq = tpmlp_alloc(nd, sizeof(double), "dX_q");
    memset(ysum, 0, nd * sizeof *ysum), memset(dxsum, 0, nd * sizeof *dxsum);
    double *dy = tpmlp_widen(in->dy, nd, "dy"), *w1 = tpmlp_widen(in->w1, (size_t)in->F * in->D, "w1"),
           *w2 = tpmlp_widen(in->w2, (size_t)in->F * in->D, "w2");
    for (int q = 0; q < o->tp; q++) {
        int f0, fr;
        if (tpmlp_split_slice(o->split, in->F, o->tp, q, &f0, &fr) != 0) continue;
        tpmlp_oracle_partial_sums(yq, dxq, dy, w1, w2, in->h, in->a, in->N, in->D, in->F, f0, f0 + fr, in->act);
        for (size_t k = 0; k < nd; k++) ysum[k] += fabs(yq[k]), dxsum[k] += fabs(dxq[k]);
        if (q == o->rank) memcpy(yr, yq, nd * sizeof *yr), memcpy(dxr, dxq, nd * sizeof *dxr);
    }
    if (o->rank < 0) free(yr), free(dxr), yr = dxr = NULL; /* whole outputs: no partial of their own */
    free(yq), free(dxq), free(dy), free(w1), free(w2);
    tp->p = o->tp, tp->ysum = ysum, tp->dxsum = dxsum, tp->yr = yr, tp->dxr = dxr;
    keep[0] = ysum, keep[1] = dxsum, keep[2] = yr, keep[3] = dxr;
}

/* The form test on a: fails if a holds the other GELU form, where the data can tell. */
static void form_verdict(tpmlp_check_row *r, tpmlp_act act, double num, double den) {
    r->beta = tpmlp_err_form_beta(num, den, &r->beta_noise);
    const char *other = act == TPMLP_GELU ? "gelu_tanh" : "erf gelu";
    if (r->beta_noise < 0.5 && r->beta > 0.5) { /* said whether or not a's budget caught it too */
        r->pass = 0;
        snprintf(r->note, sizeof r->note,
                 "a is the %s form: it holds %.0f%% of the difference (a correct one: ±%.0f%%)", other, 100 * r->beta,
                 100 * r->beta_noise);
    } else if (r->beta_noise >= 0.5 && r->pass)
        snprintf(r->note, sizeof r->note,
                 "the form test cannot tell %s from %s here (±%.0f%%): too few elements of a at this dtype",
                 tpmlp_act_name(act), other, 100 * r->beta_noise);
}

static int write_dump(const char *dump, const tpmlp_check_result *res, float *ratio[V_ALL], float *bnd[V_ALL],
                      char *err, size_t errlen) {
    st_out out[2 * V_ALL];
    char names[V_ALL][64];
    int n = 0;
    for (int i = 0; i < V_ALL; i++) {
        if (!res->rows[i].present) continue;
        snprintf(names[i], sizeof names[i], "%s.bound", tpmlp_vec_specs[i].name);
        out[n] = (st_out){.name = tpmlp_vec_specs[i].name, .dtype = ST_F32, .data = ratio[i]};
        out[n].ndim = res->rows[i].ndim, memcpy(out[n].shape, res->rows[i].shape, sizeof out[n].shape);
        out[n + 1] = out[n], out[n + 1].name = names[i], out[n + 1].data = bnd[i], n += 2;
    }
    const char *mk[] = {"format"}, *mv[] = {"tpmlp-check-dump: NAME = |theirs - reference| / bound, NAME.bound"};
    return st_write(dump, out, n, mk, mv, 1, err, errlen);
}

/* The vector file holds every tensor of its kind (inputs F32, outputs F64);
 * THEIRS belongs to the same case, and every tensor check knows that it
 * holds has the expected shape (a rank's block when o names a rank): res's
 * dims, rank columns and present rows filled, *fr the rank's width of F (0:
 * whole outputs). 0, or -1 with one line in err. */
static int check_files(tpmlp_check_result *res, const st_file *vec, const st_file *theirs, const tpmlp_check_opts *o,
                       int *fr, char *err, size_t errlen) {
    tpmlp_vec_dims *dm = &res->dims;
    if (tpmlp_vec_read_dims(vec, dm, err, errlen) != 0) return -1;
    for (int i = 0; i < V_COUNT; i++) {
        const st_tensor *t = st_find(vec, tpmlp_vec_specs[i].name);
        st_dtype want = i < V_FIRST_OUTPUT ? ST_F32 : ST_F64;
        if (!tpmlp_vec_has((tpmlp_vec_id)i, dm)) { /* not in this step (no biases) */
            if (t)
                return snprintf(err, errlen, "%s: holds '%s', but its __metadata__ says bias = 0 (no biases)",
                                vec->path, t->name),
                       -1;
            continue;
        }
        if (t == NULL || t->dtype != want)
            return snprintf(err, errlen, "%s: tensor '%s' %s (a vector file holds it as %s)", vec->path,
                            tpmlp_vec_specs[i].name, t ? "has the wrong dtype" : "is missing", st_dtype_name(want)),
                   -1;
    }
    if (same_case(theirs, vec, o, err, errlen) != 0) return -1;
    *fr = 0;
    res->f0 = 0, res->f1 = dm->F;
    if (o->tp && tpmlp_split_check(o->split, dm->F, o->tp, o->rank, err, errlen) != 0) return -1;
    if (o->tp && o->rank >= 0) {
        tpmlp_split_slice(o->split, dm->F, o->tp, o->rank, &res->f0, fr);
        res->f1 = res->f0 + *fr;
    }
    for (int i = 0; i < V_ALL; i++) {
        tpmlp_check_row *r = &res->rows[i];
        r->beta_noise = INFINITY;
        if (!tpmlp_check_knows((tpmlp_vec_id)i)) continue;
        const st_tensor *t = st_find(theirs, tpmlp_vec_specs[i].name);
        if (t && !tpmlp_vec_has((tpmlp_vec_id)i, dm))
            return snprintf(err, errlen,
                            "%s: holds '%s', but %s is a step without biases (bias = 0): its layers have none",
                            theirs->path, t->name, vec->path),
                   -1;
        if (t == NULL || (tpmlp_vec_specs[i].role == TPMLP_ROLE_PART && *fr == 0)) continue; /* partials: per rank */
        r->ndim = expected_shape((tpmlp_vec_id)i, dm, *fr, r->shape);
        int same = t->ndim == r->ndim;
        for (int k = 0; same && k < t->ndim; k++) same = t->shape[k] == r->shape[k];
        if (!same) {
            char want[96], got[96];
            shape_str(want, sizeof want, r->shape, r->ndim), shape_str(got, sizeof got, t->shape, t->ndim);
            return snprintf(err, errlen, "%s: tensor '%s' has shape %s; expected %s (B=%d T=%d D=%d F=%d%s)",
                            theirs->path, t->name, got, want, dm->B, dm->T, dm->D, dm->F,
                            *fr ? ", the rank's block of F" : ""),
                   -1;
        }
        r->present = 1, r->dtype = t->dtype, r->n = t->numel, res->present++;
    }
    return 0;
}

static void *zeroed(size_t n, size_t es) { return memset(tpmlp_alloc(n, es, "zeros"), 0, n * es); }

/* The row streams of the present ROWS tensors, their accumulators and buffers. */
static void rows_setup(row_check *rc, const tpmlp_check_result *res, const st_file *theirs, const double *h,
                       const double *const ref_of[V_ALL], float *const ratio[V_ALL], float *const bnd[V_ALL], int fr) {
    const tpmlp_vec_dims *dm = &res->dims;
    const int nt = omp_get_max_threads();
    *rc = (row_check){.theirs = theirs, .h = h, .act = dm->act};
    rc->form = res->rows[V_A].present && tpmlp_err_has_form_test(dm->act);
    rc->bufw = (size_t)(dm->F > dm->D ? dm->F : dm->D);
    for (int i = 0; i < V_ALL; i++) {
        if (tpmlp_vec_specs[i].bound != TPMLP_BOUND_ROWS || !res->rows[i].present) continue;
        row_stream *st = &rc->s[i];
        st->t = st_find(theirs, tpmlp_vec_specs[i].name), st->ratio = ratio[i], st->bnd = bnd[i];
        st->ref = ref_of[i], st->blk = block_of((tpmlp_vec_id)i, dm, res->f0, fr);
    }
    rc->acc = tpmlp_alloc((size_t)nt * V_ALL, sizeof *rc->acc, "comparison");
    for (int q = 0; q < nt * V_ALL; q++) cmp_init(&rc->acc[q]);
    rc->buf = tpmlp_alloc(3 * (size_t)nt * rc->bufw, sizeof(double), "theirs");
}

/* Each present tensor's verdict: a ROWS tensor's from the threads' findings,
 * an ARRAY tensor's (db1, db2) compared now against the rank's block of its
 * reference and bounds b. */
static void rows_finish(tpmlp_check_result *res, const row_check *rc, const st_file *theirs,
                        const double *const ref_of[V_ALL], const tpmlp_err_bounds *b, float *const ratio[V_ALL],
                        float *const bnd_dump[V_ALL], int fr) {
    const int nt = omp_get_max_threads();
    for (int i = 0; i < V_ALL; i++) {
        tpmlp_check_row *r = &res->rows[i];
        if (!r->present) continue;
        if (tpmlp_vec_specs[i].bound == TPMLP_BOUND_ROWS) {
            cmp_acc all;
            cmp_init(&all);
            for (int q = 0; q < nt; q++) cmp_merge(&all, &rc->acc[(size_t)q * V_ALL + i]);
            cmp_finish(r, theirs, rc->s[i].t, &all);
            if (i == V_A && rc->form) form_verdict(r, res->dims.act, all.num, all.den);
        } else {
            const tpmlp_block blk = block_of((tpmlp_vec_id)i, &res->dims, res->f0, fr);
            double *ref = tpmlp_alloc(r->n, sizeof *ref, "the rank's block"),
                   *bnd = tpmlp_alloc(r->n, sizeof *bnd, "the rank's block");
            tpmlp_block_take(ref, ref_of[i], &blk, sizeof *ref), tpmlp_block_take(bnd, b->of[i], &blk, sizeof *bnd);
            compare(r, theirs, st_find(theirs, tpmlp_vec_specs[i].name), ref, bnd, ratio[i], bnd_dump[i]);
            free(ref), free(bnd);
        }
        res->pass &= r->pass;
    }
}

int tpmlp_check(tpmlp_check_result *res, const st_file *vec, const st_file *theirs, const tpmlp_check_opts *o,
                const char *dump, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    int fr;
    if (check_files(res, vec, theirs, o, &fr, err, errlen) != 0) return -1;
    res->pass = res->present > 0;
    if (res->present == 0) return 0;

    /* the model's inputs, aligned copies where the file does not align them;
     * a step without biases has zeros for them and their gradients */
    const void *view[V_COUNT];
    void *zeros[V_COUNT] = {0};
    for (int i = 0; i < V_COUNT; i++) {
        const size_t es = i < V_FIRST_OUTPUT ? sizeof(float) : sizeof(double);
        if (tpmlp_vec_has((tpmlp_vec_id)i, &res->dims))
            view[i] = st_aligned(vec, st_find(vec, tpmlp_vec_specs[i].name));
        else
            view[i] = zeros[i] = zeroed(tpmlp_vec_numel((tpmlp_vec_id)i, &res->dims), es);
    }
    const tpmlp_err_inputs in =
        tpmlp_err_inputs_of(res->dims.B * res->dims.T, res->dims.D, res->dims.F, res->dims.act, view);
    tpmlp_err_tp tp = {0};
    double *keep[4] = {NULL, NULL, NULL, NULL};
    if (o->tp) { /* the all-reduces' roundings; and for one rank, its partial sums */
        tpmlp_progress("check: partial sums of the ranks", 1, 2);
        partials(&tp, keep, &in, o);
        tp.f0 = res->f0, tp.f1 = res->f1;
    }
    const double *ref_of[V_ALL] = {[V_YPART] = tp.yr, [V_DXPART] = tp.dxr}; /* the references, full shapes */
    for (int i = V_FIRST_OUTPUT; i < V_COUNT; i++) ref_of[i] = view[i];
    float *ratio[V_ALL] = {0}, *bnd_dump[V_ALL] = {0};
    for (int i = 0; i < V_ALL; i++)
        if (dump && res->rows[i].present)
            ratio[i] = tpmlp_alloc(res->rows[i].n, sizeof(float), "dump"),
            bnd_dump[i] = tpmlp_alloc(res->rows[i].n, sizeof(float), "dump");

    /* the bounds, and the tensors compared row by row as their bounds are found */
    row_check rc_rows;
    rows_setup(&rc_rows, res, theirs, view[V_H], ref_of, ratio, bnd_dump, fr);
    tpmlp_err_bounds b;
    tpmlp_progress("check: error bounds and comparison", o->tp ? 2 : 1, o->tp ? 2 : 1);
    tpmlp_err_bounds_compute(&b, &in, o->fmt, o->tp ? &tp : NULL, o->fmt->u_in > 0, check_row, &rc_rows);
    rows_finish(res, &rc_rows, theirs, ref_of, &b, ratio, bnd_dump, fr);
    free(rc_rows.acc), free(rc_rows.buf);
    tpmlp_progress_done();
    int rc = dump ? write_dump(dump, res, ratio, bnd_dump, err, errlen) : 0;
    for (int i = 0; i < V_ALL; i++) free(ratio[i]), free(bnd_dump[i]);
    tpmlp_err_free(&b);
    for (int i = 0; i < 4; i++) free(keep[i]);
    for (int i = 0; i < V_COUNT; i++)
        if (zeros[i])
            free(zeros[i]);
        else
            st_release(vec, view[i]);
    return rc;
}
