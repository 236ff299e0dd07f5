"""tpmlp from Python: read and write test vectors, check outputs with the tpmlp program.

    import tpmlp
    t, meta = tpmlp.load("case.safetensors")          # inputs and float64 references
    step = tpmlp.Step("case.safetensors")             # its tensors: step.inputs, step.outputs, shapes
    ...                                                # run your MLP
    tpmlp.save("out.safetensors", {"h": h, "y": y, ...})
    report = tpmlp.check("case.safetensors", "out.safetensors", dtype="fp32")
    print(report); assert report.ok

For pytest: tpmlp.testing.assert_matches. The tensors of a step and each
rank's block of F under tensor parallelism: tpmlp.Step (tpmlp.step), read
from `tpmlp info --json`. The names, shapes and the error model:
docs/vectors.md in the tpmlp repository.
"""
from ._version import __version__
from .check import CheckError, Report, TensorResult, check, find_program
from .files import load, metadata, read_header, save
from .step import Step, StepTensor

__all__ = ["__version__", "load", "save", "metadata", "read_header", "check", "find_program",
           "CheckError", "Report", "TensorResult", "Step", "StepTensor"]
