"""JAX's persistent compilation cache: a second run of the same shapes, on this machine or another
that shares the folder, loads its compiled programs instead of compiling them.

Every program is kept, however quick its compilation: JAX's defaults skip those under a second,
which on a GPU is most of a run's programs, and a second run would still compile them.
"""

from __future__ import annotations

import os

import jax

DEFAULT_DIR = os.path.join("~", ".cache", "jaxresnet", "xla")


def enable_compilation_cache(path: str | None = None) -> None:
    """Cache compiled programs in `path` (default $JAX_COMPILATION_CACHE_DIR or ~/.cache/jaxresnet/xla)."""
    path = path or os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.expanduser(DEFAULT_DIR)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
