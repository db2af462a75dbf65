"""On-device preprocessing, run inside the jitted steps: resize and normalise uint8 images.

Images stay uint8 at their stored size on the accelerator (5,000 CIFAR-10 train images are 15 MB);
nothing is resized or normalised on the host each epoch. Augmentations that run per step belong
beside this, as functions of (images, key) traced into the step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxresnet.data.cifar10 import MEAN, STD


def preprocess(images_u8: jax.Array, size: int, dtype=jnp.float32, stats=(MEAN, STD)) -> jax.Array:
    """uint8 NHWC -> float NHWC size x size: bilinear resize, then per-channel normalisation by
    `stats` = (mean, std) on a [0, 1] scale (CIFAR-10's by default; static: tuples).

    Bilinear without antialiasing, half-pixel centres: torch's
    `F.interpolate(x, size, mode="bilinear", align_corners=False)`. Runs inside jit.
    """
    x = images_u8.astype(jnp.float32) / 255.0
    n, h, w, c = x.shape
    if (h, w) != (size, size):
        x = jax.image.resize(x, (n, size, size, c), method="linear", antialias=False)
    x = (x - jnp.asarray(stats[0])) / jnp.asarray(stats[1])
    return x.astype(dtype)
