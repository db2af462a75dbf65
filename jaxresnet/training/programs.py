"""A run's compiled programs, ready before they are needed: the first call's program is lowered in
the calling thread and compiled in a thread (jaxlib releases the GIL while XLA compiles); the others
(the smaller last batch, scoring) are lowered and compiled in the background, so the first step waits
for its own program only. On a CPU of few cores they wait for the first to be compiled, then compile
one at a time, while the first steps run: compiled side by side, they took cores from it (the first
step came later, BENCHMARKS.md); with more cores they compile side by side.

The executables are kept for the process (keyed as jit keys its own cache: the function, the static
spec, the arguments' structure, shapes, dtypes and shardings), so a second run in one process, a
test's or a notebook's, compiles nothing again; across processes XLA's persistent cache serves
(`compile_cache`).
"""

from __future__ import annotations

import concurrent.futures
import os
import threading

import jax

_compiled: dict = {}  # key -> Future of a compiled executable, for the process
_lock = threading.Lock()
_pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="jaxresnet-compile")
FEW_CORES = 4  # at most this many: the later programs compile one at a time, after the first


def _key(fn, spec, args) -> tuple:
    leaves, tree = jax.tree.flatten(args)
    return fn, spec, tree, tuple(_signature(x) for x in leaves)


def _signature(x):
    aval = jax.typeof(x)  # jax and numpy arrays, PRNG keys, Python scalars
    sharding = x.sharding if isinstance(x, jax.Array) else None
    return aval.shape, aval.dtype, getattr(aval, "weak_type", False), sharding


def _settle(future, make) -> None:
    try:
        future.set_result(make())
    except BaseException as e:  # raised where the program is called
        future.set_exception(e)


def _later(first, rest, one_at_a_time: bool) -> None:
    if one_at_a_time:
        concurrent.futures.wait([first])
    for future, fn, spec, args in rest:
        if one_at_a_time:
            _settle(future, lambda fn=fn, spec=spec, args=args: fn.lower(*args, spec).compile())
        else:
            try:
                lowered = fn.lower(*args, spec)
            except BaseException as e:
                future.set_exception(e)
                continue
            _pool.submit(_settle, future, lowered.compile)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def prepare(*programs) -> None:
    """Prepare `programs`, each (fn, spec, args) for `fn(*args, spec)` (`fn` jitted with `spec` its
    static last argument), the one needed first first: it is lowered now, the others in the
    background; a program the process has already is skipped."""
    todo = []
    with _lock:
        for fn, spec, args in programs:
            key = _key(fn, spec, args)
            if key not in _compiled:
                _compiled[key] = concurrent.futures.Future()
                todo.append((key, _compiled[key], fn, spec, args))  # lowering needs no live buffer
    if not todo:
        return
    (key, first, fn, spec, args), rest = todo[0], [t[1:] for t in todo[1:]]
    try:
        lowered = fn.lower(*args, spec)
    except BaseException:
        with _lock:  # nothing prepared: each call traces (and fails) as jit itself would
            for k, *_ in todo:
                _compiled.pop(k, None)
        raise
    _pool.submit(_settle, first, lowered.compile)
    if rest:
        _pool.submit(_later, first, rest, _cores() <= FEW_CORES)


def call(fn, spec, *args):
    """`fn(*args, spec)` through the prepared executable (waiting for its compilation if need be),
    or through `fn` itself where nothing was prepared for these arguments."""
    with _lock:
        future = _compiled.get(_key(fn, spec, args))
    if future is None:
        return fn(*args, spec)
    return future.result()(*args)
