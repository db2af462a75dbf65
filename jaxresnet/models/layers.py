"""Layers with PyTorch semantics: BatchNorm, torch-style init, and a conv that XLA:CPU runs fast.

The parameter names and layouts match flax's own `nn.Conv` / `nn.BatchNorm` (`kernel` HWIO, `bias`,
`scale`, batch_stats `mean`/`var`), so checkpoints and converters do not care which one built a model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxresnet import native

Array = jax.Array


# --- BatchNorm --------------------------------------------------------------------------------------
class BatchNorm(nn.Module):
    """torch.nn.BatchNorm2d semantics in flax's parameter layout, with an optional residual add
    and ReLU after it: `BatchNorm()(x, residual, relu=True)` is `relu(bn(x) + residual)`.

    Normalises with the biased batch variance, like both frameworks, but updates the running
    variance with the *unbiased* one (n / (n-1)), as torch does and flax's BatchNorm does not.
    `momentum` follows flax's convention: running = momentum * running + (1 - momentum) * batch,
    so torch's default 0.1 is 0.9 here. Statistics are reduced over every non-feature axis of the
    global batch, which under `jax.jit` with a batch-sharded input is the global batch.

    `impl`: "xla" writes it in jax.numpy; "fused" runs normalisation, add and ReLU (and their
    gradients) as two C++ passes each way (`jaxresnet.native.fused_norm`); "auto" picks fused when
    training in float32 on a single CPU device where the native library builds, else xla.
    """

    use_running_average: bool = False
    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Any = None
    param_dtype: Any = jnp.float32
    unbiased_running_var: bool = True
    impl: str = "auto"
    scale_init: Any = nn.initializers.ones  # zeros: a residual branch that starts switched off

    @nn.compact
    def __call__(self, x: Array, residual: Array | None = None, relu: bool = False) -> Array:
        features = x.shape[-1]
        scale = self.param("scale", self.scale_init, (features,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (features,), self.param_dtype)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((features,), self.param_dtype))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((features,), self.param_dtype))
        dtype = self.dtype or x.dtype
        if (
            not self.use_running_average
            and not self.is_initializing()
            and resolve_norm_impl(self.impl, x.shape, x.dtype, dtype, residual) == "fused"
        ):
            y, mean, var = native.batch_norm(x, scale, bias, residual, relu, self.epsilon)
            self._update_running(ra_mean, ra_var, mean, var, x.shape)
            return y
        axes = tuple(range(x.ndim - 1))
        # Statistics in float32 even for bfloat16 activations (float64 stays float64).
        stat_dtype = jnp.promote_types(x.dtype, jnp.float32)
        if self.use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            xf = x.astype(stat_dtype)
            mean = jnp.mean(xf, axes)
            var = jnp.mean(jnp.square(xf - mean), axes)
            if not self.is_initializing():
                self._update_running(ra_mean, ra_var, mean, var, x.shape)
        # (x - mean) first, as torch does: folding the mean into the bias, x*mul + (bias - mean*mul),
        # cancels catastrophically on channels whose mean is large against their spread.
        mul = scale * jax.lax.rsqrt(var + self.epsilon)
        y = ((x.astype(stat_dtype) - mean) * mul + bias).astype(dtype)
        if residual is not None:
            y = y + residual.astype(dtype)
        return nn.relu(y) if relu else y

    def _update_running(self, ra_mean, ra_var, mean, var, shape):
        n = math.prod(shape[:-1])
        run_var = var * (n / max(n - 1, 1)) if self.unbiased_running_var else var
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * run_var


NORM_IMPLS = ("auto", "xla", "fused")


def resolve_norm_impl(impl: str, shape, in_dtype=jnp.float32, dtype=jnp.float32, residual=None) -> str:
    """The BatchNorm formulation `impl` means for a training-mode layer on this input."""
    if impl not in NORM_IMPLS:
        raise ValueError(f"norm impl must be one of {NORM_IMPLS}, got {impl!r}")
    dtypes = {jnp.dtype(in_dtype), jnp.dtype(dtype)} | ({jnp.dtype(residual.dtype)} if residual is not None else set())
    if impl == "fused" and dtypes != {jnp.dtype(jnp.float32)}:
        raise ValueError(f"norm impl 'fused' is float32 only, got {sorted(str(d) for d in dtypes)}")
    if impl != "auto":
        return impl
    if jax.default_backend() != "cpu" or dtypes != {jnp.dtype(jnp.float32)}:
        return "xla"
    # Like the oneDNN convolution, the custom call has no partitioning rule: one device only.
    if jax.device_count() == 1 and native.norm_supports(shape, in_dtype) and native.available():
        return "fused"
    return "xla"


# --- pooling ----------------------------------------------------------------------------------------
def max_pool(x: Array, window: int) -> Array:
    """torch's MaxPool2d(window, stride=window): non-overlapping windows, a ragged edge dropped.

    A reshape and a max instead of `nn.max_pool`: XLA:CPU differentiates reduce-window through
    select-and-scatter with four iotas of the input's shape, 145 ms per ResNet34 step at
    --resize 128 against about 10 ms this way.

    The gradient of a tie: on one device, jnp.max's own, which shares it among the tied inputs
    (what the reference run's numbers were measured with); where there are several devices, all
    of it to the first maximum, as torch does (`_first_max`), because jnp.max's gradient came out
    different for a batch split over two devices than on one (the stem's gradients by 1e-1 in
    float64: tests/test_parallel_and_precision.py). With upsampled images ties are common: the
    reference epoch gives 24.4 / 30.77 % with the shared gradient, 24.22 / 30.82 % with torch's.
    """
    n, h, w, c = x.shape
    oh, ow = h // window, w // window
    windows = x[:, : oh * window, : ow * window].reshape(n, oh, window, ow, window, c)
    return _first_max(windows) if jax.device_count() > 1 else jnp.max(windows, axis=(2, 4))


# The max over axes 2 and 4 of (n, oh, kh, ow, kw, c) windows, its gradient all to the first
# maximum of each window (row-major), as torch's is.
@jax.custom_vjp
def _first_max(x: Array) -> Array:
    return jnp.max(x, axis=(2, 4))


def _first_max_fwd(x):
    return _first_max(x), x


def _first_max_bwd(x, g):
    n, oh, kh, ow, kw, c = x.shape
    windows = x.transpose(0, 1, 3, 5, 2, 4).reshape(n, oh, ow, c, kh * kw)
    first = jax.nn.one_hot(jnp.argmax(windows, axis=-1), kh * kw, dtype=g.dtype) * g[..., None]
    return (first.reshape(n, oh, ow, c, kh, kw).transpose(0, 1, 4, 2, 5, 3),)


_first_max.defvjp(_first_max_fwd, _first_max_bwd)


# --- convolution ------------------------------------------------------------------------------------
def _im2col(x: Array, kernel_size: Sequence[int], strides: Sequence[int], padding) -> Array:
    """(N, H, W, C) -> (N, H', W', kh*kw*C) by strided slicing, ordered like an HWIO kernel."""
    kh, kw = kernel_size
    sh, sw = strides
    (pt, pb), (pl, pr) = padding
    x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    out_h = (x.shape[1] - kh) // sh + 1
    out_w = (x.shape[2] - kw) // sw + 1
    cols = [
        jax.lax.slice(
            x,
            (0, i, j, 0),
            (x.shape[0], i + (out_h - 1) * sh + 1, j + (out_w - 1) * sw + 1, x.shape[3]),
            (1, sh, sw, 1),
        )
        for i in range(kh)
        for j in range(kw)
    ]
    return cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)


def _dense_taps(h, w, kernel_size, strides, padding):
    """For every (input pixel, output pixel) pair, the kernel tap joining them, or kh*kw for none."""
    kh, kw = kernel_size
    (pt, pb), (pl, pr) = padding
    oh = (h + pt + pb - kh) // strides[0] + 1
    ow = (w + pl + pr - kw) // strides[1] + 1
    a, b, i, j = np.meshgrid(np.arange(h), np.arange(w), np.arange(oh), np.arange(ow), indexing="ij")
    ti, tj = a + pt - i * strides[0], b + pl - j * strides[1]
    valid = (ti >= 0) & (ti < kh) & (tj >= 0) & (tj < kw)
    return np.where(valid, ti * kw + tj, kh * kw).reshape(-1), (oh, ow)


def _dense_conv(x, kernel, strides, padding):
    """A convolution over a tiny map as one matmul with its (H*W*C, H'*W'*O) Toeplitz matrix.

    For a 3x3 kernel on a 2x2 map, im2col multiplies 9 taps of which 5 only ever see padding;
    this does 4/9 of that work, with no zero taps at all.
    """
    n, h, w, c = x.shape
    kh, kw, _, o = kernel.shape
    taps, (oh, ow) = _dense_taps(h, w, (kh, kw), strides, padding)
    table = jnp.concatenate([kernel.reshape(kh * kw, c, o), jnp.zeros((1, c, o), kernel.dtype)])
    big = table[taps].reshape(h, w, oh, ow, c, o).transpose(0, 1, 4, 2, 3, 5).reshape(h * w * c, oh * ow * o)
    return jnp.dot(x.reshape(n, h * w * c), big).reshape(n, oh, ow, o)


class Conv(nn.Module):
    """2-D convolution, NHWC/HWIO like `nn.Conv`, with a choice of how it is computed.

    impl="xla" lowers to XLA's convolution. impl="onednn" calls oneDNN (torch's CPU convolution
    library) through an XLA custom call, about twice XLA:CPU's speed on this model's 3x3 layers
    (`jaxresnet.native.onednn_conv`). impl="im2col" gathers patches by slicing and does one matmul: XLA:CPU
    runs 3x3 kernels on 2x2 maps an order of magnitude faster that way (843 ms vs 26 ms).
    impl="dense" is one matmul with the layer's Toeplitz matrix, least work on maps smaller than
    the kernel. impl="auto" picks, on CPU, dense for maps smaller than the kernel, oneDNN where it
    is available (x86-64 Linux, one device), else im2col for small output maps and 1x1 kernels
    and XLA otherwise; on other backends always XLA.
    All give the same result to float32 rounding (tests/test_layers.py).
    """

    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int] = (1, 1)
    padding: Any = ((0, 0), (0, 0))
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    weight_init: str = "flax"
    impl: str = "auto"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kh, kw = self.kernel_size
        in_features = x.shape[-1]
        kernel_init, bias_init = initializers(self.weight_init, kh * kw * in_features)
        kernel = self.param("kernel", kernel_init, (kh, kw, in_features, self.features), self.param_dtype)
        dtype = self.dtype or x.dtype
        x = x.astype(dtype)
        kernel = kernel.astype(dtype)
        # Initialising only needs the shapes: XLA's convolution, not a native check of a 1-image batch.
        impl = (
            "xla"
            if self.is_initializing()
            else resolve_conv_impl(self.impl, x.shape, self.kernel_size, self.strides, self.padding, dtype)
        )
        if impl == "im2col":
            cols = _im2col(x, self.kernel_size, self.strides, self.padding)
            y = jnp.dot(cols, kernel.reshape(kh * kw * in_features, self.features))
        elif impl == "dense":
            y = _dense_conv(x, kernel, self.strides, self.padding)
        elif impl == "onednn":
            y = native.conv(x, kernel, tuple(self.strides), tuple(tuple(p) for p in self.padding))
        else:
            y = jax.lax.conv_general_dilated(
                x,
                kernel,
                tuple(self.strides),
                tuple(tuple(p) for p in self.padding),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )
        if self.use_bias:
            bias = self.param("bias", bias_init, (self.features,), self.param_dtype)
            y = y + bias.astype(dtype)
        return y


class Dense(nn.Module):
    """`nn.Dense` (same `kernel`/`bias` layout) with a choice of torch's or flax's initialisation."""

    features: int
    dtype: Any = None
    param_dtype: Any = jnp.float32
    weight_init: str = "flax"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel_init, bias_init = initializers(self.weight_init, x.shape[-1])
        kernel = self.param("kernel", kernel_init, (x.shape[-1], self.features), self.param_dtype)
        bias = self.param("bias", bias_init, (self.features,), self.param_dtype)
        dtype = self.dtype or x.dtype
        return jnp.dot(x.astype(dtype), kernel.astype(dtype)) + bias.astype(dtype)


INITS = ("torch", "flax")


def initializers(init: str, fan_in: int):
    """(kernel_init, bias_init) for a layer with this fan-in.

    "torch": torch's defaults for Conv/Linear, kaiming_uniform(a=sqrt(5)) for the weight and
    U(-1/sqrt(fan_in), +1/sqrt(fan_in)) for the bias -- both the same uniform bound.
    "flax": lecun_normal weights, zero bias.
    """
    if init == "flax":
        return nn.initializers.lecun_normal(), nn.initializers.zeros
    if init == "torch":
        bound = 1.0 / math.sqrt(fan_in)

        def uniform(key, shape, dtype=jnp.float32):
            return jax.random.uniform(key, shape, dtype, -bound, bound)

        return uniform, uniform
    raise ValueError(f"init must be one of {INITS}, got {init!r}")


def native_fallback_report() -> str | None:
    """One warning line naming the convolution passes that the oneDNN path handed back to XLA on
    this CPU since the last call (a kernel missing, failing or wrong here), or None."""
    return native.fallback_report()


CONV_IMPLS = ("auto", "xla", "im2col", "dense", "onednn")
# Output maps at most this many pixels go through im2col on CPU under impl="auto" (see BENCHMARKS.md).
IM2COL_MAX_OUTPUT_PIXELS = 16


def resolve_conv_impl(impl: str, in_shape, kernel_size, strides, padding, dtype=jnp.float32) -> str:
    """The formulation `impl` means for this layer; "auto" picks by backend, shape and dtype."""
    if impl not in CONV_IMPLS:
        raise ValueError(f"conv impl must be one of {CONV_IMPLS}, got {impl!r}")
    if impl != "auto":
        return impl
    if jax.default_backend() != "cpu":
        return "xla"
    kh, kw = kernel_size
    if in_shape[1] * in_shape[2] < kh * kw:
        return "dense"  # beats oneDNN too: 183 against 173 img/s at --resize 32
    # oneDNN's custom call has no partitioning rule; under a multi-device CPU mesh (a test setup)
    # XLA would gather every batch onto each device, so the XLA-native forms are used there.
    if (
        jax.device_count() == 1
        and native.conv_supports(in_shape, kernel_size, strides, padding, dtype)
        and native.available()
    ):
        return "onednn"
    if (kh, kw) == (1, 1):
        return "im2col"  # a strided slice and a matmul: never slower
    (pt, pb), (pl, pr) = padding
    out_h = (in_shape[1] + pt + pb - kh) // strides[0] + 1
    out_w = (in_shape[2] + pl + pr - kw) // strides[1] + 1
    return "im2col" if out_h * out_w <= IM2COL_MAX_OUTPUT_PIXELS else "xla"
