#!/usr/bin/env python3
"""The PyTorch baseline with train.py's flags: `python scripts/train_torch.py --resize 128`."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxresnet.cli.train_torch import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
