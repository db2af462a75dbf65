"""Score a saved checkpoint on the test split: overall and per-class accuracy, confusion matrix."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from jaxresnet.data import load_test_subset, load_train_subset
from jaxresnet.plots import plot_confusion
from jaxresnet.training.average import refresh_statistics
from jaxresnet.training.checkpoint import load_checkpoint
from jaxresnet.training.loop import DeviceData, StepSpec, predict
from jaxresnet.training.state import build_model, compute_dtype


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


@dataclass(frozen=True)
class Scoring:
    """How a checkpoint is scored; None: as its run did."""

    data_dir: str | None = None
    download: bool | None = None
    data_cache: str | None = None
    batch_size: int = 500
    output: str | None = None  # the confusion matrix's PNG (default: in the workdir)
    tta: str | None = None  # one of config.TTAS (None: the run's)
    raw_weights: bool = False  # the weights themselves, not the run's moving average (--ema)


def evaluate_checkpoint(workdir: str, which: str = "best", scoring: Scoring = Scoring()) -> Report:
    restored = load_checkpoint(workdir, which)
    config, dataset, state = restored.config, restored.dataset, restored.state
    source = (
        scoring.data_dir or config.data_dir,
        config.download if scoring.download is None else scoring.download,
    )
    cache = scoring.data_cache if scoring.data_cache is not None else config.data_cache
    test = load_test_subset(*source, config.test_per_class, config.seed, cache, info=dataset)
    tta = scoring.tta or config.tta
    spec = StepSpec(scoring.batch_size, config.resize, compute_dtype(config), stats=dataset.stats, tta=tta)
    if scoring.raw_weights:
        state = state.replace(ema=None)
    elif state.ema is not None:  # the average's own statistics, as its run scored it (`training.average`)
        train = load_train_subset(*source, config.train_per_class, config.seed, cache, info=dataset)
        state = refresh_statistics(
            state, build_model(config, dataset.num_classes), DeviceData.put(train, stats=dataset.stats),
            dataclasses.replace(spec, batch_size=config.batch_size),
        )  # fmt: skip
    preds = predict(state, DeviceData.put(test, stats=dataset.stats), spec)
    matrix = confusion_matrix(test.labels, preds, dataset.num_classes)
    figure = scoring.output or os.path.join(workdir, f"confusion-epoch{restored.epoch}.png")
    report = Report(restored.epoch, which, matrix, figure, dataset.class_names)
    plot_confusion(
        matrix, dataset.class_names, figure, f"{config.arch}, epoch {restored.epoch}: test accuracy {report.accuracy} %"
    )
    return report
