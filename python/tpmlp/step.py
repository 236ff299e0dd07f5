"""The tensors of one MLP step and how tensor parallelism splits F, as the tpmlp program says.

`tpmlp info --json [--tp P [--split S]] FILE` prints the table the C code works
from: every tensor of the step (inputs, outputs, the partial sums a rank holds
before its all-reduces, the temporaries), its shape, how tensor parallelism
shards it and its axis of F; with --tp, each rank's block [f0, f1) of F. This
module runs it and presents the answer. It keeps no list of names and no split
rule of its own.

    import tpmlp
    step = tpmlp.Step("case.safetensors", tp=4)   # tpmlp info --json --tp 4 case.safetensors
    for name in step.outputs:                     # the outputs, in the table's order
        print(name, step[name].shape, step[name].f_axis)
    step.blocks                                   # [(f0, f1) of rank 0, of rank 1, ...]
    h1 = step.cut("h", h, rank=1)                 # rank 1's block of a full h

The program is found as tpmlp.check finds it (the tpmlp= argument, $TPMLP,
PATH). Each file and configuration is asked once per process.
"""
import functools
import json
import os
import subprocess
from dataclasses import dataclass
from typing import List, Optional, Tuple

from .check import find_program


@dataclass(frozen=True)
class StepTensor:
    """One row of the step's table.

    role: input, output, partial (y.partial, dx.partial: a rank's sums before
    its all-reduce) or temporary (kept between forward and backward, in no
    file). dims: its axes as letters of B, T, D, F ("BTF", "FD", ...). shape:
    the full shape. shard: replicated, rows (F is axis 0), columns (F is the
    last axis) or partial. f_axis: the index of F in shape, None where the
    tensor has no F. present: whether the file asked about holds it.
    """
    name: str
    role: str
    dims: str
    shape: Tuple[int, ...]
    shard: str
    f_axis: Optional[int]
    present: bool
    what: str

    @property
    def sharded(self):
        """True where a rank holds a block of F of it (f_axis is not None)."""
        return self.f_axis is not None


def _info_text(prog, path, stamp, tp, split):
    """The stdout of tpmlp info --json for one file; stamp (size, mtime) keys the cache."""
    cmd = [prog, "info", "--json"]
    if tp is not None:
        cmd += ["--tp", str(tp)]
    if split is not None:
        cmd += ["--split", split]
    cmd.append(path)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    if proc.returncode == 2:  # the program refused: a bad file, P out of range, an unknown split
        raise ValueError(err[-1] if err else f"{' '.join(cmd)} refused its input (exit 2)")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} ended with status {proc.returncode}"
                           + (f": {'; '.join(err[-3:])}" if err else ""))
    return proc.stdout


_cached_info_text = functools.lru_cache(maxsize=256)(_info_text)


def info(path, tp=None, split=None, tpmlp=None):
    """What `tpmlp info --json [--tp tp [--split split]] path` prints, as a dict (see docs/vectors.md).

    Asked once per file (as long as its size and time stamp stay) and
    configuration. Raises ValueError with the program's message where it
    refuses (not a safetensors file, tp out of range, an unknown split),
    FileNotFoundError where the program is not found.
    """
    prog = find_program(tpmlp)
    path = os.path.abspath(os.fspath(path))
    st = os.stat(path)
    if tp is not None:
        tp = int(tp)
    return json.loads(_cached_info_text(prog, path, (st.st_size, st.st_mtime_ns), tp, split))


class Step:
    """The tensors of the step a file belongs to, and with tp each rank's block of F.

    Step(path, tp=None, split=None, tpmlp=None) runs `tpmlp info --json` on
    path (a vector file, a rank's inputs or outputs: any file whose metadata
    has B, T, D, F and activation). split: balanced (Megatron's; the default
    unless path is a rank's file, whose own split is then the default) or chunk
    (torch.chunk's).

    names, inputs, outputs, partials, temporaries: tensor names, in the
    table's order. step[name] is a StepTensor; `name in step` works.
    B, T, D, F, activation, seed: the sizes. bias: whether the layers have
    biases (False for a step of `tpmlp gen --no-bias`, metadata bias = 0: then
    no linear_fc1.bias, linear_fc2.bias nor their gradients are among its
    tensors, and outputs has six names). tp, split, blocks: P, the split and
    each rank's (f0, f1) (None without tp). metadata: the file's.
    """

    def __init__(self, path, tp=None, split=None, tpmlp=None):
        raw = info(path, tp=tp, split=split, tpmlp=tpmlp)
        if raw.get("step") is None:
            raise ValueError(f"{os.fspath(path)}: not a file of an MLP step "
                             f"(its metadata has no B, T, D, F and activation)")
        self.path = os.fspath(path)
        self.raw = raw
        self.metadata = dict(raw.get("metadata") or {})
        self.B, self.T, self.D, self.F = (int(raw[k]) for k in ("B", "T", "D", "F"))
        self.activation = raw["activation"]
        self.seed = raw.get("seed")
        self.bias = bool(raw.get("bias", True))  # absent (a program before --no-bias): with biases
        self.tensors = [StepTensor(name=e["name"], role=e["role"], dims=e["dims"], shape=tuple(e["shape"]),
                                   shard=e["shard"], f_axis=e["f_axis"], present=bool(e["present"]),
                                   what=e.get("what", ""))
                        for e in raw["step"]]
        self._by_name = {t.name: t for t in self.tensors}
        tpd = raw.get("tp")
        self.tp = int(tpd["p"]) if tpd else None
        self.split = tpd["split"] if tpd else None
        self.blocks = [tuple(b) for b in tpd["ranks"]] if tpd else None

    def role(self, role) -> List[str]:
        """The names of the tensors of a role (input, output, partial, temporary)."""
        return [t.name for t in self.tensors if t.role == role]

    @property
    def names(self):
        return [t.name for t in self.tensors]

    @property
    def inputs(self):
        return self.role("input")

    @property
    def outputs(self):
        return self.role("output")

    @property
    def partials(self):
        """y.partial and dx.partial: a rank's sums before its all-reduces (only in a rank's file)."""
        return self.role("partial")

    @property
    def temporaries(self):
        return self.role("temporary")

    @property
    def sharded(self):
        """The names of the tensors with an axis of F: a rank holds a block of each."""
        return [t.name for t in self.tensors if t.sharded]

    def __getitem__(self, name):
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{name!r} is no tensor of the step (its tensors: {', '.join(self.names)})") from None

    def __contains__(self, name):
        return name in self._by_name

    def __iter__(self):
        return iter(self.tensors)

    def __len__(self):
        return len(self.tensors)

    def block(self, rank):
        """Rank rank's block (f0, f1) of F, under the step's tp and split."""
        if self.blocks is None:
            raise ValueError(f"{self.path}: no tp given: tpmlp.Step(path, tp=P) to ask for the ranks' blocks")
        if not 0 <= rank < len(self.blocks):
            raise ValueError(f"rank {rank}: want 0 <= rank < tp = {self.tp}")
        return self.blocks[rank]

    def shape(self, name, rank=None):
        """The full shape of a tensor, or with rank that rank's (its block of F along f_axis)."""
        t = self[name]
        if rank is None or t.f_axis is None:
            return t.shape
        f0, f1 = self.block(rank)
        return t.shape[:t.f_axis] + (f1 - f0,) + t.shape[t.f_axis + 1:]

    def cut(self, name, array, rank=None, block=None):
        """A rank's part of a tensor: array[..., f0:f1, ...] along its f_axis, array itself where
        it has no axis of F (replicated, partial).

        array: numpy, torch, jax, anything sliceable with a tuple of slices.
        rank: cut the full array to that rank's block; or block=(f0, f1): cut those
        columns of F (e.g. (0, n) of a padded block).
        """
        t = self[name]
        if (rank is None) == (block is None):
            raise ValueError("cut: give rank= or block=, one of them")
        if t.f_axis is None:
            return array
        if block is None:
            block = self.block(rank)
            have = getattr(array, "shape", None)
            if have is not None and tuple(have) != t.shape:
                raise ValueError(f"cut {name!r}: shape {tuple(have)} is not its full shape {t.shape}")
        f0, f1 = block
        return array[(slice(None),) * t.f_axis + (slice(f0, f1),)]

    def __repr__(self):
        tp = f", tp={self.tp}, split={self.split!r}" if self.tp is not None else ""
        return (f"Step({self.path!r}: B={self.B} T={self.T} D={self.D} F={self.F} "
                f"{self.activation}{'' if self.bias else ', no bias'}{tp}; {len(self.tensors)} tensors)")
