"""The run's images: a class-balanced training subset and the test subset, drawn with the seed."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from jaxresnet.data import cache, folder
from jaxresnet.data.cifar10 import CLASS_NAMES, prepared_version
from jaxresnet.data.datasets import CIFAR10, DEFAULT_DATASET, DatasetInfo, channel_stats, describe, load_split
from jaxresnet.data.split import DataError, Split


def balanced_subset(
    labels: np.ndarray, per_class: int | None, seed: int, class_names: tuple[str, ...] = CLASS_NAMES
) -> np.ndarray:
    """Indices of `per_class` examples of every class, drawn with `seed`, in a seeded shuffled order.

    `per_class=None` keeps the whole split (in its stored order). The same seed gives the same subset.
    """
    if per_class is None:
        return np.arange(len(labels))
    counts = np.bincount(labels, minlength=len(class_names))
    if per_class > counts.min():
        raise DataError(
            f"{per_class} images per class asked for, but the split holds only "
            f"{counts.min()} of class {class_names[int(counts.argmin())]!r}"
        )
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(len(class_names))]
    index = np.concatenate(chosen)
    return index[rng.permutation(len(index))]


def load_dataset(config) -> tuple[Split, Split, DatasetInfo]:
    """A run's (train, test) images and what it needs to know of its dataset (`config.dataset`):
    CIFAR-10 with its published statistics, any other dataset with its training subset's own."""
    info = (
        describe(config.dataset, config.data_dir, config.store_size) if config.dataset != DEFAULT_DATASET else CIFAR10
    )
    train, test = load_subsets(
        config.data_dir,
        config.download,
        config.train_per_class,
        config.test_per_class,
        config.seed,
        config.data_cache,
        info=info,
    )
    if info.name != DEFAULT_DATASET:  # its own statistics, and the side its images are kept at
        mean, std = channel_stats(train.images)
        info = dataclasses.replace(info, mean=mean, std=std, image_size=int(train.images.shape[1]))
    return train, test, dataclasses.replace(info, train_size=len(train))


def load_subsets(
    data_dir,
    download,
    train_per_class,
    test_per_class,
    seed,
    data_cache: str | None = None,
    info: DatasetInfo = CIFAR10,
) -> tuple[Split, Split]:
    """The run's (train, test) images: from the data cache when it holds them, else decoded and cached."""
    train = load_train_subset(data_dir, download, train_per_class, seed, data_cache, info)
    return train, load_test_subset(data_dir, download, test_per_class, seed, data_cache, info)


def load_train_subset(
    data_dir, download, train_per_class, seed, data_cache: str | None = None, info: DatasetInfo = CIFAR10
) -> Split:
    """The run's training images (evaluation's, for the BatchNorm statistics of a moving average)."""
    return _subset("train", data_dir, download, train_per_class, seed, data_cache, info)


def load_test_subset(
    data_dir, download, test_per_class, seed, data_cache: str | None = None, info: DatasetInfo = CIFAR10
) -> Split:
    """The run's test images (without decoding the training split, which evaluation does not need)."""
    # A different stream for the test subset, so it does not mirror the train draw.
    return _subset(info.test_split, data_dir, download, test_per_class, seed + 1, data_cache, info, name="test")


def _subset(
    split: str, data_dir, download, per_class, seed, data_cache, info: DatasetInfo, name: str | None = None
) -> Split:
    source, dataset, version = "tfds", info.name, prepared_version(data_dir, info.name)
    if version is not None and info.store_size is not None:  # varying sizes: stored at --store-size
        version = f"{version}-{info.store_size}px"
    if folder.is_folder(info.name):  # keyed by the folder's path and contents, and the stored size
        source = "folder"
        dataset = hashlib.sha1(folder.folder_path(info.name).encode()).hexdigest()[:12]
        version = f"{info.version}-{info.store_size}px"

    def build() -> Split:
        whole = load_split(info, split, data_dir, download)
        return whole.take(balanced_subset(whole.labels, per_class, seed, info.class_names))

    # Without a prepared copy (version None) the newest cached version serves; failing that, build()
    # downloads, or says that there is no data.
    return cache.load(
        cache.resolve_root(data_cache),
        source=source,
        dataset=dataset,
        version=version,
        split=name or split,
        subset=cache.subset_name(per_class, seed),
        build=build,
    )
