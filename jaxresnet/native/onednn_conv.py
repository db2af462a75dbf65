"""oneDNN convolutions on CPU, as XLA custom calls (the C++ is in csrc/onednn_conv.cc).

XLA:CPU's own convolution reaches 60-110 GFLOP/s on this model's 3x3 layers; oneDNN, which torch
uses on CPU, runs them about twice as fast (BENCHMARKS.md). The forward call and its two gradients
(data, weights) are tied together with `jax.custom_vjp`.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxresnet.native import build

DTYPES = (jnp.float32, jnp.bfloat16)


def _attributes(padding) -> dict:
    (pt, pb), (pl, pr) = padding
    return dict(pt=np.int64(pt), pb=np.int64(pb), pl=np.int64(pl), pr=np.int64(pr))


def _geometry(in_shape, kernel_shape, strides, padding):
    """Output (H, W) and the padding oneDNN wants: bottom/right trimmed to what the output uses."""
    kh, kw = kernel_shape[:2]
    (pt, pb), (pl, pr) = padding
    oh = (in_shape[1] + pt + pb - kh) // strides[0] + 1
    ow = (in_shape[2] + pl + pr - kw) // strides[1] + 1
    pb = (oh - 1) * strides[0] + kh - in_shape[1] - pt
    pr = (ow - 1) * strides[1] + kw - in_shape[2] - pl
    return (oh, ow), ((pt, pb), (pl, pr))


def supports(in_shape, kernel_shape, strides, padding, dtype) -> bool:
    """Shapes and types the handlers take: 2-D, float32/bfloat16, no negative padding.

    bfloat16 needs 16 input channels or more: for fewer (the stem) oneDNN 3.2 falls back to a
    gemm-based weight gradient that crashes on this model's stem.
    """
    if len(in_shape) != 4 or jnp.dtype(dtype) not in [jnp.dtype(d) for d in DTYPES]:
        return False
    if jnp.dtype(dtype) == jnp.bfloat16 and in_shape[3] < 16:
        return False
    _, ((pt, pb), (pl, pr)) = _geometry(in_shape, kernel_shape, strides, padding)
    return min(pt, pb, pl, pr) >= 0


def _call(target, shape, dtype, a, b, strides, padding):
    return jax.ffi.ffi_call(build.TARGETS[target], jax.ShapeDtypeStruct(shape, dtype))(
        a, b, sh=np.int64(strides[0]), sw=np.int64(strides[1]), **_attributes(padding))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv(x, kernel, strides, padding):
    """NHWC x HWIO convolution through oneDNN; `padding` is ((top, bottom), (left, right))."""
    build.require()
    (oh, ow), padding = _geometry(x.shape, kernel.shape, strides, padding)
    return _call("forward", (x.shape[0], oh, ow, kernel.shape[3]), x.dtype, x, kernel, strides, padding)


def _conv_fwd(x, kernel, strides, padding):
    return conv(x, kernel, strides, padding), (x, kernel)


def _conv_bwd(strides, padding, residuals, dy):
    x, kernel = residuals
    _, padding = _geometry(x.shape, kernel.shape, strides, padding)
    dy = dy.astype(x.dtype)
    dx = _call("backward_data", x.shape, x.dtype, dy, kernel, strides, padding)
    dkernel = _call("backward_weights", kernel.shape, kernel.dtype, x, dy, strides, padding)
    return dx, dkernel


conv.defvjp(_conv_fwd, _conv_bwd)
