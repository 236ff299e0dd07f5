"""The tensor-parallel MLP of the PyTorch blog posts, made whole and proved rank by rank.

Megatron's MLP on P ranks (torch.distributed; gloo on the CPU, NCCL when there
are at least P GPUs): fc1 split by columns (ColumnParallelLinear), the
activation on each rank's block of F, fc2 split by rows (RowParallelLinear),
with Megatron's two conjugate operators

    f: identity forward, all-reduce backward   (before fc1: dX is summed over ranks)
    g: all-reduce forward, identity backward   (after fc2: Y is summed over ranks)

and b2 added once, after g (a step without biases, tpmlp gen --no-bias: the
layers have none, as nn.Linear(bias=False), and no bias gradients are saved).
Each rank reads only its own shard, written by
`tpmlp gen ... --tp P --rank R` from the vector file's metadata (F split as
tpmlp.Step says: balanced, Megatron's), runs forward and backward with the
file's dy, saves what it holds (h, a as (B, T, F_R); y, dx; its gradients,
named after its parameters; y.partial = A_R W2_R^T before g and dx.partial =
its dX before f's all-reduce) and checks it with `tpmlp check --tp P --rank R`
through the tpmlp Python package. The parent prints a table of the ranks and
exits 0 only when every rank passes.

    python3 examples/torch_tp.py --tp 4 tests/vectors/gelu-2x3-d8-f20.safetensors
    python3 examples/torch_tp.py --tp 2 --bug no-dx-allreduce VECTORS      # must FAIL

--bug plants one of the classic mistakes, each of which must fail:
    b2-every-rank     every rank adds b2 before g (y gets P b2; refused for a step without biases)
    no-dx-allreduce   f's backward does not all-reduce (dx is one rank's partial)
    tanh-gelu         the other GELU form (tanh for erf; erf for tanh; tanh-GELU for relu; erf-GELU for silu)
    extra-allreduce   g all-reduces in the backward too (every gradient P times too big)

The tpmlp program: --tpmlp, else $TPMLP, else tpmlp on PATH, else ./tpmlp of this checkout.
"""
import datetime
import json
import os
import socket
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import tp_harness  # beside this file: the command line, finding tpmlp, the ranks' table


# ---------------------------------------------------------------- the harness

def free_port():
    """A free TCP port on the loopback, from the kernel (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dist_init(rank, num_procs, run_func, *args):
    """Joins the process group as `rank` of `num_procs`, runs run_func(rank, num_procs, *args),
    then a barrier and destroy_process_group(). The parent sets MASTER_PORT.

    A run_func that returns False (its check failed) makes the process exit with status 1.
    """
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["RANK"] = str(rank)
    os.environ["LOCAL_RANK"] = str(rank)
    os.environ["WORLD_SIZE"] = str(num_procs)
    addr, port = os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"]
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    backend = "nccl" if gpus >= num_procs else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, world_size=num_procs, rank=rank,
                            init_method=f"tcp://{addr}:{port}",
                            timeout=datetime.timedelta(seconds=120))
    try:
        ok = run_func(rank, num_procs, *args)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    if ok is False:
        sys.exit(1)


def launch(num_procs, run_func, *args, timeout=600):
    """One process per rank (spawn), each in dist_init; returns their exit codes.

    A rank that dies takes the others down after a grace period (they would
    wait in a collective for it).
    """
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(free_port())
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=dist_init, args=(r, num_procs, run_func) + args) for r in range(num_procs)]
    for p in procs:
        p.start()
    deadline, died_at = time.monotonic() + timeout, None
    while any(p.is_alive() for p in procs):
        time.sleep(0.05)
        now = time.monotonic()
        if died_at is None and any(p.exitcode not in (None, 0) for p in procs):
            died_at = now
        if now > deadline or (died_at is not None and now > died_at + 30):
            for p in procs:
                if p.is_alive():
                    p.terminate()
            break
    for p in procs:
        p.join()
    return [p.exitcode for p in procs]


# ---------------------------------------------------------- Megatron's f and g

class CopyToTensorParallelRegion(torch.autograd.Function):
    """f: identity forward; all-reduce of the gradient backward (dX = sum over ranks of dX_R)."""

    @staticmethod
    def forward(ctx, x, taps, bug):
        ctx.taps, ctx.bug = taps, bug
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        ctx.taps["dx.partial"] = grad.detach().clone()  # the rank's dX before the all-reduce
        if ctx.bug != "no-dx-allreduce":
            grad = grad.clone()
            dist.all_reduce(grad)
        return grad, None, None


class ReduceFromTensorParallelRegion(torch.autograd.Function):
    """g: all-reduce forward (Y = sum over ranks of A_R W2_R^T); identity backward."""

    @staticmethod
    def forward(ctx, x, bug):
        ctx.bug = bug
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        if ctx.bug == "extra-allreduce":  # the bug: g's all-reduce applied backward as well
            grad = grad.clone()
            dist.all_reduce(grad)
        return grad, None


class ColumnParallelLinear(torch.nn.Module):
    """fc1's rows [f0, f1) (output columns of H): f, then X W1_R^T + b1_R (bias None: no b1)."""

    def __init__(self, weight, bias, taps, bug=None):
        super().__init__()
        self.weight = torch.nn.Parameter(weight)  # (F_R, D), nn.Linear layout
        self.bias = None if bias is None else torch.nn.Parameter(bias)  # (F_R)
        self.taps, self.bug = taps, bug

    def forward(self, x):
        x = CopyToTensorParallelRegion.apply(x, self.taps, self.bug)
        return F.linear(x, self.weight, self.bias)


class RowParallelLinear(torch.nn.Module):
    """fc2's columns [f0, f1) (input rows of A): A_R W2_R^T, then g, then b2 once (bias None: no b2)."""

    def __init__(self, weight, bias, taps, bug=None):
        super().__init__()
        self.weight = torch.nn.Parameter(weight)  # (D, F_R)
        self.bias = None if bias is None else torch.nn.Parameter(bias)  # (D), whole on every rank
        self.taps, self.bug = taps, bug

    def forward(self, a):
        if self.bug == "b2-every-rank":
            partial = F.linear(a, self.weight, self.bias)  # the bug: b2 summed P times by g
        else:
            partial = F.linear(a, self.weight)
        self.taps["y.partial"] = partial.detach().clone()
        y = ReduceFromTensorParallelRegion.apply(partial, self.bug)
        if self.bug != "b2-every-rank" and self.bias is not None:
            y = y + self.bias
        return y


def activation(name, bug):
    if bug == "tanh-gelu":
        name = {"gelu": "gelu_tanh", "gelu_tanh": "gelu", "relu": "gelu_tanh", "silu": "gelu"}[name]
    return {"gelu": torch.nn.GELU(), "gelu_tanh": torch.nn.GELU(approximate="tanh"),
            "relu": torch.nn.ReLU(), "silu": torch.nn.SiLU()}[name]


class ParallelMLP(torch.nn.Module):
    def __init__(self, shard, act, taps, bug=None):
        super().__init__()
        t = {k: torch.from_numpy(v.copy()) for k, v in shard.items()}
        # the biases only where the step has them (a rank's inputs of gen --no-bias hold none)
        self.linear_fc1 = ColumnParallelLinear(t["linear_fc1.weight"], t.get("linear_fc1.bias"), taps, bug)
        self.act = activation(act, bug)
        self.linear_fc2 = RowParallelLinear(t["linear_fc2.weight"], t.get("linear_fc2.bias"), taps, bug)
        self.taps = taps

    def forward(self, x):
        h = self.linear_fc1(x)
        a = self.act(h)
        self.taps["h"], self.taps["a"] = h, a
        return self.linear_fc2(a)


# ------------------------------------------------------------------ one rank

def run_rank(rank, tp, cfg):
    """Makes rank's inputs with tpmlp gen, runs forward and backward, saves and checks its tensors.
    Writes cfg['dir']/rank-R.json with its verdict; returns whether it passed."""
    torch.set_num_threads(1)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    meta, d = cfg["meta"], cfg["dir"]
    result = {"rank": rank, "ok": False}
    try:
        shard, _ = tp_harness.gen_inputs(cfg, rank)
        device = torch.device("cuda", rank) if dist.get_backend() == "nccl" else torch.device("cpu")

        taps = {}
        mlp = ParallelMLP(shard, meta["activation"], taps, cfg["bug"]).to(device)
        x = torch.from_numpy(shard["x"].copy()).to(device).requires_grad_(True)
        dy = torch.from_numpy(shard["dy"].copy()).to(device)
        y = mlp(x)
        y.backward(dy)

        # the taps (h, a, y.partial, dx.partial), y and dx, and each parameter's gradient under its
        # name: the module's names are the vector file's (linear_fc1.weight, ...)
        outs = {**taps, "y": y, "dx": x.grad}
        outs.update({f"{name}.grad": p.grad for name, p in mlp.named_parameters()})
        impl = (f"torch {torch.__version__} {dist.get_backend()} "
                f"(examples/torch_tp.py{', bug ' + cfg['bug'] if cfg['bug'] else ''})")
        result.update(tp_harness.save_and_check(cfg, rank, outs, impl))
    except Exception as e:  # the parent reports it against this rank
        result["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        with open(os.path.join(d, f"rank-{rank}.json"), "w") as f:
            json.dump(result, f)
    return result["ok"]


# -------------------------------------------------------------------- parent

def main(argv=None):
    args, prog, step = tp_harness.parse_args(__doc__, "processes", argv)

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    backend = "nccl" if gpus >= args.tp else "gloo"

    def ranks(cfg):
        codes = launch(args.tp, run_rank, cfg)
        results = []
        for r in range(args.tp):
            try:
                with open(os.path.join(cfg["dir"], f"rank-{r}.json")) as f:
                    results.append(json.load(f))
            except (OSError, ValueError):
                results.append({"rank": r, "ok": False, "error": "it wrote no verdict"})
        return codes, results

    (codes, results), secs = tp_harness.run_in_workdir(args, prog, step, "torch_tp", ranks)
    title = tp_harness.title("torch_tp", args, step,
                             f"{args.tp} ranks over {backend}, torch {torch.__version__}")
    return tp_harness.report(title, results, codes, args.tp, args.verbose, secs)


if __name__ == "__main__":
    sys.exit(main())
