"""`tpmlp check` from Python: runs the tpmlp program with --json and reads its verdict.

The bounds come from tpmlp's error model (docs/vectors.md), computed by the
C program; this module only runs it and presents what it says.
"""
import json
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

DTYPES = ("fp32", "tf32", "bf16", "fp16")
SPLITS = ("balanced", "chunk")


class CheckError(Exception):
    """tpmlp check refused its input (exit 2): the message is the program's own line.

    Attributes: message, returncode, cmd (the argument list), stderr.
    """

    def __init__(self, message, returncode=2, cmd=None, stderr=""):
        super().__init__(message)
        self.message = message
        self.returncode = returncode
        self.cmd = cmd
        self.stderr = stderr


@dataclass
class TensorResult:
    """One tensor's line of the check: None where the JSON has null (a NaN or Inf was found)."""
    name: str
    verdict: str
    dtype: Optional[str] = None
    shape: Tuple[int, ...] = ()
    n: Optional[int] = None
    max_abs_err: Optional[float] = None
    budget_used: Optional[float] = None  # a fraction of the bound: 1.0 = all of it
    worst_index: Tuple[int, ...] = ()
    got: Optional[float] = None
    reference: Optional[float] = None
    bound: Optional[float] = None
    note: Optional[str] = None
    form_beta: Optional[float] = None
    form_noise: Optional[float] = None
    raw: dict = field(default_factory=dict, repr=False)

    @property
    def ok(self):
        return self.verdict == "PASS"

    @property
    def nonfinite(self):
        """True where the worst element is a NaN or Inf (JSON null)."""
        return self.got is None or self.budget_used is None

    @classmethod
    def from_json(cls, d):
        return cls(name=d["name"], verdict=d["verdict"], dtype=d.get("dtype"),
                   shape=tuple(d.get("shape") or ()), n=d.get("n"),
                   max_abs_err=d.get("max_abs_err"), budget_used=d.get("budget_used"),
                   worst_index=tuple(d.get("worst_index") or ()), got=d.get("got"),
                   reference=d.get("reference"), bound=d.get("bound"), note=d.get("note"),
                   form_beta=d.get("form_beta"), form_noise=d.get("form_noise"), raw=d)

    def budget_str(self):
        if self.budget_used is None:
            return "NaN/Inf"
        p = 100 * self.budget_used
        return f"{p:.1f}%" if p < 1e5 else f"{p:.1e}%"

    def index_str(self):
        return "[" + ",".join(str(i) for i in self.worst_index) + "]"

    def worst_str(self):
        """'got G, reference R, bound B' of the worst element."""
        got = "NaN/Inf" if self.got is None else f"{self.got:.9g}"
        ref = "?" if self.reference is None else f"{self.reference:.9g}"
        bnd = "?" if self.bound is None else f"{self.bound:.3g}"
        return f"got {got}, reference {ref}, bound {bnd}"


@dataclass
class Report:
    """What `tpmlp check --json` said. str() is a table like the program's."""
    ok: bool
    tensors: List[TensorResult]
    dtype: str
    tp: Optional[int]
    rank: Optional[int]
    split: Optional[str]
    slice: Optional[Tuple[int, int]]
    vectors: str
    outputs: str
    not_provided: List[str]
    ignored: List[str]
    version: str
    u: Optional[float]
    lam: Optional[float]
    returncode: int
    raw: dict = field(repr=False)

    @classmethod
    def from_json(cls, raw, returncode):
        sl = raw.get("slice")
        return cls(ok=(raw.get("verdict") == "PASS" and returncode == 0),
                   tensors=[TensorResult.from_json(t) for t in raw.get("tensors", [])],
                   dtype=raw.get("dtype"), tp=raw.get("tp"), rank=raw.get("rank"),
                   split=raw.get("split"), slice=tuple(sl) if sl else None,
                   vectors=raw.get("vectors"), outputs=raw.get("theirs"),
                   not_provided=list(raw.get("not_provided", [])), ignored=list(raw.get("ignored", [])),
                   version=raw.get("tpmlp_version"), u=raw.get("u"), lam=raw.get("lambda"),
                   returncode=returncode, raw=raw)

    @property
    def failed(self):
        """The tensors that failed."""
        return [t for t in self.tensors if not t.ok]

    def __getitem__(self, name):
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    def __contains__(self, name):
        return any(t.name == name for t in self.tensors)

    def where(self):
        """'rank R of P (split split): columns [f0, f1) of F', or the --tp P line, or ''."""
        if self.rank is not None:
            s = f"rank {self.rank} of {self.tp}"
            if self.split:
                s += f" ({self.split} split)"
            if self.slice:
                f0, f1 = self.slice
                s += f": columns [{f0}, {f1}) of F, {f1 - f0} of them"
            return s
        if self.tp is not None:
            return f"the whole outputs of a {self.tp}-way tensor-parallel run"
        return ""

    def __str__(self):
        head = f"tpmlp check {self.outputs} against {self.vectors}: --dtype {self.dtype}"
        if self.u:
            head += f" (u = 2^{round(math.log2(self.u))})"
        if self.lam is not None:
            head += f", λ={self.lam:g}"
        lines = [head]
        w = self.where()
        if w:
            lines.append(w)
        lines.append(f"  {'tensor':<24} {'dtype':<6} {'max |err|':>10} {'budget':>9}  {'worst element':<15} verdict")
        for t in self.tensors:
            err = "inf" if t.max_abs_err is None else f"{t.max_abs_err:.3e}"
            lines.append(f"  {t.name:<24} {t.dtype or '':<6} {err:>10} {t.budget_str():>9}  "
                         f"{t.index_str():<15} {t.verdict}")
            if not t.ok:
                lines.append(f"      worst: {t.worst_str()}")
            if t.note:
                lines.append(f"      {t.note}")
        if self.not_provided:
            lines.append("  not provided: " + ", ".join(self.not_provided))
        if self.ignored:
            lines.append("  ignored: " + ", ".join(self.ignored))
        who = f"rank {self.rank} of {self.tp}, " if self.rank is not None else ""
        if self.ok or not self.failed:
            lines.append(f"{'PASS' if self.ok else 'FAIL'}: {who}{len(self.tensors)} tensors checked"
                         + ("" if self.ok else " (none of the output names found)"))
        else:  # as tpmlp check says it: how many failed, and the first in the step's order
            lines.append(f"FAIL: {who}{len(self.failed)} of {len(self.tensors)} tensors failed; "
                         f"the first in the step's order, {self.failed[0].name}, is where to look")
        return "\n".join(lines)


def find_program(tpmlp=None):
    """The tpmlp program: the argument, else $TPMLP, else `tpmlp` on PATH.

    Raises FileNotFoundError naming what was tried.
    """
    def resolve(p):
        p = os.fspath(p)
        if os.sep in p or (os.altsep and os.altsep in p):
            return p if os.path.isfile(p) and os.access(p, os.X_OK) else None
        return shutil.which(p)

    if tpmlp is not None:
        found = resolve(tpmlp)
        if found:
            return found
        raise FileNotFoundError(f"the tpmlp program was not found: tpmlp={os.fspath(tpmlp)!r} "
                                f"(the argument) is not an executable file or a command on PATH")
    env = os.environ.get("TPMLP")
    if env:
        found = resolve(env)
        if found:
            return found
        raise FileNotFoundError(f"the tpmlp program was not found: $TPMLP={env!r} is not an "
                                f"executable file or a command on PATH")
    found = shutil.which("tpmlp")
    if found:
        return found
    raise FileNotFoundError("the tpmlp program was not found: no tpmlp= argument, $TPMLP is not set, "
                            "and there is no 'tpmlp' on PATH; build it (./configure && make) and "
                            "pass tpmlp=/path/to/tpmlp or set TPMLP=/path/to/tpmlp")


def check(vectors, outputs, dtype="fp32", tp=None, rank=None, split="balanced", tpmlp=None,
          timeout=None):
    """Checks outputs against a vector file with `tpmlp check --json`; returns a Report.

    vectors: a vector file (`tpmlp gen`). outputs: a safetensors file of your
    outputs under the vector names, or a dict name -> array (saved to a
    temporary file first). dtype: the arithmetic they were computed in (fp32,
    tf32, bf16, fp16). tp, rank: with both, outputs hold rank `rank` of a
    tp-way run (its shards, y.partial, dx.partial), F cut by `split`
    (balanced or chunk); with tp alone, the whole outputs of a tp-way run.
    tpmlp: the program (else $TPMLP, else `tpmlp` on PATH).

    Raises CheckError (the program's one-line message) when check refuses its
    input (exit 2), FileNotFoundError when the program is not found, and
    ValueError for arguments that make no sense. A failing check is not an
    exception: see Report.ok, or tpmlp.testing.assert_matches.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: one of {', '.join(DTYPES)}")
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: one of {', '.join(SPLITS)}")
    if rank is not None and tp is None:
        raise ValueError("rank needs tp: check(..., tp=P, rank=R)")
    prog = find_program(tpmlp)
    cmd = [prog, "check", "--dtype", dtype, "--json"]
    if tp is not None:
        cmd += ["--tp", str(int(tp))]
        if rank is not None:
            cmd += ["--rank", str(int(rank))]
        if split != "balanced":
            cmd += ["--split", split]
    tmpdir = None
    try:
        if isinstance(outputs, dict):
            from .files import save
            tmpdir = tempfile.mkdtemp(prefix="tpmlp-check-")
            path = os.path.join(tmpdir, "outputs.safetensors")
            save(path, outputs)
            outputs = path
        cmd += [os.fspath(vectors), os.fspath(outputs)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=timeout)
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
    err_lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    if proc.returncode == 2:
        msg = err_lines[-1] if err_lines else f"{prog} check refused its input (exit 2)"
        raise CheckError(msg, proc.returncode, cmd, proc.stderr)
    if proc.returncode not in (0, 1):
        tail = "; ".join(err_lines[-3:])
        raise RuntimeError(f"{' '.join(cmd)} ended with status {proc.returncode}" + (f": {tail}" if tail else ""))
    try:
        raw = json.loads(proc.stdout)
    except ValueError:
        raise RuntimeError(f"{' '.join(cmd)} printed no JSON object (status {proc.returncode}): "
                           f"{proc.stdout[:200]!r} {proc.stderr[:200]!r}") from None
    return Report.from_json(raw, proc.returncode)
