import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxresnet.models import ResNet18, ResNet34, ResNet50


def n_params(model, size=32):
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False))
    return sum(x.size for x in jax.tree.leaves(v["params"]))


@pytest.mark.parametrize(
    "model, expected",
    [
        (ResNet34(num_classes=10), 21_351_690),  # the reference's printout
        # torchvision's resnet18/50 without their 1000-way fc, plus the stem bias and the 2-layer head.
        (ResNet18(num_classes=10), 11_243_530),
        (ResNet50(num_classes=10), 23_771_658),
    ],
)
def test_parameter_counts(model, expected):
    assert n_params(model) == expected


def test_parameter_count_does_not_depend_on_resolution_or_init():
    assert n_params(ResNet34(num_classes=10, weight_init="flax"), 128) == 21_351_690


@pytest.mark.parametrize("size", [32, 64, 128])
def test_logits_shape(size):
    model = ResNet34(num_classes=10)
    x = jax.random.normal(jax.random.key(1), (2, size, size, 3))
    variables = model.init(jax.random.key(0), x, train=False)
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    assert logits.shape == (2, 10) and logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))
    assert float(jnp.std(logits)) > 0  # a real function of the input, not a constant


def test_batch_stats_update_in_train_mode_only():
    model = ResNet18(num_classes=10)
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3)) * 2 + 1
    variables = model.init(jax.random.key(0), x, train=False)
    _, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    before = variables["batch_stats"]["bn1"]
    after = updates["batch_stats"]["bn1"]
    # torch's momentum 0.1: the running mean moves a tenth of the way to the batch mean.
    assert not np.allclose(before["mean"], after["mean"])
    _, eval_updates = model.apply(variables, x, train=False, mutable=["batch_stats"])
    jax.tree.map(np.testing.assert_array_equal, eval_updates["batch_stats"], variables["batch_stats"])


def test_bfloat16_compute_keeps_float32_parameters():
    model = ResNet18(num_classes=10, dtype=jnp.bfloat16)
    x = jnp.ones((2, 32, 32, 3))
    variables = model.init(jax.random.key(0), x, train=False)
    assert {p.dtype for p in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    logits = model.apply(variables, x, train=False)
    assert logits.dtype == jnp.float32 and logits.shape == (2, 10)
