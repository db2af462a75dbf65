import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jaxresnet.data import DataError, balanced_subset, load_cifar10, load_subsets, preprocess


def test_offline_copy_loads(cifar):
    train, test = cifar
    assert train.images.shape == (50_000, 32, 32, 3) and train.images.dtype == np.uint8
    assert test.images.shape == (10_000, 32, 32, 3)
    assert np.bincount(train.labels).tolist() == [5000] * 10


def test_subset_is_balanced_and_reproducible(cifar):
    train, _ = cifar
    a = balanced_subset(train.labels, 500, seed=3)
    assert len(a) == 5000 and len(set(a.tolist())) == 5000
    assert np.bincount(train.labels[a], minlength=10).tolist() == [500] * 10
    np.testing.assert_array_equal(a, balanced_subset(train.labels, 500, seed=3))
    b = balanced_subset(train.labels, 500, seed=4)
    assert len(set(a.tolist()) & set(b.tolist())) < 1000  # another seed, another draw


def test_subset_larger_than_split_is_refused(cifar):
    _, test = cifar
    with pytest.raises(DataError, match="only 1000"):
        balanced_subset(test.labels, 1001, seed=0)


def test_default_test_split_is_whole(data_dir):
    train, test = load_subsets(data_dir, False, 2, None, seed=0)
    assert len(train) == 20 and len(test) == 10_000


def test_missing_dataset_without_download(tmp_path):
    with pytest.raises(DataError, match="downloading is off"):
        load_cifar10("train", str(tmp_path), download=False)


@pytest.mark.parametrize("size", [16, 32, 64, 128, 45])
def test_on_device_resize_matches_torch_bilinear(cifar, size):
    images = cifar[1].images[:8]
    ours = np.asarray(preprocess(images, size))
    x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 255.0
    ref = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
    std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
    ref = ((ref - mean) / std).permute(0, 2, 3, 1).numpy()
    assert ours.shape == (8, size, size, 3)
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)
