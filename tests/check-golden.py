#!/usr/bin/env python3
"""tpmlp check's verdicts and budgets on the golden vectors, against the
committed record tests/check-golden.json: what a change of the table, the
error model or check must leave as it is.

For each golden vector file, THEIRS is made here, the same on every machine:
every output is the float64 reference rounded to float32 and moved by a few
ulps in a fixed pattern (and, as a second case, h with two columns swapped,
which must fail). It is checked whole and, cut by the blocks that `tpmlp info
--json --tp 3` gives, rank by rank under both splits, at fp32 and bf16.
Verdicts must be equal, budgets within a relative 1e-5 (the bounds' last
float32 bits follow the BLAS kernel).

    tests/check-golden.py [--update]    (TPMLP: the program, default ./tpmlp)"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
import tpmlp_vectors  # noqa: E402  (the repository's 40-line numpy reader and writer)

TPMLP = os.environ.get("TPMLP", "./tpmlp")
RECORD = os.path.join(HERE, "check-golden.json")
P = 3


def info(path, *tp):
    out = subprocess.run([TPMLP, "info", "--json"] + list(tp) + [path], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out)


def nudged(ref):
    """ref rounded to float32, then element k moved by ((k·7919) mod 9 - 4) ulps of float32."""
    x = ref.astype(np.float32)
    k = (np.arange(x.size, dtype=np.int64) * 7919 % 9 - 4).reshape(x.shape)
    return (x * (1 + k.astype(np.float64) * 2.0 ** -24)).astype(np.float32)


def run_check(vec, theirs, dtype, extra):
    r = subprocess.run([TPMLP, "check", "--json", "--dtype", dtype] + extra + [vec, theirs], capture_output=True,
                       text=True)
    if r.returncode not in (0, 1):
        sys.exit("tpmlp check failed (exit %d): %s" % (r.returncode, r.stderr.strip()))
    d = json.loads(r.stdout)
    return {"verdict": d["verdict"], "tensors": {t["name"]: [t["verdict"], t["budget_used"]] for t in d["tensors"]}}


def cases(tmp):
    out = {}
    vdir = os.path.join(HERE, "vectors")
    for name in sorted(os.listdir(vdir)):
        vec = os.path.join(vdir, name)
        tensors, meta = tpmlp_vectors.load(vec)
        step = info(vec)
        if step["F"] < P:
            continue
        outputs = [t for t in step["step"] if t["role"] == "output"]
        for case in ("nudged", "h-columns-swapped"):
            mine = {t["name"]: nudged(tensors[t["name"]]) for t in outputs}
            if case != "nudged":
                h = mine["h"]
                h[..., [0, 1]] = h[..., [1, 0]]
            whole = os.path.join(tmp, "whole.safetensors")
            tpmlp_vectors.save(whole, mine, {k: meta[k] for k in ("B", "T", "D", "F", "activation", "seed", "bias") if k in meta})
            for dtype in ("fp32", "bf16"):
                out["%s %s %s whole" % (name, case, dtype)] = run_check(vec, whole, dtype, [])
                for split in ("balanced", "chunk"):
                    blocks = info(vec, "--tp", str(P), "--split", split)["tp"]["ranks"]
                    for rank, (f0, f1) in enumerate(blocks):
                        part = {}
                        for t in outputs:  # the rank's block of each output, along its axis of F
                            a = mine[t["name"]]
                            part[t["name"]] = a if t["f_axis"] is None else np.take(a, range(f0, f1), t["f_axis"])
                        path = os.path.join(tmp, "rank.safetensors")
                        tpmlp_vectors.save(path, part)
                        key = "%s %s %s %s rank %d" % (name, case, dtype, split, rank)
                        out[key] = run_check(vec, path, dtype, ["--tp", str(P), "--rank", str(rank), "--split", split])
    return out


def main():
    with tempfile.TemporaryDirectory() as tmp:
        got = cases(tmp)
    if sys.argv[1:] == ["--update"]:
        with open(RECORD, "w") as f:
            json.dump(got, f, indent=1, sort_keys=True)
            f.write("\n")
        print("wrote %s: %d checks" % (RECORD, len(got)))
        return
    want = json.load(open(RECORD))
    n = 0
    for key in sorted(set(want) | set(got)):
        n += 1
        w, g = want.get(key), got.get(key)
        bad = []
        if w is None or g is None:
            bad.append("recorded" if g is None else "not recorded")
        else:
            if w["verdict"] != g["verdict"]:
                bad.append("verdict %s, recorded %s" % (g["verdict"], w["verdict"]))
            for t in sorted(set(w["tensors"]) | set(g["tensors"])):
                a, b = w["tensors"].get(t), g["tensors"].get(t)
                if a is None or b is None or a[0] != b[0]:
                    bad.append("%s: %s, recorded %s" % (t, b, a))
                elif a[1] is None or b[1] is None:
                    if a[1] != b[1]:
                        bad.append("%s: budget %s, recorded %s" % (t, b[1], a[1]))
                elif abs(a[1] - b[1]) > 1e-5 * max(abs(a[1]), 1e-12):
                    bad.append("%s: budget %.9g, recorded %.9g" % (t, b[1], a[1]))
        print("%s %d - %s%s" % ("not ok" if bad else "ok", n, key, ": " + "; ".join(bad) if bad else ""))
    print("1..%d" % n)


if __name__ == "__main__":
    main()
