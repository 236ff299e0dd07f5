/* safetensors reader and writer; see safetensors.h. The JSON is parsed and
 * written by jansson. */
#include "config.h"

#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tpmlp reads and writes safetensors data as the host's bytes: a little-endian host is required"
#endif

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {[ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2}, [ST_F32] = {"F32", 4}, [ST_F64] = {"F64", 8}};

const char *st_dtype_name(st_dtype d) { return dtypes[d].name; }
size_t st_dtype_size(st_dtype d) { return dtypes[d].size; }

/* One line, always: names and jansson's quotes of the header come from the
 * file, and may hold newlines or other control bytes; they become '?'. */
__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    for (char *c = err; errlen && *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
    return -1;
}

/* A JSON integer ≥ 0 (reals such as 2.0 or 2.5 are refused). */
static int json_uint(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int parse_tensor(st_tensor *t, const char *name, const json_t *v, size_t datalen, const char *path, char *err,
                        size_t errlen) {
    if (!json_is_object(v)) return fail(err, errlen, "%s: tensor '%s': header entry is not a JSON object", path, name);
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)v, key, val) {
        if (strcmp(key, "dtype") != 0 && strcmp(key, "shape") != 0 && strcmp(key, "data_offsets") != 0)
            return fail(err, errlen, "%s: tensor '%s': unexpected key '%s' (allowed: dtype, shape, data_offsets)", path,
                        name, key);
    }
    const json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
                 *off = json_object_get(v, "data_offsets");
    if (!json_is_string(dt)) return fail(err, errlen, "%s: tensor '%s': missing or non-string dtype", path, name);
    int found = 0;
    for (int d = 0; d < (int)(sizeof dtypes / sizeof *dtypes); d++)
        if (strcmp(json_string_value(dt), dtypes[d].name) == 0) t->dtype = (st_dtype)d, found = 1;
    if (!found)
        return fail(err, errlen, "%s: tensor '%s': unsupported dtype '%s' (tpmlp reads F16, BF16, F32, F64)", path,
                    name, json_string_value(dt));
    if (!json_is_array(sh) || json_array_size(sh) > ST_MAX_DIMS)
        return fail(err, errlen, "%s: tensor '%s': shape must be an array of at most %d integers", path, name,
                    ST_MAX_DIMS);
    t->ndim = (int)json_array_size(sh);
    t->numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (json_uint(json_array_get(sh, (size_t)i), &t->shape[i]) != 0)
            return fail(err, errlen, "%s: tensor '%s': shape[%d] is not a non-negative integer", path, name, i);
        if (t->shape[i] != 0 && t->numel > UINT64_MAX / t->shape[i])
            return fail(err, errlen, "%s: tensor '%s': the product of the shape overflows", path, name);
        t->numel *= t->shape[i];
    }
    uint64_t b, e;
    if (!json_is_array(off) || json_array_size(off) != 2 || json_uint(json_array_get(off, 0), &b) != 0 ||
        json_uint(json_array_get(off, 1), &e) != 0)
        return fail(err, errlen, "%s: tensor '%s': data_offsets must be [begin, end], non-negative integers", path,
                    name);
    if (b > e)
        return fail(err, errlen, "%s: tensor '%s': data_offsets [%llu, %llu] are reversed", path, name,
                    (unsigned long long)b, (unsigned long long)e);
    if (e > datalen)
        return fail(err, errlen, "%s: tensor '%s': data_offsets end %llu is past the %zu byte%s of data (truncated?)",
                    path, name, (unsigned long long)e, datalen, tpmlp_plural((long long)datalen));
    uint64_t size = dtypes[t->dtype].size;
    if (t->numel > UINT64_MAX / size || t->numel * size != e - b)
        return fail(err, errlen, "%s: tensor '%s': %s of shape with %llu element%s needs %llu bytes, offsets span %llu",
                    path, name, dtypes[t->dtype].name, (unsigned long long)t->numel, tpmlp_plural((long long)t->numel),
                    (unsigned long long)(t->numel * size), (unsigned long long)(e - b));
    t->begin = (size_t)b, t->end = (size_t)e;
    t->name = strdup(name);
    if (t->name == NULL) return fail(err, errlen, "%s: out of memory", path);
    return 0;
}

static int by_begin(const void *a, const void *b) {
    const st_tensor *x = a, *y = b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

static int parse_header(st_file *f, json_t *root, char *err, size_t errlen) {
    const char *path = f->path;
    size_t datalen = f->size - f->data_start;
    if (!json_is_object(root)) return fail(err, errlen, "%s: the header is not a JSON object", path);
    size_t n = json_object_size(root);
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    if (f->tensors == NULL) return fail(err, errlen, "%s: out of memory", path);
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) return fail(err, errlen, "%s: __metadata__ is not a JSON object", path);
            size_t m = json_object_size(val);
            f->meta_keys = calloc(m ? m : 1, sizeof(char *));
            f->meta_values = calloc(m ? m : 1, sizeof(char *));
            if (!f->meta_keys || !f->meta_values) return fail(err, errlen, "%s: out of memory", path);
            const char *mk;
            json_t *mv;
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv))
                    return fail(err, errlen, "%s: __metadata__ '%s' is not a string (the format allows only strings)",
                                path, mk);
                f->meta_keys[f->nmeta] = strdup(mk);
                f->meta_values[f->nmeta] = strdup(json_string_value(mv));
                if (!f->meta_keys[f->nmeta] || !f->meta_values[f->nmeta]) {
                    f->nmeta++;
                    return fail(err, errlen, "%s: out of memory", path);
                }
                f->nmeta++;
            }
            continue;
        }
        if (parse_tensor(&f->tensors[f->ntensors], key, val, datalen, path, err, errlen) != 0) return -1;
        f->ntensors++;
    }
    /* The data must be covered exactly: in offset order, each tensor starts where the previous ended. */
    qsort(f->tensors, (size_t)f->ntensors, sizeof *f->tensors, by_begin);
    size_t at = 0;
    for (int i = 0; i < f->ntensors; i++) {
        const st_tensor *t = &f->tensors[i];
        if (t->begin < at)
            return fail(err, errlen,
                        "%s: tensor '%s': data_offsets [%zu, %zu] overlap the previous tensor (ends at %zu)", path,
                        t->name, t->begin, t->end, at);
        if (t->begin > at)
            return fail(err, errlen, "%s: tensor '%s': data_offsets begin at %zu, leaving a hole after byte %zu", path,
                        t->name, t->begin, at);
        at = t->end;
    }
    if (at != datalen)
        return fail(err, errlen, "%s: the tensors cover %zu byte%s of data but the file holds %zu after the header",
                    path, at, tpmlp_plural((long long)at), datalen);
    return 0;
}

/* Validates the header of f->map (f->size bytes); fills the rest of f. */
static int parse_file(st_file *f, char *err, size_t errlen) {
    const char *path = f->path;
    if (f->size < 8)
        return fail(err, errlen, "%s: %zu byte%s, too short for the 8-byte header length", path, f->size,
                    tpmlp_plural((long long)f->size));
    uint64_t hlen;
    memcpy(&hlen, f->map, 8);
    if (hlen > ST_MAX_HEADER)
        return fail(err, errlen, "%s: header length %llu is above the cap of %u bytes", path, (unsigned long long)hlen,
                    ST_MAX_HEADER);
    if (hlen > f->size - 8)
        return fail(err, errlen, "%s: header length %llu runs past the end of the file (%zu bytes)", path,
                    (unsigned long long)hlen, f->size);
    f->data_start = 8 + (size_t)hlen;
    json_error_t jerr;
    json_t *root = json_loadb((const char *)f->map + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return fail(err, errlen, "%s: the header is not valid JSON: %s (header byte %d)", path, jerr.text,
                    jerr.position);
    int rc = parse_header(f, root, err, errlen);
    json_decref(root);
    return rc;
}

int st_open(st_file *f, const char *path, char *err, size_t errlen) {
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (f->path == NULL) return fail(err, errlen, "%s: out of memory", path);
    int fd = open(path, O_RDONLY);
    struct stat sb;
    int rc = -1;
    if (fd < 0)
        fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    else if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))
        fail(err, errlen, "%s: not a regular file", path);
    else if ((size_t)sb.st_size < 8)
        fail(err, errlen, "%s: %zu byte%s, too short for the 8-byte header length", path, (size_t)sb.st_size,
             tpmlp_plural((long long)sb.st_size));
    else {
        f->size = (size_t)sb.st_size;
#ifdef MAP_POPULATE /* every byte is read: fault the pages in at once */
        void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
#else
        void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
#endif
        if (m == MAP_FAILED)
            fail(err, errlen, "%s: cannot map %zu bytes: %s", path, f->size, strerror(errno));
        else
            f->map = m, f->mapped = 1, rc = parse_file(f, err, errlen);
    }
    if (fd >= 0) close(fd);
    if (rc != 0) st_close(f);
    return rc;
}

int st_open_buffer(st_file *f, const void *buf, size_t size, const char *name, char *err, size_t errlen) {
    memset(f, 0, sizeof *f);
    f->path = strdup(name);
    if (f->path == NULL) return fail(err, errlen, "%s: out of memory", name);
    f->map = buf, f->size = size;
    int rc = parse_file(f, err, errlen);
    if (rc != 0) st_close(f);
    return rc;
}

void st_close(st_file *f) {
    if (f->map && f->mapped) munmap((void *)f->map, f->size);
    for (int i = 0; i < f->ntensors; i++) free(f->tensors[i].name);
    for (int i = 0; i < f->nmeta; i++) free(f->meta_keys[i]), free(f->meta_values[i]);
    free(f->tensors), free(f->meta_keys), free(f->meta_values), free(f->path);
    memset(f, 0, sizeof *f);
}

const st_tensor *st_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->ntensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *st_meta(const st_file *f, const char *key) {
    for (int i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

const void *st_data(const st_file *f, const st_tensor *t) { return f->map + f->data_start + t->begin; }

const void *st_aligned(const st_file *f, const st_tensor *t) {
    const void *d = st_data(f, t);
    if ((uintptr_t)d % st_dtype_size(t->dtype) == 0) return d;
    size_t bytes = t->end - t->begin;
    void *p = tpmlp_alloc(bytes ? bytes : 1, 1, t->name);
    memcpy(p, d, bytes);
    return p;
}

void st_release(const st_file *f, const void *p) {
    /* a copy lies outside the mapped file */
    if ((const unsigned char *)p < f->map || (const unsigned char *)p >= f->map + f->size) free((void *)p);
}

double st_f16_to_f64(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    double v = exp == 0 ? ldexp(man, -24) : exp == 31 ? (man ? NAN : INFINITY) : ldexp(man | 0x400, exp - 25);
    return sign ? -v : v;
}

double st_bf16_to_f64(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t st_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
    u += 0x7fffu + ((u >> 16) & 1);                                           /* round to nearest even */
    return (uint16_t)(u >> 16);
}

uint16_t st_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    float a = fabsf(f);
    if (isnan(f)) return sign | 0x7e00;
    if (a >= 65520.0f) return sign | 0x7c00; /* rounds to infinity */
    if (a < 0x1p-14f) {                      /* subnormal: a multiple of 2^-24, rounded to nearest even */
        return sign | (uint16_t)lrintf(a * 0x1p24f);
    }
    int e;
    float m = frexpf(a, &e);           /* a = m·2^e, m in [0.5, 1) */
    long mant = lrintf(ldexpf(m, 11)); /* 11 significant bits, nearest even */
    if (mant == 2048) mant = 1024, e++;
    return sign | (uint16_t)((e + 14) << 10) | (uint16_t)(mant - 1024);
}

int st_write(const char *path, const st_out *t, int n, const char *const *meta_keys, const char *const *meta_values,
             int nmeta, char *err, size_t errlen) {
    json_t *root = json_object(), *meta = json_object();
    if (!root || !meta) return fail(err, errlen, "%s: out of memory", path);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        uint64_t numel = 1;
        json_t *shape = json_array();
        for (int d = 0; d < t[i].ndim; d++) {
            numel *= t[i].shape[d];
            json_array_append_new(shape, json_integer((json_int_t)t[i].shape[d]));
        }
        size_t bytes = (size_t)numel * dtypes[t[i].dtype].size;
        json_t *e = json_pack("{s:s, s:o, s:[I,I]}", "dtype", dtypes[t[i].dtype].name, "shape", shape, "data_offsets",
                              (json_int_t)off, (json_int_t)(off + bytes));
        if (e == NULL || json_object_set_new(root, t[i].name, e) != 0) {
            json_decref(root), json_decref(meta);
            return fail(err, errlen, "%s: tensor '%s': cannot build the header entry", path, t[i].name);
        }
        off += bytes;
    }
    for (int i = 0; i < nmeta; i++) json_object_set_new(meta, meta_keys[i], json_string(meta_values[i]));
    json_object_set_new(root, "__metadata__", meta);
    char *hdr = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    if (hdr == NULL) return fail(err, errlen, "%s: cannot serialise the header", path);
    size_t hlen = strlen(hdr), padded = (hlen + 7) / 8 * 8; /* data starts 8-byte aligned */

    size_t tlen = strlen(path) + 16;
    char *tmp = malloc(tlen);
    if (tmp == NULL) {
        free(hdr);
        return fail(err, errlen, "%s: out of memory", path);
    }
    snprintf(tmp, tlen, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        free(hdr), free(tmp);
        return fail(err, errlen, "%s: cannot create a temporary file beside it: %s", path, strerror(e));
    }
    mode_t mask = umask(0);
    umask(mask);
    FILE *out = fdopen(fd, "wb");
    int ok = out != NULL && fchmod(fd, 0666 & ~mask) == 0;
    uint64_t le = padded;
    ok = ok && fwrite(&le, 8, 1, out) == 1 && fwrite(hdr, 1, hlen, out) == hlen;
    for (size_t i = hlen; ok && i < padded; i++) ok = fputc(' ', out) != EOF;
    for (int i = 0; ok && i < n; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= t[i].shape[d];
        size_t bytes = (size_t)numel * dtypes[t[i].dtype].size;
        ok = bytes == 0 || fwrite(t[i].data, 1, bytes, out) == bytes;
    }
    int e = errno;
    if (out != NULL) {
        if (fclose(out) != 0 && ok) ok = 0, e = errno;
    } else {
        close(fd);
    }
    if (ok && rename(tmp, path) != 0) ok = 0, e = errno;
    if (!ok) unlink(tmp);
    free(hdr), free(tmp);
    return ok ? 0 : fail(err, errlen, "%s: write failed: %s", path, strerror(e));
}

void st_to_f64(const st_file *f, const st_tensor *t, double *out) {
    const unsigned char *p = st_data(f, t);
    const uint64_t n = t->numel;
    switch (t->dtype) { /* one loop per dtype: the conversion is the whole work of `check` on THEIRS */
    case ST_F16:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = st_f16_to_f64(h);
        }
        break;
    case ST_BF16:
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            out[i] = st_bf16_to_f64(h);
        }
        break;
    case ST_F32:
#pragma omp simd
        for (uint64_t i = 0; i < n; i++) {
            float v;
            memcpy(&v, p + 4 * i, 4);
            out[i] = v;
        }
        break;
    case ST_F64: memcpy(out, p, (size_t)n * 8); break;
    }
}
