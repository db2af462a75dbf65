"""`--dataset folder:PATH`: your own images, `PATH/<split>/<class>/*.{jpg,jpeg,png}`.

The folder is read through tensorflow-datasets' own `ImageFolder` (which lists the files, the
classes and the splits); each image is decoded once with Pillow, whatever its size and mode
(grayscale, RGBA, palette, CMYK JPEG all become RGB), and resized once on the host to
`--store-size` pixels square (bilinear), so the run keeps uint8 images of one size on the device and
resizes them to `--resize` inside the jitted step as for CIFAR-10. The train split is `train`; the
test split is `test`, else `val`, else `validation` (the run says which).

Bad folders are refused before anything is decoded, naming what is wrong: no such folder, no train
split, no test split, a class folder without images, classes that differ between the splits; an
image that cannot be decoded is named by its file.
"""

from __future__ import annotations

import hashlib
import io
import os

import numpy as np

from jaxresnet.data.split import DataError, Split

PREFIX = "folder:"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
TEST_SPLITS = ("test", "val", "validation")
DEFAULT_STORE_SIZE = 64  # pixels square kept per image: 12 KB each; CIFAR-10 keeps 32


def is_folder(dataset: str) -> bool:
    return dataset.startswith(PREFIX)


def folder_path(dataset: str) -> str:
    return os.path.abspath(os.path.expanduser(dataset[len(PREFIX) :]))


def survey(root: str) -> tuple[str, tuple[str, ...], dict[str, int]]:
    """(test split name, class names, images per split) of a folder, or DataError naming the problem.
    Reads directory listings only."""
    if not os.path.isdir(root):
        raise DataError(f"--dataset folder:{root}: no such folder")
    splits = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if "train" not in splits:
        raise DataError(f"--dataset folder:{root}: no train split (expected {root}/train/<class>/<image>)")
    test = next((s for s in TEST_SPLITS if s in splits), None)
    if test is None:
        raise DataError(f"--dataset folder:{root}: no test split (expected {root}/test, val or validation)")
    classes, counts = {}, {}
    for split in ("train", test):
        folder = os.path.join(root, split)
        names = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
        if not names:
            raise DataError(f"--dataset folder:{root}: {folder} has no class folders")
        for name in names:
            images = [f for f in os.listdir(os.path.join(folder, name)) if f.lower().endswith(IMAGE_EXTENSIONS)]
            if not images:
                raise DataError(
                    f"--dataset folder:{root}: class folder {os.path.join(folder, name)} has no "
                    f"images ({', '.join(IMAGE_EXTENSIONS)})"
                )
            counts[split] = counts.get(split, 0) + len(images)
        classes[split] = tuple(names)
    if classes["train"] != classes[test]:
        raise DataError(
            f"--dataset folder:{root}: the classes of train ({', '.join(classes['train'])}) and "
            f"{test} ({', '.join(classes[test])}) differ"
        )
    return test, classes["train"], counts


def fingerprint(root: str) -> str:
    """A version for the data cache: changes when any image file is added, removed or rewritten."""
    h = hashlib.sha1()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for f in sorted(filenames):
            if f.lower().endswith(IMAGE_EXTENSIONS):
                st = os.stat(os.path.join(dirpath, f))
                h.update(f"{os.path.relpath(os.path.join(dirpath, f), root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def decode(data: bytes, size: int, name: str) -> np.ndarray:
    """Any image file's bytes -> (size, size, 3) uint8, or DataError naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")  # grayscale, RGBA (alpha dropped), palette, CMYK
            return np.asarray(im.resize((size, size), Image.BILINEAR), np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"cannot decode image {name}: {type(e).__name__}: {str(e).strip()[:200]}") from None


def load_folder_split(root: str, split: str, size: int) -> Split:
    """Every image of a split, decoded and resized once, with its class index (sorted class names)."""
    try:
        from jaxresnet.data.cifar10 import _tensorflow_without_gpus

        _tensorflow_without_gpus()
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(f"reading an image folder needs tensorflow-datasets, which cannot be imported ({e})") from None
    builder = tfds.folder_dataset.ImageFolder(root)
    names = tuple(builder.info.features["label"].names)
    if names != survey(root)[1]:
        raise DataError(f"--dataset folder:{root}: tfds's ImageFolder found classes {names}")
    ds = builder.as_dataset(split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    images, labels = [], []
    for ex in tfds.as_numpy(ds):
        name = ex["image/filename"].decode() if isinstance(ex["image/filename"], bytes) else str(ex["image/filename"])
        images.append(decode(ex["image"], size, os.path.join(root, name) if not os.path.isabs(name) else name))
        labels.append(int(ex["label"]))
    out = Split(np.stack(images), np.asarray(labels, np.int32))
    out.images.flags.writeable = out.labels.flags.writeable = False
    return out
