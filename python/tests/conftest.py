"""Shared fixtures: the repository, its golden vectors and the tpmlp program."""
import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
GOLDEN = os.path.join(REPO, "tests", "vectors")

try:  # the installed package, else the source tree next to these tests
    import tpmlp  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, os.path.dirname(HERE))
    import tpmlp  # noqa: F401


def golden(name):
    path = os.path.join(GOLDEN, name)
    if not os.path.exists(path):
        pytest.skip(f"golden vector {path} is not here (run the tests from a tpmlp checkout)")
    return path


def _program():
    """$TPMLP, else tpmlp on PATH, else the one built in this checkout; None if none is."""
    try:
        return tpmlp.find_program()
    except FileNotFoundError:
        pass
    built = os.path.join(REPO, "tpmlp")
    if os.path.isfile(built) and os.access(built, os.X_OK):
        return built
    return None


@pytest.fixture(scope="session")
def prog():
    p = _program()
    if p is None:
        pytest.skip("the tpmlp program was not found ($TPMLP, PATH, or ./tpmlp in the checkout): "
                    "build it to run the check tests")
    return p


@pytest.fixture(scope="session")
def gelu_vec():
    return golden("gelu-2x3-d8-f20.safetensors")


@pytest.fixture(scope="session")
def ref_outputs(prog, gelu_vec, tmp_path_factory):
    """The float32 reference MLP's outputs on gelu-2x3-d8-f20 (tpmlp run --stage reference)."""
    out = str(tmp_path_factory.mktemp("ref") / "ref.safetensors")
    subprocess.run([prog, "run", "--stage", "reference", gelu_vec, "-o", out], check=True,
                   stdout=subprocess.DEVNULL)
    return out


@pytest.fixture(scope="session")
def rank_outputs(prog, gelu_vec, tmp_path_factory):
    """A 3-way shard run's per-rank files: {rank: path}."""
    d = tmp_path_factory.mktemp("shard")
    ranks = d / "ranks"
    ranks.mkdir()
    subprocess.run([prog, "run", "--stage", "shard", "--tp", "3", gelu_vec, "-o", str(d / "out.safetensors"),
                    "--rank-outputs", str(ranks)], check=True, stdout=subprocess.DEVNULL)
    return {r: str(ranks / f"rank-{r}.safetensors") for r in range(3)}
