"""The tensor-parallel MLP in JAX with shard_map, proved rank by rank: the JAX twin of torch_tp.py.

Megatron's MLP on P ranks, here P host CPU devices of one process
(XLA_FLAGS=--xla_force_host_platform_device_count=P, set by this script
before it imports jax) in a Mesh with one axis 'tp'. Inside shard_map each
device is a rank: fc1 split by rows of W1 (ColumnParallelLinear), the
activation on the rank's block of F, fc2 split by columns of W2
(RowParallelLinear), with Megatron's two conjugate operators as jax.custom_vjp

    f: identity forward, psum backward   (before fc1: dX is summed over ranks)
    g: psum forward, identity backward   (after fc2: Y is summed over ranks)

and b2 added once, after g (a step without biases, tpmlp gen --no-bias: no b1,
b2, and no bias gradients). Rank R's inputs are written by `tpmlp gen ...
--tp P --rank R` from the vector file's metadata (F split as tpmlp.Step
says: balanced, Megatron's). When P does not divide F the ranks' blocks
differ by one: each is padded up to the largest along its axis of F (the
step's f_axis) with zeros, zero rows of W1 and b1 and zero columns of W2
(act(0) = 0 for gelu, gelu_tanh, relu and silu, so the padding adds nothing to y or
dx and gets zero gradients), and the padding is cut off before saving.
Forward and backward (jax.vjp with the file's dy) run in float32; each rank's
tensors (h, a as (B, T, F_R); y, dx; its gradients, named after its
parameters; y.partial = A_R W2_R^T before g and dx.partial = its dX before
f's psum) are saved and checked with
`tpmlp check --tp P --rank R` through the tpmlp Python package. It prints a
table of the ranks and exits 0 only when every rank passes.

    python3 examples/jax_tp.py --tp 4 tests/vectors/gelu-2x3-d8-f20.safetensors
    python3 examples/jax_tp.py --tp 2 --bug no-dx-allreduce VECTORS      # must FAIL

--bug plants one of the classic mistakes, each of which must fail:
    b2-every-rank     every rank adds b2 before g (y gets P b2; refused for a step without biases)
    no-dx-allreduce   f's backward does not psum (dx is one rank's partial)
    tanh-gelu         the other GELU form (tanh for erf; erf for tanh; tanh-GELU for relu; erf-GELU for silu)
    extra-allreduce   g psums in the backward too (every gradient P times too big)

The tpmlp program: --tpmlp, else $TPMLP, else tpmlp on PATH, else ./tpmlp of this checkout.
"""
import os
import re
import sys

import numpy as np

import tp_harness  # beside this file: the command line, finding tpmlp, the ranks' table

AXIS = "tp"


def set_device_count(p):
    """Asks XLA for p host CPU devices; must run before jax is imported."""
    if "jax" in sys.modules:
        raise RuntimeError("jax was imported before jax_tp could set XLA_FLAGS "
                           "(--xla_force_host_platform_device_count)")
    flags = re.sub(r"--xla_force_host_platform_device_count=\S*", "", os.environ.get("XLA_FLAGS", ""))
    os.environ["XLA_FLAGS"] = f"{flags.strip()} --xla_force_host_platform_device_count={p}".strip()


# ---------------------------------------------------------- Megatron's f and g

def megatron_ops(bug):
    """f and g as jax.custom_vjp over the mesh axis 'tp' (to be called inside shard_map)."""
    import jax
    from jax import lax

    @jax.custom_vjp
    def f(x):  # copy to the tensor-parallel region
        return x

    def f_fwd(x):
        return x, None

    def f_bwd(_, ct):
        if bug == "no-dx-allreduce":  # the bug: dX stays the rank's partial
            return (ct,)
        return (lax.psum(ct, AXIS),)

    f.defvjp(f_fwd, f_bwd)

    @jax.custom_vjp
    def g(x):  # reduce from the tensor-parallel region
        return lax.psum(x, AXIS)

    def g_fwd(x):
        return lax.psum(x, AXIS), None

    def g_bwd(_, ct):
        if bug == "extra-allreduce":  # the bug: g's psum applied backward as well
            return (lax.psum(ct, AXIS),)
        return (ct,)

    g.defvjp(g_fwd, g_bwd)
    return f, g


def activation(name, bug):
    import jax
    if bug == "tanh-gelu":
        name = {"gelu": "gelu_tanh", "gelu_tanh": "gelu", "relu": "gelu_tanh", "silu": "gelu"}[name]
    return {"gelu": lambda h: jax.nn.gelu(h, approximate=False),
            "gelu_tanh": lambda h: jax.nn.gelu(h, approximate=True),
            "relu": jax.nn.relu, "silu": jax.nn.silu}[name]


def parallel_mlp_step(act_name, bug):
    """The per-rank body for shard_map: forward and backward of one rank's block.

    Takes the rank's inputs by name: x, dy, b2 (replicated) and its (padded)
    W1_R (Fp, D), b1_R (Fp), W2_R (D, Fp) (no b1, b2 for a step without
    biases: no b terms then); returns the rank's tensors by name,
    each with a leading axis of 1 that shard_map stacks over the ranks."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    f, g = megatron_ops(bug)
    act = activation(act_name, bug)
    hi = lax.Precision.HIGHEST

    def forward(x, tap, params):
        # params: the weights and biases by name; tap is zero: its gradient is the cotangent
        # reaching f, the rank's dX before the psum
        w1, b1 = params["linear_fc1.weight"], params.get("linear_fc1.bias")
        w2, b2 = params["linear_fc2.weight"], params.get("linear_fc2.bias")
        u = f(x) + tap
        h = jnp.einsum("btd,fd->btf", u, w1, precision=hi)               # ColumnParallelLinear
        if b1 is not None:
            h = h + b1
        a = act(h)
        partial = jnp.einsum("btf,df->btd", a, w2, precision=hi)          # RowParallelLinear
        if bug == "b2-every-rank":  # the bug: b2 summed P times by g
            partial = partial + b2
        y = g(partial)
        if bug != "b2-every-rank" and b2 is not None:
            y = y + b2
        return y, (h, a, partial)

    def rank_step(t):
        x, dy = t["x"], t["dy"]
        params = {k: v for k, v in t.items() if k not in ("x", "dy")}
        y, vjp, (h, a, partial) = jax.vjp(forward, x, jnp.zeros_like(x), params, has_aux=True)
        dx, dx_partial, grads = vjp(dy)
        outs = {"h": h, "a": a, "y": y, "dx": dx, "y.partial": partial, "dx.partial": dx_partial}
        outs.update({f"{name}.grad": grad for name, grad in grads.items()})  # each parameter's, under its name
        return {k: v[None] for k, v in outs.items()}

    return rank_step


# ------------------------------------------------------------------ the run

def run(tp, cfg):
    """Runs the P ranks under shard_map; saves and checks each rank's tensors.
    Returns one result dict per rank (as torch_tp's rank-R.json)."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from jax.experimental.shard_map import shard_map

    jax.config.update("jax_enable_x64", False)
    step = cfg["step"]
    cpus = jax.devices("cpu")
    if len(cpus) < tp:
        raise RuntimeError(f"{len(cpus)} CPU devices for --tp {tp} (XLA_FLAGS={os.environ.get('XLA_FLAGS')!r})")
    mesh = Mesh(np.array(cpus[:tp]), (AXIS,))

    # each rank's inputs, from tpmlp gen --tp P --rank R
    shards = [tp_harness.gen_inputs(cfg, r)[0] for r in range(tp)]
    fp = max(f1 - f0 for f0, f1 in step.blocks)  # shard_map wants equal blocks: the largest

    def laid_out(name):
        """An input as shard_map takes it, and its PartitionSpec: one with an axis of F is the ranks'
        blocks, each padded with zeros to fp, side by side along that axis; a replicated one is whole."""
        ax = step[name].f_axis
        if ax is None:
            assert all(np.array_equal(s[name], shards[0][name]) for s in shards)  # the same on every rank
            return shards[0][name], P()
        pad = [(0, 0)] * len(step[name].shape)
        blocks = []
        for s in shards:
            pad[ax] = (0, fp - s[name].shape[ax])
            blocks.append(np.pad(s[name], pad))
        return np.concatenate(blocks, axis=ax), P(*(AXIS if i == ax else None for i in range(len(pad))))

    def put(a, spec):
        return jax.device_put(jnp.asarray(a, jnp.float32), NamedSharding(mesh, spec))

    inputs = {name: laid_out(name) for name in step.inputs}
    args = {name: put(a, spec) for name, (a, spec) in inputs.items()}
    in_specs = ({name: spec for name, (_, spec) in inputs.items()},)
    body = parallel_mlp_step(step.activation, cfg["bug"])
    # every output has a leading rank axis; check_rep=False since f and g are custom_vjp with psums
    fn = jax.jit(shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=P(AXIS), check_rep=False))
    outs = jax.tree_util.tree_map(np.asarray, fn(args))
    assert all(v.dtype == np.float32 for v in outs.values())

    results = []
    for r, (f0, f1) in enumerate(step.blocks):
        result = {"rank": r, "ok": False}
        try:
            # rank r's tensors, the padding cut off: the first f1 - f0 of each block of F
            t = {name: step.cut(name, v[r], block=(0, f1 - f0)) for name, v in outs.items()}
            impl = (f"jax {jax.__version__} shard_map on {tp} cpu devices "
                    f"(examples/jax_tp.py{', bug ' + cfg['bug'] if cfg['bug'] else ''})")
            result.update(tp_harness.save_and_check(cfg, r, t, impl))
        except Exception as e:  # reported against this rank
            result["error"] = f"{type(e).__name__}: {e}"
        results.append(result)
    return results


# -------------------------------------------------------------------- main

def main(argv=None):
    args, prog, step = tp_harness.parse_args(__doc__, "host CPU devices", argv)

    set_device_count(args.tp)  # before jax is imported (in run)
    results, secs = tp_harness.run_in_workdir(args, prog, step, "jax_tp", lambda cfg: run(args.tp, cfg))
    import jax

    title = tp_harness.title("jax_tp", args, step,
                             f"{args.tp} ranks as cpu devices under shard_map, jax {jax.__version__}")
    return tp_harness.report(title, results, [0] * len(results), args.tp, args.verbose, secs)


if __name__ == "__main__":
    sys.exit(main())
