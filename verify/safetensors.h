/* safetensors files: an 8-byte little-endian header length, a JSON header
 * (UTF-8) mapping tensor names to {dtype, shape, data_offsets}, plus an
 * optional "__metadata__" object of strings, then the raw little-endian data.
 *
 * The reader trusts nothing: every failure is one line naming the file (and
 * the tensor) and what was expected. */
#ifndef TPMLP_SAFETENSORS_H
#define TPMLP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { ST_F16, ST_BF16, ST_F32, ST_F64 } st_dtype;
#define ST_MAX_DIMS 8
/* Headers above this are refused (the reference implementation's cap). */
#define ST_MAX_HEADER (100u * 1000u * 1000u)

const char *st_dtype_name(st_dtype d);
size_t st_dtype_size(st_dtype d);

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    uint64_t shape[ST_MAX_DIMS];
    uint64_t numel;
    size_t begin, end; /* offsets into the data section */
} st_tensor;

typedef struct {
    char *path;
    const unsigned char *map; /* the whole file, read-only */
    int mapped;               /* map is ours (mmap), not the caller's buffer */
    size_t size;
    size_t data_start;  /* 8 + header length */
    st_tensor *tensors; /* sorted by begin */
    int ntensors;
    char **meta_keys, **meta_values;
    int nmeta;
} st_file;

/* Opens and validates path. Returns 0, or -1 with a one-line message in err. */
int st_open(st_file *f, const char *path, char *err, size_t errlen);
/* The same on a buffer in memory (kept by the caller until st_close); name
 * stands for the path in messages. */
int st_open_buffer(st_file *f, const void *buf, size_t size, const char *name, char *err, size_t errlen);
void st_close(st_file *f);
const st_tensor *st_find(const st_file *f, const char *name);
const char *st_meta(const st_file *f, const char *key); /* NULL if absent */
/* The raw bytes: NOT aligned for the dtype in general (nothing in the format
 * aligns them); read them with memcpy, st_to_f64 or st_copy. */
const void *st_data(const st_file *f, const st_tensor *t);
/* t's data aligned for its dtype: the mapped bytes themselves where they
 * are aligned, else a copy. Free it with st_release(f, p). */
const void *st_aligned(const st_file *f, const st_tensor *t);
void st_release(const st_file *f, const void *p);
/* Converts any of F16, BF16, F32, F64 to double: out has t->numel elements. */
void st_to_f64(const st_file *f, const st_tensor *t, double *out);

/* One tensor to write. */
typedef struct {
    const char *name;
    st_dtype dtype;
    int ndim;
    uint64_t shape[ST_MAX_DIMS];
    const void *data; /* numel × dtype size bytes, little-endian */
} st_out;

/* Writes the tensors (data in the order given, header keys sorted, header
 * padded with spaces to a multiple of 8) and the metadata to a temporary file
 * beside path, then renames it: no partial file is ever left at path.
 * Returns 0, or -1 with a one-line message in err. */
int st_write(const char *path, const st_out *t, int n, const char *const *meta_keys, const char *const *meta_values,
             int nmeta, char *err, size_t errlen);

/* IEEE half and bfloat16 conversions (round to nearest even). */
double st_f16_to_f64(uint16_t h);
double st_bf16_to_f64(uint16_t b);
uint16_t st_f32_to_bf16(float f);
uint16_t st_f32_to_f16(float f);

#ifdef __cplusplus
}
#endif

#endif
