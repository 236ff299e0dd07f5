/* Central finite differences on the float64 MLP. */
#ifndef TPMLP_GRADCHECK_H
#define TPMLP_GRADCHECK_H

#include "step.h"

/* For the loss L = Σ Y⊙dY (so dL/dY = dY), compares each analytic gradient in
 * t (run tpmlp_mlp64_run first) with (L(θ+s) - L(θ-s)) / 2s, s = step·max(1,|θ|):
 * the gradients are the rows of the step's table with a grad_of (dx, and the
 * parameters' gradients), θ the input each is the gradient of.
 * err[id] = max_k |fd_k - an_k| / max_k |an_k| (relative to the tensor's
 * scale) for those rows; NAN for the others. */
void tpmlp_gradcheck_f64(const tpmlp_mlp64 *t, double step, double err[V_ALL]);

#endif
