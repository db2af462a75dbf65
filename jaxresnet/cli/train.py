"""scripts/train.py: the flags of a JAX training run, checked before any heavy work, and its exit status.

A setting of the run is a field of `jaxresnet.config.TrainConfig`, whose declaration makes its flag;
this module adds only the flags of the process (the workdir, resuming, several processes, the bar)."""

from __future__ import annotations

import sys

from jaxresnet.cli.args import (
    ArgumentParser,
    add_config_flags,
    default_workdir,
    experiment_config,
    line_buffered_output,
    quiet_libraries,
)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="train.py", description="Train a ResNet on a CIFAR-10 subset with JAX/Flax.")
    add_config_flags(p)
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --workdir from its latest complete checkpoint"
    )
    g = p.add_argument_group("several processes (data parallel over all their devices; README: Many processes)")
    g.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-process run (jax.distributed.initialize); run the same command in every "
        "process; settings not given below come from the cluster (SLURM, ...)",
    )
    g.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="process 0's address, the same in every process (implies --distributed)",
    )
    g.add_argument("--num-processes", type=int, default=None, help="how many processes (implies --distributed)")
    g.add_argument("--process-id", type=int, default=None, help="this process's number, 0..N-1 (implies --distributed)")
    p.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="force the progress bar on (default: only on a terminal)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: list[str]) -> int:
    line_buffered_output()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume and not args.workdir:
        parser.error("--resume needs --workdir: the run to continue")

    from jaxresnet.config import ConfigError
    from jaxresnet.data import DataError
    from jaxresnet.training.checkpoint import CheckpointError
    from jaxresnet.training.compile_cache import enable_compilation_cache
    from jaxresnet.training.lock import WorkdirBusy
    from jaxresnet.training.loop import NonFiniteLoss
    from jaxresnet.training.preemption import Preempted
    from jaxresnet.training.run import train_run

    config = experiment_config(parser, args, argv)
    try:
        config.validate()
    except ConfigError as e:
        parser.error(str(e))
    if error := process_flags_error(args):
        parser.error(error)
    workdir = args.workdir or default_workdir(f"{config.arch}-r{config.resize}-s{config.seed}")
    quiet_libraries()
    enable_compilation_cache()
    import jax

    start_jax(parser, args, config)
    check_native(parser, config.conv_impl, config.norm_impl)
    from jaxresnet.training import memory

    if error := memory.check(config):
        parser.error(error)
    try:
        train_run(config, workdir, resume=args.resume, progress=args.progress)
    except (ConfigError, DataError, CheckpointError, WorkdirBusy) as e:
        parser.error(str(e))
    except NonFiniteLoss as e:
        print(
            f"train.py: error: training diverged: {e}; try a lower --lr. "
            f"Checkpoints up to the last good epoch are in {workdir}",
            file=sys.stderr,
        )
        return 1
    except Preempted as e:
        print(
            f"train.py: {e}; run the same command again to continue (or --resume --workdir {workdir})", file=sys.stderr
        )
        return e.exit_status
    except KeyboardInterrupt:
        print(f"\ntrain.py: interrupted; continue with --resume --workdir {workdir}", file=sys.stderr)
        return 130
    if jax.process_index() == 0:  # one process reports for the run
        print(f"Outputs in {workdir}", file=sys.stderr)
    return 0


def start_jax(parser, args, config) -> None:
    """What only the process's start may set: 64-bit mode, and joining the other processes."""
    import jax

    if config.dtype == "float64":  # the numerical reference: JAX's 64-bit mode, before any array exists
        jax.config.update("jax_enable_x64", True)
    if args.distributed:  # before anything asks JAX for its devices (the checks after this do)
        from jaxresnet.training.parallel import initialize_processes

        try:
            initialize_processes(args.coordinator, args.num_processes, args.process_id)
        except (RuntimeError, ValueError) as e:  # no cluster found, coordinator unreachable, ...
            parser.error(f"--distributed: cannot join the processes: {str(e).strip().splitlines()[0][:300]}")


def process_flags_error(args) -> str | None:
    """Check the multi-process flags (any of them implies --distributed) before JAX starts."""
    if args.coordinator is not None or args.num_processes is not None or args.process_id is not None:
        args.distributed = True
    if args.num_processes is not None and args.num_processes < 1:
        return f"--num-processes must be an integer >= 1, got {args.num_processes}"
    if args.process_id is not None:
        if args.process_id < 0:
            return f"--process-id must be an integer >= 0, got {args.process_id}"
        if args.num_processes is not None and args.process_id >= args.num_processes:
            return f"--process-id must be below --num-processes ({args.num_processes}), got {args.process_id}"
    if args.coordinator is not None:
        host, _, port = args.coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            return f"--coordinator must be HOST:PORT (process 0's address), got {args.coordinator!r}"
    return None


def check_native(parser, conv_impl: str, norm_impl: str) -> None:
    from jaxresnet import native

    error, warning = native.check(conv_impl, norm_impl)
    if error:
        parser.error(error)
    if warning:
        print(f"{parser.prog}: warning: {warning}", file=sys.stderr)
