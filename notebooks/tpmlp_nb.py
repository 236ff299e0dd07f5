"""Helpers shared by the tutorial notebooks: where tpmlp is, running it (and
mpiexec), reading safetensors files with numpy, and a file's step (its tensors,
each rank's block of F) from the tpmlp package's tpmlp.Step."""
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "examples"))
sys.path.insert(0, os.path.join(ROOT, "python"))
from tpmlp_vectors import load  # noqa: E402  (the 40-line numpy reader)
import tpmlp as tpmlp_package  # noqa: E402  (python/: tpmlp.Step)

TPMLP = os.path.join(ROOT, "tpmlp")
CUDA = os.path.join(ROOT, "tpmlp-cuda")
GPU_LOGS = os.path.join(ROOT, "docs", "gpu-runs", "2026-11-26-h200-run5")  # the H200 run docs/ quotes
WORK = tempfile.mkdtemp(prefix="tpmlp-nb-")
MPIEXEC = shutil.which("mpiexec.openmpi") or shutil.which("mpiexec")

ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")  # more ranks than cores is fine here
if os.geteuid() == 0:  # Open MPI refuses root unless told twice
    ENV.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def path(name):
    """A file in this notebook's scratch folder."""
    return os.path.join(WORK, name)


def tpmlp(*args, ranks=None, show=True, check=True):
    """Runs tpmlp (under mpiexec -n ranks if given); returns its stdout."""
    cmd = [TPMLP] + [str(a) for a in args]
    if ranks is not None:
        cmd = [MPIEXEC, "-n", str(ranks)] + cmd
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    if show:
        print("$ " + " ".join(os.path.basename(c) if c in (TPMLP, MPIEXEC) else c for c in cmd))
        print(r.stdout + r.stderr)
    if check and r.returncode != 0:
        raise RuntimeError(f"tpmlp exited with {r.returncode}: {r.stderr.strip()}")
    return r.stdout


def gen(name, batch, seq, hidden, ffn, act="gelu", seed=1, bias=True):
    """A vector file in the scratch folder (act: gelu, gelu_tanh, relu, silu; bias=False: tpmlp gen --no-bias,
    layers without biases, whose step has no bias tensors)."""
    f = path(name)
    tpmlp("gen", "--batch", batch, "--seq", seq, "--hidden", hidden, "--ffn", ffn, "--act", act, "--seed", seed,
          *([] if bias else ["--no-bias"]), "-o", f, show=False)
    return f


def ratios(vectors, theirs, dtype="fp32"):
    """Per element |theirs - reference| / bound at --dtype, by tensor (tpmlp check --dump)."""
    dump = path("dump.safetensors")
    tpmlp("check", "--dtype", dtype, "--dump", dump, vectors, theirs, show=False, check=False)
    t, _ = load(dump)
    return {k: v.ravel() for k, v in t.items() if not k.endswith(".bound")}


def step(vectors, tp=None, split=None):
    """The file's step, as `tpmlp info --json [--tp P]` gives it (tpmlp.Step): its tensors by
    role (.inputs, .outputs, .partials), each one's shape and axis of F (s['h'].f_axis); with
    tp, each rank's block (f0, f1) of F (.blocks) and .cut(name, array, rank=r)."""
    return tpmlp_package.Step(vectors, tp=tp, split=split, tpmlp=TPMLP)


def gpu_here():
    """True where tpmlp-cuda is built and finds a GPU (without one it exits 77)."""
    return os.access(CUDA, os.X_OK) and subprocess.run([CUDA, "--bench", "8", "8", "8"],
                                                       capture_output=True).returncode != 77
