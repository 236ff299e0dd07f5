"""What torch_tp.py and jax_tp.py share: the command line, finding the tpmlp
program, the step's table (tpmlp.Step: the tensors a rank saves, each rank's
block of F and the split), the working folder the ranks write to, and the
table of the ranks' verdicts. Each rank's result is a dict with "rank", "ok",
and from `tpmlp.check(..., tp=P, rank=R)` the JSON's "slice" and "tensors"
and the printed "table" (or an "error")."""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
try:
    import tpmlp
except ImportError:  # not installed: the package in this checkout
    sys.path.insert(0, os.path.join(REPO, "python"))
    import tpmlp

BUGS = ("b2-every-rank", "no-dx-allreduce", "tanh-gelu", "extra-allreduce")


def find_tpmlp(arg):
    """--tpmlp, else $TPMLP, else tpmlp on PATH, else ./tpmlp of this checkout."""
    for cand in (arg, os.environ.get("TPMLP")):
        if cand:
            return tpmlp.find_program(cand)
    try:
        return tpmlp.find_program()
    except FileNotFoundError:
        built = os.path.join(REPO, "tpmlp")
        if os.path.isfile(built) and os.access(built, os.X_OK):
            return built
        raise


def budget(b):
    if b is None:
        return "NaN/Inf"
    return f"{100 * b:.1f}%" if 100 * b < 1e5 else f"{100 * b:.1e}%"


def parse_args(doc, ranks_are, argv=None):
    """The examples' command line; returns (args, tpmlp program, the vector file's step).

    The step (tpmlp.Step, from `tpmlp info --json --tp P`) has the file's sizes,
    the names of the tensors a rank saves, and each rank's block of F under
    its split (balanced: Megatron's)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tp", type=int, required=True, help=f"number of ranks P ({ranks_are})")
    ap.add_argument("--bug", choices=BUGS, help="plant a classic mistake (it must FAIL)")
    ap.add_argument("--tpmlp", help="the tpmlp program (default $TPMLP, PATH, ./tpmlp)")
    ap.add_argument("--keep", metavar="DIR", help="keep the ranks' files in DIR")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every rank's table")
    ap.add_argument("vectors", help="a vector file (tpmlp gen)")
    args = ap.parse_args(argv)
    if args.tp < 1:
        ap.error("--tp must be at least 1")
    prog = find_tpmlp(args.tpmlp)
    meta = tpmlp.metadata(args.vectors)
    if meta.get("format") != "tpmlp-mlp-vectors":
        ap.error(f"{args.vectors}: not a tpmlp vector file (format {meta.get('format')!r})")
    try:
        step = tpmlp.Step(args.vectors, tp=args.tp, tpmlp=prog)
    except ValueError as e:  # e.g. more ranks than columns of F
        ap.error(str(e))
    if args.bug == "b2-every-rank" and not step.bias:
        ap.error(f"--bug b2-every-rank: {args.vectors} is a step without biases (tpmlp gen --no-bias): "
                 f"there is no b2 to add on every rank")
    return args, prog, step


def run_in_workdir(args, prog, step, name, body):
    """Runs body(cfg), where cfg names the working folder the ranks write to
    (--keep's, kept; or a temporary one, removed after), the tpmlp program,
    the vector file, its metadata and its step, and the planted bug. Returns
    body's result and the seconds it took."""
    d = args.keep or tempfile.mkdtemp(prefix=name + "-")
    os.makedirs(d, exist_ok=True)
    cfg = {"meta": step.metadata, "step": step, "dir": d, "tpmlp": prog,
           "vectors": os.path.abspath(args.vectors), "bug": args.bug}
    t0 = time.monotonic()
    try:
        return body(cfg), time.monotonic() - t0
    finally:
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)


def title(name, args, step, how):
    """The report's first line: the vector file, its sizes, how the ranks ran, the planted bug."""
    return (f"{name}: {os.path.basename(args.vectors)}: B={step.B} T={step.T} D={step.D} "
            f"F={step.F} act={step.activation}{'' if step.bias else ' no bias'}; {how}"
            f"{'; bug: ' + args.bug if args.bug else ''}")


def report(title, results, codes, p, verbose, secs):
    """Prints the table of the ranks (and the failing ranks' check tables); returns the exit status."""
    print(title)
    print(f"  {'rank':<5} {'columns of F':<14} {'verdict':<8} {'largest budget':<34} failed tensors")
    for res, code in zip(results, codes):
        r = res["rank"]
        if "tensors" not in res:
            why = res.get("error") or f"exit status {code}"
            print(f"  {r:<5} {'':<14} {'ERROR':<8} {'':<34} {why}")
            continue
        sl = "[{}, {})".format(*res["slice"])
        worst = max(res["tensors"], key=lambda t: float("inf") if t["budget_used"] is None else t["budget_used"])
        failed = [f"{t['name']} ({budget(t['budget_used'])} at {t['worst_index']})"
                  for t in res["tensors"] if t["verdict"] != "PASS"]
        verdict = "PASS" if res["ok"] and code == 0 else "FAIL"
        print(f"  {r:<5} {sl:<14} {verdict:<8} {budget(worst['budget_used']) + ' (' + worst['name'] + ')':<34} "
              f"{', '.join(failed) if failed else '-'}")
    ok = len(results) == p and all(res.get("ok") for res in results) and all(c == 0 for c in codes)
    for res in results:
        if "table" in res and (verbose or not res["ok"]):
            print()
            print(res["table"])
    bad = [str(res["rank"]) for res in results if not res.get("ok")]
    print(f"{'PASS' if ok else 'FAIL'}: {p - len(bad)} of {p} ranks pass"
          f"{'' if ok else ' (failing: rank ' + ', '.join(bad) + ')'}; {secs:.1f} s")
    return 0 if ok else 1


def gen_inputs(cfg, rank):
    """Writes rank's inputs with `tpmlp gen --tp P --rank R` (its shard; x, dy, b2
    whole; with --no-bias where the step has no biases: no b1, b2) from the
    vector file's metadata; returns (tensors, metadata)."""
    meta, step = cfg["meta"], cfg["step"]
    path = os.path.join(cfg["dir"], f"inputs-{rank}.safetensors")
    subprocess.run([cfg["tpmlp"], "gen", "--batch", meta["B"], "--seq", meta["T"], "--hidden", meta["D"],
                    "--ffn", meta["F"], "--act", meta["activation"], "--seed", meta["seed"],
                    "--tp", str(step.tp), "--rank", str(rank), "--split", step.split, "-o", path]
                   + ([] if step.bias else ["--no-bias"]),
                   check=True, stdout=subprocess.DEVNULL)
    return tpmlp.load(path)


def save_and_check(cfg, rank, tensors, implementation):
    """Saves rank's tensors (with the rank's metadata, so that check refuses
    them as another rank) and checks them: returns the result's fields. A rank
    must save every output of the step and its partial sums."""
    meta, step = cfg["meta"], cfg["step"]
    missing = [name for name in step.outputs + step.partials if name not in tensors]
    if missing:
        raise ValueError(f"rank {rank} saves no {', '.join(missing)}")
    f0, f1 = step.block(rank)
    out_file = os.path.join(cfg["dir"], f"rank-{rank}.safetensors")
    out_meta = {k: meta[k] for k in ("B", "T", "D", "F", "activation", "seed", "bias") if k in meta}
    out_meta.update(tp=step.tp, rank=rank, split=step.split, f0=f0, f1=f1, implementation=implementation)
    tpmlp.save(out_file, tensors, out_meta)
    report = tpmlp.check(cfg["vectors"], out_file, dtype="fp32", tp=step.tp, rank=rank, split=step.split,
                         tpmlp=cfg["tpmlp"])
    return dict(ok=report.ok, slice=[f0, f1], table=str(report),
                tensors=[{"name": t.name, "verdict": t.verdict, "budget_used": t.budget_used,
                          "worst_index": list(t.worst_index)} for t in report.tensors])
