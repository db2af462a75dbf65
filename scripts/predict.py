#!/usr/bin/env python3
"""Top classes of images: `python scripts/predict.py --workdir W [--checkpoint best|latest|N] IMAGE...`."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxresnet.cli.predict import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
