"""tpmlp.Step: the step's table and each rank's block of F, from `tpmlp info --json` (skipped without the program)."""
import subprocess

import numpy as np
import pytest

import tpmlp
from conftest import golden

INPUTS = ["x", "linear_fc1.weight", "linear_fc1.bias", "linear_fc2.weight", "linear_fc2.bias", "dy"]
OUTPUTS = ["h", "a", "y", "dx", "linear_fc1.weight.grad", "linear_fc1.bias.grad",
           "linear_fc2.weight.grad", "linear_fc2.bias.grad"]
PARTIALS = ["y.partial", "dx.partial"]


@pytest.fixture(scope="module")
def odd_vec():
    return golden("gelu_tanh-1x7-d13-f53.safetensors")  # F = 53: prime, no P > 1 divides it


def test_the_table(prog, gelu_vec):
    step = tpmlp.Step(gelu_vec, tpmlp=prog)
    assert (step.B, step.T, step.D, step.F, step.activation) == (2, 3, 8, 20, "gelu")
    assert step.inputs == INPUTS and step.outputs == OUTPUTS and step.partials == PARTIALS
    assert step.names[:len(INPUTS + OUTPUTS + PARTIALS)] == INPUTS + OUTPUTS + PARTIALS
    assert step.tp is None and step.split is None and step.blocks is None
    t, _ = tpmlp.load(gelu_vec)
    for e in step:
        assert e.present == (e.name in t), e.name
        if e.present:
            assert t[e.name].shape == e.shape, e.name
        sizes = {"B": step.B, "T": step.T, "D": step.D, "F": step.F}
        assert e.shape == tuple(sizes[c] for c in e.dims), e.name
        # f_axis is where F is, and the shard says the same
        assert e.f_axis == (e.dims.index("F") if "F" in e.dims else None), e.name
        want = {"rows": 0, "columns": len(e.shape) - 1}.get(e.shard)
        assert e.f_axis == want, (e.name, e.shard)
        assert (e.shard == "partial") == (e.role == "partial"), e.name
    assert step["h"].shard == "columns" and step["linear_fc1.weight"].shard == "rows"
    assert step["y"].shard == "replicated" and not step["y"].sharded
    assert "h" in step and "nothing" not in step
    with pytest.raises(KeyError, match="no tensor of the step"):
        step["nothing"]
    with pytest.raises(ValueError, match="no tp"):
        step.block(0)


@pytest.mark.parametrize("split", ["balanced", "chunk"])
def test_blocks_tile_F(prog, gelu_vec, odd_vec, split):
    for vec in (gelu_vec, odd_vec):
        F = tpmlp.Step(vec, tpmlp=prog).F
        for p in (1, 2, 3, 4, 5, 6, 7, F):
            step = tpmlp.Step(vec, tp=p, split=split, tpmlp=prog)
            assert step.tp == p and step.split == split and len(step.blocks) == p
            end = 0
            for f0, f1 in step.blocks:  # in order, touching, covering F once
                assert f0 == end and f0 <= f1 <= F, (p, step.blocks)
                end = f1
            assert end == F, (p, step.blocks)
            sizes = [f1 - f0 for f0, f1 in step.blocks]
            if split == "balanced":  # Megatron's: sizes differ by at most one, the larger first
                assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True), sizes
            else:  # torch.chunk's: ceil(F/P) each, the last ones what is left
                assert sizes[0] == -(-F // p) and sizes == sorted(sizes, reverse=True), sizes


def test_split_defaults_and_refusals(prog, gelu_vec, tmp_path):
    assert tpmlp.Step(gelu_vec, tp=3, tpmlp=prog).split == "balanced"
    with pytest.raises(ValueError, match="P"):
        tpmlp.Step(gelu_vec, tp=21, tpmlp=prog)  # more ranks than columns of F
    with pytest.raises(ValueError, match="split"):
        tpmlp.Step(gelu_vec, tp=2, split="stripes", tpmlp=prog)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\0" * 4)
    with pytest.raises(ValueError, match="bad.safetensors"):
        tpmlp.Step(bad, tpmlp=prog)
    # a rank's file: its own split is the default
    shard = str(tmp_path / "in-1.safetensors")
    subprocess.run([prog, "gen", "--batch", "2", "--seq", "3", "--hidden", "8", "--ffn", "20", "--seed", "1",
                    "--tp", "3", "--rank", "1", "--split", "chunk", "-o", shard], check=True, stdout=subprocess.DEVNULL)
    step = tpmlp.Step(shard, tp=3, tpmlp=prog)
    assert step.split == "chunk" and step.F == 20 and step.shape("h") == (2, 3, 20)
    assert step["linear_fc1.weight"].present and not step["h"].present


@pytest.mark.parametrize("split", ["balanced", "chunk"])
@pytest.mark.parametrize("p", [2, 3, 4])
def test_cut_is_gen_shard(prog, odd_vec, tmp_path, split, p):
    """step.cut of the full inputs is, bit for bit, what tpmlp gen --tp P --rank R writes."""
    full, meta = tpmlp.load(odd_vec)
    step = tpmlp.Step(odd_vec, tp=p, split=split, tpmlp=prog)
    for r in range(p):
        shard = str(tmp_path / f"in-{r}.safetensors")
        subprocess.run([prog, "gen", "--batch", meta["B"], "--seq", meta["T"], "--hidden", meta["D"],
                        "--ffn", meta["F"], "--act", meta["activation"], "--seed", meta["seed"],
                        "--tp", str(p), "--rank", str(r), "--split", split, "-o", shard],
                       check=True, stdout=subprocess.DEVNULL)
        t, smeta = tpmlp.load(shard)
        assert (int(smeta["f0"]), int(smeta["f1"])) == step.block(r)
        assert sorted(t) == sorted(step.inputs)
        for name in step.inputs:
            assert t[name].shape == step.shape(name, r), name
            assert np.array_equal(step.cut(name, full[name], rank=r), t[name]), (name, r)


def test_blocks_are_checks(prog, gelu_vec, ref_outputs, rank_outputs):
    """A 3-way run's rank files: check's slice is the rank's block; the cut references match them."""
    step = tpmlp.Step(gelu_vec, tp=3, tpmlp=prog)
    ref, _ = tpmlp.load(gelu_vec)
    for r, path in rank_outputs.items():
        report = tpmlp.check(gelu_vec, path, tp=3, rank=r, tpmlp=prog)
        assert report.ok and tuple(report.slice) == step.block(r)
        t, _ = tpmlp.load(path)
        assert sorted(t) == sorted(step.outputs + step.partials)
        for name in step.outputs:
            assert t[name].shape == step.shape(name, r), name
            np.testing.assert_allclose(t[name], step.cut(name, ref[name], rank=r), rtol=1e-4, atol=1e-5)
    # the cut itself: torch-style slicing of any array, or a given block
    a = np.arange(2 * 3 * 20).reshape(2, 3, 20)
    assert np.array_equal(step.cut("h", a, block=(2, 5)), a[:, :, 2:5])
    assert step.cut("y", a, rank=1) is a
    with pytest.raises(ValueError, match="full shape"):
        step.cut("h", a[:, :, :7], rank=0)
    with pytest.raises(ValueError, match="one of them"):
        step.cut("h", a)


def test_one_call_per_file(prog, gelu_vec):
    tpmlp.step._cached_info_text.cache_clear()
    for _ in range(3):
        tpmlp.Step(gelu_vec, tp=2, tpmlp=prog)
    info = tpmlp.step._cached_info_text.cache_info()
    assert info.misses == 1 and info.hits == 2
