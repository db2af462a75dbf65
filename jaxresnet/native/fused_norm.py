"""Training-mode BatchNorm fused with its residual add and ReLU, as XLA custom calls on CPU.

The C++ is in csrc/batchnorm.cc and is built into the same library as the oneDNN convolutions
(`jaxresnet.native.build`). Forward: two passes over x (statistics, then normalise + add + ReLU);
backward: two passes (the two gradient sums, then dx) -- where XLA:CPU's fusions of the same
graph take several more passes and reduce slowly (BENCHMARKS.md). Float32 only; the running
statistics are updated by the caller from the returned batch mean and (biased) variance.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxresnet.native import build


def supports(shape, dtype) -> bool:
    return len(shape) >= 2 and jnp.dtype(dtype) == jnp.float32 and shape[-1] > 0


def _empty():  # stands for "no residual" / "no ReLU mask": the handlers take fixed arity
    return jnp.zeros((0,), jnp.float32)


def _forward(x, scale, bias, residual, relu, eps):
    c = x.shape[-1]
    channel = jax.ShapeDtypeStruct((c,), jnp.float32)
    return jax.ffi.ffi_call(build.TARGETS["norm_forward"], (jax.ShapeDtypeStruct(x.shape, x.dtype), channel, channel))(
        x, scale, bias, _empty() if residual is None else residual, eps=np.float32(eps), relu=bool(relu)
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def batch_norm(x, scale, bias, residual, relu: bool, eps: float):
    """(act((x - mean) / sqrt(var + eps) * scale + bias [+ residual]), mean, var) over all but the
    last axis; act is ReLU when `relu`, var the biased batch variance. `residual` may be None."""
    build.require()
    return _forward(x, scale, bias, residual, relu, eps)


def _batch_norm_fwd(x, scale, bias, residual, relu, eps):
    y, mean, var = batch_norm(x, scale, bias, residual, relu, eps)
    # y is kept only for its ReLU mask; it is the next layer's input, so XLA keeps it anyway.
    return (y, mean, var), (x, scale, mean, var, y if relu else None, residual is not None)


def _batch_norm_bwd(relu, eps, saved, cotangents):
    # The cotangents of mean and var are ignored: they feed only the running statistics,
    # which are not differentiated.
    x, scale, mean, var, y, has_residual = saved
    dy = cotangents[0]
    c = x.shape[-1]
    channel = jax.ShapeDtypeStruct((c,), jnp.float32)
    dres_shape = jax.ShapeDtypeStruct(x.shape if has_residual else (0,), jnp.float32)
    dx, dscale, dbias, dres = jax.ffi.ffi_call(
        build.TARGETS["norm_backward"], (jax.ShapeDtypeStruct(x.shape, x.dtype), channel, channel, dres_shape)
    )(dy, _empty() if y is None else y, x, mean, var, scale, eps=np.float32(eps))
    return dx, dscale, dbias, dres if has_residual else None


batch_norm.defvjp(_batch_norm_fwd, _batch_norm_bwd)
