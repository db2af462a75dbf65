#!/usr/bin/env python3
"""JAX vs PyTorch throughput: `python scripts/benchmark.py --resize 128 --batch-size 32 [--json F]`."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxresnet.native.huge_pages import restart_with_huge_pages  # noqa: E402

if __name__ == "__main__":
    restart_with_huge_pages()  # first: the restart costs nothing before the heavy imports

from jaxresnet.cli.benchmark import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
