"""Entry points behind the scripts; each returns an exit status and never shows a traceback for bad input."""
from __future__ import annotations

import sys

from jaxresnet.cli import ArgumentParser, add_experiment_flags, default_workdir, quiet_libraries


def train_parser() -> ArgumentParser:
    from jaxresnet.config import DTYPES, TrainConfig
    from jaxresnet.layers import CONV_IMPLS, INITS, NORM_IMPLS
    from jaxresnet.models import ARCHS

    d = TrainConfig()
    p = ArgumentParser(prog="train.py", description="Train a ResNet on a CIFAR-10 subset with JAX/Flax.")
    add_experiment_flags(p)
    p.add_argument("--arch", default=d.arch, choices=sorted(ARCHS), help="default %(default)s")
    p.add_argument("--dtype", default=d.dtype, choices=DTYPES,
                   help="compute dtype; parameters and BatchNorm statistics stay float32")
    p.add_argument("--init", default=d.init, choices=INITS,
                   help="weight initialisation: torch's defaults or flax's (default %(default)s)")
    p.add_argument("--conv-impl", default=d.conv_impl, choices=CONV_IMPLS,
                   help="how convolutions are computed (default %(default)s: fastest per backend and shape)")
    p.add_argument("--norm-impl", default=d.norm_impl, choices=NORM_IMPLS,
                   help="how training BatchNorm+ReLU(+residual) is computed: xla, or fused C++ on CPU "
                        "(default %(default)s: fused where it builds)")
    p.add_argument("--save-every", type=int, default=d.save_every, help="checkpoint every N epochs (default 1)")
    p.add_argument("--keep", type=int, default=d.keep, help="latest checkpoints kept, plus the best (default 3)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --workdir from its latest complete checkpoint")
    p.add_argument("--distributed", action="store_true",
                   help="multi-host: call jax.distributed.initialize() first (run the same command on every host)")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="force the progress bar on (default: only on a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def train_main(argv: list[str]) -> int:
    parser = train_parser()
    args = parser.parse_args(argv)
    if args.resume and not args.workdir:
        parser.error("--resume needs --workdir: the run to continue")

    from jaxresnet.checkpoint import CheckpointError
    from jaxresnet.config import ConfigError, TrainConfig
    from jaxresnet.data import DataError
    from jaxresnet.run import train_run
    from jaxresnet.train import NonFiniteLoss
    from jaxresnet.xla_cache import enable_compilation_cache

    fields = {k: v for k, v in vars(args).items() if k not in ("workdir", "resume", "progress", "distributed")}
    config = TrainConfig(**fields)
    try:
        config.validate()
    except ConfigError as e:
        parser.error(str(e))
    workdir = args.workdir or default_workdir(f"{config.arch}-r{config.resize}-s{config.seed}")
    quiet_libraries()
    enable_compilation_cache()
    _check_native(parser, config.conv_impl, config.norm_impl)
    if args.distributed:
        import jax

        jax.distributed.initialize()  # cluster settings from the environment (SLURM, TPU, JAX_COORDINATOR_ADDRESS...)
    try:
        train_run(config, workdir, resume=args.resume, progress=args.progress)
    except (ConfigError, DataError, CheckpointError) as e:
        parser.error(str(e))
    except NonFiniteLoss as e:
        print(f"train.py: error: training diverged: {e}; try a lower --lr. "
              f"Checkpoints up to the last good epoch are in {workdir}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ntrain.py: interrupted; continue with --resume --workdir {workdir}", file=sys.stderr)
        return 130
    print(f"Outputs in {workdir}", file=sys.stderr)
    return 0


def _check_native(parser, conv_impl: str, norm_impl: str) -> None:
    from jaxresnet import onednn

    error, warning = onednn.check(conv_impl, norm_impl)
    if error:
        parser.error(error)
    if warning:
        print(f"{parser.prog}: warning: {warning}", file=sys.stderr)


def evaluate_parser() -> ArgumentParser:
    p = ArgumentParser(prog="evaluate.py", description="Score a checkpoint of a run on the test split.")
    p.add_argument("--workdir", required=True, help="the run's folder (holds checkpoints/)")
    p.add_argument("--checkpoint", default="best",
                   help="best (highest test accuracy), latest, or an epoch number (default best)")
    p.add_argument("--data-dir", default=None, help="default: the run's own --data-dir")
    p.add_argument("--no-download", dest="download", action="store_false", default=None)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--output", default=None, help="confusion-matrix PNG (default W/confusion-epoch<N>.png)")
    return p


def evaluate_main(argv: list[str]) -> int:
    import os

    parser = evaluate_parser()
    args = parser.parse_args(argv)
    which = args.checkpoint
    if which not in ("best", "latest") and not which.isdigit():
        parser.error(f"--checkpoint must be best, latest or an epoch number, got {which!r}")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be an integer >= 1, got {args.batch_size}")

    from jaxresnet.checkpoint import CheckpointError
    from jaxresnet.data import DataError
    from jaxresnet.evaluate import evaluate_checkpoint
    from jaxresnet.run import CHECKPOINT_DIR, has_checkpoints

    quiet_libraries()
    if not has_checkpoints(args.workdir):
        parser.error(f"no checkpoints in {os.path.join(args.workdir, CHECKPOINT_DIR)}")
    try:
        report = evaluate_checkpoint(args.workdir, which, data_dir=args.data_dir, download=args.download,
                                     batch_size=args.batch_size, output=args.output)
    except (CheckpointError, DataError) as e:
        parser.error(str(e))
    print(report.text())
    print(f"Confusion matrix: {report.figure}", file=sys.stderr)
    return 0


def train_torch_parser() -> ArgumentParser:
    from jaxresnet.config import DTYPES, TrainConfig

    d = TrainConfig()
    p = ArgumentParser(prog="train_torch.py",
                       description="The PyTorch baseline: same flags, subset, batch order and outputs as train.py.")
    add_experiment_flags(p)
    p.add_argument("--arch", default=d.arch, choices=["resnet18", "resnet34"], help="default %(default)s")
    p.add_argument("--dtype", default=d.dtype, choices=DTYPES, help="float32 only")
    return p


def train_torch_main(argv: list[str]) -> int:
    parser = train_torch_parser()
    args = parser.parse_args(argv)
    from jaxresnet.config import ConfigError, TrainConfig
    from jaxresnet.data import DataError

    try:
        from jaxresnet.torch_train import check_torch_config, torch_train_run
    except ImportError:
        parser.error("the torch baseline needs PyTorch: pip install torch==2.13.0 (CPU) or pip install -e '.[torch]'")
    config = TrainConfig(**{k: v for k, v in vars(args).items() if k != "workdir"})
    try:
        check_torch_config(config)
    except ConfigError as e:
        parser.error(str(e))
    workdir = args.workdir or default_workdir(f"torch-{config.arch}-r{config.resize}-s{config.seed}")
    try:
        torch_train_run(config, workdir)
    except (ConfigError, DataError) as e:
        parser.error(str(e))
    except FloatingPointError as e:
        print(f"train_torch.py: error: training diverged: {e}", file=sys.stderr)
        return 1
    print(f"Outputs in {workdir}", file=sys.stderr)
    return 0


def compare_main(argv: list[str]) -> int:
    p = ArgumentParser(prog="compare.py",
                       description="Overlay the accuracy curves of runs (JAX and torch, one or more seeds each).")
    p.add_argument("runs", nargs="+", help="run folders (each with metrics.json and config.json)")
    p.add_argument("--output", default="compare.png", help="PNG to write (default %(default)s)")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = p.parse_args(argv)
    from jaxresnet.compare import RunError, compare_runs

    try:
        table = compare_runs(args.runs, args.output, markdown=args.markdown)
    except RunError as e:
        p.error(str(e))
    print(table)
    print(f"Figure: {args.output}", file=sys.stderr)
    return 0


def benchmark_main(argv: list[str]) -> int:
    import json

    from jaxresnet.layers import CONV_IMPLS, NORM_IMPLS
    from jaxresnet.models import ARCHS

    p = ArgumentParser(prog="benchmark.py", description="JAX vs PyTorch training/eval throughput, side by side.")
    p.add_argument("--resize", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--arch", default="resnet34", choices=sorted(ARCHS))
    p.add_argument("--conv-impl", default="auto", choices=CONV_IMPLS)
    p.add_argument("--norm-impl", default="auto", choices=NORM_IMPLS)
    p.add_argument("--steps", type=int, default=5, help="steps per timed repetition (default 5)")
    p.add_argument("--warmup", type=int, default=2,
                   help="untimed steps before each repetition's timed ones (default 2)")
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
    from jaxresnet.benchmark import as_json, format_result, run

    _check_native(p, args.conv_impl, args.norm_impl)
    result = run(args.arch, args.resize, args.batch_size, args.dtype, args.conv_impl, args.steps, args.reps,
                 torch_too=args.torch, norm_impl=args.norm_impl, warmup=args.warmup, log=lambda s: print(s, file=sys.stderr))
    print(format_result(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(as_json(result), f, indent=2)
    return 0
