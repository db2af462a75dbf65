"""JAX's persistent compilation cache: a second run of the same shapes skips XLA compilation."""

from __future__ import annotations

import os

import jax

DEFAULT_DIR = os.path.join("~", ".cache", "jaxresnet", "xla")


def enable_compilation_cache(path: str | None = None) -> None:
    """Cache compiled programs in `path` (default $JAX_COMPILATION_CACHE_DIR or ~/.cache/jaxresnet/xla)."""
    path = path or os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.expanduser(DEFAULT_DIR)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
