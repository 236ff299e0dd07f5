/* Test vectors: the files of the step's tensors (the table in step.h names
 * them, their order and shapes; docs/vectors.md documents them, and they
 * never change silently): their metadata, the generated inputs, writing and
 * reading. */
#ifndef TPMLP_VECTORS_H
#define TPMLP_VECTORS_H

#include <stdint.h>

#include "mlp.h"
#include "safetensors.h"
#include "step.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TPMLP_FORMAT_NAME "tpmlp-mlp-vectors"
#define TPMLP_FORMAT_VERSION "1"
#define TPMLP_GENERATOR_VERSION "1"

/* The sizes a vector file is made for, and the form of its MLP. */
typedef struct {
    int B, T, D, F;
    tpmlp_act act;
    unsigned long long seed;
    int no_bias; /* 1: no biases (--no-bias): the table's BIAS rows are not in the step */
} tpmlp_vec_dims;

/* Tensor id is part of d's step (its needs column: the bias tensors only with biases). */
int tpmlp_vec_has(tpmlp_vec_id id, const tpmlp_vec_dims *d);

/* Shape of tensor id: returns ndim, fills shape. */
int tpmlp_vec_shape(tpmlp_vec_id id, const tpmlp_vec_dims *d, uint64_t shape[ST_MAX_DIMS]);
uint64_t tpmlp_vec_numel(tpmlp_vec_id id, const tpmlp_vec_dims *d);

/* Input element (row, col) of tensor id (V_X .. V_DY), a function of
 * (seed, tensor, row, col) only: any shard can be generated alone (a bias
 * of a step without biases: 0).
 *   x, dy: uniform on [-√3, √3) (unit variance); weights and biases of a
 *   layer with fan-in k: uniform on [-1/√k, 1/√k) (nn.Linear's init).
 * Uniforms are 24-bit multiples built by exact float arithmetic, so the
 * values are the same bits on every machine. */
float tpmlp_vec_input(tpmlp_vec_id id, const tpmlp_vec_dims *d, uint64_t row, uint64_t col);

/* Fills rows [r0, r1) × cols [c0, c1) of input tensor id into out (row-major,
 * (r1-r0)×(c1-c0)); 1-D tensors are one row. */
void tpmlp_vec_fill(float *out, tpmlp_vec_id id, const tpmlp_vec_dims *d, uint64_t r0, uint64_t r1, uint64_t c0,
                    uint64_t c1);

/* Every input tensor of t, whole: t allocated for N = B·T rows, D and F of d. */
void tpmlp_vec_fill_inputs(tpmlp_mlp32 *t, const tpmlp_vec_dims *d);

/* Writes rank r's inputs alone: x, dy, linear_fc2.bias whole, its rows of
 * linear_fc1.weight and .bias, its columns of linear_fc2.weight. */
int tpmlp_vec_generate_rank(const char *path, const tpmlp_vec_dims *d, int p, int r, tpmlp_split s, char *err,
                            size_t errlen);

/* The metadata of every file tpmlp writes: its format and the sizes,
 * activation and seed it belongs to (so that check can refuse a mix-up), bias
 * = 0 for a step without biases (absent: with biases, as in every file
 * written before), and for one rank's file the split: tp, rank, split, f0, f1. */
#define TPMLP_META_MAX 24
typedef struct {
    const char *keys[TPMLP_META_MAX], *vals[TPMLP_META_MAX];
    char buf[TPMLP_META_MAX][24];
    int n;
} tpmlp_meta;
void tpmlp_vec_meta(tpmlp_meta *m, const char *format, const tpmlp_vec_dims *d);
void tpmlp_vec_meta_rank(tpmlp_meta *m, int p, int r, tpmlp_split s, int f0, int f1);

/* t's inputs from seed, by the generator above (B = 1, T = N). */
void tpmlp_mlp32_random_inputs(tpmlp_mlp32 *t, unsigned long long seed);

/* Generates the whole file. Returns 0, or -1 with a message in err. */
int tpmlp_vec_generate(const char *path, const tpmlp_vec_dims *d, char *err, size_t errlen);

/* Reads the case of any file tpmlp writes (a vector, outputs or rank file)
 * from its __metadata__: B, T, D, F, activation, seed. 0, or -1 with a
 * message naming the key. */
int tpmlp_vec_read_case(const st_file *f, tpmlp_vec_dims *d, char *err, size_t errlen);

/* Reads and validates the metadata of an open vector file into d; checks every
 * tensor present against the shapes the metadata implies. Returns 0 or -1. */
int tpmlp_vec_read_dims(const st_file *f, tpmlp_vec_dims *d, char *err, size_t errlen);

/* Reads the dims and the six float32 inputs of an open vector file into t
 * (allocated here with tpmlp_mlp32_alloc); 0, or -1 with a message. */
int tpmlp_vec_load_inputs(const st_file *f, tpmlp_mlp32 *t, tpmlp_vec_dims *d, char *err, size_t errlen);

/* Writes t's eight outputs as F32 under the vector names, with the dims as
 * metadata. */
int tpmlp_vec_write_outputs(const char *path, const tpmlp_mlp32 *t, const tpmlp_vec_dims *d, char *err, size_t errlen);

/* Runs the float32 reference on the inputs of vec and writes the eight outputs
 * (F32, under the vector names) to path. */
int tpmlp_run_reference_file(const st_file *vec, const char *path, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
