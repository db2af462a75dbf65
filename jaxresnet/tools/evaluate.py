"""Score a saved checkpoint on the test split: overall and per-class accuracy, confusion matrix."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from jaxresnet.data import load_test_subset
from jaxresnet.plots import plot_confusion
from jaxresnet.training.checkpoint import load_checkpoint
from jaxresnet.training.loop import DeviceData, StepSpec, predict
from jaxresnet.training.state import compute_dtype


@dataclass
class Report:
    epoch: int
    which: str
    confusion: np.ndarray  # (true, predicted) counts
    figure: str
    class_names: tuple[str, ...]

    @property
    def accuracy(self) -> float:
        return round(100.0 * np.trace(self.confusion) / self.confusion.sum(), 2)

    def per_class(self) -> dict[str, float]:
        rows = self.confusion.sum(axis=1)
        return {
            name: round(100.0 * self.confusion[i, i] / max(rows[i], 1), 2) for i, name in enumerate(self.class_names)
        }

    def text(self) -> str:
        lines = [
            f"Checkpoint: epoch {self.epoch} ({self.which})",
            f"Test Accuracy: {self.accuracy} % ({int(np.trace(self.confusion))}/{int(self.confusion.sum())})",
        ]
        width = max(10, *(len(n) for n in self.class_names))
        lines += [f"  {name:<{width}} {acc:6.2f} %" for name, acc in self.per_class().items()]
        return "\n".join(lines)


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int = 10) -> np.ndarray:
    return np.bincount(labels * num_classes + preds, minlength=num_classes**2).reshape(num_classes, num_classes)


def evaluate_checkpoint(
    workdir: str,
    which: str = "best",
    *,
    data_dir=None,
    download=None,
    data_cache=None,
    batch_size: int = 500,
    output: str | None = None,
) -> Report:
    restored = load_checkpoint(workdir, which)
    config, dataset = restored.config, restored.dataset
    test = load_test_subset(
        data_dir or config.data_dir,
        config.download if download is None else download,
        config.test_per_class,
        config.seed,
        data_cache if data_cache is not None else config.data_cache,
        info=dataset,
    )
    spec = StepSpec(batch_size, config.resize, compute_dtype(config), stats=dataset.stats, tta=config.tta == "flip")
    preds = predict(restored.state, DeviceData.put(test, stats=dataset.stats), spec)
    matrix = confusion_matrix(test.labels, preds, dataset.num_classes)
    figure = output or os.path.join(workdir, f"confusion-epoch{restored.epoch}.png")
    report = Report(restored.epoch, which, matrix, figure, dataset.class_names)
    plot_confusion(
        matrix, dataset.class_names, figure, f"{config.arch}, epoch {restored.epoch}: test accuracy {report.accuracy} %"
    )
    return report
