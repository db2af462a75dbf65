#!/usr/bin/env python3
"""The hand-written fused BatchNorm against oneDNN's batch-normalization primitive, layer by layer.

    python scripts/bench_batchnorm.py --resize 128 [--batch-size 32] [--reps 20] [--json F]

Every training-mode BatchNorm of the network (its shape, and whether a ReLU or a residual add and
ReLU follow it) is read off the flax model itself; scripts/bench_batchnorm.cc then times, on the
same buffers, the forward and backward of jaxresnet/native/csrc/batchnorm.cc and of oneDNN's
primitives (fuse_norm_relu; for BN + add + ReLU, whose fused flag oneDNN 3.2 does not implement on
CPU, the BN primitive, a binary add with a ReLU post-op and ReLU's backward), and checks that they
agree.
Prints a per-layer-kind table and the totals for one training step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODES = {0: "BN", 1: "BN+ReLU", 2: "BN+add+ReLU"}


def layer_shapes(arch: str, resize: int, batch_size: int) -> list[tuple[int, ...]]:
    """(n, h, w, c, mode) of every training-mode BatchNorm call of the network, in order."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from jaxresnet.models import ARCHS
    from jaxresnet.models.layers import BatchNorm

    model = ARCHS[arch](num_classes=10, norm_impl="xla")
    x = jax.ShapeDtypeStruct((batch_size, resize, resize, 3), jnp.float32)
    variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
    calls = []

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, BatchNorm) and context.method_name == "__call__":
            x, residual = args[0], (args[1] if len(args) > 1 else kwargs.get("residual"))
            relu = kwargs.get("relu", args[2] if len(args) > 2 else False)
            calls.append((*x.shape, 2 if residual is not None else int(bool(relu))))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]), variables, x)
    return calls


def build_harness(out_dir: Path) -> Path:
    from jaxresnet.native import build

    program = out_dir / "bench_batchnorm"
    source = Path(__file__).with_suffix(".cc")
    done = subprocess.run(build.compile_command([source], program, shared=False), capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench_batchnorm.py: error: building {source.name} failed:\n{done.stderr[-2000:]}")
    return program


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet34")
    p.add_argument("--resize", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--reps", type=int, default=20, help="timed repetitions per layer (median)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    calls = layer_shapes(args.arch, args.resize, args.batch_size)
    distinct = sorted(set(calls), key=calls.index)
    with tempfile.TemporaryDirectory() as tmp:
        program = build_harness(Path(tmp))
        text = "".join(" ".join(map(str, c)) + "\n" for c in distinct)
        done = subprocess.run([str(program), str(args.reps)], input=text, capture_output=True, text=True, check=True)
    timed = {}
    for line in done.stdout.split("\n"):
        if line.strip():
            f = line.split()
            timed[tuple(map(int, f[:5]))] = dict(
                zip(("ours_fwd", "ours_bwd", "onednn_fwd", "onednn_bwd"), map(float, f[5:9])),
                max_rel_diff=float(f[9]),
                flipped_mask=int(f[10]),
            )
    rows = []
    totals = defaultdict(float)
    by_mode = defaultdict(lambda: defaultdict(float))
    for call in calls:  # a step runs every call, repeated shapes included
        t = timed[call]
        for k in ("ours_fwd", "ours_bwd", "onednn_fwd", "onednn_bwd"):
            totals[k] += t[k]
            by_mode[call[4]][k] += t[k]
    for call in distinct:
        t = timed[call]
        rows.append({"shape": list(call[:4]), "kind": MODES[call[4]], "count": calls.count(call), **t})
    print(
        f"{args.arch} --resize {args.resize} --batch-size {args.batch_size}: {len(calls)} BatchNorms a step, "
        f"{len(distinct)} distinct; ms per call (median of {args.reps})"
    )
    print(
        f"{'shape (NHWC)':<20} {'kind':<12} {'calls':>5} {'ours fwd':>9} {'oneDNN fwd':>10} "
        f"{'ours bwd':>9} {'oneDNN bwd':>10} {'max rel diff':>12} {'mask flips':>10}"
    )
    for r in rows:
        print(
            f"{'x'.join(map(str, r['shape'])):<20} {r['kind']:<12} {r['count']:>5} {r['ours_fwd']:>9.3f} "
            f"{r['onednn_fwd']:>10.3f} {r['ours_bwd']:>9.3f} {r['onednn_bwd']:>10.3f} "
            f"{r['max_rel_diff']:>12.1e} {r['flipped_mask']:>10}"
        )
    print("per step, ms:")
    for mode in sorted(by_mode):
        m = by_mode[mode]
        print(
            f"  {MODES[mode]:<12} ours {m['ours_fwd'] + m['ours_bwd']:8.2f}   "
            f"oneDNN {m['onednn_fwd'] + m['onednn_bwd']:8.2f}"
        )
    ours, dnn = totals["ours_fwd"] + totals["ours_bwd"], totals["onednn_fwd"] + totals["onednn_bwd"]
    print(
        f"  {'all':<12} ours {ours:8.2f}   oneDNN {dnn:8.2f}   (forward {totals['ours_fwd']:.2f} vs "
        f"{totals['onednn_fwd']:.2f}, backward {totals['ours_bwd']:.2f} vs {totals['onednn_bwd']:.2f}); "
        f"oneDNN / ours = {dnn / ours:.2f}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "arch": args.arch,
                    "resize": args.resize,
                    "batch_size": args.batch_size,
                    "reps": args.reps,
                    "layers": rows,
                    "per_step_ms": dict(totals),
                    "per_step_ms_by_kind": {MODES[m]: dict(v) for m, v in by_mode.items()},
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
