"""Figures a run writes: accuracy curves and a confusion matrix (matplotlib, no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_accuracy(history: list[dict], path: str, title: str = "ResNet34 on CIFAR-10") -> None:
    """Train and test accuracy against epoch, as the reference's plot."""
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h["train_accuracy"] for h in history], "o-", label="train")
    scored = [h for h in history if h["test_accuracy"] is not None]  # --eval-every skips some epochs
    ax.plot([h["epoch"] for h in scored], [h["test_accuracy"] for h in scored], "s-", label="test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_confusion(matrix: np.ndarray, class_names, path: str, title: str) -> None:
    """Row-normalised confusion matrix (true class down, predicted across), counts in the cells."""
    rows = matrix.sum(axis=1, keepdims=True)
    frac = matrix / np.maximum(rows, 1)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(
                j,
                i,
                str(int(matrix[i, j])),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if frac[i, j] > 0.5 else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
