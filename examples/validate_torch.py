"""Validate PyTorch's nn.Linear -> GELU -> nn.Linear against tpmlp: the vector
file's weights load into nn.Linear as they are (out_features, in_features);
autograd gives the gradients; the outputs are saved under the vector names
and checked with `tpmlp check VECTORS OUT`.

    python3 examples/validate_torch.py VECTORS OUT
"""
import sys

import numpy as np
import torch

from tpmlp_vectors import load, save


def main(vectors, out):
    t, meta = load(vectors)
    B, T, D, F = (int(meta[k]) for k in "BTDF")
    fc1, fc2 = torch.nn.Linear(D, F), torch.nn.Linear(F, D)
    with torch.no_grad():
        fc1.weight.copy_(torch.from_numpy(t["linear_fc1.weight"].copy()))
        fc1.bias.copy_(torch.from_numpy(t["linear_fc1.bias"].copy()))
        fc2.weight.copy_(torch.from_numpy(t["linear_fc2.weight"].copy()))
        fc2.bias.copy_(torch.from_numpy(t["linear_fc2.bias"].copy()))
    act = {"gelu": torch.nn.GELU(), "gelu_tanh": torch.nn.GELU(approximate="tanh"),
           "relu": torch.nn.ReLU()}[meta["activation"]]
    x = torch.from_numpy(t["x"].copy()).requires_grad_(True)
    h = fc1(x)
    a = act(h)
    y = fc2(a)
    y.backward(torch.from_numpy(t["dy"].copy()))
    outs = {"h": h, "a": a, "y": y, "dx": x.grad,
            "linear_fc1.weight.grad": fc1.weight.grad, "linear_fc1.bias.grad": fc1.bias.grad,
            "linear_fc2.weight.grad": fc2.weight.grad, "linear_fc2.bias.grad": fc2.bias.grad}
    save(out, {k: v.detach().numpy().astype(np.float32) for k, v in outs.items()},
           {"implementation": "torch " + torch.__version__})


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], sys.argv[2])
