"""Validate a numpy MLP against tpmlp: load a vector file, run forward and
backward in float32, save the outputs under the vector names, then run
`tpmlp check VECTORS OUT`. A file without biases (tpmlp gen --no-bias, metadata
bias = 0) has no b1, b2: none are added, and no bias gradients are saved.

    python3 examples/validate_numpy.py VECTORS OUT
"""
import math
import sys

import numpy as np

from tpmlp_vectors import load, save

erf = np.vectorize(math.erf, otypes=[np.float64])


def act(h, kind):
    h64 = h.astype(np.float64)
    if kind == "gelu":
        a = 0.5 * h64 * (1 + erf(h64 / math.sqrt(2)))
        da = 0.5 * (1 + erf(h64 / math.sqrt(2))) + h64 * np.exp(-0.5 * h64 * h64) / math.sqrt(2 * math.pi)
    elif kind == "gelu_tanh":
        u = math.sqrt(2 / math.pi) * (h64 + 0.044715 * h64 ** 3)
        t = np.tanh(u)
        a = 0.5 * h64 * (1 + t)
        da = 0.5 * (1 + t) + 0.5 * h64 * (1 - t * t) * math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * h64 ** 2)
    elif kind == "silu":
        s = 1 / (1 + np.exp(-h64))
        a = h64 * s
        da = s + h64 * s * (1 - s)
    else:
        a, da = np.maximum(h64, 0), (h64 > 0).astype(np.float64)
    return a.astype(np.float32), da.astype(np.float32)


def main(vectors, out):
    t, meta = load(vectors)
    B, T, D, F = (int(meta[k]) for k in "BTDF")
    bias = meta.get("bias", "1") != "0"   # absent: with biases
    x, dy = t["x"].reshape(B * T, D), t["dy"].reshape(B * T, D)
    w1, w2 = t["linear_fc1.weight"], t["linear_fc2.weight"]
    h = x @ w1.T                           # (N, F)
    if bias:
        h = h + t["linear_fc1.bias"]
    a, da = act(h, meta["activation"])
    y = a @ w2.T                           # (N, D)
    if bias:
        y = y + t["linear_fc2.bias"]
    dh = (dy @ w2) * da                    # (N, F)
    outs = {"h": h.reshape(B, T, F), "a": a.reshape(B, T, F), "y": y.reshape(B, T, D),
            "dx": (dh @ w1).reshape(B, T, D),
            "linear_fc1.weight.grad": dh.T @ x, "linear_fc2.weight.grad": dy.T @ a}
    if bias:
        outs.update({"linear_fc1.bias.grad": dh.sum(0), "linear_fc2.bias.grad": dy.sum(0)})
    save(out, outs)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
