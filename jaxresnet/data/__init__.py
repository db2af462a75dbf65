"""The data path: where images come from, which of them a run uses, and how they reach the model.

- `split`: `Split` (host uint8 images + int32 labels) and `DataError`, what every source returns.
- `cifar10`: the CIFAR-10 source (tensorflow-datasets), its class names and channel statistics.
- `datasets`: `--dataset NAME`: any tfds image-classification dataset, and `DatasetInfo` (class
  names, statistics) that runs, checkpoints and evaluation carry. A new kind of source goes beside it.
- `subsets`: the seeded class-balanced subsets a run trains and is scored on.
- `cache`: the decoded-data cache the subsets are read from once written (no TensorFlow needed).
- `preprocess`: what runs on the device inside the jitted steps (resize, normalise); per-step
  augmentations belong there too.
"""

from jaxresnet.data.cifar10 import CLASS_NAMES, MEAN, NUM_CLASSES, STD, load_cifar10
from jaxresnet.data.datasets import CIFAR10, DatasetInfo
from jaxresnet.data.preprocess import preprocess
from jaxresnet.data.split import DataError, Split
from jaxresnet.data.subsets import balanced_subset, load_dataset, load_subsets, load_test_subset, load_train_subset

__all__ = [
    "CIFAR10",
    "CLASS_NAMES",
    "MEAN",
    "NUM_CLASSES",
    "STD",
    "DataError",
    "DatasetInfo",
    "Split",
    "balanced_subset",
    "load_dataset",
    "load_cifar10",
    "load_subsets",
    "load_test_subset",
    "load_train_subset",
    "preprocess",
]
