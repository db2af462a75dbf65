"""TensorBoard events beside metrics.json: every epoch's scalars in `<workdir>/tensorboard`, so
`tensorboard --logdir runs` shows every run (JAX and the torch baseline alike).

Written with tensorboardX, which needs neither TensorFlow nor torch. Where it is not installed (a
bare accelerator machine), the run goes on without events and says so once.
"""

from __future__ import annotations

import os
import sys

EVENTS_DIR = "tensorboard"
# metrics.json field -> TensorBoard tag
SCALARS = {
    "train_accuracy": "accuracy/train",
    "test_accuracy": "accuracy/test",
    "train_loss": "loss/train",
    "learning_rate": "learning_rate",
    "train_images_per_s": "speed/train_images_per_s",
}


def _summary_writer():
    """tensorboardX's SummaryWriter, imported without torch where torch is not loaded yet: tensorboardX
    imports it when it can only to accept its tensors, and a JAX run would pay the import (seconds,
    and hundreds of MB) before its first step."""
    if "torch" in sys.modules:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["torch"] = None  # `import torch` raises ImportError, which tensorboardX handles
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


class EventLog:
    def __init__(self, workdir: str, enabled: bool = True, err=None):
        self._writer = None
        if not enabled:
            return
        try:
            SummaryWriter = _summary_writer()
        except ImportError:
            print(
                "warning: tensorboardX is not installed: no TensorBoard events (metrics.json has every "
                "figure); pip install tensorboardX",
                file=err or sys.stderr,
            )
            return
        self._writer = SummaryWriter(os.path.join(workdir, EVENTS_DIR), flush_secs=30)

    def epoch(self, record: dict) -> None:
        """One epoch of metrics.json, at step = epoch (an unscored epoch has no test accuracy)."""
        if self._writer is None:
            return
        for field, tag in SCALARS.items():
            value = record.get(field)
            if value is not None:
                self._writer.add_scalar(tag, value, record["epoch"])
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
