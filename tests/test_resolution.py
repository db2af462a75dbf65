"""Progressive resizing (`--resize-schedule`): which side each epoch trains at, in JAX and in the torch
mirror, a resumed run's epochs at their sides bit for bit, and the flag's bad values."""

import io

import jax
import numpy as np
import pytest

from jaxresnet.config import TrainConfig
from jaxresnet.data.resolution import parse_resize_schedule, resize_at, staged_epochs


def test_each_epoch_trains_at_its_stages_side_then_at_resize():
    config = TrainConfig(resize=48, epochs=80, resize_schedule="32:40, 40:10")
    assert parse_resize_schedule(config.resize_schedule) == ((32, 40), (40, 10))
    assert staged_epochs(config) == 50
    sides = [resize_at(config, e) for e in range(1, 81)]
    assert sides == [32] * 40 + [40] * 10 + [48] * 30
    assert [resize_at(TrainConfig(resize=48), e) for e in (1, 10)] == [48, 48]  # none: --resize throughout
    assert TrainConfig().resize_schedule == "none"  # the reference's default
    # an exact half goes up (12.5 % of 20 = 2.5 -> 3), with decimals read exactly (33.3 % of 30 = 9.99 -> 10)
    assert staged_epochs(TrainConfig(epochs=20, resize_schedule="16:12.5%")) == 3
    assert staged_epochs(TrainConfig(epochs=30, resize_schedule="16:33.3%,24:10")) == 20


@pytest.mark.parametrize("epochs, staged", [(90, 40), (9, 4), (12, 5), (1, 0), (2, 1), (45, 20)])
def test_a_stage_given_as_a_share_of_epochs_rounds_half_up(epochs, staged):
    # 44 % of 90 epochs is 39.6 -> 40 (sessions 20-21's 32:40), and a shortened run keeps the share
    config = TrainConfig(resize=48, epochs=epochs, resize_schedule="32:44%")
    assert staged_epochs(config) == staged
    assert [resize_at(config, e) for e in range(1, epochs + 1)] == [32] * staged + [48] * (epochs - staged)


def _same_leaves(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_stage_trains_at_its_side_and_a_resumed_run_is_bit_for_bit(data_dir, tmp_path):
    from jaxresnet.training.checkpoint import load_checkpoint
    from jaxresnet.training.run import train_run

    base = dict(arch="resnet18", batch_size=16, train_per_class=4, test_per_class=2, seed=3, data_dir=data_dir,
                download=False, augment="crop,flip", tta="flip")  # fmt: skip

    def run(name, **kw):
        return train_run(TrainConfig(**base, **kw), str(tmp_path / name), out=io.StringIO(), err=io.StringIO())

    small = run("small", resize=8, epochs=1)
    whole = run("whole", resize=16, epochs=3, resize_schedule="8:1")
    # epoch 1 of the staged run is a run at --resize 8, step for step
    _same_leaves(load_checkpoint(str(tmp_path / "whole"), 1).state, small.state)
    # the epochs after it are at --resize 16: not what a run at 8 throughout trains
    at8 = run("at8", resize=8, epochs=3)
    assert not np.array_equal(jax.tree.leaves(whole.state.params)[0], jax.tree.leaves(at8.state.params)[0])
    # stopped after the stage and resumed: the same run
    run("part", resize=16, epochs=2, resize_schedule="8:1")
    resumed = run("part", resize=16, epochs=3, resize_schedule="8:1")
    _same_leaves(resumed.state, whole.state)
    scored = [[(h["train_accuracy"], h["train_loss"], h["test_accuracy"]) for h in r.history] for r in (resumed, whole)]
    assert scored[0] == scored[1]


def test_the_torch_mirror_trains_each_epoch_at_its_side_and_scores_at_resize(data_dir, tmp_path, monkeypatch):
    import jaxresnet.pytorch.train as torch_train

    sides = []
    real = torch_train.torch_preprocess

    def spy(images, side, stats):
        sides.append((len(images), side))
        return real(images, side, stats)

    monkeypatch.setattr(torch_train, "torch_preprocess", spy)
    config = TrainConfig(arch="resnet18", resize=16, epochs=3, batch_size=10, train_per_class=2, test_per_class=1,
                         resize_schedule="8:1,12:1", data_dir=data_dir, download=False)  # fmt: skip
    torch_train.torch_train_run(config, str(tmp_path / "torch"), out=io.StringIO(), err=io.StringIO())
    # 20 training images in two batches an epoch; 10 test images scored after each epoch
    assert sides == [(10, 8), (10, 8), (10, 16), (10, 12), (10, 12), (10, 16), (10, 16), (10, 16), (10, 16)]


@pytest.mark.parametrize("args, message", [
    (["--resize-schedule", "32"], "--resize-schedule must be none or comma-separated SIDE:EPOCHS or SIDE:PERCENT%"),
    (["--resize-schedule", "32:0"], "--resize-schedule must be none or comma-separated SIDE:EPOCHS or SIDE:PERCENT%"),
    (["--resize-schedule", "4:10"], "(sides >= 8, epochs >= 1"),
    (["--resize-schedule", "32:x"], "got '32:x'"),
    (["--resize-schedule", "32:100%"], "0 < percent < 100"),
    (["--resize-schedule", "32:0%"], "got '32:0%'"),
    (["--resize-schedule", "32:4.5"], "got '32:4.5'"),
    (["--resize-schedule", "32:60%,40:40%", "--epochs", "10"],
     "--resize-schedule 32:60%,40:40% spans 10 epochs; --epochs (10) must go beyond it"),
    (["--resize-schedule", "32:6,40:4", "--epochs", "10"],
     "--resize-schedule 32:6,40:4 spans 10 epochs; --epochs (10) must go beyond it"),
])  # fmt: skip
def test_bad_values_exit_2_with_one_line(refused, args, message):
    refused(args, message)
