"""Steps without biases (tpmlp gen --no-bias) and silu: tpmlp.Step's table, tpmlp.check of float32
outputs computed here in numpy (skipped without the tpmlp program)."""
import subprocess

import numpy as np
import pytest

import tpmlp
from conftest import golden
from tpmlp.testing import assert_matches

BIASES = ["linear_fc1.bias", "linear_fc2.bias"]
BIAS_GRADS = ["linear_fc1.bias.grad", "linear_fc2.bias.grad"]


@pytest.fixture(scope="module")
def silu_vec():
    return golden("silu-2x5-d12-f36.safetensors")


@pytest.fixture(scope="module")
def nobias_vec():
    return golden("silu-nobias-3x2-d10-f28.safetensors")


def numpy_silu_mlp(path):
    """The MLP with silu in float32 numpy, with the biases only where the file has them."""
    t, meta = tpmlp.load(path)
    B, T, D, F = (int(meta[k]) for k in "BTDF")
    bias = meta.get("bias", "1") != "0"
    x, dy = t["x"].reshape(B * T, D), t["dy"].reshape(B * T, D)
    w1, w2 = t["linear_fc1.weight"], t["linear_fc2.weight"]
    h = x @ w1.T + (t["linear_fc1.bias"] if bias else 0)
    s = 1 / (1 + np.exp(-h))
    a = h * s
    y = a @ w2.T + (t["linear_fc2.bias"] if bias else 0)
    dh = (dy @ w2) * (s + h * s * (1 - s))
    out = {"h": h.reshape(B, T, F), "a": a.reshape(B, T, F), "y": y.reshape(B, T, D),
           "dx": (dh @ w1).reshape(B, T, D), "linear_fc1.weight.grad": dh.T @ x, "linear_fc2.weight.grad": dy.T @ a}
    if bias:
        out.update({"linear_fc1.bias.grad": dh.sum(0), "linear_fc2.bias.grad": dy.sum(0)})
    return {k: v.astype(np.float32) for k, v in out.items()}


def test_silu_step_has_biases(prog, silu_vec):
    step = tpmlp.Step(silu_vec, tpmlp=prog)
    assert step.activation == "silu" and step.bias is True
    assert all(n in step.inputs for n in BIASES) and all(n in step.outputs for n in BIAS_GRADS)
    assert len(step.outputs) == 8 and "no bias" not in repr(step)


def test_nobias_step(prog, nobias_vec):
    step = tpmlp.Step(nobias_vec, tpmlp=prog)
    assert (step.B, step.T, step.D, step.F, step.activation) == (3, 2, 10, 28, "silu")
    assert step.bias is False and step.metadata["bias"] == "0" and "no bias" in repr(step)
    assert step.inputs == ["x", "linear_fc1.weight", "linear_fc2.weight", "dy"]
    assert step.outputs == ["h", "a", "y", "dx", "linear_fc1.weight.grad", "linear_fc2.weight.grad"]
    for name in BIASES + BIAS_GRADS:
        assert name not in step
    t, _ = tpmlp.load(nobias_vec)
    assert all(step[n].present and t[n].shape == step[n].shape for n in step.inputs + step.outputs)
    # the ranks' blocks do not depend on the biases
    p3 = tpmlp.Step(nobias_vec, tp=3, tpmlp=prog)
    assert p3.blocks == [(0, 10), (10, 19), (19, 28)] and p3.bias is False
    assert p3.partials == ["y.partial", "dx.partial"]


def test_nobias_rank_inputs(prog, nobias_vec, tmp_path):
    """A rank's inputs of a step without biases (gen --no-bias --tp --rank): no bias tensors, bias False."""
    _, meta = tpmlp.load(nobias_vec)
    shard = str(tmp_path / "in-1.safetensors")
    subprocess.run([prog, "gen", "--batch", meta["B"], "--seq", meta["T"], "--hidden", meta["D"], "--ffn", meta["F"],
                    "--act", meta["activation"], "--seed", meta["seed"], "--no-bias", "--tp", "3", "--rank", "1",
                    "-o", shard], check=True, stdout=subprocess.DEVNULL)
    t, smeta = tpmlp.load(shard)
    step = tpmlp.Step(shard, tp=3, tpmlp=prog)
    assert smeta["bias"] == "0" and step.bias is False
    assert sorted(t) == sorted(step.inputs) and not any(n in t for n in BIASES)
    assert t["linear_fc1.weight"].shape == step.shape("linear_fc1.weight", 1) == (9, 10)


@pytest.mark.parametrize("which", ["silu_vec", "nobias_vec"])
def test_numpy_silu_passes(prog, which, request, tmp_path):
    vec = request.getfixturevalue(which)
    out = tmp_path / "out.safetensors"
    tpmlp.save(out, numpy_silu_mlp(vec))
    report = assert_matches(vec, out, tpmlp=prog)
    assert [x.name for x in report.tensors] == tpmlp.Step(vec, tpmlp=prog).outputs
    assert all(x.budget_used <= 0.5 for x in report.tensors) and report.not_provided == []


def test_nobias_refusals_and_failures(prog, nobias_vec, tmp_path):
    outs = numpy_silu_mlp(nobias_vec)
    # bias gradients of a step without biases: refused (check's exit 2)
    t, _ = tpmlp.load(nobias_vec)
    extra = dict(outs, **{"linear_fc2.bias.grad": t["dy"].reshape(-1, 10).sum(0).astype(np.float32)})
    tpmlp.save(tmp_path / "extra.safetensors", extra)
    with pytest.raises(tpmlp.CheckError, match="bias"):
        tpmlp.check(nobias_vec, tmp_path / "extra.safetensors", tpmlp=prog)
    # computed with a bias the step has not (nn.Linear's default bias=True): fails
    bad = dict(outs, y=outs["y"] + np.float32(0.05))
    tpmlp.save(tmp_path / "bad.safetensors", bad)
    r = tpmlp.check(nobias_vec, tmp_path / "bad.safetensors", tpmlp=prog)
    assert not r.ok and not r["y"].ok and r["dx"].ok
    with pytest.raises(AssertionError, match="y: worst element"):
        assert_matches(nobias_vec, tmp_path / "bad.safetensors", tpmlp=prog)


def test_silu_is_not_gelu(prog, silu_vec, tmp_path):
    """erf-GELU in place of silu fails on a and on everything after it."""
    outs = numpy_silu_mlp(silu_vec)
    h = outs["h"].astype(np.float64)
    from math import erf
    outs["a"] = (0.5 * h * (1 + np.vectorize(erf)(h / np.sqrt(2)))).astype(np.float32)
    tpmlp.save(tmp_path / "gelu.safetensors", outs)
    r = tpmlp.check(silu_vec, tmp_path / "gelu.safetensors", tpmlp=prog)
    assert not r.ok and not r["a"].ok and r["h"].ok
