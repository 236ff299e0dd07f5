/* Central finite differences on the float64 MLP. */
#ifndef TPMLP_GRADCHECK_H
#define TPMLP_GRADCHECK_H

#include "step.h"

enum { GC_DX, GC_DW1, GC_DB1, GC_DW2, GC_DB2, GC_COUNT };
/* The gradient g's vector name (GC_DX: "dx", ...). */
const char *tpmlp_gradcheck_name(int g);

/* For the loss L = Σ Y⊙dY (so dL/dY = dY), compares each analytic gradient in
 * t (run tpmlp_mlp64_run first) with (L(θ+s) - L(θ-s)) / 2s, s = step·max(1,|θ|).
 * err[g] = max_k |fd_k - an_k| / max_k |an_k| (relative to the tensor's scale). */
void tpmlp_gradcheck_f64(const tpmlp_mlp64 *t, double step, double err[GC_COUNT]);

#endif
