"""oneDNN convolutions on CPU, as XLA custom calls (the C++ is in csrc/onednn_conv.cc).

XLA:CPU's own convolution reaches 60-110 GFLOP/s on this model's 3x3 layers; oneDNN, which torch
uses on CPU, runs them about twice as fast (BENCHMARKS.md). The forward call and its two gradients
(data, weights) are tied together with `jax.custom_vjp`; each pass goes to oneDNN only where
`probe` found that it runs right on this CPU, and to XLA's convolution otherwise.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxresnet.native import build, probe

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
    """Shapes and types the handlers take: 2-D, float32/bfloat16, no negative padding. Whether
    oneDNN may run each pass of a layer on this CPU is asked of `probe` when the layer is traced."""
    if len(in_shape) != 4 or jnp.dtype(dtype) not in [jnp.dtype(d) for d in DTYPES]:
        return False
    _, ((pt, pb), (pl, pr)) = _geometry(in_shape, kernel_shape, strides, padding)
    return min(pt, pb, pl, pr) >= 0


def _native(kind, x_shape, kernel_shape, strides, padding, dtype) -> bool:
    """Whether pass `kind` of this convolution runs on oneDNN (else XLA runs it): the probe's verdict."""
    (oh, ow), ((pt, pb), (pl, pr)) = _geometry(x_shape, kernel_shape, strides, padding)
    dims = (*x_shape, oh, ow, kernel_shape[3], *kernel_shape[:2], *strides, pt, pb, pl, pr)
    return probe.verdict(kind, dims, jnp.dtype(dtype) == jnp.bfloat16).ok


def _xla_conv(x, kernel, strides, padding):
    return jax.lax.conv_general_dilated(x, kernel, tuple(strides), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _call(target, shape, dtype, a, b, strides, padding):
    return jax.ffi.ffi_call(build.TARGETS[target], jax.ShapeDtypeStruct(shape, dtype))(
        a, b, sh=np.int64(strides[0]), sw=np.int64(strides[1]), **_attributes(padding)
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv(x, kernel, strides, padding):
    """NHWC x HWIO convolution through oneDNN; `padding` is ((top, bottom), (left, right)). Each
    of the three passes runs on XLA instead where the probe refused it on this CPU."""
    build.require()
    (oh, ow), padding = _geometry(x.shape, kernel.shape, strides, padding)
    if not _native("forward", x.shape, kernel.shape, strides, padding, x.dtype):
        return _xla_conv(x, kernel, strides, padding)
    return _call("forward", (x.shape[0], oh, ow, kernel.shape[3]), x.dtype, x, kernel, strides, padding)


def _conv_fwd(x, kernel, strides, padding):
    return conv(x, kernel, strides, padding), (x, kernel)


def _conv_bwd(strides, padding, residuals, dy):
    x, kernel = residuals
    _, padding = _geometry(x.shape, kernel.shape, strides, padding)
    dy = dy.astype(x.dtype)
    native = {
        kind: _native(kind, x.shape, kernel.shape, strides, padding, x.dtype)
        for kind in ("backward_data", "backward_weights")
    }
    if not all(native.values()):  # XLA's gradients for the passes refused (the unused one is dropped)
        xla_dx, xla_dkernel = jax.vjp(lambda x, k: _xla_conv(x, k, strides, padding), x, kernel)[1](dy)
    dx = _call("backward_data", x.shape, x.dtype, dy, kernel, strides, padding) if native["backward_data"] else xla_dx
    dkernel = (
        _call("backward_weights", kernel.shape, kernel.dtype, x, dy, strides, padding)
        if native["backward_weights"]
        else xla_dkernel
    )
    return dx, dkernel


conv.defvjp(_conv_fwd, _conv_bwd)
