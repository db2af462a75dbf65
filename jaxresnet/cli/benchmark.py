"""scripts/benchmark.py: JAX vs PyTorch throughput (the work is `jaxresnet.tools.benchmark`)."""

from __future__ import annotations

import sys

from jaxresnet.cli.args import ArgumentParser, line_buffered_output
from jaxresnet.cli.train import check_native


def main(argv: list[str]) -> int:
    line_buffered_output()
    import json

    from jaxresnet.models import ARCHS
    from jaxresnet.models.layers import CONV_IMPLS, NORM_IMPLS

    p = ArgumentParser(prog="benchmark.py", description="JAX vs PyTorch training/eval throughput, side by side.")
    p.add_argument("--resize", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--arch", default="resnet34", choices=sorted(ARCHS))
    p.add_argument("--conv-impl", default="auto", choices=CONV_IMPLS)
    p.add_argument("--norm-impl", default="auto", choices=NORM_IMPLS)
    p.add_argument("--steps", type=int, default=5, help="steps per timed repetition (default 5)")
    p.add_argument(
        "--warmup", type=int, default=2, help="untimed steps before each repetition's timed ones (default 2)"
    )
    p.add_argument("--reps", type=int, default=3, help="alternating repetitions (default 3; median reported)")
    p.add_argument("--no-torch", dest="torch", action="store_false", help="JAX only")
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = p.parse_args(argv)
    for name in ("resize", "batch_size", "steps", "reps"):
        if getattr(args, name) < (8 if name == "resize" else 1):
            p.error(f"--{name.replace('_', '-')} is too small: {getattr(args, name)}")
    if args.warmup < 0:
        p.error(f"--warmup is too small: {args.warmup}")
    from jaxresnet.config import norm_impl_dtype_error

    if error := norm_impl_dtype_error(args.norm_impl, args.dtype):
        p.error(error)
    if args.torch and args.arch == "resnet50":
        p.error("the torch reference has no resnet50; use --no-torch")
    from jaxresnet.tools.benchmark import Setting, as_json, format_result, run

    check_native(p, args.conv_impl, args.norm_impl)
    setting = Setting(
        args.arch,
        args.resize,
        args.batch_size,
        args.dtype,
        args.conv_impl,
        args.norm_impl,
        args.steps,
        args.reps,
        args.warmup,
        args.torch,
    )
    result = run(setting, log=lambda s: print(s, file=sys.stderr))
    print(format_result(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(as_json(result), f, indent=2)
    return 0
