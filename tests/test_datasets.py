"""--dataset NAME: another tensorflow-datasets dataset end to end (offline, through tfds's own mock
data), its class count reaching the model's head, its statistics and class names the run's files."""

import io
import json

import numpy as np
import pytest

from jaxresnet.config import TrainConfig
from jaxresnet.data.datasets import CIFAR10, channel_stats


def test_a_named_dataset_with_another_class_count_trains_evaluates_and_records_its_classes(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    from jaxresnet.tools.evaluate import evaluate_checkpoint
    from jaxresnet.training.checkpoint import load_checkpoint
    from jaxresnet.training.run import train_run

    workdir = str(tmp_path / "run")
    config = TrainConfig(
        dataset="cifar100",
        arch="resnet18",
        resize=16,
        epochs=2,
        batch_size=16,
        train_per_class=None,
        test_per_class=None,
        data_dir=str(tmp_path / "tfds"),
        download=False,
        data_cache="off",
        checkpoint_minutes=0,
    )
    out = io.StringIO()
    with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
        names = tuple(tfds.builder("cifar100", data_dir=str(tmp_path / "tfds")).info.features["label"].names)
        train_run(config, workdir, out=out, err=io.StringIO(), progress=False)
        report = evaluate_checkpoint(workdir, "latest")
        from jaxresnet.data import load_dataset

        train, _, _ = load_dataset(config)
    assert len(names) == 100
    assert out.getvalue().count("Test Accuracy") == 2 and "Epoch 2/2" in out.getvalue()
    saved = json.load(open(f"{workdir}/config.json"))
    info = saved["dataset_info"]
    assert saved["dataset"] == "cifar100" and tuple(info["class_names"]) == names
    # normalised with its own training images' statistics, not CIFAR-10's
    assert (tuple(info["mean"]), tuple(info["std"])) == channel_stats(train.images)
    assert np.abs(np.array(info["mean"]) - np.array(CIFAR10.mean)).max() > 0.01
    restored = load_checkpoint(workdir)
    assert restored.state.params["fc2"]["kernel"].shape == (128, 100)
    assert restored.dataset.class_names == names
    assert report.confusion.shape == (100, 100) and report.confusion.sum() == 40
    assert list(report.per_class()) == list(names)


def test_channel_stats_are_those_of_the_images():
    images = np.zeros((2, 4, 4, 3), np.uint8)
    images[0, ..., 0] = 255  # red: half the pixels 1.0, half 0.0
    mean, std = channel_stats(images)
    assert mean == (0.5, 0.0, 0.0) and std == (0.5, 0.0, 0.0)


def test_stored_images_that_cannot_fit_are_refused_naming_the_figures():
    from jaxresnet.training import memory

    assert memory.check_stored_images(1000, 64, "hint") is None  # 12 MB
    message = memory.check_stored_images(10**8, 256, "lower --store-size")
    assert message.startswith("100000000 images stored at 256x256 need 18310.5 GiB on the device") and message.endswith(
        "; lower --store-size"
    )


def test_a_named_dataset_of_varying_image_sizes_is_stored_at_store_size(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    from jaxresnet.data import load_dataset

    config = TrainConfig(
        dataset="oxford_flowers102",
        store_size=20,
        train_per_class=None,
        test_per_class=None,
        data_dir=str(tmp_path / "tfds"),
        download=False,
        data_cache="off",
    )
    with tfds.testing.mock_data(num_examples=12, policy=tfds.testing.MockPolicy.USE_CODE):
        train, test, info = load_dataset(config)
    assert train.images.shape == (12, 20, 20, 3) and test.images.shape == (12, 20, 20, 3)
    assert info.num_classes == 102 and info.store_size == 20 and info.image_size == 20
