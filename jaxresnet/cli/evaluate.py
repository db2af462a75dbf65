"""scripts/evaluate.py: score a checkpoint of a run (the work is `jaxresnet.tools.evaluate`)."""

from __future__ import annotations

import sys

from jaxresnet.cli.args import ArgumentParser, line_buffered_output, quiet_libraries
from jaxresnet.config import TTAS


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="evaluate.py", description="Score a checkpoint of a run on the test split.")
    p.add_argument("--workdir", required=True, help="the run's folder (holds checkpoints/)")
    p.add_argument(
        "--checkpoint", default="best", help="best (highest test accuracy), latest, or an epoch number (default best)"
    )
    p.add_argument("--data-dir", default=None, help="default: the run's own --data-dir")
    p.add_argument("--no-download", dest="download", action="store_false", default=None)
    p.add_argument("--data-cache", default=None, help="default: the run's own --data-cache")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--output", default=None, help="confusion-matrix PNG (default W/confusion-epoch<N>.png)")
    p.add_argument("--tta", default=None, choices=TTAS, help="test-time augmentation (default: the run's)")
    p.add_argument("--raw-weights", action="store_true",
                   help="score the weights themselves, not the moving average a run with --ema keeps")  # fmt: skip
    return p


def main(argv: list[str]) -> int:
    line_buffered_output()
    parser = build_parser()
    args = parser.parse_args(argv)
    which = checked_checkpoint_flag(parser, args.checkpoint)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be an integer >= 1, got {args.batch_size}")

    from jaxresnet.data import DataError
    from jaxresnet.tools.evaluate import Scoring, evaluate_checkpoint
    from jaxresnet.training.checkpoint import CheckpointError

    open_run(parser, args.workdir)
    scoring = Scoring(args.data_dir, args.download, args.data_cache, args.batch_size, args.output, args.tta,
                      args.raw_weights)  # fmt: skip
    try:
        report = evaluate_checkpoint(args.workdir, which, scoring)
    except (CheckpointError, DataError) as e:
        parser.error(str(e))
    print(report.text())
    print(f"Confusion matrix: {report.figure}", file=sys.stderr)
    return 0


def checked_checkpoint_flag(parser, which: str) -> str:
    if which not in ("best", "latest") and not which.isdigit():
        parser.error(f"--checkpoint must be best, latest or an epoch number, got {which!r}")
    return which


def open_run(parser, workdir: str) -> None:
    """Before reading a run's checkpoints: quiet libraries, its precision mode, and checkpoints present."""
    import os

    from jaxresnet.training.run import CHECKPOINT_DIR, has_checkpoints

    quiet_libraries()
    enable_run_precision(workdir)
    if not has_checkpoints(workdir):
        parser.error(f"no checkpoints in {os.path.join(workdir, CHECKPOINT_DIR)}")


def enable_run_precision(workdir: str) -> None:
    """A float64 run's checkpoints restore only in JAX's 64-bit mode, switched on before any array exists."""
    import json
    import os

    try:
        with open(os.path.join(workdir, "config.json")) as f:
            dtype = json.load(f).get("dtype")
    except (OSError, ValueError):
        return
    if dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)
