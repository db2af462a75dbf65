"""scripts/train_torch.py: the PyTorch baseline with train.py's experiment flags."""

from __future__ import annotations

import sys

from jaxresnet.cli.args import (
    ArgumentParser,
    add_config_flags,
    default_workdir,
    experiment_config,
    line_buffered_output,
)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="train_torch.py",
        description="The PyTorch baseline: same flags, subset, batch order and outputs as train.py.",
    )
    add_config_flags(p, torch=True)
    return p


def main(argv: list[str]) -> int:
    line_buffered_output()
    parser = build_parser()
    args = parser.parse_args(argv)
    from jaxresnet.config import ConfigError
    from jaxresnet.data import DataError

    try:
        from jaxresnet.pytorch.train import check_torch_config, torch_train_run
    except ImportError as e:  # jaxresnet.pytorch says in one line what to install
        parser.error(f"the torch baseline cannot run: {e}")
    config = experiment_config(parser, args, argv)
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
