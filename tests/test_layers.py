import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxresnet.models.layers import Conv


@pytest.mark.parametrize(
    "shape, kernel, stride, pad, features",
    [
        ((2, 2, 2, 32), (3, 3), 1, 1, 16),  # the shape XLA:CPU is slow on
        ((2, 1, 1, 32), (3, 3), 1, 1, 16),  # layer4 at --resize 16
        ((2, 3, 3, 16), (3, 3), 2, 1, 32),  # into layer4 at --resize 32
        ((2, 9, 9, 8), (3, 3), 2, 1, 16),
        ((2, 32, 32, 3), (7, 7), 2, 5, 8),  # the reference stem
        ((2, 8, 8, 16), (1, 1), 2, 0, 32),  # a downsample projection
    ],
)
@pytest.mark.parametrize("impl", ["im2col", "dense"])
def test_matmul_convs_match_xla_conv_and_its_gradients(shape, kernel, stride, pad, features, impl):
    x = jax.random.normal(jax.random.key(0), shape)
    kw = dict(
        features=features,
        kernel_size=kernel,
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=True,
        weight_init="torch",
    )
    xla, im2col = Conv(**kw, impl="xla"), Conv(**kw, impl=impl)
    variables = xla.init(jax.random.key(1), x)

    def loss(m):
        return lambda v, x: jnp.sum(jnp.sin(m.apply(v, x)))

    y1, y2 = xla.apply(variables, x), im2col.apply(variables, x)
    assert y1.shape == y2.shape
    np.testing.assert_allclose(y2, y1, rtol=1e-5, atol=1e-5)
    g1 = jax.grad(loss(xla), argnums=(0, 1))(variables, x)
    g2 = jax.grad(loss(im2col), argnums=(0, 1))(variables, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4), g1, g2)


def test_without_onednn_auto_picks_matmul_forms_on_cpu_for_small_maps(monkeypatch):
    from jaxresnet.models.layers import resolve_conv_impl
    from jaxresnet.native import build as onednn

    monkeypatch.setattr(onednn, "available", lambda: False)

    same = ((1, 1), (1, 1))
    assert resolve_conv_impl("auto", (64, 2, 2, 512), (3, 3), (1, 1), same) == "dense"
    assert resolve_conv_impl("auto", (64, 3, 3, 256), (3, 3), (1, 1), same) == "im2col"
    assert resolve_conv_impl("auto", (64, 33, 33, 64), (3, 3), (1, 1), same) == "xla"
    assert resolve_conv_impl("auto", (64, 33, 33, 64), (1, 1), (2, 2), ((0, 0), (0, 0))) == "im2col"
    assert resolve_conv_impl("xla", (64, 2, 2, 512), (3, 3), (1, 1), same) == "xla"


def test_first_max_gives_a_tie_to_the_first_maximum_like_torch():
    import torch

    from jaxresnet.models.layers import _first_max

    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (2, 6, 6, 3)).astype(np.float32)  # values 0, 1, 2: many ties
    g = rng.normal(size=(2, 3, 3, 3)).astype(np.float32)
    ours = jax.grad(lambda x: jnp.sum(_first_max(x.reshape(2, 3, 2, 3, 2, 3)) * g))(jnp.asarray(x))
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    (torch.nn.functional.max_pool2d(xt, 2) * torch.tensor(g.transpose(0, 3, 1, 2))).sum().backward()
    assert np.array_equal(np.asarray(ours), xt.grad.numpy().transpose(0, 2, 3, 1))
    windows = x.reshape(2, 3, 2, 3, 2, 3)
    assert np.array_equal(np.asarray(_first_max(jnp.asarray(windows))), windows.max(axis=(2, 4)))
    assert ((windows == windows.max(axis=(2, 4), keepdims=True)).sum(axis=(2, 4)) > 1).mean() > 0.3  # ties
