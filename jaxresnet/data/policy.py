"""TrivialAugment (wide) and RandAugment on the device, inside the jitted train step.

The policies of torchvision's `TrivialAugmentWide` and `RandAugment`, op for op and magnitude for
magnitude, on a batch of stored uint8 images (before the resize), each image drawing its own:
TrivialAugment applies one op to each image, uniformly chosen among the 14 below, at a magnitude
drawn uniformly from 31 bins (and a random sign where the op has one); RandAugment applies N ops
in turn at a fixed bin M (torchvision's num_ops=2, magnitude=9 by default; `--randaugment-ops`,
`--randaugment-magnitude`). Geometric ops use dm-pix's affine sampling (nearest pixel, black
fill, as torchvision's); the colour ops are PIL's, which torchvision's follow: enhancements blend
the image with a degenerate one (black, grayscale, mean gray, smoothed), results cut back to
uint8 as uint8 arithmetic does. Every op is computed for the whole batch and each image takes its
own (the images are small: the cost is far below a training step's).
"""

from __future__ import annotations

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

POLICIES = ("trivialaugment", "randaugment")
OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "color",
       "contrast", "sharpness", "posterize", "solarize", "autocontrast", "equalize")  # fmt: skip
SIGNED = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "color", "contrast", "sharpness")
BINS = 31
RANDAUGMENT_OPS, RANDAUGMENT_BIN = 2, 9  # torchvision's RandAugment defaults: num_ops=2, magnitude=9
GEOMETRIC = OPS[:6]  # identity and the five affine ones: one sampling of each image covers them


def magnitudes(policy: str, side: int) -> np.ndarray:
    """(ops, bins): each op's magnitude per bin, as torchvision's `_augmentation_space` has them."""
    lin = lambda hi: np.linspace(0.0, hi, BINS)  # noqa: E731
    wide = policy == "trivialaugment"
    table = {
        "shear_x": lin(0.99 if wide else 0.3),
        "shear_y": lin(0.99 if wide else 0.3),
        "translate_x": lin(32.0 if wide else 150.0 / 331.0 * side),
        "translate_y": lin(32.0 if wide else 150.0 / 331.0 * side),
        "rotate": lin(135.0 if wide else 30.0),
        **{op: lin(0.99 if wide else 0.9) for op in ("brightness", "color", "contrast", "sharpness")},
        "posterize": 8 - np.round(np.arange(BINS) / ((BINS - 1) / (6 if wide else 4))),
        "solarize": np.linspace(255.0, 0.0, BINS),
    }
    return np.stack([table.get(op, np.zeros(BINS)) for op in OPS]).astype(np.float32)


def apply_policy(images_u8, key, policy: str, ops: int = RANDAUGMENT_OPS, magnitude: int = RANDAUGMENT_BIN):
    """The policy on a uint8 NHWC batch: one draw per image from `key`; uint8 out. RandAugment
    applies `ops` ops in turn at the bin `magnitude`; TrivialAugment ignores both."""
    n, h = images_u8.shape[:2]
    table = jnp.asarray(magnitudes(policy, h))
    x = images_u8.astype(jnp.float32)
    rounds = 1 if policy == "trivialaugment" else ops
    for k in jax.random.split(key, rounds):
        k_op, k_bin, k_sign = jax.random.split(k, 3)
        op = jax.random.randint(k_op, (n,), 0, len(OPS))
        b = jax.random.randint(k_bin, (n,), 0, BINS) if policy == "trivialaugment" else jnp.full((n,), magnitude)
        sign = jnp.where(jax.random.bernoulli(k_sign, 0.5, (n,)), -1.0, 1.0)
        signed = jnp.isin(op, jnp.asarray([OPS.index(s) for s in SIGNED]))
        x = apply_ops(x, op, table[op, b] * jnp.where(signed, sign, 1.0))
    return x.astype(jnp.uint8)


def apply_ops(x, op, m):
    """Image i of float [0, 255] NHWC `x` under op `OPS[op[i]]` at magnitude `m[i]`."""
    geo = jax.vmap(_affine)(x, op, m)  # identity for all but the geometric ops
    results = jnp.stack([geo, *(jax.vmap(f)(x, m) for f in _COLOUR.values())])
    slot = jnp.maximum(op - len(GEOMETRIC) + 1, 0)  # 0: the affine sampling; then the colour ops in order
    return results[slot, jnp.arange(x.shape[0])]


def _affine(image, op, m):
    """shear, translate (whole pixels), rotate (degrees, counter-clockwise, about the centre): the
    inverse map of (row, column) output coordinates, sampled at the nearest pixel, black outside."""
    h, w = image.shape[:2]
    t = jnp.trunc(m)  # torchvision translates by int(magnitude)
    rad = jnp.deg2rad(m)
    c, s = jnp.cos(rad), jnp.sin(rad)
    centre = jnp.asarray([(h - 1) / 2, (w - 1) / 2])
    rotation = jnp.asarray([[c, s], [-s, c]])
    matrices = jnp.stack([
        jnp.eye(2), jnp.asarray([[1.0, 0.0], [m, 1.0]]), jnp.asarray([[1.0, m], [0.0, 1.0]]), jnp.eye(2), jnp.eye(2),
        rotation,
    ])  # fmt: skip
    # Pixel centres sit at +0.5, as PIL (and torchvision) sample them: a shear about the corner
    # moves the centres by half its magnitude.
    offsets = jnp.stack([jnp.zeros(2), jnp.asarray([0.0, m / 2]), jnp.asarray([m / 2, 0.0]), jnp.asarray([0.0, -t]),
                         jnp.asarray([-t, 0.0]), centre - rotation @ centre])  # fmt: skip
    k = jnp.minimum(op, len(GEOMETRIC) - 1)
    a, b = jnp.where(op < len(GEOMETRIC), matrices[k], jnp.eye(2)), jnp.where(op < len(GEOMETRIC), offsets[k], 0.0)
    full = jnp.eye(4).at[:2, :2].set(a).at[:2, 3].set(b)  # (row, column, channel), homogeneous
    return dm_pix.affine_transform(image, full, order=0, mode="constant", cval=0.0)


def _uint8(v):
    """What uint8 arithmetic keeps: clipped to [0, 255], the fraction dropped."""
    return jnp.floor(jnp.clip(v, 0.0, 255.0))


def _blend(image, degenerate, factor):
    return _uint8(factor * image + (1.0 - factor) * degenerate)


def _gray(image):
    return jnp.floor(dm_pix.rgb_to_grayscale(image, keep_dims=True))


def _brightness(image, m):
    return _blend(image, jnp.zeros_like(image), 1.0 + m)


def _color(image, m):
    return _blend(image, _gray(image), 1.0 + m)


def _contrast(image, m):
    return _blend(image, jnp.mean(_gray(image)), 1.0 + m)


def _sharpness(image, m):
    kernel = jnp.asarray([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13.0
    smooth = jax.vmap(lambda ch: jax.scipy.signal.convolve2d(ch, kernel, mode="valid"), in_axes=2, out_axes=2)(image)
    degenerate = image.at[1:-1, 1:-1].set(jnp.round(smooth))  # the border stays itself
    return _blend(image, degenerate, 1.0 + m)


def _posterize(image, m):
    step = 2.0 ** (8 - m)  # keep the top m bits
    return jnp.floor(image / step) * step


def _solarize(image, m):
    return jnp.where(image >= m, 255.0 - image, image)


def _autocontrast(image, m):
    lo, hi = image.min(axis=(0, 1)), image.max(axis=(0, 1))
    flat = hi == lo
    lo, hi = jnp.where(flat, 0.0, lo), jnp.where(flat, 255.0, hi)
    return _uint8((image - lo) * (255.0 / (hi - lo)))


def _equalize(image, m):
    return jax.vmap(_equalize_channel, in_axes=2, out_axes=2)(image)


def _equalize_channel(ch):
    """PIL's (and torchvision's) histogram equalisation of one channel."""
    values = ch.astype(jnp.int32).reshape(-1)
    hist = jnp.zeros(256, jnp.int32).at[values].add(1)
    last = hist[values.max()]  # the count of the top value present
    step = (values.size - last) // 255
    lut = (jnp.cumsum(hist) + step // 2) // jnp.maximum(step, 1)
    lut = jnp.clip(jnp.concatenate([jnp.zeros(1, lut.dtype), lut[:-1]]), 0, 255)
    return jnp.where(step == 0, ch, lut[values].reshape(ch.shape).astype(ch.dtype))


_COLOUR = {
    "brightness": _brightness,
    "color": _color,
    "contrast": _contrast,
    "sharpness": _sharpness,
    "posterize": _posterize,
    "solarize": _solarize,
    "autocontrast": _autocontrast,
    "equalize": _equalize,
}
assert tuple(_COLOUR) == OPS[len(GEOMETRIC) :]
