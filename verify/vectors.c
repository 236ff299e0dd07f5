#include "config.h"

#include "vectors.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oracle.h"
#include "util.h"

static uint64_t dim_of(char c, const tpmlp_vec_dims *d) {
    return c == 'B' ? (uint64_t)d->B : c == 'T' ? (uint64_t)d->T : c == 'D' ? (uint64_t)d->D : (uint64_t)d->F;
}

int tpmlp_vec_shape(tpmlp_vec_id id, const tpmlp_vec_dims *d, uint64_t shape[ST_MAX_DIMS]) {
    int n = (int)strlen(tpmlp_vec_specs[id].dims);
    for (int i = 0; i < n; i++) shape[i] = dim_of(tpmlp_vec_specs[id].dims[i], d);
    return n;
}

uint64_t tpmlp_vec_numel(tpmlp_vec_id id, const tpmlp_vec_dims *d) {
    uint64_t shape[ST_MAX_DIMS], n = 1;
    int nd = tpmlp_vec_shape(id, d, shape);
    for (int i = 0; i < nd; i++) n *= shape[i];
    return n;
}

/* ---------------------------------------------------------------- inputs */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int tpmlp_vec_has(tpmlp_vec_id id, const tpmlp_vec_dims *d) { return !(tpmlp_vec_specs[id].bias && d->no_bias); }

float tpmlp_vec_input(tpmlp_vec_id id, const tpmlp_vec_dims *d, uint64_t row, uint64_t col) {
    if (!tpmlp_vec_has(id, d)) return 0.0f; /* a step without biases computes as with zeros */
    /* a hash of (seed, tensor, row, col): counter-based, so shards need no shared state */
    uint64_t h = mix64(d->seed + 0x9e3779b97f4a7c15ULL * (uint64_t)(id + 1));
    h = mix64(h ^ (row * 0xd1b54a32d192ed03ULL));
    h = mix64(h ^ (col * 0x8cb92ba72f3d8dd7ULL + 0x632be59bd9b4e019ULL));
    float u = (float)(h >> 40) * 0x1p-23f - 1.0f; /* 24 random bits: [-1, 1), exact */
    float scale;
    switch (id) {
    case V_X:
    case V_DY: scale = 1.7320508f; break; /* √3: unit variance */
    case V_W1:
    case V_B1: scale = 1.0f / sqrtf((float)d->D); break; /* sqrtf and / are correctly rounded */
    default: scale = 1.0f / sqrtf((float)d->F); break;
    }
    return u * scale;
}

void tpmlp_vec_fill(float *out, tpmlp_vec_id id, const tpmlp_vec_dims *d, uint64_t r0, uint64_t r1, uint64_t c0,
                    uint64_t c1) {
    for (uint64_t r = r0; r < r1; r++)
        for (uint64_t c = c0; c < c1; c++) out[(r - r0) * (c1 - c0) + (c - c0)] = tpmlp_vec_input(id, d, r, c);
}

void tpmlp_mlp32_random_inputs(tpmlp_mlp32 *t, unsigned long long seed) {
    const tpmlp_vec_dims d = {.B = 1, .T = t->N, .D = t->D, .F = t->F, .act = t->act, .seed = seed};
    tpmlp_vec_fill_inputs(t, &d);
}

/* Input tensor id, whole: the block of a rank that holds all of F. */
static void fill_whole(float *out, tpmlp_vec_id id, const tpmlp_vec_dims *d) {
    const tpmlp_block b = tpmlp_step_block(id, d->B * d->T, d->D, d->F, 0, d->F);
    tpmlp_vec_fill(out, id, d, b.r0, b.r1, b.c0, b.c1);
}

void tpmlp_vec_fill_inputs(tpmlp_mlp32 *t, const tpmlp_vec_dims *d) {
    for (int i = 0; i < V_FIRST_OUTPUT; i++) fill_whole(tpmlp_mlp32_tensor(t, (tpmlp_vec_id)i), (tpmlp_vec_id)i, d);
}

/* ---------------------------------------------------------------- files */

static void meta_add(tpmlp_meta *m, const char *key, const char *val) {
    if (m->n >= TPMLP_META_MAX) tpmlp_die(1, "metadata: more than %d keys (at '%s')", TPMLP_META_MAX, key);
    m->keys[m->n] = key, m->vals[m->n++] = val;
}
static void meta_num(tpmlp_meta *m, const char *key, long long v) {
    snprintf(m->buf[m->n], sizeof m->buf[m->n], "%lld", v);
    meta_add(m, key, m->buf[m->n]);
}

void tpmlp_vec_meta(tpmlp_meta *m, const char *format, const tpmlp_vec_dims *d) {
    m->n = 0;
    meta_add(m, "format", format), meta_add(m, "format_version", TPMLP_FORMAT_VERSION);
    meta_num(m, "B", d->B), meta_num(m, "T", d->T), meta_num(m, "D", d->D), meta_num(m, "F", d->F);
    meta_add(m, "activation", tpmlp_act_name(d->act));
    if (d->no_bias) meta_add(m, "bias", "0");
    snprintf(m->buf[m->n], sizeof m->buf[m->n], "%llu", d->seed), meta_add(m, "seed", m->buf[m->n]);
    meta_add(m, "generator_version", TPMLP_GENERATOR_VERSION);
}

void tpmlp_vec_meta_rank(tpmlp_meta *m, int p, int r, tpmlp_split s, int f0, int f1) {
    meta_num(m, "tp", p), meta_num(m, "rank", r), meta_add(m, "split", tpmlp_split_name(s));
    meta_num(m, "f0", f0), meta_num(m, "f1", f1);
}

int tpmlp_vec_generate_rank(const char *path, const tpmlp_vec_dims *d, int p, int r, tpmlp_split s, char *err,
                            size_t errlen) {
    int f0, fr;
    if (tpmlp_split_check(s, d->F, p, r, err, errlen) != 0) return -1;
    tpmlp_split_slice(s, d->F, p, r, &f0, &fr);
    float *buf[V_FIRST_OUTPUT];
    st_out out[V_FIRST_OUTPUT];
    int n = 0;
    for (int i = 0; i < V_FIRST_OUTPUT; i++) { /* each input's block (the whole tensor when replicated) */
        if (!tpmlp_vec_has((tpmlp_vec_id)i, d)) continue;
        const tpmlp_block b = tpmlp_step_block((tpmlp_vec_id)i, d->B * d->T, d->D, d->F, f0, fr);
        out[n] = (st_out){.name = tpmlp_vec_specs[i].name, .dtype = ST_F32};
        out[n].ndim = tpmlp_vec_shape((tpmlp_vec_id)i, d, out[n].shape);
        if (tpmlp_step_f_axis((tpmlp_vec_id)i) >= 0) out[n].shape[tpmlp_step_f_axis((tpmlp_vec_id)i)] = (uint64_t)fr;
        out[n].data = buf[n] = tpmlp_alloc(tpmlp_block_numel(&b), sizeof(float), tpmlp_vec_specs[i].name);
        tpmlp_vec_fill(buf[n], (tpmlp_vec_id)i, d, b.r0, b.r1, b.c0, b.c1);
        n++;
    }
    tpmlp_meta m;
    tpmlp_vec_meta(&m, "tpmlp-mlp-rank-inputs", d);
    tpmlp_vec_meta_rank(&m, p, r, s, f0, f0 + fr);
    int rc = st_write(path, out, n, m.keys, m.vals, m.n, err, errlen);
    for (int i = 0; i < n; i++) free(buf[i]);
    return rc;
}

int tpmlp_vec_generate(const char *path, const tpmlp_vec_dims *d, char *err, size_t errlen) {
    const int N = d->B * d->T;
    void *buf[V_COUNT];
    st_out out[V_COUNT];
    int n = 0; /* the tensors of d's step go into the file (without biases: none of theirs) */
    for (int i = 0; i < V_COUNT; i++) {
        size_t es = i < V_FIRST_OUTPUT ? sizeof(float) : sizeof(double);
        buf[i] = tpmlp_alloc(tpmlp_vec_numel((tpmlp_vec_id)i, d), es, tpmlp_vec_specs[i].name);
        if (!tpmlp_vec_has((tpmlp_vec_id)i, d)) continue;
        out[n] =
            (st_out){.name = tpmlp_vec_specs[i].name, .dtype = i < V_FIRST_OUTPUT ? ST_F32 : ST_F64, .data = buf[i]};
        out[n].ndim = tpmlp_vec_shape((tpmlp_vec_id)i, d, out[n].shape), n++;
    }
    /* inputs: x, dy as (N, D); weights (out, in); biases one row */
    for (int i = 0; i < V_FIRST_OUTPUT; i++) fill_whole(buf[i], (tpmlp_vec_id)i, d);
    double *in64[V_FIRST_OUTPUT];
    for (int i = 0; i < V_FIRST_OUTPUT; i++)
        in64[i] = tpmlp_widen(buf[i], tpmlp_vec_numel((tpmlp_vec_id)i, d), tpmlp_vec_specs[i].name);
    tpmlp_oracle_step(buf[V_H], buf[V_A], buf[V_Y], buf[V_DX], buf[V_DW1], buf[V_DB1], buf[V_DW2], buf[V_DB2],
                      in64[V_X], in64[V_W1], in64[V_B1], in64[V_W2], in64[V_B2], in64[V_DY], N, d->D, d->F, d->act);
    for (int i = 0; i < V_FIRST_OUTPUT; i++) free(in64[i]);
    tpmlp_meta m;
    tpmlp_vec_meta(&m, TPMLP_FORMAT_NAME, d);
    tpmlp_progress("writing the file", 1, 1);
    int rc = st_write(path, out, n, m.keys, m.vals, m.n, err, errlen);
    tpmlp_progress_done();
    for (int i = 0; i < V_COUNT; i++) free(buf[i]);
    return rc;
}

static int meta_int(const st_file *f, const char *key, int *out, char *err, size_t errlen) {
    const char *v = st_meta(f, key);
    if (v == NULL) return snprintf(err, errlen, "%s: __metadata__ has no '%s'", f->path, key), -1;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || errno || x < 1 || x > INT_MAX)
        return snprintf(err, errlen, "%s: __metadata__ '%s' = '%s' is not an integer from 1 to %d", f->path, key, v,
                        INT_MAX),
               -1;
    *out = (int)x;
    return 0;
}

int tpmlp_vec_read_case(const st_file *f, tpmlp_vec_dims *d, char *err, size_t errlen) {
    if (meta_int(f, "B", &d->B, err, errlen) || meta_int(f, "T", &d->T, err, errlen) ||
        meta_int(f, "D", &d->D, err, errlen) || meta_int(f, "F", &d->F, err, errlen))
        return -1;
    if ((long long)d->B * d->T > INT_MAX)
        return snprintf(err, errlen, "%s: __metadata__ B × T exceeds %d rows", f->path, INT_MAX), -1;
    const char *act = st_meta(f, "activation"), *seed = st_meta(f, "seed");
    if (act == NULL || tpmlp_act_parse(act, &d->act) != 0)
        return snprintf(err, errlen, "%s: __metadata__ activation '%s' is not " TPMLP_ACT_NAMES, f->path,
                        act ? act : "(missing)"),
               -1;
    d->seed = seed ? strtoull(seed, NULL, 10) : 0;
    const char *bias = st_meta(f, "bias");
    if (bias && strcmp(bias, "0") != 0 && strcmp(bias, "1") != 0)
        return snprintf(err, errlen, "%s: __metadata__ bias = '%s', expected 0 or 1", f->path, bias), -1;
    d->no_bias = bias && strcmp(bias, "0") == 0; /* absent: with biases, as every file written before */
    return 0;
}

int tpmlp_vec_read_dims(const st_file *f, tpmlp_vec_dims *d, char *err, size_t errlen) {
    const char *fmt = st_meta(f, "format"), *ver = st_meta(f, "format_version");
    if (fmt == NULL || strcmp(fmt, TPMLP_FORMAT_NAME) != 0)
        return snprintf(err, errlen, "%s: __metadata__ format is '%s', expected '%s'", f->path, fmt ? fmt : "(missing)",
                        TPMLP_FORMAT_NAME),
               -1;
    if (ver == NULL || strcmp(ver, TPMLP_FORMAT_VERSION) != 0)
        return snprintf(err, errlen, "%s: format_version '%s' is not one this tpmlp reads (%s)", f->path,
                        ver ? ver : "(missing)", TPMLP_FORMAT_VERSION),
               -1;
    if (tpmlp_vec_read_case(f, d, err, errlen) != 0) return -1;
    for (int i = 0; i < V_COUNT; i++) {
        const st_tensor *t = st_find(f, tpmlp_vec_specs[i].name);
        if (t == NULL) continue;
        uint64_t shape[ST_MAX_DIMS];
        int nd = tpmlp_vec_shape((tpmlp_vec_id)i, d, shape);
        int same = t->ndim == nd;
        for (int k = 0; same && k < nd; k++) same = t->shape[k] == shape[k];
        if (!same)
            return snprintf(err, errlen, "%s: tensor '%s': shape does not match the metadata (B=%d T=%d D=%d F=%d: %s)",
                            f->path, t->name, d->B, d->T, d->D, d->F, tpmlp_vec_specs[i].dims),
                   -1;
    }
    return 0;
}

int tpmlp_vec_load_inputs(const st_file *f, tpmlp_mlp32 *t, tpmlp_vec_dims *d, char *err, size_t errlen) {
    if (tpmlp_vec_read_dims(f, d, err, errlen) != 0) return -1;
    tpmlp_mlp32_alloc(t, d->B * d->T, d->D, d->F, d->act);
    for (int i = 0; i < V_FIRST_OUTPUT; i++) {
        const st_tensor *s = st_find(f, tpmlp_vec_specs[i].name);
        if (!tpmlp_vec_has((tpmlp_vec_id)i, d)) { /* a bias of a step without: zeros (alloc), and none in the file */
            if (s == NULL) continue;
            tpmlp_mlp32_free(t);
            return snprintf(err, errlen, "%s: holds '%s', but its __metadata__ says bias = 0 (no biases)", f->path,
                            s->name),
                   -1;
        }
        if (s == NULL || s->dtype != ST_F32) {
            tpmlp_mlp32_free(t);
            return snprintf(err, errlen, "%s: input tensor '%s' %s", f->path, tpmlp_vec_specs[i].name,
                            s ? "is not F32" : "is missing"),
                   -1;
        }
        memcpy(tpmlp_mlp32_tensor(t, (tpmlp_vec_id)i), st_data(f, s), (size_t)s->numel * sizeof(float));
    }
    return 0;
}

int tpmlp_vec_write_outputs(const char *path, const tpmlp_mlp32 *t, const tpmlp_vec_dims *d, char *err, size_t errlen) {
    st_out out[V_COUNT - V_FIRST_OUTPUT];
    int n = 0;
    for (int i = V_FIRST_OUTPUT; i < V_COUNT; i++) {
        if (!tpmlp_vec_has((tpmlp_vec_id)i, d)) continue;
        st_out *o = &out[n++];
        *o = (st_out){.name = tpmlp_vec_specs[i].name, .dtype = ST_F32, .data = tpmlp_mlp32_tensor(t, (tpmlp_vec_id)i)};
        o->ndim = tpmlp_vec_shape((tpmlp_vec_id)i, d, o->shape);
    }
    tpmlp_meta m;
    tpmlp_vec_meta(&m, "tpmlp-mlp-outputs", d);
    return st_write(path, out, n, m.keys, m.vals, m.n, err, errlen);
}

int tpmlp_run_reference_file(const st_file *vec, const char *path, char *err, size_t errlen) {
    tpmlp_mlp32 t;
    tpmlp_vec_dims d;
    if (tpmlp_vec_load_inputs(vec, &t, &d, err, errlen) != 0) return -1;
    tpmlp_mlp32_run(&t);
    int rc = tpmlp_vec_write_outputs(path, &t, &d, err, errlen);
    tpmlp_mlp32_free(&t);
    return rc;
}
