"""scripts/measure.py: the benchmark matrix, the whole reference run and (--parity) the parity
experiment, in one command (the work is `jaxresnet.tools.measure`)."""

from __future__ import annotations

import os
import sys

from jaxresnet.cli.args import ArgumentParser, line_buffered_output, quiet_libraries


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="measure.py", description="Measure everything: throughput matrix, reference run, parity.")
    p.add_argument("outdir", help="where measure.json, measure.md and the runs go")
    p.add_argument("--quick", action="store_true", help="small settings (about 2 minutes on a 2-core CPU)")
    p.add_argument(
        "--parity",
        action="store_true",
        help="also the parity experiment: 3 seeds per framework at the reference setting",
    )
    p.add_argument("--data-dir", default=None, help="tensorflow-datasets folder (default ~/tensorflow_datasets)")
    p.add_argument("--data-cache", default=None, help="decoded-data cache (default: the training default)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per framework in --parity (default 3)")
    p.add_argument(
        "--parity-only", action="store_true", help="only the parity experiment (for a second short loan of a machine)"
    )
    p.add_argument("--no-torch", dest="torch", action="store_false", default=None, help="JAX only")
    return p


def main(argv: list[str]) -> int:
    line_buffered_output()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds must be an integer >= 1, got {args.seeds}")
    try:  # an unwritable OUTDIR is found before minutes of measuring
        os.makedirs(args.outdir, exist_ok=True)
        probe = os.path.join(args.outdir, ".write-test")
        open(probe, "w").close()
        os.remove(probe)
    except OSError as e:
        parser.error(f"cannot write to {args.outdir}: {e.strerror or e}")
    from jaxresnet.config import ConfigError
    from jaxresnet.data import DataError
    from jaxresnet.tools.measure import Options, measure

    quiet_libraries()
    options = Options(
        quick=args.quick,
        parity=args.parity,
        parity_only=args.parity_only,
        data_dir=args.data_dir,
        data_cache=args.data_cache,
        torch=args.torch,
        seeds=args.seeds,
    )
    try:
        result = measure(args.outdir, options, log=lambda s: print(s, file=sys.stderr, flush=True))
    except (ConfigError, DataError) as e:
        parser.error(str(e))
    with open(os.path.join(args.outdir, "measure.md")) as f:
        print(f.read(), end="")
    print(f"Figures in {os.path.join(args.outdir, 'measure.json')}", file=sys.stderr)
    return 0 if result else 1
