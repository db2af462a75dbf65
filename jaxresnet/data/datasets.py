"""Which dataset a run uses: `--dataset NAME`, any tensorflow-datasets image-classification dataset.

`DatasetInfo` is what the rest of the project needs to know about it: its class names (the model's
head follows their number), the per-channel statistics its images are normalised with, and its
tfds version. CIFAR-10 keeps its published statistics (the reference's exactness); any other
dataset is normalised with its training subset's own, computed once by `subsets.load_dataset` and
recorded in config.json and every checkpoint, so evaluation and prediction use the same.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from jaxresnet.data import folder
from jaxresnet.data.cifar10 import (
    CLASS_NAMES,
    MEAN,
    STD,
    _tensorflow_without_gpus,
    load_cifar10,
    prepared_version,
    resolve_data_dir,
)
from jaxresnet.data.split import DataError, Split

DEFAULT_DATASET = "cifar10"
TEST_SPLITS = ("test", "validation", "val")  # the first a dataset has is scored


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    class_names: tuple[str, ...]
    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD
    test_split: str = "test"
    version: str | None = None
    store_size: int | None = None  # images of varying sizes (folders...): the side they are resized to once
    image_size: int | None = None  # the side of the stored images (what predict.py resizes new images to)
    train_size: int | None = None  # the run's training images (its schedule's steps per epoch follow)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return tuple(self.mean), tuple(self.std)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "class_names": list(self.class_names),
            "mean": list(self.mean),
            "std": list(self.std),
            "test_split": self.test_split,
            "version": self.version,
            "store_size": self.store_size,
            "image_size": self.image_size,
            "train_size": self.train_size,
        }

    @classmethod
    def from_json(cls, d: dict | None) -> DatasetInfo:
        if not d:  # a run saved before datasets were a choice: CIFAR-10
            return CIFAR10
        return cls(
            d["name"],
            tuple(d["class_names"]),
            tuple(d["mean"]),
            tuple(d["std"]),
            d.get("test_split", "test"),
            d.get("version"),
            d.get("store_size"),
            d.get("image_size"),
            d.get("train_size"),
        )


CIFAR10 = DatasetInfo(DEFAULT_DATASET, CLASS_NAMES)


def describe(name: str, data_dir: str | None, store_size: int | None = None) -> DatasetInfo:
    """A tfds dataset's class names and test split, from its builder (no data read); DataError if
    tfds does not know it or it is not image classification. Statistics are filled in later.
    `folder:PATH`: the folder's (`jaxresnet.data.folder`), its images stored at `store_size`."""
    if name == DEFAULT_DATASET:
        return CIFAR10
    if folder.is_folder(name):
        root = folder.folder_path(name)
        test, classes, _ = folder.survey(root)
        return DatasetInfo(
            name,
            classes,
            test_split=test,
            version=folder.fingerprint(root),
            store_size=store_size or folder.DEFAULT_STORE_SIZE,
        )
    tfds = _tfds(name, data_dir)
    try:
        builder = tfds.builder(name, data_dir=resolve_data_dir(data_dir))
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"--dataset {name}: tensorflow-datasets has no dataset of that name") from None
    except Exception as e:  # a dataset whose builder cannot even be made here (missing extra packages...)
        raise DataError(f"--dataset {name}: cannot open it ({type(e).__name__}: {str(e).strip()[:200]})") from None
    info = builder.info
    keys = info.supervised_keys
    features = info.features
    label = features[keys[1]] if keys and len(keys) == 2 and keys[1] in features else None
    image = features[keys[0]] if keys and len(keys) == 2 and keys[0] in features else None
    if label is None or type(label).__name__ != "ClassLabel" or image is None or type(image).__name__ != "Image":
        raise DataError(
            f"--dataset {name} is not image classification (its supervised keys are {keys!r}, "
            f"not an image and a class label)"
        )
    splits = set(info.splits.keys()) if info.splits else set()
    test = next((s for s in TEST_SPLITS if s in splits), "test")
    varying = None in tuple(image.shape)[:2]  # stored at --store-size, like a folder's
    return DatasetInfo(
        name,
        tuple(str(n) for n in label.names),
        test_split=test,
        version=str(info.version),
        store_size=(store_size or folder.DEFAULT_STORE_SIZE) if varying else None,
    )


def stored_images(name: str, data_dir: str | None) -> tuple[int, int] | None:
    """(images in train + test, pixels per image) of a prepared tfds dataset from its info, without
    reading data; None where the info does not say (not prepared, images of varying size)."""
    tfds = _tfds(name, data_dir)
    try:
        info = tfds.builder(name, data_dir=resolve_data_dir(data_dir)).info
        shape = info.features[info.supervised_keys[0]].shape
        count = sum(int(s.num_examples) for s in info.splits.values())
    except Exception:
        return None
    if not count or None in shape[:2]:
        return None
    return count, int(shape[0]) * int(shape[1])


def load_split(info: DatasetInfo, split: str, data_dir: str | None, download: bool) -> Split:
    """One split of the dataset as RGB uint8 (grayscale repeated, alpha dropped)."""
    if info.name == DEFAULT_DATASET:
        return load_cifar10(split, data_dir, download)
    if folder.is_folder(info.name):
        return folder.load_folder_split(folder.folder_path(info.name), split, info.store_size)
    return _load_tfds(info.name, split, resolve_data_dir(data_dir), download, info.store_size)


@functools.lru_cache(maxsize=4)
def _load_tfds(name: str, split: str, data_dir: str, download: bool, store_size: int | None) -> Split:
    """Fixed-size images as they are; images of varying sizes resized once to `store_size` square."""
    tfds = _tfds(name, data_dir)
    try:
        ds = tfds.load(name, split=split, data_dir=data_dir, download=download, as_supervised=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise DataError(f"cannot read --dataset {name} split {split!r} from {data_dir}: {first}") from None
    fixed = None not in tuple(ds.element_spec[0].shape)[:2]
    images, labels = [], []
    if fixed:
        for x, y in tfds.as_numpy(ds.batch(1024)):  # batches: tfds.load(batch_size=-1) holds everything twice
            images.append(np.asarray(x))
            labels.append(np.asarray(y))
    else:
        from PIL import Image

        for x, y in tfds.as_numpy(ds):
            im = Image.fromarray(to_rgb(np.asarray(x)[None])[0]).resize((store_size, store_size), Image.BILINEAR)
            images.append(np.asarray(im, np.uint8)[None])
            labels.append(np.asarray(y)[None])
    if not images:
        raise DataError(f"--dataset {name} split {split!r} holds no images")
    x = to_rgb(np.concatenate(images))
    out = Split(x, np.concatenate(labels).astype(np.int32))
    out.images.flags.writeable = out.labels.flags.writeable = False
    return out


def to_rgb(images: np.ndarray) -> np.ndarray:
    """(N, H, W, C) uint8 with C of 1 (grayscale), 3, or 4 (alpha dropped) -> (N, H, W, 3)."""
    if images.ndim == 3:
        images = images[..., None]
    c = images.shape[-1]
    if c == 1:
        images = np.repeat(images, 3, axis=-1)
    elif c == 4:
        images = images[..., :3]
    elif c != 3:
        raise DataError(f"images with {c} channels are not supported")
    return np.ascontiguousarray(images, np.uint8)


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images on a [0, 1] scale (float64 sums, 6 decimals)."""
    x = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    return tuple(round(float(v), 6) for v in x.mean(0)), tuple(round(float(v), 6) for v in x.std(0))


def version_of(info: DatasetInfo, data_dir: str | None) -> str | None:
    """The prepared version on disk (the data cache's key), read without tfds."""
    return prepared_version(data_dir, info.name)


def _tfds(name: str, data_dir):
    try:
        _tensorflow_without_gpus()
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(f"--dataset {name} needs tensorflow-datasets, which cannot be imported ({e})") from None
    return tfds
