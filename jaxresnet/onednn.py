"""oneDNN convolutions on CPU, as XLA custom calls (the C++ is in csrc/onednn_conv.cc), and the
build of the native library that holds them and the fused BatchNorm (csrc/batchnorm.cc,
`jaxresnet.fused_norm`).

XLA:CPU's own convolution reaches 60-110 GFLOP/s on this model's 3x3 layers; oneDNN, which torch
uses on CPU, runs them about twice as fast (BENCHMARKS.md). The handlers are compiled on first
use against the installed jaxlib's FFI headers and the `onednn-devel-cpu-gomp` wheel, and cached
under ~/.cache/jaxresnet/onednn (or $JAXRESNET_CACHE_DIR/onednn), keyed by everything that goes
into the build; `scripts/setup.sh` builds it once up front. When the build is impossible (no C++
compiler, no oneDNN wheel: other CPUs than x86-64 Linux), `available()` is False, `reason()`
says why, and `Conv(impl="auto")` and `BatchNorm(impl="auto")` fall back to XLA.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

# One library holds the oneDNN convolutions and the fused BatchNorm (jaxresnet.fused_norm).
SOURCES = [Path(__file__).parent / "csrc" / name for name in ("onednn_conv.cc", "batchnorm.cc")]
TARGETS = {
    "forward": "JaxresnetConvForward",
    "backward_data": "JaxresnetConvBackwardData",
    "backward_weights": "JaxresnetConvBackwardWeights",
    "norm_forward": "JaxresnetBatchNormForward",
    "norm_backward": "JaxresnetBatchNormBackward",
}
DTYPES = (jnp.float32, jnp.bfloat16)


class BuildError(RuntimeError):
    pass


def _onednn_root() -> Path:
    """The prefix holding include/oneapi/dnnl and lib/libdnnl.so: the wheel installs into sys.prefix."""
    candidates = [os.environ.get("JAXRESNET_ONEDNN_ROOT"), sys.prefix, sysconfig.get_paths()["data"]]
    for root in filter(None, candidates):
        root = Path(root)
        if (root / "include" / "oneapi" / "dnnl" / "dnnl.hpp").is_file() and any(root.glob("lib/libdnnl.so*")):
            return root
    raise BuildError("oneDNN not found (pip install onednn-cpu-gomp onednn-devel-cpu-gomp)")


def cache_dir() -> Path:
    base = os.environ.get("JAXRESNET_CACHE_DIR") or os.path.join("~", ".cache", "jaxresnet")
    return Path(os.path.expanduser(base)) / "onednn"


def _compile_command(root: Path, output: Path) -> list[str]:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise BuildError("no C++ compiler (g++) found")
    lib = root / "lib"
    # -fno-trapping-math lets GCC vectorize the ReLU masks (a select after a float compare);
    # -fopenmp: the BatchNorm loops share oneDNN's OpenMP threads.
    return [cxx, "-O3", "-fno-trapping-math", "-fopenmp", "-std=c++17", "-shared", "-fPIC", "-w",
            "-I", jax.ffi.include_dir(), "-I", str(root / "include"),
            *map(str, SOURCES), "-o", str(output), "-L", str(lib), "-ldnnl", f"-Wl,-rpath,{lib}"]


def build(force: bool = False) -> Path:
    """Compile the handlers (once per source, jaxlib and oneDNN); returns the shared library's path."""
    if sys.platform != "linux":
        raise BuildError(f"oneDNN convolutions are built for Linux only, not {sys.platform}")
    root = _onednn_root()
    command = _compile_command(root, Path("OUT"))
    key = hashlib.sha256()
    for source in sorted(SOURCES[0].parent.iterdir()):  # the sources and the headers they include
        key.update(source.name.encode() + source.read_bytes())
    key.update(importlib.metadata.version("jaxlib").encode())
    key.update(" ".join(command).encode())
    for so in sorted(root.glob("lib/libdnnl.so*")):
        key.update(f"{so.name}:{so.stat().st_size}".encode())
    target = cache_dir() / f"libjaxresnet_onednn-{key.hexdigest()[:16]}.so"
    if target.is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename: concurrent first uses never load a half-written file.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        partial = Path(tmp) / target.name
        done = subprocess.run(_compile_command(root, partial), capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(f"compiling {' '.join(s.name for s in SOURCES)} failed:\n{done.stderr[-2000:]}")
        os.replace(partial, target)
    return target


@functools.cache
def _load() -> tuple[bool, str]:
    try:
        library = ctypes.CDLL(str(build()))
    except (BuildError, OSError) as e:
        return False, str(e)
    for symbol in TARGETS.values():
        jax.ffi.register_ffi_target(symbol, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu")
    return True, ""


def available() -> bool:
    """Whether the oneDNN convolution can run here (builds and loads it on the first call)."""
    return _load()[0]


def reason() -> str:
    """Why `available()` is False ('' when it is True)."""
    return _load()[1]


def check(conv_impl: str, norm_impl: str = "auto") -> tuple[str | None, str | None]:
    """(error, warning) for a run on this machine with these --conv-impl/--norm-impl: asking for
    the native kernels (onednn, fused) where they cannot be built is an error; "auto" falling back
    to XLA on a CPU is worth a warning."""
    if jax.default_backend() != "cpu" or available():
        return None, None
    why = reason().splitlines()[0]
    for flag, value, native in (("--conv-impl", conv_impl, "onednn"), ("--norm-impl", norm_impl, "fused")):
        if value == native:
            return f"{flag} {native} is unavailable here: {why}", None
    if "auto" in (conv_impl, norm_impl):
        return None, f"native CPU kernels unavailable ({why}); using XLA's, which are slower on CPU"
    return None, None


def require() -> None:
    """Build and register the handlers, or raise BuildError saying why they cannot be."""
    if not available():
        raise BuildError(f"the native CPU kernels (oneDNN convolutions, fused BatchNorm) are unavailable "
                         f"here: {reason()}")


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
    return jax.ffi.ffi_call(TARGETS[target], jax.ShapeDtypeStruct(shape, dtype))(
        a, b, sh=np.int64(strides[0]), sw=np.int64(strides[1]), **_attributes(padding))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv(x, kernel, strides, padding):
    """NHWC x HWIO convolution through oneDNN; `padding` is ((top, bottom), (left, right))."""
    require()
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


if __name__ == "__main__":  # python -m jaxresnet.onednn: build now (scripts/setup.sh does)
    try:
        print(f"native CPU kernels (oneDNN convolutions, fused BatchNorm): {build()}")
    except (BuildError, OSError) as e:  # OSError: an unwritable cache, a CXX that does not exist
        print(f"native CPU kernels unavailable, XLA's will be used: {e}".splitlines()[0])
