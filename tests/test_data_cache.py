"""The decoded-data cache: same arrays as decoding, damage found and rebuilt or named, no TensorFlow needed."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from jaxresnet.data import DataError, cache, load_subsets, subsets

# As where they are not installed: importing them raises ModuleNotFoundError, find_spec gives None.
BLOCK_TF = """
import sys
sys.modules["tensorflow"] = sys.modules["tensorflow_datasets"] = None
"""


def _entries(root):
    return sorted(p.parent.relative_to(root).as_posix() for p in root.rglob("meta.json"))


def test_a_cached_subset_equals_the_decoded_one_and_is_read_without_decoding(data_dir, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    train, test = load_subsets(data_dir, False, 20, 5, 3, str(root))
    assert _entries(root) == [
        "tfds/cifar10/3.0.2/test-5-per-class-seed4",
        "tfds/cifar10/3.0.2/train-20-per-class-seed3",
    ]
    meta = json.loads((root / "tfds/cifar10/3.0.2/train-20-per-class-seed3/meta.json").read_text())
    assert meta["count"] == 200 and meta["image_shape"] == [32, 32, 3]

    def no_decoding(*a, **k):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(subsets, "load_split", no_decoding)
    train2, test2 = load_subsets(data_dir, False, 20, 5, 3, str(root))
    assert np.array_equal(train2.images, train.images) and np.array_equal(train2.labels, train.labels)
    assert np.array_equal(test2.images, test.images) and np.array_equal(test2.labels, test.labels)
    assert train2.images.dtype == np.uint8 and train2.labels.dtype == np.int32
    # and where the prepared copy is absent (a GPU machine), the cache alone serves
    train3, _ = load_subsets(str(tmp_path / "nowhere"), False, 20, 5, 3, str(root))
    assert np.array_equal(train3.images, train.images)
    # another subset is another entry, decoded (here: refused, since decoding is off)
    with pytest.raises(AssertionError, match="decoded although cached"):
        load_subsets(data_dir, False, 21, 5, 3, str(root))


def test_a_damaged_entry_is_rebuilt_from_the_source_or_named(data_dir, tmp_path, capsys):
    root = tmp_path / "cache"
    train, _ = load_subsets(data_dir, False, 10, 1, 0, str(root))
    images = root / "tfds/cifar10/3.0.2/train-10-per-class-seed0/images.npy"
    data = images.read_bytes()
    images.write_bytes(data[:-100])  # truncated
    train2, _ = load_subsets(data_dir, False, 10, 1, 0, str(root))
    assert np.array_equal(train2.images, train.images)
    assert "images.npy has" in capsys.readouterr().err and images.read_bytes() == data  # rebuilt
    # one byte altered, same size, and no source to rebuild from: named, never used
    images.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(DataError, match=r"train-10-per-class-seed0 is damaged: images.npy has changed"):
        load_subsets(str(tmp_path / "nowhere"), False, 10, 1, 0, str(root))


def test_off_and_an_unwritable_cache_still_load(data_dir, tmp_path, capsys):
    train, _ = load_subsets(data_dir, False, 2, 1, 0, "off")
    assert len(train) == 20
    blocker = tmp_path / "file"
    blocker.write_text("")
    train2, _ = load_subsets(data_dir, False, 2, 1, 0, str(blocker / "cache"))
    assert np.array_equal(train2.images, train.images)
    assert "cannot write the data cache" in capsys.readouterr().err


def test_the_reference_subsets_stay_under_50_mb(data_dir, tmp_path):
    root = tmp_path / "cache"
    load_subsets(data_dir, False, 500, None, 0, str(root))
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert 45e6 < size < 50e6, size  # 15,000 images of 3,072 bytes, plus labels and headers


def test_training_with_tensorflow_unimportable_reads_the_cache(data_dir, tmp_path, xla_cache):
    root = tmp_path / "cache"
    load_subsets(data_dir, False, 3, 2, 0, str(root))
    argv = [
        "scripts/train.py",
        "--resize",
        "32",
        "--epochs",
        "1",
        "--train-per-class",
        "3",
        "--test-per-class",
        "2",
        "--batch-size",
        "10",
        "--data-dir",
        str(tmp_path / "no-tfds-here"),
        "--no-download",
        "--data-cache",
        str(root),
        "--workdir",
        str(tmp_path / "run"),
    ]
    code = BLOCK_TF + f"import runpy\nsys.argv = {argv!r}\nrunpy.run_path('scripts/train.py', run_name='__main__')\n"
    env = dict(os.environ, JAXRESNET_HUGE_PAGES="0", JAX_COMPILATION_CACHE_DIR=xla_cache)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[0] == "Epoch 1/1" and "Test Accuracy:" in done.stdout
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())[0]["epoch"] == 1
    # and without the cache, the missing library is one line, exit 2
    argv[argv.index("--data-cache") + 1] = str(tmp_path / "empty")
    argv[argv.index("--workdir") + 1] = str(tmp_path / "run2")
    code = BLOCK_TF + f"import runpy\nsys.argv = {argv!r}\nrunpy.run_path('scripts/train.py', run_name='__main__')\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(done.stderr.strip().splitlines()) == 1 and "no CIFAR-10 under" in done.stderr, done.stderr


def test_cached_versions_are_ordered_numerically(tmp_path):
    for v in ("3.0.2", "3.0.10", "2.9.0"):
        (tmp_path / "tfds" / "cifar10" / v).mkdir(parents=True)
    assert cache.cached_versions(tmp_path, "tfds", "cifar10") == ["3.0.10", "3.0.2", "2.9.0"]
