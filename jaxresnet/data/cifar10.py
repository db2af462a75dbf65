"""CIFAR-10 through tensorflow-datasets: its class names, its channel statistics, and the loader.

Decoding goes through TensorFlow (hidden from the GPUs, so it never takes accelerator memory); a
process keeps each split it has read.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from jaxresnet.data.split import DataError, Split

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NUM_CLASSES = len(CLASS_NAMES)
# Per-channel statistics of the CIFAR-10 training set (original binary release), on a [0, 1] scale.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")  # tfds's own default


def resolve_data_dir(data_dir: str | None) -> str:
    return os.path.abspath(os.path.expanduser(data_dir or DEFAULT_DATA_DIR))


def prepared_version(data_dir: str | None, name: str = "cifar10") -> str | None:
    """The newest version of `name` prepared under data_dir (tfds's layout), read without tfds."""
    folder = os.path.join(resolve_data_dir(data_dir), name)
    try:
        versions = [v for v in os.listdir(folder) if os.path.isfile(os.path.join(folder, v, "dataset_info.json"))]
    except OSError:
        return None
    return max(versions, key=lambda v: tuple(int(p) if p.isdigit() else -1 for p in v.split(".")), default=None)


def load_cifar10(split: str, data_dir: str | None = None, download: bool = True) -> Split:
    """One CIFAR-10 split as numpy arrays. `download=False` never touches the network.

    Decoding takes seconds, so a process keeps each split it has read (read-only arrays).
    """
    return _load_cifar10(split, resolve_data_dir(data_dir), download)


@functools.lru_cache(maxsize=4)
def _load_cifar10(split: str, data_dir: str, download: bool) -> Split:
    if not download and not os.path.isdir(os.path.join(data_dir, "cifar10")):
        raise DataError(f"no CIFAR-10 under {data_dir} (looked for {data_dir}/cifar10) and downloading is off")
    try:
        tf = _tensorflow_without_gpus()
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(
            f"reading CIFAR-10 from {data_dir} needs tensorflow-datasets, which cannot be imported "
            f"({e}); install it, or give --data-cache a folder that holds this run's data"
        ) from e

    try:
        ds = tfds.load("cifar10", split=split, data_dir=data_dir, download=download, batch_size=-1, as_supervised=True)
    except (tfds.core.registered.DatasetNotFoundError, AssertionError, FileNotFoundError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"cannot read CIFAR-10 from {data_dir}: {first}") from e
    except Exception as e:  # a failed download surfaces as requests/urllib/tfds errors of many kinds
        if not download:
            raise
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise DataError(
            f"could not download CIFAR-10 into {data_dir} ({type(e).__name__}: {first}); "
            f"point --data-dir at a prepared copy, or use --no-download"
        ) from e
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
