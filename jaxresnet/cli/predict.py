"""scripts/predict.py: a trained run's top-5 classes for new images (the work is `jaxresnet.tools.predict`)."""

from __future__ import annotations

import json
import sys

from jaxresnet.cli.args import ArgumentParser, line_buffered_output


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="predict.py", description="Classify images with a trained run.")
    p.add_argument("--workdir", required=True, help="the run's folder (holds checkpoints/)")
    p.add_argument("--checkpoint", default="best", help="best, latest, or an epoch number (default best)")
    p.add_argument("--top", type=int, default=5, help="classes shown per image (default %(default)s)")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout, for machines")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...; any size or mode)")
    return p


def main(argv: list[str]) -> int:
    line_buffered_output()
    import os

    parser = build_parser()
    args = parser.parse_args(argv)
    from jaxresnet.cli.evaluate import checked_checkpoint_flag, open_run

    which = checked_checkpoint_flag(parser, args.checkpoint)
    if args.top < 1:
        parser.error(f"--top must be an integer >= 1, got {args.top}")
    for path in args.images:
        if not os.path.isfile(path):
            parser.error(f"no such image file: {path}")
    from jaxresnet.data import DataError
    from jaxresnet.tools.predict import predict_images
    from jaxresnet.training.checkpoint import CheckpointError

    open_run(parser, args.workdir)
    try:
        epoch, predictions = predict_images(args.workdir, args.images, which, args.top)
    except (CheckpointError, DataError) as e:
        parser.error(str(e))
    if args.json:
        json.dump(
            {"workdir": args.workdir, "checkpoint_epoch": epoch, "predictions": [p.to_json() for p in predictions]},
            sys.stdout,
            indent=2,
        )
        print()
    else:
        print("\n".join(p.text() for p in predictions))
    return 0
