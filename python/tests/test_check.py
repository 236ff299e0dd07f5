"""tpmlp.check and tpmlp.testing.assert_matches against the tpmlp program (skipped without it)."""
import shutil

import numpy as np
import pytest

import tpmlp
from tpmlp.testing import assert_matches


def planted(src, dst, **changes):
    """Copies an outputs file with changes: name -> function(array) -> array."""
    t, meta = tpmlp.load(src)
    for name, f in changes.items():
        t[name] = f(t[name].copy())
    tpmlp.save(dst, t, meta)
    return str(dst)


def bump(index, factor):
    def f(a):
        a[index] *= factor
        return a
    return f


def test_reference_outputs_pass(prog, gelu_vec, ref_outputs):
    r = tpmlp.check(gelu_vec, ref_outputs, tpmlp=prog)
    assert r.ok and r.returncode == 0
    assert [t.name for t in r.tensors] == tpmlp.Step(gelu_vec, tpmlp=prog).outputs
    assert r.dtype == "fp32" and r.rank is None and r.tp is None and r.not_provided == []
    assert r.raw["verdict"] == "PASS" and r.version == tpmlp.__version__
    for t in r.tensors:
        assert t.ok and 0 <= t.budget_used < 0.5 and t.bound > 0
        assert len(t.worst_index) == len(t.shape)
    s = str(r)
    assert "PASS: 8 tensors checked" in s and "linear_fc2.weight.grad" in s
    assert r["y"].name == "y" and "y" in r
    # bf16's bounds are wider: fp32 results pass them too
    assert tpmlp.check(gelu_vec, ref_outputs, dtype="bf16", tpmlp=prog).ok
    assert_matches(gelu_vec, ref_outputs, tpmlp=prog)


def test_program_from_env(prog, gelu_vec, ref_outputs, monkeypatch):
    monkeypatch.setenv("TPMLP", prog)
    assert tpmlp.check(gelu_vec, ref_outputs).ok


def test_saved_by_us_pass(prog, gelu_vec, ref_outputs, tmp_path):
    """Our writer's files are read by the program: the outputs, as F32 and as F64, and a dict."""
    t, meta = tpmlp.load(ref_outputs)
    tpmlp.save(tmp_path / "f32.safetensors", t)
    assert tpmlp.check(gelu_vec, tmp_path / "f32.safetensors", tpmlp=prog).ok
    tpmlp.save(tmp_path / "f64.safetensors", {k: v.astype(np.float64) for k, v in t.items()})
    r = tpmlp.check(gelu_vec, tmp_path / "f64.safetensors", tpmlp=prog)
    assert r.ok and r["y"].dtype == "F64"
    r = tpmlp.check(gelu_vec, {"y": t["y"], "dx": t["dx"]}, tpmlp=prog)
    assert r.ok and [x.name for x in r.tensors] == ["y", "dx"] and "h" in r.not_provided


def test_planted_errors_fail(prog, gelu_vec, ref_outputs, tmp_path):
    bad = planted(ref_outputs, tmp_path / "bad.safetensors",
                  y=bump((0, 1, 2), 1.01), dx=lambda a: a * 0,
                  h=lambda a: np.where(np.arange(a.size).reshape(a.shape) == 5, np.nan, a))
    r = tpmlp.check(gelu_vec, bad, tpmlp=prog)
    assert not r.ok and r.returncode == 1
    assert {t.name for t in r.failed} == {"y", "dx", "h"}
    assert r["y"].worst_index == (0, 1, 2) and r["y"].budget_used > 1
    assert r["h"].nonfinite and r["h"].got is None and r["h"].budget_used is None
    assert r["a"].ok
    s = str(r)
    assert "FAIL: 3 of 8 tensors failed; the first in the step's order, h, is where to look" in s
    assert "NaN/Inf" in s and "[0,1,2]" in s


def test_a_zeroed_weight_grad_fails(prog, gelu_vec, ref_outputs, tmp_path):
    bad = planted(ref_outputs, tmp_path / "z.safetensors", **{"linear_fc1.weight.grad": lambda a: a * 0})
    r = tpmlp.check(gelu_vec, bad, tpmlp=prog)
    assert [t.name for t in r.failed] == ["linear_fc1.weight.grad"]


def test_vector_file_as_outputs(prog, gelu_vec, tmp_path):
    copy = tmp_path / "vectors-copy.safetensors"
    shutil.copy(gelu_vec, copy)
    with pytest.raises(tpmlp.CheckError, match="is a vector file") as e:
        tpmlp.check(gelu_vec, copy, tpmlp=prog)
    assert e.value.returncode == 2 and "\n" not in str(e.value)
    with pytest.raises(tpmlp.CheckError):
        assert_matches(gelu_vec, copy, tpmlp=prog)


def test_program_not_found(gelu_vec, monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match="/nonexistent/tpmlp"):
        tpmlp.check(gelu_vec, gelu_vec, tpmlp="/nonexistent/tpmlp")
    monkeypatch.setenv("TPMLP", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=r"\$TPMLP="):
        tpmlp.check(gelu_vec, gelu_vec)
    monkeypatch.delenv("TPMLP")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="PATH"):
        tpmlp.check(gelu_vec, gelu_vec)


def test_bad_arguments(gelu_vec):
    with pytest.raises(ValueError, match="dtype"):
        tpmlp.check(gelu_vec, gelu_vec, dtype="fp8")
    with pytest.raises(ValueError, match="rank needs tp"):
        tpmlp.check(gelu_vec, gelu_vec, rank=1)


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_per_rank_pass(prog, gelu_vec, rank_outputs, rank):
    r = tpmlp.check(gelu_vec, rank_outputs[rank], tp=3, rank=rank, tpmlp=prog)
    assert r.ok and r.tp == 3 and r.rank == rank and r.split == "balanced"
    assert r.slice == [(0, 7), (7, 14), (14, 20)][rank]
    names = [t.name for t in r.tensors]
    step = tpmlp.Step(gelu_vec, tpmlp=prog)
    assert names == step.outputs + step.partials
    f0, f1 = r.slice
    assert r["h"].shape == (2, 3, f1 - f0) and r["y"].shape == (2, 3, 8)
    s = str(r)
    assert f"rank {rank} of 3 (balanced split): columns [{f0}, {f1}) of F" in s
    assert f"PASS: rank {rank} of 3, 10 tensors checked" in s


def test_per_rank_refusals(prog, gelu_vec, rank_outputs):
    with pytest.raises(tpmlp.CheckError, match="rank"):
        tpmlp.check(gelu_vec, rank_outputs[1], tp=3, rank=2, tpmlp=prog)
    with pytest.raises(tpmlp.CheckError, match="--tp 3 --rank 1"):
        tpmlp.check(gelu_vec, rank_outputs[1], tpmlp=prog)
    with pytest.raises(tpmlp.CheckError, match="split"):
        tpmlp.check(gelu_vec, rank_outputs[1], tp=3, rank=1, split="chunk", tpmlp=prog)


def test_per_rank_planted(prog, gelu_vec, rank_outputs, tmp_path):
    bad = planted(rank_outputs[1], tmp_path / "r1.safetensors", **{"y.partial": bump((0, 2, 0), 1.5)})
    r = tpmlp.check(gelu_vec, bad, tp=3, rank=1, tpmlp=prog)
    assert not r.ok and [t.name for t in r.failed] == ["y.partial"]
    assert r["y.partial"].worst_index == (0, 2, 0)


def test_assert_matches_message(prog, gelu_vec, ref_outputs, rank_outputs, tmp_path):
    bad = planted(ref_outputs, tmp_path / "bad.safetensors", y=bump((1, 2, 3), 1.02))
    r = tpmlp.check(gelu_vec, bad, tpmlp=prog)
    y = r["y"]
    with pytest.raises(AssertionError) as e:
        assert_matches(gelu_vec, bad, tpmlp=prog)
    msg = str(e.value)
    assert "y: worst element [1, 2, 3]" in msg
    assert f"got {y.got:.9g}" in msg and f"reference {y.reference:.9g}" in msg and f"bound {y.bound:.3g}" in msg
    assert "budget used" in msg and y.budget_str() in msg
    assert "FAIL: 1 of 8 tensors failed; the first in the step's order, y, is where to look" in msg  # the table follows
    assert "rank" not in msg.split("\n")[0]

    badr = planted(rank_outputs[2], tmp_path / "r2.safetensors",
                   **{"linear_fc2.weight.grad": bump((4, 1), 0.5)})
    with pytest.raises(AssertionError) as e:
        assert_matches(gelu_vec, badr, tp=3, rank=2, tpmlp=prog)
    msg = str(e.value)
    assert "rank 2 of 3 (columns [14, 20) of F)" in msg
    assert "rank 2: linear_fc2.weight.grad: worst element [4, 1]" in msg
    assert "budget used" in msg and "got " in msg and "reference " in msg and "bound " in msg
