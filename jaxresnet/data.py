"""CIFAR-10 through tensorflow-datasets, a class-balanced subset, and on-device preprocessing.

Images stay uint8 at 32x32 on the accelerator (5,000 train images are 15 MB); resizing to the run's
resolution and normalisation happen inside the jitted steps, never on the host each epoch.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
import jax
import jax.numpy as jnp

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")
NUM_CLASSES = len(CLASS_NAMES)
# Per-channel statistics of the CIFAR-10 training set (original binary release), on a [0, 1] scale.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")  # tfds's own default


class DataError(Exception):
    """The data asked for is not available (missing dataset, subset larger than the split...)."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, 32, 32, 3) uint8
    labels: np.ndarray  # (N,) int32

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: np.ndarray) -> "Split":
        return Split(self.images[index], self.labels[index])


def load_cifar10(split: str, data_dir: str | None = None, download: bool = True) -> Split:
    """One CIFAR-10 split as numpy arrays. `download=False` never touches the network.

    Decoding takes seconds, so a process keeps each split it has read (read-only arrays).
    """
    return _load_cifar10(split, os.path.abspath(os.path.expanduser(data_dir or DEFAULT_DATA_DIR)), download)


@functools.lru_cache(maxsize=4)
def _load_cifar10(split: str, data_dir: str, download: bool) -> Split:
    if not download and not os.path.isdir(os.path.join(data_dir, "cifar10")):
        raise DataError(f"no CIFAR-10 under {data_dir} (looked for {data_dir}/cifar10) and downloading is off")
    tf = _tensorflow_without_gpus()
    import tensorflow_datasets as tfds

    try:
        ds = tfds.load("cifar10", split=split, data_dir=data_dir, download=download,
                       batch_size=-1, as_supervised=True)
    except (tfds.core.registered.DatasetNotFoundError, AssertionError, FileNotFoundError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"cannot read CIFAR-10 from {data_dir}: {first}") from e
    except Exception as e:  # a failed download surfaces as requests/urllib/tfds errors of many kinds
        if not download:
            raise
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise DataError(f"could not download CIFAR-10 into {data_dir} ({type(e).__name__}: {first}); "
                        f"point --data-dir at a prepared copy, or use --no-download") from e
    images, labels = tfds.as_numpy(ds)
    del tf
    images, labels = np.asarray(images, np.uint8), np.asarray(labels, np.int32)
    images.flags.writeable = labels.flags.writeable = False
    return Split(images, labels)


def _tensorflow_without_gpus():
    """Import TensorFlow hidden from every GPU, so it cannot take accelerator memory from JAX."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's start-up chatter is not for our users
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # already initialised by an earlier load: it was hidden then
        pass
    return tf


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


def load_subsets(data_dir, download, train_per_class, test_per_class, seed) -> tuple[Split, Split]:
    train = load_cifar10("train", data_dir, download)
    train = train.take(balanced_subset(train.labels, train_per_class, seed))
    return train, load_test_subset(data_dir, download, test_per_class, seed)


def load_test_subset(data_dir, download, test_per_class, seed) -> Split:
    """The run's test images (without decoding the training split, which evaluation does not need)."""
    test = load_cifar10("test", data_dir, download)
    # A different stream for the test subset, so it does not mirror the train draw.
    return test.take(balanced_subset(test.labels, test_per_class, seed + 1))


def preprocess(images_u8: jax.Array, size: int, dtype=jnp.float32) -> jax.Array:
    """uint8 NHWC 32x32 -> float NHWC size x size: bilinear resize, then per-channel normalisation.

    Bilinear without antialiasing, half-pixel centres: torch's
    `F.interpolate(x, size, mode="bilinear", align_corners=False)`. Runs inside jit.
    """
    x = images_u8.astype(jnp.float32) / 255.0
    n, h, w, c = x.shape
    if (h, w) != (size, size):
        x = jax.image.resize(x, (n, size, size, c), method="linear", antialias=False)
    x = (x - jnp.asarray(MEAN)) / jnp.asarray(STD)
    return x.astype(dtype)
