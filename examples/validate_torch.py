"""Validate PyTorch's nn.Linear -> GELU -> nn.Linear against tpmlp: the vector
file's weights load into nn.Linear as they are (out_features, in_features);
autograd gives the gradients; the outputs are saved under the vector names
and checked with `tpmlp check VECTORS OUT`. A file without biases (tpmlp gen
--no-bias, metadata bias = 0) gets nn.Linear(..., bias=False) and no bias
gradients are saved.

    python3 examples/validate_torch.py VECTORS OUT
"""
import sys

import numpy as np
import torch

from tpmlp_vectors import load, save


def main(vectors, out):
    t, meta = load(vectors)
    B, T, D, F = (int(meta[k]) for k in "BTDF")
    bias = meta.get("bias", "1") != "0"   # absent: with biases
    fc1, fc2 = torch.nn.Linear(D, F, bias=bias), torch.nn.Linear(F, D, bias=bias)
    with torch.no_grad():
        fc1.weight.copy_(torch.from_numpy(t["linear_fc1.weight"].copy()))
        fc2.weight.copy_(torch.from_numpy(t["linear_fc2.weight"].copy()))
        if bias:
            fc1.bias.copy_(torch.from_numpy(t["linear_fc1.bias"].copy()))
            fc2.bias.copy_(torch.from_numpy(t["linear_fc2.bias"].copy()))
    act = {"gelu": torch.nn.GELU(), "gelu_tanh": torch.nn.GELU(approximate="tanh"),
           "relu": torch.nn.ReLU(), "silu": torch.nn.SiLU()}[meta["activation"]]
    x = torch.from_numpy(t["x"].copy()).requires_grad_(True)
    h = fc1(x)
    a = act(h)
    y = fc2(a)
    y.backward(torch.from_numpy(t["dy"].copy()))
    outs = {"h": h, "a": a, "y": y, "dx": x.grad}
    # each parameter's gradient under its name (linear_fc1.weight.grad, ...): the biases' only where there are biases
    outs.update({f"linear_fc{i}.{name}.grad": p.grad for i, fc in ((1, fc1), (2, fc2))
                 for name, p in fc.named_parameters()})
    save(out, {k: v.detach().numpy().astype(np.float32) for k, v in outs.items()},
           {"implementation": "torch " + torch.__version__})


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], sys.argv[2])
