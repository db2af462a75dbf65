"""Compiling, loading and registering the native CPU library (csrc/: oneDNN convolutions and the
fused BatchNorm), and whether it can be used here.

The handlers are compiled on first use against the installed jaxlib's FFI headers and the
`onednn-devel-cpu-gomp` wheel, and cached under ~/.cache/jaxresnet/onednn (or
$JAXRESNET_CACHE_DIR/onednn), keyed by everything that goes into the build; `scripts/setup.sh`
builds it once up front (`python -m jaxresnet.native`). When the build is impossible (no C++
compiler, no oneDNN wheel: other CPUs than x86-64 Linux) or JAXRESNET_NATIVE=0 turns it off,
`available()` is False, `reason()` says why, and the models' "auto" choices use XLA's own ops.
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

# One library holds the oneDNN convolutions and the fused BatchNorms (jaxresnet.native.fused_norm).
SOURCES = [Path(__file__).parent / "csrc" / name for name in ("onednn_conv.cc", "batchnorm.cc")]
TARGETS = {
    "forward": "JaxresnetConvForward",
    "backward_data": "JaxresnetConvBackwardData",
    "backward_weights": "JaxresnetConvBackwardWeights",
    "norm_forward": "JaxresnetBatchNormForward",
    "norm_backward": "JaxresnetBatchNormBackward",
}


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


def compile_command(sources, output: Path, *, shared: bool = True, root: Path | None = None) -> list[str]:
    """The g++ command that builds `sources` against oneDNN and the XLA FFI headers (a shared
    library, or with shared=False a program, as scripts/bench_batchnorm.py builds)."""
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise BuildError("no C++ compiler (g++) found")
    root = root or _onednn_root()
    lib = root / "lib"
    # -fno-trapping-math lets GCC vectorize the ReLU masks (a select after a float compare);
    # -fopenmp: the BatchNorm loops share oneDNN's OpenMP threads.
    return [
        cxx,
        "-O3",
        "-fno-trapping-math",
        "-fopenmp",
        "-std=c++17",
        *(["-shared", "-fPIC"] if shared else []),
        "-w",
        "-I",
        jax.ffi.include_dir(),
        "-I",
        str(root / "include"),
        "-I",
        str(SOURCES[0].parent),
        *map(str, sources),
        "-o",
        str(output),
        "-L",
        str(lib),
        "-ldnnl",
        f"-Wl,-rpath,{lib}",
    ]


def build(force: bool = False) -> Path:
    """Compile the handlers (once per source, jaxlib and oneDNN); returns the shared library's path."""
    if sys.platform != "linux":
        raise BuildError(f"the native CPU kernels are built for Linux only, not {sys.platform}")
    root = _onednn_root()
    command = compile_command(SOURCES, Path("OUT"), root=root)
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
        done = subprocess.run(compile_command(SOURCES, partial, root=root), capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(f"compiling {' '.join(s.name for s in SOURCES)} failed:\n{done.stderr[-2000:]}")
        os.replace(partial, target)
    return target


DISABLE_ENV = "JAXRESNET_NATIVE"


@functools.cache
def _load() -> tuple[bool, str]:
    if os.environ.get(DISABLE_ENV, "1") == "0":
        return False, f"turned off by {DISABLE_ENV}=0"
    try:
        library = ctypes.CDLL(str(build()))
    except (BuildError, OSError) as e:
        return False, str(e)
    for symbol in TARGETS.values():
        jax.ffi.register_ffi_target(symbol, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu")
    return True, ""


def library() -> Path:
    """The loaded library's file (the probe's child process loads it too)."""
    require()
    return build()


def available() -> bool:
    """Whether the native kernels can run here (builds and loads them on the first call)."""
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
        raise BuildError(
            f"the native CPU kernels (oneDNN convolutions, fused BatchNorm) are unavailable here: {reason()}"
        )
