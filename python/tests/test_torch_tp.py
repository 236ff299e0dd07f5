"""examples/torch_tp.py: the tensor-parallel PyTorch MLP passes rank by rank; a planted bug fails,
naming the rank and the tensor. Skipped without torch (with torch.distributed) or the tpmlp program."""
import os
import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = os.path.join(REPO, "examples", "torch_tp.py")


def run(prog, vectors, *args):
    pytest.importorskip("torch")
    import torch.distributed as dist
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    if not os.path.exists(SCRIPT):
        pytest.skip(f"{SCRIPT} is not here")
    env = dict(os.environ, TPMLP=prog)
    return subprocess.run([sys.executable, SCRIPT, *args, vectors], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)


def test_two_ranks_pass(prog, gelu_vec):
    p = run(prog, gelu_vec, "--tp", "2")
    assert p.returncode == 0, p.stdout
    assert "PASS: 2 of 2 ranks pass" in p.stdout
    assert "  0     [0, 10)        PASS" in p.stdout and "  1     [10, 20)       PASS" in p.stdout


def test_dx_not_all_reduced_fails(prog, gelu_vec):
    p = run(prog, gelu_vec, "--tp", "2", "--bug", "no-dx-allreduce")
    assert p.returncode == 1, p.stdout
    assert "FAIL: 0 of 2 ranks pass (failing: rank 0, 1)" in p.stdout
    rows = [ln for ln in p.stdout.splitlines() if ln.startswith("  0 ") or ln.startswith("  1 ")]
    assert len(rows) == 2 and all("FAIL" in r and "dx (" in r for r in rows), p.stdout
    assert "rank 1 of 2 (balanced split): columns [10, 20)" in p.stdout
