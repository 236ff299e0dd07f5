"""What torch_tp.py and jax_tp.py share: the command line, finding the tpmlp
program, the working folder the ranks write to, and the table of the ranks'
verdicts. Each rank's result is a dict
with "rank", "ok", and from `tpmlp.check(..., tp=P, rank=R)` the JSON's
"slice" and "tensors" and the printed "table" (or an "error")."""
import argparse
import os
import shutil
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
    """The examples' command line; returns (args, tpmlp program, the vector file's metadata)."""
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
    if args.tp > int(meta["F"]):
        ap.error(f"--tp {args.tp} is more than F = {meta['F']}")
    return args, prog, meta


def run_in_workdir(args, prog, meta, name, body):
    """Runs body(cfg), where cfg names the working folder the ranks write to
    (--keep's, kept; or a temporary one, removed after), the tpmlp program,
    the vector file and its metadata, and the planted bug. Returns body's
    result and the seconds it took."""
    d = args.keep or tempfile.mkdtemp(prefix=name + "-")
    os.makedirs(d, exist_ok=True)
    cfg = {"meta": meta, "dir": d, "tpmlp": prog, "vectors": os.path.abspath(args.vectors), "bug": args.bug}
    t0 = time.monotonic()
    try:
        return body(cfg), time.monotonic() - t0
    finally:
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)


def title(name, args, meta, how):
    """The report's first line: the vector file, its sizes, how the ranks ran, the planted bug."""
    return (f"{name}: {os.path.basename(args.vectors)}: B={meta['B']} T={meta['T']} D={meta['D']} "
            f"F={meta['F']} act={meta['activation']}; {how}{'; bug: ' + args.bug if args.bug else ''}")


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


def save_and_check(cfg, meta, tp, rank, f0, f1, tensors, implementation):
    """Saves rank's tensors (with the rank's metadata, so that check refuses
    them as another rank) and checks them: returns the result's fields."""
    out_file = os.path.join(cfg["dir"], f"rank-{rank}.safetensors")
    out_meta = {k: meta[k] for k in ("B", "T", "D", "F", "activation", "seed")}
    out_meta.update(tp=tp, rank=rank, split="balanced", f0=f0, f1=f1, implementation=implementation)
    tpmlp.save(out_file, tensors, out_meta)
    report = tpmlp.check(cfg["vectors"], out_file, dtype="fp32", tp=tp, rank=rank, split="balanced",
                         tpmlp=cfg["tpmlp"])
    return dict(ok=report.ok, slice=[f0, f1], table=str(report),
                tensors=[{"name": t.name, "verdict": t.verdict, "budget_used": t.budget_used,
                          "worst_index": list(t.worst_index)} for t in report.tensors])
