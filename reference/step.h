/* One MLP step's tensors: the one table of them, the step in float32 and
 * float64, how F is cut over p ranks, and the block of any tensor a rank holds.
 *
 * TPMLP_STEP_TENSORS lists every tensor once; everything that walks the
 * tensors is generated from it or iterates over tpmlp_vec_specs: the vector
 * files and rank files, allocation (here, in a tensor-parallel shard, on a
 * GPU), shard upload and gather, check's tensors and the error model's
 * routing, gradcheck's names, printing, and `tpmlp info --json` (and through
 * it the Python package). A row:
 *   X(ID, field, name, dims, role, kind, bound, grad_of, needs, what)
 *   dims   letters of B, T, D, F: its shape (B·T = N rows in memory). Under
 *          tensor parallelism a rank holds the block of F the split gives it
 *          (tpmlp_step_block): with F last, those columns; with F first, those
 *          rows; without F, the whole tensor (replicated).
 *   role   IN    an input of the vector files (float32);
 *          OUT   an output the files hold (the float64 reference in a vector
 *                file) and check compares;
 *          PART  a rank's partial sum before its all-reduce: only in a rank's
 *                file, checked per rank, never gathered;
 *          TMP   kept between forward and backward, in no file.
 *   kind   STORE the compute backend's storage type (float32, or bf16 on a
 *                GPU), or F32 (always float32: the bias gradients, sums over
 *                every row).
 *   bound  how the error model hands out its bounds: ROWS (row by row, as
 *          found), ARRAY (one array), NONE (an input or a temporary).
 *   grad_of  for a gradient, the input it is the gradient of (finite
 *          differences perturb that input); V_ALL for the others.
 *   needs  ALWAYS, or BIAS: only in a step with biases (not with --no-bias,
 *          Llama's layers: there the files neither hold nor expect it, and
 *          the step computes as with a bias of zeros). */
#ifndef TPMLP_STEP_H
#define TPMLP_STEP_H

#include <stddef.h>

#include "mlp.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TPMLP_STEP_TENSORS(X)                                                                                          \
    X(V_X, x, "x", "BTD", IN, STORE, NONE, V_ALL, ALWAYS, "input activations")                                         \
    X(V_W1, w1, "linear_fc1.weight", "FD", IN, STORE, NONE, V_ALL, ALWAYS, "fc1 weight (nn.Linear layout: out, in)")   \
    X(V_B1, b1, "linear_fc1.bias", "F", IN, STORE, NONE, V_ALL, BIAS, "fc1 bias")                                      \
    X(V_W2, w2, "linear_fc2.weight", "DF", IN, STORE, NONE, V_ALL, ALWAYS, "fc2 weight (nn.Linear layout: out, in)")   \
    X(V_B2, b2, "linear_fc2.bias", "D", IN, STORE, NONE, V_ALL, BIAS, "fc2 bias")                                      \
    X(V_DY, dy, "dy", "BTD", IN, STORE, NONE, V_ALL, ALWAYS, "gradient of the loss with respect to y")                 \
    X(V_H, h, "h", "BTF", OUT, STORE, ROWS, V_ALL, ALWAYS, "fc1 output before the activation: x·W1ᵀ + b1")             \
    X(V_A, a, "a", "BTF", OUT, STORE, ROWS, V_ALL, ALWAYS, "activation output: act(h)")                                \
    X(V_Y, y, "y", "BTD", OUT, STORE, ROWS, V_ALL, ALWAYS, "block output: a·W2ᵀ + b2")                                 \
    X(V_DX, dx, "dx", "BTD", OUT, STORE, ROWS, V_X, ALWAYS, "gradient with respect to x")                              \
    X(V_DW1, dw1, "linear_fc1.weight.grad", "FD", OUT, STORE, ROWS, V_W1, ALWAYS,                                      \
      "gradient with respect to fc1 weight")                                                                           \
    X(V_DB1, db1, "linear_fc1.bias.grad", "F", OUT, F32, ARRAY, V_B1, BIAS, "gradient with respect to fc1 bias")       \
    X(V_DW2, dw2, "linear_fc2.weight.grad", "DF", OUT, STORE, ROWS, V_W2, ALWAYS,                                      \
      "gradient with respect to fc2 weight")                                                                           \
    X(V_DB2, db2, "linear_fc2.bias.grad", "D", OUT, F32, ARRAY, V_B2, BIAS, "gradient with respect to fc2 bias")       \
    X(V_YPART, y_partial, "y.partial", "BTD", PART, STORE, ROWS, V_ALL, ALWAYS,                                        \
      "the rank's A_r·W2_rᵀ before the all-reduce (no bias)")                                                          \
    X(V_DXPART, dx_partial, "dx.partial", "BTD", PART, STORE, ROWS, V_ALL, ALWAYS,                                     \
      "the rank's dH_r·W1_r before the all-reduce")                                                                    \
    X(V_DACT, dact, "dact", "BTF", TMP, STORE, NONE, V_ALL, ALWAYS, "act'(h), kept from the forward for the backward") \
    X(V_DH, dh, "dh", "BTF", TMP, STORE, NONE, V_ALL, ALWAYS, "gradient with respect to h")

#define TPMLP_STEP_ID_(id, field, name, dims, role, kind, bound, grad_of, needs, what) id,
typedef enum { TPMLP_STEP_TENSORS(TPMLP_STEP_ID_) V_ALL } tpmlp_vec_id;
#undef TPMLP_STEP_ID_
/* The table's rows come in role order (a test holds it so): inputs, outputs,
 * partial sums, temporaries. */
#define V_FIRST_OUTPUT V_H /* the rows before are the inputs */
#define V_COUNT V_YPART    /* the rows before are the tensors of the vector files */

typedef enum { TPMLP_ROLE_IN, TPMLP_ROLE_OUT, TPMLP_ROLE_PART, TPMLP_ROLE_TMP } tpmlp_role;
/* A buffer holds the compute backend's storage type, or float32 whatever the
 * storage (the table's kind). */
typedef enum { TPMLP_STORE, TPMLP_F32 } tpmlp_kind;
typedef enum { TPMLP_BOUND_NONE, TPMLP_BOUND_ROWS, TPMLP_BOUND_ARRAY } tpmlp_bound_stream;
/* How a tensor lies over the ranks of a tensor-parallel run (from its dims and role). */
typedef enum { TPMLP_REPLICATED, TPMLP_SHARD_ROWS, TPMLP_SHARD_COLUMNS, TPMLP_PARTIAL } tpmlp_shard;

typedef struct {
    const char *name;
    const char *dims; /* letters of B, T, D, F, e.g. "BTD" or "FD" */
    tpmlp_role role;
    tpmlp_kind kind;
    tpmlp_bound_stream bound;
    int grad_of; /* a tpmlp_vec_id, or V_ALL */
    int bias;    /* 1: only in a step with biases (needs BIAS) */
    const char *what;
} tpmlp_vec_spec;
extern const tpmlp_vec_spec tpmlp_vec_specs[V_ALL];

const char *tpmlp_role_name(tpmlp_role r); /* input, output, partial, temporary */
tpmlp_shard tpmlp_step_shard(tpmlp_vec_id id);
const char *tpmlp_shard_name(tpmlp_shard s); /* replicated, rows, columns, partial */
/* The index of F in the tensor's dims, or -1 (replicated). */
int tpmlp_step_f_axis(tpmlp_vec_id id);

/* Elements of tensor id for N rows, D, and F (a shard's Fr). */
size_t tpmlp_step_numel(tpmlp_vec_id id, int N, int D, int F);

/* Every tensor of one MLP step, float64, shapes as in mlp.h (the partial
 * sums NULL: a step on one process has none). */
#define TPMLP_STEP_F64_(id, field, name, dims, role, kind, bound, grad_of, needs, what) double *field;
typedef struct {
    int N, D, F;
    tpmlp_act act;
    TPMLP_STEP_TENSORS(TPMLP_STEP_F64_)
} tpmlp_mlp64;
#undef TPMLP_STEP_F64_

/* The same, float32: what an implementation under test produces. */
#define TPMLP_STEP_F32_(id, field, name, dims, role, kind, bound, grad_of, needs, what) float *field;
typedef struct {
    int N, D, F; /* F: a shard's own F_r in a rank's copy of its outputs (tp_shard_download) */
    tpmlp_act act;
    TPMLP_STEP_TENSORS(TPMLP_STEP_F32_)
} tpmlp_mlp32;
#undef TPMLP_STEP_F32_

/* Allocates every tensor but the partial sums (zeroed); frees them. */
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
/* The one check of a tensor-parallel configuration: 1 ≤ p ≤ F and, for
 * r ≥ 0, 0 ≤ r < p with a block of its own under split s. 0, or -1 with one
 * line in err naming the argument (--tp, --rank) and what was expected. */
int tpmlp_split_check(tpmlp_split s, int F, int p, int r, char *err, size_t errlen);

/* The block of tensor id that a rank holding [f0, f0 + fr) of F holds, with
 * the tensor seen as a matrix: its last dim the columns, the others the rows
 * (N rows for "BTD", one row for a bias). rows × cols is the whole tensor;
 * the block is rows [r0, r1) × columns [c0, c1): the rank's columns when F
 * is last, its rows when F is first, everything when the tensor has no F
 * (replicated, and the partial sums). f0 = 0, fr = F: the whole tensor. */
typedef struct {
    size_t rows, cols;
    size_t r0, r1, c0, c1;
} tpmlp_block;
tpmlp_block tpmlp_step_block(tpmlp_vec_id id, int N, int D, int F, int f0, int fr);
size_t tpmlp_block_numel(const tpmlp_block *b);
/* The block's elements (of elem bytes), packed row-major, out of the whole
 * tensor (take), or back into it (put). */
void tpmlp_block_take(void *block, const void *whole, const tpmlp_block *b, size_t elem);
void tpmlp_block_put(void *whole, const void *block, const tpmlp_block *b, size_t elem);

#ifdef __cplusplus
}
#endif

#endif
