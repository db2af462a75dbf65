"""On-device preprocessing, run inside the jitted steps: resize and normalise uint8 images.

Images stay uint8 at their stored size on the accelerator (5,000 CIFAR-10 train images are 15 MB);
nothing is resized or normalised on the host each epoch. Augmentations that run per step belong
beside this, as functions of (images, key) traced into the step.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxresnet.data.cifar10 import MEAN, STD


def preprocess(images_u8: jax.Array, size: int, dtype=jnp.float32) -> jax.Array:
    """uint8 NHWC 32x32 -> float NHWC size x size: bilinear resize, then per-channel normalisation.

    Bilinear without antialiasing, half-pixel centres: torch's
    `F.interpolate(x, size, mode="bilinear", align_corners=False)`. Runs inside jit.
    """
    x = images_u8.astype(jnp.float32) / 255.0
    n, h, w, c = x.shape
    if (h, w) != (size, size):
        x = jax.image.resize(x, (n, size, size, c), method="linear", antialias=False)
    x = (x - jnp.asarray(MEAN)) / jnp.asarray(STD)
    return x.astype(dtype)
