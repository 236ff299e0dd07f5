/* One MLP step's tensors: the one list of them (names, shapes, roles), the
 * step in float32 and float64, and how F is cut over p ranks.
 *
 * TPMLP_STEP_TENSORS lists every tensor once; everything that walks the
 * tensors (the vector files' specs, allocation here and in the tensor-parallel
 * shards and on a GPU, reading and writing files) is generated from it. A row:
 *   X(ID, field, vector name, shape, role, what)
 * shape: letters of B, T, D, F (N = B·T rows in memory; a shard holds its Fr
 * of F). role: IN (an input of the vector files, F32), OUT (an output the
 * files and check hold: the float64 reference in a vector file), TMP (kept
 * between forward and backward, in no file). */
#ifndef TPMLP_STEP_H
#define TPMLP_STEP_H

#include <stddef.h>

#include "mlp.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TPMLP_STEP_TENSORS(X)                                                                                          \
    X(V_X, x, "x", "BTD", IN, "input activations")                                                                     \
    X(V_W1, w1, "linear_fc1.weight", "FD", IN, "fc1 weight (nn.Linear layout: out, in)")                               \
    X(V_B1, b1, "linear_fc1.bias", "F", IN, "fc1 bias")                                                                \
    X(V_W2, w2, "linear_fc2.weight", "DF", IN, "fc2 weight (nn.Linear layout: out, in)")                               \
    X(V_B2, b2, "linear_fc2.bias", "D", IN, "fc2 bias")                                                                \
    X(V_DY, dy, "dy", "BTD", IN, "gradient of the loss with respect to y")                                             \
    X(V_H, h, "h", "BTF", OUT, "fc1 output before the activation: x·W1ᵀ + b1")                                         \
    X(V_A, a, "a", "BTF", OUT, "activation output: act(h)")                                                            \
    X(V_Y, y, "y", "BTD", OUT, "block output: a·W2ᵀ + b2")                                                             \
    X(V_DX, dx, "dx", "BTD", OUT, "gradient with respect to x")                                                        \
    X(V_DW1, dw1, "linear_fc1.weight.grad", "FD", OUT, "gradient with respect to fc1 weight")                          \
    X(V_DB1, db1, "linear_fc1.bias.grad", "F", OUT, "gradient with respect to fc1 bias")                               \
    X(V_DW2, dw2, "linear_fc2.weight.grad", "DF", OUT, "gradient with respect to fc2 weight")                          \
    X(V_DB2, db2, "linear_fc2.bias.grad", "D", OUT, "gradient with respect to fc2 bias")                               \
    X(V_DACT, dact, "dact", "BTF", TMP, "act'(h), kept from the forward for the backward")                             \
    X(V_DH, dh, "dh", "BTF", TMP, "gradient with respect to h")

#define TPMLP_STEP_ID_(id, field, name, shape, role, what) id,
typedef enum { TPMLP_STEP_TENSORS(TPMLP_STEP_ID_) V_ALL } tpmlp_vec_id;
#undef TPMLP_STEP_ID_
#define V_FIRST_OUTPUT V_H /* the rows before are the inputs */
#define V_COUNT V_DACT     /* the rows before are the tensors of the vector files */

typedef struct {
    const char *name;
    const char *dims; /* letters of B, T, D, F, e.g. "BTD" or "FD" */
    const char *what;
} tpmlp_vec_spec;
extern const tpmlp_vec_spec tpmlp_vec_specs[V_ALL];

/* Elements of tensor id for N rows, D, and F (a shard's Fr). */
size_t tpmlp_step_numel(tpmlp_vec_id id, int N, int D, int F);

/* Every tensor of one MLP step, float64, shapes as in mlp.h. */
#define TPMLP_STEP_F64_(id, field, name, shape, role, what) double *field;
typedef struct {
    int N, D, F;
    tpmlp_act act;
    TPMLP_STEP_TENSORS(TPMLP_STEP_F64_)
} tpmlp_mlp64;
#undef TPMLP_STEP_F64_

/* The same, float32: what an implementation under test produces. */
#define TPMLP_STEP_F32_(id, field, name, shape, role, what) float *field;
typedef struct {
    int N, D, F;
    tpmlp_act act;
    TPMLP_STEP_TENSORS(TPMLP_STEP_F32_)
} tpmlp_mlp32;
#undef TPMLP_STEP_F32_

/* Allocates every tensor (zeroed); frees them. */
void tpmlp_mlp32_alloc(tpmlp_mlp32 *t, int N, int D, int F, tpmlp_act act);
void tpmlp_mlp32_free(tpmlp_mlp32 *t);
void tpmlp_mlp64_alloc(tpmlp_mlp64 *t, int N, int D, int F, tpmlp_act act);
void tpmlp_mlp64_free(tpmlp_mlp64 *t);
/* The tensor id of t. */
float *tpmlp_mlp32_tensor(const tpmlp_mlp32 *t, tpmlp_vec_id id);

/* Runs the float32 reference forward and backward, filling t's outputs. */
void tpmlp_mlp32_run(tpmlp_mlp32 *t);
/* Copies t32's inputs (exactly) into t64's. */
void tpmlp_mlp64_inputs_from32(tpmlp_mlp64 *t64, const tpmlp_mlp32 *t32);
/* Runs the float64 oracle (oracle.h) on t's inputs, filling its outputs (not dact, dh). */
void tpmlp_mlp64_run(tpmlp_mlp64 *t);

/* How F is cut over p ranks: balanced (Megatron's: the first F mod p ranks
 * one larger) or chunk (torch.chunk's and DTensor's: ⌈F/p⌉ each, the last
 * smaller). */
typedef enum { TPMLP_SPLIT_BALANCED, TPMLP_SPLIT_CHUNK } tpmlp_split;
int tpmlp_split_parse(const char *name, tpmlp_split *out); /* 0, or -1 if unknown */
const char *tpmlp_split_name(tpmlp_split s);
/* Rank r's columns [*f0, *f0 + *fr); returns -1 (and *fr = 0) if it gets none. */
int tpmlp_split_slice(tpmlp_split s, int F, int p, int r, int *f0, int *fr);

#ifdef __cplusplus
}
#endif

#endif
