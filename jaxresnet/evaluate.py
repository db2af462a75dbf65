"""Score a saved checkpoint on the test split: overall and per-class accuracy, confusion matrix."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from jaxresnet.checkpoint import CheckpointError, CheckpointStore
from jaxresnet.data import CLASS_NAMES, NUM_CLASSES, load_subsets
from jaxresnet.plots import plot_confusion
from jaxresnet.run import CHECKPOINT_DIR, build_model, compute_dtype, seed_keys
from jaxresnet.train import DeviceData, create_train_state, predict


@dataclass
class Report:
    epoch: int
    which: str
    confusion: np.ndarray  # (true, predicted) counts
    figure: str

    @property
    def accuracy(self) -> float:
        return round(100.0 * np.trace(self.confusion) / self.confusion.sum(), 2)

    def per_class(self) -> dict[str, float]:
        rows = self.confusion.sum(axis=1)
        return {name: round(100.0 * self.confusion[i, i] / max(rows[i], 1), 2)
                for i, name in enumerate(CLASS_NAMES)}

    def text(self) -> str:
        lines = [f"Checkpoint: epoch {self.epoch} ({self.which})",
                 f"Test Accuracy: {self.accuracy} % ({int(np.trace(self.confusion))}/{int(self.confusion.sum())})"]
        lines += [f"  {name:<10} {acc:6.2f} %" for name, acc in self.per_class().items()]
        return "\n".join(lines)


def confusion_matrix(labels: np.ndarray, preds: np.ndarray) -> np.ndarray:
    return np.bincount(labels * NUM_CLASSES + preds, minlength=NUM_CLASSES ** 2).reshape(NUM_CLASSES, NUM_CLASSES)


def evaluate_checkpoint(workdir: str, which: str = "best", *, data_dir=None, download=None,
                        batch_size: int = 500, output: str | None = None) -> Report:
    store = CheckpointStore(os.path.join(workdir, CHECKPOINT_DIR), read_only=True)
    try:
        if which == "best":
            epoch = store.best_epoch()
        elif which == "latest":
            epoch = store.latest_epoch()
        else:
            epoch = int(which)
        if epoch is None:
            raise CheckpointError(f"no checkpoints in {store.directory}")
        if epoch not in store.epochs():
            raise CheckpointError(f"no checkpoint for epoch {epoch} in {store.directory} "
                                  f"(saved: {', '.join(map(str, store.epochs()))})")
        try:
            config = store.read_config(epoch)
        except Exception as e:
            raise CheckpointError(f"cannot read checkpoint {epoch} in {store.directory}: "
                                  f"{type(e).__name__}") from e
        init_key, _ = seed_keys(config.seed)
        template = create_train_state(build_model(config), init_key, config.resize, config.lr, config.momentum)
        state = store.restore(template, epoch, fallback=False).state
    finally:
        store.close()
    _, test = load_subsets(data_dir or config.data_dir, config.download if download is None else download,
                           1, config.test_per_class, config.seed)
    preds = predict(state, DeviceData.put(test), config.resize, batch_size, compute_dtype(config))
    matrix = confusion_matrix(test.labels, preds)
    figure = output or os.path.join(workdir, f"confusion-epoch{epoch}.png")
    report = Report(epoch, which, matrix, figure)
    plot_confusion(matrix, CLASS_NAMES, figure,
                   f"{config.arch}, epoch {epoch}: test accuracy {report.accuracy} %")
    return report
