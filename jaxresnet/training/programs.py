"""A run's compiled programs, ready before they are needed: lowered in the calling thread, compiled in
threads (jaxlib releases the GIL while XLA compiles), so the train, remainder and evaluation
programs compile side by side and the first step waits for its own program only.

The executables are kept for the process (keyed as jit keys its own cache: the function, the static
spec, the arguments' structure, shapes, dtypes and shardings), so a second run in one process, a
test's or a notebook's, compiles nothing again; across processes XLA's persistent cache serves
(`compile_cache`).
"""

from __future__ import annotations

import concurrent.futures
import threading

import jax

_compiled: dict = {}  # key -> Future of a compiled executable, for the process
_lock = threading.Lock()
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="jaxresnet-compile")


def _key(fn, spec, args) -> tuple:
    leaves, tree = jax.tree.flatten(args)
    return fn, spec, tree, tuple(_signature(x) for x in leaves)


def _signature(x):
    aval = jax.typeof(x)  # jax and numpy arrays, PRNG keys, Python scalars
    sharding = x.sharding if isinstance(x, jax.Array) else None
    return aval.shape, aval.dtype, getattr(aval, "weak_type", False), sharding


def prepare(fn, spec, *args) -> None:
    """Lower `fn(*args, spec)` (a function jitted with `spec` its static last argument) now, and
    start compiling it in a thread, unless the process has it already."""
    key = _key(fn, spec, args)
    with _lock:
        if key in _compiled:
            return
        lowered = fn.lower(*args, spec)
        _compiled[key] = _pool.submit(lowered.compile)


def call(fn, spec, *args):
    """`fn(*args, spec)` through the prepared executable (waiting for its compilation if need be),
    or through `fn` itself where nothing was prepared for these arguments."""
    with _lock:
        future = _compiled.get(_key(fn, spec, args))
    if future is None:
        return fn(*args, spec)
    return future.result()(*args)
