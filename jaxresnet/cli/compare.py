"""scripts/compare.py: overlay runs' accuracy curves (the work is `jaxresnet.tools.compare`)."""

from __future__ import annotations

import sys

from jaxresnet.cli.args import ArgumentParser, line_buffered_output


def main(argv: list[str]) -> int:
    line_buffered_output()
    p = ArgumentParser(
        prog="compare.py", description="Overlay the accuracy curves of runs (JAX and torch, one or more seeds each)."
    )
    p.add_argument("runs", nargs="+", help="run folders (each with metrics.json and config.json)")
    p.add_argument("--output", default="compare.png", help="PNG to write (default %(default)s)")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = p.parse_args(argv)
    from jaxresnet.tools.compare import RunError, compare_runs

    try:
        table = compare_runs(args.runs, args.output, markdown=args.markdown)
    except RunError as e:
        p.error(str(e))
    print(table)
    print(f"Figure: {args.output}", file=sys.stderr)
    return 0
