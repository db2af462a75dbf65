#!/usr/bin/env python3
"""Overlay runs' accuracy curves: `python scripts/compare.py RUN [RUN ...] [--output compare.png]`."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxresnet.cli.compare import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
