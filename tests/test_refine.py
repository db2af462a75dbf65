"""Refined augmentation (`--refine`): which epochs train with crop and flip only, in JAX and in the
torch mirror, and the flag's bad values."""

import io

import jax
import numpy as np
import pytest

from jaxresnet.config import TrainConfig
from jaxresnet.data.augment import Augment, augment_at, augment_of, refined_epochs

FULL = dict(augment="crop,flip,randaugment,cutout", mixup=0.2, cutmix=1.0, crop_padding=2, cutout_size=4)


@pytest.mark.parametrize("refine, epochs, refined", [("10%", 90, 9), ("3", 10, 3), ("25%", 10, 3), ("5%", 9, 0)])
def test_the_last_epochs_train_with_crop_and_flip_only(refine, epochs, refined):
    # a share rounds half up, as --resize-schedule's stages do (25 % of 10 = 2.5 -> 3; 5 % of 9 = 0.45 -> 0)
    config = TrainConfig(epochs=epochs, refine=refine, **FULL).validate()
    assert refined_epochs(config) == refined
    full = augment_of(config)
    assert full == Augment(crop=2, flip=True, policy="randaugment", cutout=4, mixup=0.2, cutmix=1.0)
    plain = Augment(crop=2, flip=True)  # the policy, cutout and the mixing off; mix_prob unused
    assert [augment_at(config, e) for e in range(1, epochs + 1)] == [full] * (epochs - refined) + [plain] * refined


def test_off_by_default():
    config = TrainConfig(epochs=4, **FULL).validate()
    assert config.refine == "0" and TrainConfig().refine == "0"  # the reference's default
    assert refined_epochs(config) == 0
    assert [augment_at(config, e) for e in range(1, 5)] == [augment_of(config)] * 4


def _first_leaf(state):
    return np.asarray(jax.tree.leaves(state.params)[0])


def test_a_run_trains_its_refined_epochs_without_the_policy(data_dir, tmp_path, monkeypatch):
    import jaxresnet.training.run as run_module
    from jaxresnet.training.checkpoint import load_checkpoint

    trained = []
    real = run_module.train_epoch

    def spy(state, data, key, epoch, spec, **kw):
        trained.append((epoch, spec.augment.policy, spec.augment.crop, spec.augment.flip))
        return real(state, data, key, epoch, spec, **kw)

    monkeypatch.setattr(run_module, "train_epoch", spy)
    base = dict(arch="resnet18", resize=8, epochs=3, batch_size=16, train_per_class=4, test_per_class=2, seed=1,
                data_dir=data_dir, download=False, augment="crop,flip,randaugment")  # fmt: skip

    def run(name, **kw):
        return run_module.train_run(TrainConfig(**base, **kw), str(tmp_path / name), out=io.StringIO(),
                                    err=io.StringIO())  # fmt: skip

    refined = run("refined", refine="1")
    assert trained == [(1, "randaugment", 4, True), (2, "randaugment", 4, True), (3, "", 4, True)]
    plain = run("plain")
    # the same until the refined epoch, bit for bit; that epoch trains on other images
    for epoch in (1, 2):
        a, b = (load_checkpoint(str(tmp_path / name), epoch).state for name in ("refined", "plain"))
        np.testing.assert_array_equal(_first_leaf(a), _first_leaf(b))
    assert not np.array_equal(_first_leaf(refined.state), _first_leaf(plain.state))


def test_the_torch_mirror_refines_the_same_epochs(data_dir, tmp_path, monkeypatch):
    import jaxresnet.pytorch.train as torch_train

    policies = []
    real = torch_train.TorchAugment

    def spy(config, epoch):
        made = real(config, epoch)
        policies.append((epoch, made.aug.policy, made.aug.crop))
        return made

    monkeypatch.setattr(torch_train, "TorchAugment", spy)
    config = TrainConfig(arch="resnet18", resize=8, epochs=3, batch_size=10, train_per_class=1, test_per_class=1,
                         augment="crop,flip,trivialaugment", refine="67%", data_dir=data_dir,
                         download=False)  # fmt: skip
    torch_train.torch_train_run(config, str(tmp_path / "torch"), out=io.StringIO(), err=io.StringIO())
    assert policies == [(1, "trivialaugment", 4), (2, "", 4), (3, "", 4)]  # 67 % of 3 = 2.01 -> 2


@pytest.mark.parametrize("args, message", [
    (["--refine", "x"], "--refine must be 0, EPOCHS or PERCENT% of --epochs (0 < percent < 100), got 'x'"),
    (["--refine", "-1"], "got '-1'"),
    (["--refine", "0%"], "got '0%'"),
    (["--refine", "100%"], "got '100%'"),
    (["--refine", "2.5"], "got '2.5'"),
    (["--refine", "10", "--epochs", "10"], "--refine 10 spans 10 epochs; --epochs (10) must go beyond it"),
    (["--refine", "99%", "--epochs", "10"], "--refine 99% spans 10 epochs; --epochs (10) must go beyond it"),
])  # fmt: skip
def test_bad_values_exit_2_with_one_line(refused, args, message):
    refused(args, message)
