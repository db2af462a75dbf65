"""scripts/train.py: the flags of a JAX training run, checked before any heavy work, and its exit status.

A new training flag goes here (parser) and into `jaxresnet.config.TrainConfig` (value, validation,
whether it may change on resume)."""
from __future__ import annotations

import sys

from jaxresnet.cli.args import ArgumentParser, add_experiment_flags, default_workdir, quiet_libraries


def build_parser() -> ArgumentParser:
    from jaxresnet.config import DTYPES, TrainConfig
    from jaxresnet.models.layers import CONV_IMPLS, INITS, NORM_IMPLS
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
    p.add_argument("--checkpoint-minutes", type=float, default=d.checkpoint_minutes,
                   help="also save a step checkpoint inside an epoch this often, at a step boundary "
                        "(default %(default)s; 0: never); SIGTERM/SIGINT always save one")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --workdir from its latest complete checkpoint")
    p.add_argument("--distributed", action="store_true",
                   help="multi-host: call jax.distributed.initialize() first (run the same command on every host)")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="force the progress bar on (default: only on a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume and not args.workdir:
        parser.error("--resume needs --workdir: the run to continue")

    from jaxresnet.training.checkpoint import CheckpointError
    from jaxresnet.config import ConfigError, TrainConfig
    from jaxresnet.data import DataError
    from jaxresnet.training.lock import WorkdirBusy
    from jaxresnet.training.preemption import Preempted
    from jaxresnet.training.run import train_run
    from jaxresnet.training.loop import NonFiniteLoss
    from jaxresnet.training.compile_cache import enable_compilation_cache

    fields = {k: v for k, v in vars(args).items() if k not in ("workdir", "resume", "progress", "distributed")}
    config = TrainConfig(**fields)
    try:
        config.validate()
    except ConfigError as e:
        parser.error(str(e))
    workdir = args.workdir or default_workdir(f"{config.arch}-r{config.resize}-s{config.seed}")
    quiet_libraries()
    enable_compilation_cache()
    if args.distributed:  # before anything asks JAX for its devices (the checks below do)
        import jax

        jax.distributed.initialize()  # cluster settings from the environment (SLURM, TPU, JAX_COORDINATOR_ADDRESS...)
    check_native(parser, config.conv_impl, config.norm_impl)
    from jaxresnet.training import memory

    if error := memory.check(config):
        parser.error(error)
    try:
        train_run(config, workdir, resume=args.resume, progress=args.progress)
    except (ConfigError, DataError, CheckpointError, WorkdirBusy) as e:
        parser.error(str(e))
    except NonFiniteLoss as e:
        print(f"train.py: error: training diverged: {e}; try a lower --lr. "
              f"Checkpoints up to the last good epoch are in {workdir}", file=sys.stderr)
        return 1
    except Preempted as e:
        print(f"train.py: {e}; run the same command again to continue (or --resume --workdir {workdir})",
              file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print(f"\ntrain.py: interrupted; continue with --resume --workdir {workdir}", file=sys.stderr)
        return 130
    print(f"Outputs in {workdir}", file=sys.stderr)
    return 0


def check_native(parser, conv_impl: str, norm_impl: str) -> None:
    from jaxresnet import native

    error, warning = native.check(conv_impl, norm_impl)
    if error:
        parser.error(error)
    if warning:
        print(f"{parser.prog}: warning: {warning}", file=sys.stderr)
