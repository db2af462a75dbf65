"""The run's images: a class-balanced training subset and the test subset, drawn with the seed."""
from __future__ import annotations

import numpy as np

from jaxresnet.data import cache
from jaxresnet.data.cifar10 import CLASS_NAMES, NUM_CLASSES, load_cifar10, prepared_version
from jaxresnet.data.split import DataError, Split


def balanced_subset(labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """Indices of `per_class` examples of every class, drawn with `seed`, in a seeded shuffled order.

    `per_class=None` keeps the whole split (in its stored order). The same seed gives the same subset.
    """
    if per_class is None:
        return np.arange(len(labels))
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    if per_class > counts.min():
        raise DataError(f"{per_class} images per class asked for, but the split holds only "
                        f"{counts.min()} of class {CLASS_NAMES[int(counts.argmin())]!r}")
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(NUM_CLASSES)]
    index = np.concatenate(chosen)
    return index[rng.permutation(len(index))]


def load_subsets(data_dir, download, train_per_class, test_per_class, seed,
                 data_cache: str | None = None) -> tuple[Split, Split]:
    """The run's (train, test) images: from the data cache when it holds them, else decoded and cached."""
    train = _subset("train", data_dir, download, train_per_class, seed, data_cache)
    return train, load_test_subset(data_dir, download, test_per_class, seed, data_cache)


def load_test_subset(data_dir, download, test_per_class, seed, data_cache: str | None = None) -> Split:
    """The run's test images (without decoding the training split, which evaluation does not need)."""
    # A different stream for the test subset, so it does not mirror the train draw.
    return _subset("test", data_dir, download, test_per_class, seed + 1, data_cache)


def _subset(split: str, data_dir, download, per_class, seed, data_cache) -> Split:
    version = prepared_version(data_dir)

    def build() -> Split:
        whole = load_cifar10(split, data_dir, download)
        return whole.take(balanced_subset(whole.labels, per_class, seed))

    # Without a prepared copy (version None) the newest cached version serves; failing that, build()
    # downloads, or says that there is no data.
    return cache.load(cache.resolve_root(data_cache), source="tfds", dataset="cifar10", version=version,
                      split=split, subset=cache.subset_name(per_class, seed), build=build)
