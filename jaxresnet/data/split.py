"""What every data source returns: a split as host numpy arrays, and the error for missing data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class DataError(Exception):
    """The data asked for is not available (missing dataset, subset larger than the split...)."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int32

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> Split:
        return Split(self.images[index], self.labels[index])
