"""pytest helpers: assert that an implementation's outputs pass `tpmlp check`.

    from tpmlp.testing import assert_matches

    def test_my_mlp(tmp_path):
        ...  # run your MLP on VECTORS, save its outputs to tmp_path / "out.safetensors"
        assert_matches(VECTORS, tmp_path / "out.safetensors")                 # whole outputs
        assert_matches(VECTORS, rank_file, tp=4, rank=2, dtype="bf16")        # one rank's
"""
from .check import check


def failure_message(report):
    """The assertion message for a failing Report: the failing tensors first, then the table."""
    who = f"rank {report.rank} of {report.tp}" if report.rank is not None else ""
    if report.rank is not None and report.slice:
        who += f" (columns [{report.slice[0]}, {report.slice[1]}) of F)"
    lines = [f"tpmlp check failed{': ' + who if who else ''} — {report.outputs} against "
             f"{report.vectors}, --dtype {report.dtype}"]
    for t in report.failed:
        prefix = f"rank {report.rank}: " if report.rank is not None else ""
        if t.nonfinite:
            lines.append(f"  {prefix}{t.name}: NaN or Inf at worst element {list(t.worst_index)}: "
                         f"{t.worst_str()}")
        else:
            lines.append(f"  {prefix}{t.name}: worst element {list(t.worst_index)}: {t.worst_str()} "
                         f"(|err| {t.max_abs_err:.3g}, budget used {t.budget_str()})")
        if t.note:
            lines.append(f"    {t.note}")
    if not report.tensors:
        lines.append("  none of the output names was found in the outputs file")
    lines.append("")
    lines.append(str(report))
    return "\n".join(lines)


def assert_matches(vectors, outputs, **kw):
    """Runs tpmlp.check(vectors, outputs, **kw); raises AssertionError unless every tensor passes.

    The message names each failing tensor, its worst element's index, got,
    reference and bound, and the share of the budget used (and the rank, for a
    per-rank check), followed by the whole table. Returns the Report on success.
    CheckError (check refused its input) and FileNotFoundError propagate as they are.
    """
    __tracebackhide__ = True  # pytest: show the caller's line
    report = check(vectors, outputs, **kw)
    if not report.ok:
        raise AssertionError(failure_message(report))
    return report
