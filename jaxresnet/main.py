"""Entry points behind the scripts; each returns an exit status and never shows a traceback for bad input."""
from __future__ import annotations

import sys

from jaxresnet.cli import ArgumentParser, add_experiment_flags, default_workdir, quiet_libraries


def train_parser() -> ArgumentParser:
    from jaxresnet.config import DTYPES, TrainConfig
    from jaxresnet.layers import CONV_IMPLS, INITS
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
    p.add_argument("--save-every", type=int, default=d.save_every, help="checkpoint every N epochs (default 1)")
    p.add_argument("--keep", type=int, default=d.keep, help="latest checkpoints kept, plus the best (default 3)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --workdir from its latest complete checkpoint")
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

    fields = {k: v for k, v in vars(args).items() if k not in ("workdir", "resume", "progress")}
    config = TrainConfig(**fields)
    try:
        config.validate()
    except ConfigError as e:
        parser.error(str(e))
    workdir = args.workdir or default_workdir(f"{config.arch}-r{config.resize}-s{config.seed}")
    quiet_libraries()
    enable_compilation_cache()
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
