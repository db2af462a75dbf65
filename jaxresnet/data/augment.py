"""On-device augmentation of training batches, traced into the jitted train step: no host work per step.

- **crop**: a random shift of up to `crop` source pixels each way, as torchvision's
  `RandomCrop(32, padding=crop, padding_mode="reflect")`. Reflect padding, not zeros: a zero-padded
  shift adds black bands that no test image has, which the network must learn to ignore (airbench
  and most CIFAR recipes since use reflect); at --resize 128 a band would be 16 pixels wide.
- **flip**: a horizontal flip with probability 1/2.
- **cutout**: a square of side `cutout` source pixels (scaled to the resized image) set to zero in the
  normalised image, that is to the dataset's mean colour, its centre uniform over the image and the
  square clipped at the border (DeVries & Taylor 2017).

Crop and flip act on the stored uint8 images before the resize (a whole-pixel shift, exact); cutout
after it, so its square has sharp edges at any --resize. The draws come from a key that is a function
of (seed, epoch, step) alone (`step_key`), so a resumed run draws the same as an uninterrupted one.
Test images are never augmented.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

AUGMENTS = ("crop", "flip", "cutout")
# Folded into the shuffle key first: augmentation draws are a stream of their own, apart from the
# per-epoch permutations (which fold the epoch number directly into the same key).
AUGMENT_STREAM = 0x617567


@dataclass(frozen=True)
class Augment:
    """What a training step applies; hashable, so it is a static argument of the jitted step."""

    crop: int = 0  # largest shift in source pixels; 0: off
    flip: bool = False
    cutout: int = 0  # square side in source pixels; 0: off

    def __bool__(self) -> bool:
        return bool(self.crop or self.flip or self.cutout)


def parse_augment(spec: str) -> tuple[str, ...]:
    """ "none" or a comma-separated list of AUGMENTS -> the names, in AUGMENTS order; ValueError if bad."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if names == ["none"]:
        return ()
    bad = [n for n in names if n not in AUGMENTS]
    if bad or not names or len(set(names)) != len(names):
        raise ValueError(f"--augment must be none or a comma-separated list of {', '.join(AUGMENTS)}, got {spec!r}")
    return tuple(n for n in AUGMENTS if n in names)


def augment_of(config) -> Augment:
    """What a run's (`jaxresnet.config.TrainConfig`) training steps apply."""
    return make_augment(config.augment, config.crop_padding, config.cutout_size)


def make_augment(spec: str, crop_padding: int, cutout_size: int) -> Augment:
    names = parse_augment(spec)
    return Augment(
        crop=crop_padding if "crop" in names else 0,
        flip="flip" in names,
        cutout=cutout_size if "cutout" in names else 0,
    )


def epoch_key(shuffle_key: jax.Array, epoch) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(shuffle_key, AUGMENT_STREAM), epoch)


def step_key(epoch_key_: jax.Array, step) -> jax.Array:
    """The draws of training step `step` (0-based within the epoch) of the epoch `epoch_key_` is for."""
    return jax.random.fold_in(epoch_key_, step)


def random_crop(images, key, pad: int):
    """Each image shifted by (dy, dx), both uniform in [-pad, pad], its border reflected in."""
    n, h, w, _ = images.shape
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    offsets = jax.random.randint(key, (n, 2), 0, 2 * pad + 1)
    return jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, im.shape[-1])))(padded, offsets)


def random_flip(images, key):
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0],))
    return jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)


def cutout_mask(key, n: int, h: int, w: int, size: int):
    """(n, h, w, 1) of 1 outside and 0 inside each image's square (centre uniform, clipped)."""
    ky, kx = jax.random.split(key)
    cy = jax.random.randint(ky, (n, 1, 1), 0, h)
    cx = jax.random.randint(kx, (n, 1, 1), 0, w)
    y0, x0 = cy - size // 2, cx - size // 2
    rows = jnp.arange(h)[None, :, None]
    cols = jnp.arange(w)[None, None, :]
    inside = (rows >= y0) & (rows < y0 + size) & (cols >= x0) & (cols < x0 + size)
    return (~inside)[..., None]


def augment_source(images_u8, key, aug: Augment):
    """Crop and flip of the stored uint8 images (before the resize)."""
    k_crop, k_flip = jax.random.split(key)
    if aug.crop:
        images_u8 = random_crop(images_u8, k_crop, aug.crop)
    if aug.flip:
        images_u8 = random_flip(images_u8, k_flip)
    return images_u8


def augment_resized(x, key, aug: Augment, source_size: int):
    """Cutout of the resized, normalised batch: the square scales with the resize."""
    if not aug.cutout:
        return x
    n, h, w, _ = x.shape
    size = max(1, round(aug.cutout * h / source_size))
    return jnp.where(cutout_mask(jax.random.fold_in(key, 1), n, h, w, size), x, jnp.zeros((), x.dtype))
