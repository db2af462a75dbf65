"""What a training run prints and writes, the same for the JAX run and the torch baseline: the
reference's three lines per epoch, metrics.json, config.json and the accuracy plot.

Both trainers import this module and nothing of each other's machinery.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from jaxresnet.config import TrainConfig
from jaxresnet.data import DatasetInfo
from jaxresnet.plots import plot_accuracy


@dataclass
class RunResult:
    workdir: str
    history: list[dict]
    state: object  # the JAX TrainState, or the torch model


def print_epoch(out, epoch: int, epochs: int, train_accuracy: float, test_accuracy: float | None) -> None:
    """The reference's three lines per epoch (the test line only for a scored epoch: --eval-every)."""
    print(f"Epoch {epoch}/{epochs}", file=out)
    print(f"Train Accuracy: {train_accuracy} %", file=out)
    if test_accuracy is not None:
        print(f"Test Accuracy: {test_accuracy} %", file=out)
    out.flush()


def epoch_record(
    epoch, train_accuracy, test_accuracy, train_loss, seconds, train_seconds, n_train, learning_rate: float
) -> dict:
    """One epoch of metrics.json (the same fields for the JAX run and the torch baseline);
    `test_accuracy` is None for an epoch --eval-every did not score, `learning_rate` the epoch's last step's."""
    return {
        "epoch": epoch,
        "train_accuracy": train_accuracy,
        "test_accuracy": test_accuracy,
        "train_loss": round(float(train_loss), 6),
        "learning_rate": float(f"{learning_rate:.6g}"),
        "seconds": round(seconds, 3),
        "train_seconds": round(train_seconds, 3),
        "train_images_per_s": round(n_train / train_seconds, 2),
    }


def write_config(workdir: str, config: TrainConfig, framework: str, dataset: DatasetInfo | None = None) -> None:
    """config.json: every resolved flag, the framework, and the dataset's class names and statistics."""
    _write_json(
        os.path.join(workdir, "config.json"),
        {**config.to_dict(), "framework": framework, **({"dataset_info": dataset.to_json()} if dataset else {})},
    )


def write_outputs(workdir: str, history: list[dict]) -> None:
    _write_json(os.path.join(workdir, "metrics.json"), history)
    if history:
        plot_accuracy(history, os.path.join(workdir, "accuracy.png"))


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)  # a kill never leaves half a file
