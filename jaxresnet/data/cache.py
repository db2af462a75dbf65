"""The decoded-data cache: a split's (or a run's subset's) uint8 images and int32 labels as .npy files.

The first load decodes through tensorflow-datasets and writes the arrays here; later loads read
them back without importing TensorFlow at all (saving its import and the decoding, ~20 s on 2 cores),
and a machine with the cache folder but without TensorFlow or the dataset trains all the same.

    <root>/<source>/<dataset>/<version>/<split>-<subset>/{images.npy, labels.npy, meta.json}

`source` is where the images come from ("tfds" for a by-name dataset), `version` the dataset's
version, `subset` which images ("all", or e.g. "500-per-class-seed0"). meta.json records each
file's size and CRC32: a damaged entry is rebuilt from the source when there is one, else named in
a DataError; it is never used. Entries are written to a temporary folder and renamed, so a killed
process leaves no half entry. The root: --data-cache DIR, else $JAXRESNET_DATA_CACHE, else
~/.cache/jaxresnet/data; "off" turns the cache off.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jaxresnet.checksums import crc32
from jaxresnet.data.split import DataError, Split

OFF = "off"
ENV = "JAXRESNET_DATA_CACHE"
FILES = ("images.npy", "labels.npy")


def default_root() -> str:
    return os.environ.get(ENV) or os.path.join(os.path.expanduser("~"), ".cache", "jaxresnet", "data")


def resolve_root(root: str | None) -> Path | None:
    """The cache folder for a --data-cache value (None: the default), or None when turned off."""
    root = root or default_root()
    return None if root == OFF else Path(os.path.expanduser(root))


def subset_name(per_class: int | None, seed: int) -> str:
    return "all" if per_class is None else f"{per_class}-per-class-seed{seed}"


def cached_versions(root: Path, source: str, dataset: str) -> list[str]:
    """The versions of a dataset the cache holds entries of, newest first."""
    folder = root / source / dataset
    if not folder.is_dir():
        return []
    return sorted((p.name for p in folder.iterdir() if p.is_dir()), key=_version_key, reverse=True)


def _version_key(version: str):
    return tuple(int(p) if p.isdigit() else -1 for p in version.split("."))


def entry(root: Path, source: str, dataset: str, version: str, split: str, subset: str) -> Path:
    return root / source / dataset / version / f"{split}-{subset}"


def read(folder: Path) -> Split:
    """The cached arrays, after checking every file against meta.json; DataError names damage."""
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
        expected = meta["files"]
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"data cache entry {folder} is damaged: meta.json unreadable ({type(e).__name__})") from e
    for name in FILES:
        path = folder / name
        if not path.is_file():
            raise DataError(f"data cache entry {folder} is damaged: {name} is missing")
        size, crc = expected[name]
        if path.stat().st_size != size:
            raise DataError(
                f"data cache entry {folder} is damaged: {name} has {path.stat().st_size} bytes, {size} were written"
            )
        if crc32(path) != crc:
            raise DataError(f"data cache entry {folder} is damaged: {name} has changed since it was written")
    images, labels = np.load(folder / "images.npy"), np.load(folder / "labels.npy")
    images.flags.writeable = labels.flags.writeable = False
    return Split(images, labels)


def write(folder: Path, split: Split, info: dict) -> None:
    """Write an entry atomically (a temporary folder renamed into place); an unwritable cache only warns."""
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
        np.save(tmp / "images.npy", np.ascontiguousarray(split.images, np.uint8))
        np.save(tmp / "labels.npy", np.ascontiguousarray(split.labels, np.int32))
        files = {name: [(tmp / name).stat().st_size, crc32(tmp / name)] for name in FILES}
        meta = {**info, "count": len(split), "image_shape": list(split.images.shape[1:]), "files": files}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)  # a damaged entry being replaced
        os.replace(tmp, folder)
    except OSError as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST) and folder.is_dir():
            return  # another process (a multi-process run) wrote the same entry first
        print(
            f"warning: cannot write the data cache at {folder} ({e.strerror or e}); continuing without it",
            file=sys.stderr,
        )


def load(
    root: Path | None,
    *,
    source: str,
    dataset: str,
    version: str | None,
    split: str,
    subset: str,
    build: Callable[[], Split],
) -> Split:
    """The split from the cache, or from `build()` (then cached). `version` None means the source is
    not on this machine: the newest cached version serves, and without one `build()` must download
    (or raise DataError saying the data is missing); what it returns is not cached, having no version."""
    if root is None:
        return build()
    if version is None:
        versions = [
            v for v in cached_versions(root, source, dataset) if entry(root, source, dataset, v, split, subset).is_dir()
        ]
        if not versions:
            return build()
        version = versions[0]
        return read(entry(root, source, dataset, version, split, subset))  # no source to rebuild from
    folder = entry(root, source, dataset, version, split, subset)
    if folder.is_dir():
        try:
            return read(folder)
        except DataError as e:
            print(f"warning: {e}; rebuilding it from the source", file=sys.stderr)
    result = build()
    write(folder, result, {"source": source, "dataset": dataset, "version": version, "split": split, "subset": subset})
    return result
