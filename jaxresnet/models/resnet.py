"""ResNets built from parts: a block type, stage sizes and widths, with the reference's stem and head.

The reference network (a PyTorch homework's ResNet34) differs from torchvision's in three places:
the stem conv has padding 5 and a bias, the max-pool is 2x2 with stride 2, and the head is two
linear layers (512 -> 128 -> classes, no activation between them). Module names follow the
reference's printout closely so that `jaxresnet.pytorch.convert` maps them one to one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxresnet.models.layers import BatchNorm, Conv, Dense, max_pool

ModuleDef = Any


class BasicBlock(nn.Module):
    """conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN, plus shortcut, ReLU after the sum."""

    filters: int
    conv: ModuleDef
    norm: ModuleDef
    strides: int = 1
    zero_init_residual: bool = False
    expansion = 1

    @nn.compact
    def __call__(self, x):
        s = (self.strides, self.strides)
        y = self.conv(self.filters, (3, 3), s, ((1, 1), (1, 1)), use_bias=False, name="conv1")(x)
        y = self.norm(name="bn1")(y, relu=True)
        y = self.conv(self.filters, (3, 3), (1, 1), ((1, 1), (1, 1)), use_bias=False, name="conv2")(y)
        return _last_norm(self, "bn2")(y, _shortcut(self, x, self.filters * self.expansion), relu=True)


class BottleneckBlock(nn.Module):
    """conv1x1 -> BN -> ReLU -> conv3x3(stride) -> BN -> ReLU -> conv1x1(4x) -> BN, plus shortcut."""

    filters: int
    conv: ModuleDef
    norm: ModuleDef
    strides: int = 1
    zero_init_residual: bool = False
    expansion = 4

    @nn.compact
    def __call__(self, x):
        s = (self.strides, self.strides)
        y = self.conv(self.filters, (1, 1), use_bias=False, name="conv1")(x)
        y = self.norm(name="bn1")(y, relu=True)
        y = self.conv(self.filters, (3, 3), s, ((1, 1), (1, 1)), use_bias=False, name="conv2")(y)
        y = self.norm(name="bn2")(y, relu=True)
        y = self.conv(self.filters * self.expansion, (1, 1), use_bias=False, name="conv3")(y)
        return _last_norm(self, "bn3")(y, _shortcut(self, x, self.filters * self.expansion), relu=True)


def _last_norm(block, name: str):
    # torchvision's zero_init_residual (Goyal et al. 2017): the branch's last BatchNorm scale starts
    # at 0, so every block starts as its shortcut and the deep network trains as a shallow one first.
    if block.zero_init_residual:
        return block.norm(name=name, scale_init=nn.initializers.zeros)
    return block.norm(name=name)


def _shortcut(block, x, out_features):
    # The reference projects only when the stride changes; a bottleneck's first block also changes
    # width at stride 1, which needs the projection too. For basic blocks the two rules agree.
    if block.strides == 1 and x.shape[-1] == out_features:
        return x
    s = (block.strides, block.strides)
    r = block.conv(out_features, (1, 1), s, use_bias=False, name="downsample_conv")(x)
    return block.norm(name="downsample_bn")(r)


class ResNet(nn.Module):
    """Stem (conv7x7/2 pad 5 + bias, BN, ReLU, maxpool 2x2/2), stages, avg-pool, fc1 -> fc2.

    `dtype` is the compute dtype; parameters and BatchNorm statistics are `param_dtype` (float32;
    float64 for tests that compare against a float64 reference).
    `weight_init` chooses torch's default initialisation ("torch") or flax's ("flax");
    `zero_init_residual` starts each block's last BatchNorm scale at 0 (torchvision's option).
    `norm_momentum` is BatchNorm's, in flax's convention (torch's 0.1 is 0.9); at 0 a training-mode
    pass leaves each layer's running statistics at its batch's (`training.average` counts them so).
    `conv_impl` chooses how convolutions are computed (see `jaxresnet.models.layers.Conv`), `norm_impl`
    how training-mode BatchNorm with its ReLU and residual add is (`jaxresnet.models.layers.BatchNorm`).
    """

    stage_sizes: Sequence[int]
    block_cls: ModuleDef
    num_classes: int = 10
    widths: Sequence[int] = (64, 128, 256, 512)
    hidden: int = 128
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    weight_init: str = "torch"
    zero_init_residual: bool = False
    conv_impl: str = "auto"
    norm_impl: str = "auto"
    norm_momentum: float = 0.9

    @nn.compact
    def __call__(self, x, train: bool = False):
        conv = functools.partial(
            Conv, dtype=self.dtype, param_dtype=self.param_dtype, weight_init=self.weight_init, impl=self.conv_impl
        )
        norm = functools.partial(
            BatchNorm,
            use_running_average=not train,
            momentum=self.norm_momentum,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            impl=self.norm_impl,
        )

        x = x.astype(self.dtype)
        x = conv(self.widths[0], (7, 7), (2, 2), ((5, 5), (5, 5)), use_bias=True, name="conv1")(x)
        x = norm(name="bn1")(x, relu=True)
        x = max_pool(x, 2)
        for i, (blocks, width) in enumerate(zip(self.stage_sizes, self.widths)):
            for j in range(blocks):
                strides = 2 if i > 0 and j == 0 else 1
                x = self.block_cls(
                    width,
                    conv=conv,
                    norm=norm,
                    strides=strides,
                    zero_init_residual=self.zero_init_residual,
                    name=f"layer{i + 1}_{j}",
                )(x)
        x = jnp.mean(x, axis=(1, 2))
        dense = functools.partial(Dense, dtype=self.dtype, param_dtype=self.param_dtype, weight_init=self.weight_init)
        x = dense(self.hidden, name="fc1")(x)
        x = dense(self.num_classes, name="fc2")(x)
        return x.astype(jnp.promote_types(self.dtype, jnp.float32))  # float32 logits from bfloat16


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock)
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BottleneckBlock)

ARCHS = {"resnet18": ResNet18, "resnet34": ResNet34, "resnet50": ResNet50}
