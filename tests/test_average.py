"""--ema: the moving average is scored with BatchNorm statistics of its own, recomputed as torch's
`swa_utils.update_bn` recomputes them (`jaxresnet.training.average`)."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxresnet.config import TrainConfig
from jaxresnet.data import CIFAR10, Split, preprocess
from jaxresnet.models import ResNet18
from jaxresnet.pytorch.convert import flax_to_torch, torch_to_flax
from jaxresnet.pytorch.ingredients import refresh_average_statistics
from jaxresnet.pytorch.reference import TorchResNet18, torch_preprocess
from jaxresnet.training.average import refresh_statistics
from jaxresnet.training.loop import DeviceData, StepSpec
from jaxresnet.training.state import TrainState, sgd

SIZE, BATCH = 16, 8
STALE = 7.0  # statistics the recomputation must replace everywhere


@pytest.fixture(autouse=True)
def highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module")
def setup():
    """20 images (batches of 8, 8 and 4: a smaller last batch weighs as much as a full one in torch's
    update_bn, so weighting by size would show) and a torch ResNet18 away from its init."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, SIZE, SIZE, 3), dtype=np.uint8)
    torch.manual_seed(0)
    model = TorchResNet18()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(torch.empty_like(p).uniform_(0.5, 1.5))
    return images, model


def _state(variables, dtype):
    model = ResNet18(num_classes=10, dtype=dtype, param_dtype=dtype)
    params = jax.tree.map(lambda x: jnp.asarray(x, dtype), variables["params"])
    stale = jax.tree.map(lambda x: jnp.full(x.shape, STALE, dtype), variables["batch_stats"])
    state = TrainState.create(apply_fn=model.apply, params=params, batch_stats=stale, tx=sgd(0.1, 0.9))
    return model, state.replace(ema={"params": params, "batch_stats": stale})


def _refresh(variables, images, dtype):
    model, state = _state(variables, dtype)
    refreshed = refresh_statistics(state, model, DeviceData.put(Split(images, np.zeros(len(images), np.int32))),
                                   StepSpec(BATCH, SIZE, dtype))  # fmt: skip
    for a, b in zip(jax.tree.leaves(refreshed.ema["params"]), jax.tree.leaves(state.ema["params"])):
        np.testing.assert_array_equal(a, b)  # the average's weights are untouched
    return jax.device_get(refreshed.ema["batch_stats"])


def _within(got, params, want: torch.nn.Module, rel):
    """Each running statistic of `got` (flax layout) within `rel` of its largest value in `want`."""
    ours = flax_to_torch(jax.tree.map(np.array, {"params": params, "batch_stats": got}))
    checked = 0
    for name, b in want.state_dict().items():
        if "running_" in name:
            b, a = b.double().numpy(), np.asarray(ours[name], np.float64)
            assert np.abs(a - b).max() <= rel * np.abs(b).max(), (name, rel, np.abs(a - b).max())
            checked += 1
    assert checked == 2 * 20  # ResNet18's 20 BatchNorms


def test_the_average_s_statistics_are_torch_update_bn_s(setup):
    """In float64 the recomputed statistics are torch's update_bn's over the same batches to 1e-9 (they
    differ only in the order of sums); in float32 ours and the torch baseline's both stay within 1e-4
    of those, while every stale value is gone."""
    images, tmodel = setup
    variables = torch_to_flax(tmodel.state_dict())
    exact = copy.deepcopy(tmodel).double()
    with jax.enable_x64(True):  # the very inputs ours sees (its resize and normalisation round in float32)
        x = torch.from_numpy(np.array(preprocess(jnp.asarray(images), SIZE, jnp.float64))).permute(0, 3, 1, 2)
    batches = [x[s : s + BATCH] for s in range(0, 20, BATCH)]
    torch.optim.swa_utils.update_bn(batches, exact)
    params = variables["params"]
    with jax.enable_x64(True):
        _within(_refresh(variables, images, jnp.float64), params, exact, 1e-9)
    ours = _refresh(variables, images, jnp.float32)
    _within(ours, params, exact, 1e-4)
    assert all(np.all(np.asarray(x) != STALE) for x in jax.tree.leaves(ours))

    baseline = TorchResNet18()
    baseline.load_state_dict(tmodel.state_dict())
    with torch.no_grad():
        for m in baseline.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.fill_(STALE)
                m.running_var.fill_(STALE)
    config = TrainConfig(batch_size=BATCH, resize=SIZE)
    refresh_average_statistics(baseline, torch.from_numpy(images), config, CIFAR10.stats)
    _within(torch_to_flax(baseline.state_dict())["batch_stats"], params, exact, 1e-4)


def test_shrunken_weights_score_as_the_weights_once_their_statistics_are_their_own(setup):
    """The fault the recomputation mends: every convolution feeds a BatchNorm, so halving every kernel
    (and the stem's bias) leaves the network's function alone given statistics of its own, while with
    the full weights' statistics (what averaging them alongside the weights amounts to) the logits move."""
    images, tmodel = setup
    variables = torch_to_flax(tmodel.state_dict())
    halved = jax.tree_util.tree_map_with_path(
        lambda path, x: x * 0.5 if path[-1].key == "kernel" or path[0].key == "conv1" else x, variables["params"]
    )
    fc = {k: variables["params"][k] for k in ("fc1", "fc2")}
    halved.update(fc)  # the linear layers feed no BatchNorm
    with jax.enable_x64(True):
        full_stats = _refresh(variables, images, jnp.float64)
        own_stats = _refresh({"params": halved, "batch_stats": variables["batch_stats"]}, images, jnp.float64)
        model = ResNet18(num_classes=10, dtype=jnp.float64, param_dtype=jnp.float64)
        x = jnp.asarray(torch_preprocess(torch.from_numpy(images), SIZE).permute(0, 2, 3, 1).double().numpy())

        def logits(params, stats):
            return np.asarray(model.apply({"params": params, "batch_stats": stats}, x, train=False))

        want = logits(jax.tree.map(jnp.float64, variables["params"]), full_stats)
        own = logits(jax.tree.map(jnp.float64, halved), own_stats)
        stale = logits(jax.tree.map(jnp.float64, halved), full_stats)
    scale = np.abs(want).max()
    # In float64 the one difference is BatchNorm's epsilon against quartered variances (2.4e-3 of the
    # largest logit: layer4's maps are 1x1 at 16 pixels, some of its variances small); stale, 1.14.
    assert np.abs(own - want).max() <= 1e-2 * scale
    assert np.abs(stale - want).max() >= 0.5 * scale
