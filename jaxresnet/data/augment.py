"""On-device augmentation of training batches, traced into the jitted train step: no host work per step.

- **crop**: a random shift of up to `crop` source pixels each way, as torchvision's
  `RandomCrop(32, padding=crop, padding_mode="reflect")`. Reflect padding, not zeros: a zero-padded
  shift adds black bands that no test image has, which the network must learn to ignore (airbench
  and most CIFAR recipes since use reflect); at --resize 128 a band would be 16 pixels wide.
- **flip**: a horizontal flip with probability 1/2.
- **trivialaugment** / **randaugment**: torchvision's TrivialAugmentWide / RandAugment policies,
  each image its own draw (`jaxresnet.data.policy`); RandAugment's ops and magnitude are
  `--randaugment-ops` and `--randaugment-magnitude`.
- **cutout**: a square of side `cutout` source pixels (scaled to the resized image) set to zero in the
  normalised image, that is to the dataset's mean colour, its centre uniform over the image and the
  square clipped at the border (DeVries & Taylor 2017).
- **refine** (`--refine`): the run's last epochs train with crop and flip only, the policy, cutout
  and the mixing off, so the weights and BatchNorm's statistics settle on images like the test
  split's (He et al. 2019, "Data augmentation revisited": refined data augmentation).
- **mixup** / **cutmix** (`--mixup`, `--cutmix`: their Beta(a, a)): the batch blended, or a box of it
  pasted, with the batch rolled by one, the labels weighted alike (torchvision's v2.MixUp and
  v2.CutMix; with both, each batch takes one of them at random, as v2.RandomChoice would); with
  `--mix-prob p`, a batch is mixed with probability p and otherwise left as it is.

Crop, flip and the policy act on the stored uint8 images before the resize (whole pixels, exact);
cutout and the mixing after it, so edges stay sharp at any --resize. The draws come from a key that
is a function of (seed, epoch, step) alone (`step_key`), so a resumed run draws the same as an
uninterrupted one. Test images are never augmented; test-time augmentation (`--tta`, `tta_views`)
scores fixed views of each image and averages their logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from jaxresnet.data.policy import POLICIES, RANDAUGMENT_BIN, RANDAUGMENT_OPS, apply_policy
from jaxresnet.data.resolution import epochs_of, parse_length

AUGMENTS = ("crop", "flip", *POLICIES, "cutout")
# Folded into the shuffle key first: augmentation draws are a stream of their own, apart from the
# per-epoch permutations (which fold the epoch number directly into the same key).
AUGMENT_STREAM = 0x617567


@dataclass(frozen=True)
class Augment:
    """What a training step applies; hashable, so it is a static argument of the jitted step."""

    crop: int = 0  # largest shift in source pixels; 0: off
    flip: bool = False
    policy: str = ""  # trivialaugment or randaugment; "": none
    policy_ops: int = RANDAUGMENT_OPS  # randaugment: ops applied in turn
    policy_magnitude: int = RANDAUGMENT_BIN  # randaugment: the magnitude bin
    cutout: int = 0  # square side in source pixels; 0: off
    mixup: float = 0.0  # MixUp's Beta(a, a); 0: off
    cutmix: float = 0.0  # CutMix's Beta(a, a); 0: off
    mix_prob: float = 1.0  # the chance a batch is mixed (with mixup or cutmix on)

    def __bool__(self) -> bool:
        return bool(self.crop or self.flip or self.policy or self.cutout or self.mixup or self.cutmix)


def parse_augment(spec: str) -> tuple[str, ...]:
    """ "none" or a comma-separated list of AUGMENTS -> the names, in AUGMENTS order; ValueError if bad."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if names == ["none"]:
        return ()
    bad = [n for n in names if n not in AUGMENTS]
    if bad or not names or len(set(names)) != len(names) or all(p in names for p in POLICIES):
        raise ValueError(f"--augment must be none or a comma-separated list of {', '.join(AUGMENTS)}, got {spec!r}")
    return tuple(n for n in AUGMENTS if n in names)


def augment_of(config) -> Augment:
    """What a run's (`jaxresnet.config.TrainConfig`) training steps apply."""
    names = parse_augment(config.augment)
    return Augment(
        crop=config.crop_padding if "crop" in names else 0,
        flip="flip" in names,
        policy=next((n for n in names if n in POLICIES), ""),
        policy_ops=config.randaugment_ops,
        policy_magnitude=config.randaugment_magnitude,
        cutout=config.cutout_size if "cutout" in names else 0,
        mixup=config.mixup,
        cutmix=config.cutmix,
        mix_prob=config.mix_prob,
    )


def parse_refine(text: str):
    """--refine: 0, EPOCHS or PERCENT% (of --epochs) -> epochs (int) or a percent (Fraction); ValueError if bad."""
    length = parse_length(text)
    if length is None or (not isinstance(length, int) and not 0 < length < 100):
        raise ValueError(f"--refine must be 0, EPOCHS or PERCENT% of --epochs (0 < percent < 100), got {text!r}")
    return length


def refined_epochs(config) -> int:
    """How many of a run's (`jaxresnet.config.TrainConfig`) last epochs train under --refine."""
    return epochs_of(parse_refine(config.refine), config.epochs)


def augment_at(config, epoch: int) -> Augment:
    """What a run's training steps apply in `epoch` (1-based): crop and flip only in --refine's last
    epochs. A function of the epoch alone, so a resumed run augments as an uninterrupted one."""
    augment = augment_of(config)
    if epoch > config.epochs - refined_epochs(config):
        return Augment(crop=augment.crop, flip=augment.flip)
    return augment


def epoch_key(shuffle_key: jax.Array, epoch) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(shuffle_key, AUGMENT_STREAM), epoch)


def step_key(epoch_key_: jax.Array, step) -> jax.Array:
    """The draws of training step `step` (0-based within the epoch) of the epoch `epoch_key_` is for."""
    return jax.random.fold_in(epoch_key_, step)


def tta_views(images, tta: str, xp=jnp) -> list:
    """Test-time augmentation's (weight, source images) views of a batch of uint8 images (numpy with
    `xp=np`, for the torch baseline); each view is also scored mirrored where `tta` is not none (the
    mirror taken of the resized image, as it always was).

    flip-shift is airbench's mirror-and-translate: the images themselves with weight 1/2, and shifted
    by one source pixel up-left and down-right, reflected in at the border as the training crop does,
    1/4 each: six network passes an image. none and flip: the images themselves.
    """
    if tta != "flip-shift":
        return [(1.0, images)]
    h, w = images.shape[1:3]
    padded = xp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    return [(0.5, images), (0.25, padded[:, :h, :w]), (0.25, padded[:, 2:, 2:])]


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
    """Crop, flip and the policy, on the stored uint8 images (before the resize)."""
    k_crop, k_flip = jax.random.split(key)
    if aug.crop:
        images_u8 = random_crop(images_u8, k_crop, aug.crop)
    if aug.flip:
        images_u8 = random_flip(images_u8, k_flip)
    if aug.policy:
        k_policy = jax.random.fold_in(key, 2)
        images_u8 = apply_policy(images_u8, k_policy, aug.policy, aug.policy_ops, aug.policy_magnitude)
    return images_u8


def augment_resized(x, key, aug: Augment, source_size: int):
    """Cutout of the resized, normalised batch: the square scales with the resize."""
    if not aug.cutout:
        return x
    n, h, w, _ = x.shape
    size = max(1, round(aug.cutout * h / source_size))
    return jnp.where(cutout_mask(jax.random.fold_in(key, 1), n, h, w, size), x, jnp.zeros((), x.dtype))


def mix_batch(x, key, aug: Augment):
    """MixUp or CutMix of a resized batch with itself rolled by one: (images, weight of each image's
    own label, the partner's index shift). With both on, each batch takes one of the two, even odds."""
    k_which, k_lam, k_box = jax.random.split(jax.random.fold_in(key, 3), 3)
    use_cutmix = jax.random.bernoulli(k_which, 0.5) if aug.mixup and aug.cutmix else jnp.asarray(bool(aug.cutmix))
    lam = jax.random.beta(k_lam, jnp.where(use_cutmix, aug.cutmix or 1.0, aug.mixup or 1.0),
                          jnp.where(use_cutmix, aug.cutmix or 1.0, aug.mixup or 1.0))  # fmt: skip
    partner = jnp.roll(x, 1, axis=0)
    mixed = (lam * x + (1 - lam) * partner).astype(x.dtype)
    box, area = _cutmix_box(k_box, x.shape[1], x.shape[2], lam)
    pasted = jnp.where(box[None, :, :, None], partner, x)
    out, own = jnp.where(use_cutmix, pasted, mixed), jnp.where(use_cutmix, 1 - area, lam)
    if aug.mix_prob < 1:  # a batch left as it is keeps its own labels (a draw of its own: the others unchanged)
        mixing = jax.random.bernoulli(jax.random.fold_in(key, 4), aug.mix_prob)
        out, own = jnp.where(mixing, out, x), jnp.where(mixing, own, jnp.ones_like(own))
    return out, own


def _cutmix_box(key, h: int, w: int, lam):
    """torchvision's v2.CutMix box: centre uniform, sides sqrt(1 - lam) of the image's, clipped;
    (the box as an (h, w) mask, the fraction of the image it covers)."""
    ky, kx = jax.random.split(key)
    cy, cx = jax.random.randint(ky, (), 0, h), jax.random.randint(kx, (), 0, w)
    r = 0.5 * jnp.sqrt(1.0 - lam)
    rh, rw = (r * h).astype(jnp.int32), (r * w).astype(jnp.int32)
    y0, y1 = jnp.clip(cy - rh, 0, h), jnp.clip(cy + rh, 0, h)
    x0, x1 = jnp.clip(cx - rw, 0, w), jnp.clip(cx + rw, 0, w)
    rows, cols = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
    box = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    return box, ((y1 - y0) * (x1 - x0)) / (h * w)
