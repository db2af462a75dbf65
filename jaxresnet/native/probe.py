"""Which passes of which convolutions oneDNN may run here: each one checked once, in a child process.

A oneDNN kernel that crashes or miscomputes on some CPU must cost its layer speed, never the run
(oneDNN 3.2's gemm convolutions, what AVX2 and SSE4.1 CPUs get, once crashed that way). So before a
pass (forward, input gradient, weight gradient) of a convolution is handed to oneDNN, a child
process -- this file run as a script: the library through ctypes, no JAX -- builds its primitive
as the custom call does, runs it at full size on two threads and compares two images with a
direct double-precision convolution (`JaxresnetConvProbe`, csrc/onednn_conv.cc). A pass oneDNN has
no kernel for on this CPU (bfloat16 without AVX512-BF16), or that fails, miscomputes, kills the
child or hangs, runs on XLA; `report()` is the one warning line that names them.

Verdicts are kept in the native cache folder, keyed by the library build, the CPU and the oneDNN
and OpenMP environment (ONEDNN_MAX_CPU_ISA, ...), so a pass is checked once per machine.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass

PASSES = {"forward": "f", "backward_data": "d", "backward_weights": "w"}
# Largest |oneDNN - direct| over the largest |direct| value. The probe's inputs lie in [-1, 1]: a
# correct float32 kernel is off by about 1e-7, a bfloat16 one by its output's rounding (2^-9); the
# faults seen (a shared scratchpad) were off by 1e-2 and more.
TOLERANCE = {False: 1e-4, True: 2e-2}
# What decides which kernel oneDNN picks and how it runs, besides the library and the CPU.
ENV_PREFIXES = ("ONEDNN_", "DNNL_", "OMP_", "GOMP_", "KMP_", "JAXRESNET_ONEDNN_")

NO_KERNEL = "no oneDNN kernel for this CPU"
FAILED = "oneDNN failed"
WRONG = "wrong numbers in its check"
UNCHECKED = "could not be checked"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    label: str  # the pass, as the C++ names it: "weight gradient of conv 3x3 64->64 stride 1 on ..."
    reason: str  # "" when ok, else why it runs on XLA (one of the constants above, or a crash's)
    detail: str  # the implementation oneDNN picked, or what went wrong


def verdict(kind: str, dims: tuple[int, ...], bf16: bool) -> Verdict:
    """Whether pass `kind` ("forward", "backward_data", "backward_weights") of the convolution
    `dims` (n h w c oh ow o kh kw sh sw pt pb pl pr, padding trimmed as oneDNN takes it) may run
    on oneDNN here: from this process's memory, the cache folder, or a new check."""
    key = f"{PASSES[kind]}{'b' if bf16 else 'f'}:{','.join(map(str, dims))}"
    with _verdicts_lock:  # programs are traced in more than one thread; the child answers one at a time
        if key not in _verdicts:
            found = _store().get(key)
            if found is None:
                found, keep = _check(PASSES[kind], dims, bf16)
                if keep:
                    _store().put(key, found)
            _verdicts[key] = found
        return _verdicts[key]


def fallbacks() -> list[Verdict]:
    """The passes this process was refused, in the order they were asked for."""
    # Not under the lock: a check in another thread may hold it for seconds, and this is asked between
    # training calls. Copying the values is one step under the GIL.
    return [v for v in list(_verdicts.values()) if not v.ok]


def report() -> str | None:
    """One line naming the passes refused since the last report, grouped by reason; a reason
    reported once is not repeated (a bfloat16 run on AVX2 refuses every pass for the same one).
    None when there is nothing new."""
    if len(_verdicts) == _reported_count[0]:
        return None  # the common case, asked after every step: nothing was asked since
    _reported_count[0] = len(_verdicts)
    groups: dict[str, list[str]] = {}
    for v in fallbacks():
        if v.label not in _reported_labels:
            _reported_labels.add(v.label)
            groups.setdefault(v.reason, []).append(v.label + (f" ({v.detail})" if v.reason == WRONG else ""))
    groups = {r: labels for r, labels in groups.items() if r not in _reported_reasons}
    _reported_reasons.update(groups)
    if not groups:
        return None
    count = sum(map(len, groups.values()))
    parts = [
        f"{reason}: {'; '.join(labels[:3])}" + (f" and {len(labels) - 3} more" if len(labels) > 3 else "")
        for reason, labels in groups.items()
    ]
    return (
        f"{count} convolution pass{'es run' if count > 1 else ' runs'} on XLA instead of oneDNN on this CPU "
        f"(slower): " + " | ".join(parts)
    )


_verdicts: dict[str, Verdict] = {}
_verdicts_lock = threading.RLock()
_reported_count = [0]
_reported_labels: set[str] = set()
_reported_reasons: set[str] = set()


def _check(kind: str, dims, bf16: bool) -> tuple[Verdict, bool]:
    """(verdict, whether to keep it in the cache folder): a check that could not run or timed out
    says nothing lasting about the kernel."""
    n, h, w, c, oh, ow, o, kh, kw = dims[:9]
    timeout = 60 + 2 * n * oh * ow * o * kh * kw * c / 1e9  # even at 1 GFLOP/s
    label = "?"
    try:
        label, (status, detail, error) = _child().ask(kind, bf16, dims, timeout)
    except _Died as e:
        _close_child()
        return Verdict(False, e.label or label, e.reason, e.reason), True
    except _Hung as e:
        _close_child()
        return Verdict(False, e.label, f"its check did not finish in {timeout:.0f} s", ""), False
    except OSError as e:
        return Verdict(False, label, UNCHECKED, str(e)), False
    if status == 1:
        return Verdict(False, label, NO_KERNEL, detail), True
    if status != 0:
        return Verdict(False, label, FAILED, detail), True
    if not error <= TOLERANCE[bf16]:  # NaN too
        return Verdict(False, label, WRONG, f"off by {error:.1e} of the scale, {detail}"), True
    return Verdict(True, label, "", detail), True


# --- the child process ------------------------------------------------------------------------------
class _Died(Exception):
    def __init__(self, label: str, reason: str):
        self.label, self.reason = label, reason


class _Hung(Exception):
    def __init__(self, label: str):
        self.label = label


class _Child:
    """A probing process, kept for the parent's life (its start is paid once) and started again
    after one kills it. Replies come on a pipe of their own: oneDNN's verbose mode prints to stdout."""

    def __init__(self, library: str):
        read, self._write = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, library, str(self._write)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(self._write,),
            text=True,
        )
        os.close(self._write)
        self._read, self._buffer = read, b""

    def ask(self, kind: str, bf16: bool, dims, timeout: float):
        self.proc.stdin.write(json.dumps([kind, int(bf16), *map(int, dims)]) + "\n")
        self.proc.stdin.flush()
        label = self._line(30.0, "")
        return label, json.loads(self._line(timeout, label))

    def _line(self, timeout: float, label: str) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise _Hung(label)
            chunk = os.read(self._read, 65536)
            if not chunk:
                code = self.proc.wait()
                raise _Died(label, _death(code))
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def close(self):
        try:
            self.proc.kill()
            self.proc.wait()
        except OSError:
            pass
        os.close(self._read)


def _death(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"its check crashed ({name})"
    return f"its check exited with status {code}"


_children: list[_Child] = []


def _child() -> _Child:
    if not _children:
        from jaxresnet.native import build

        _children.append(_Child(str(build.library())))
    return _children[0]


def _close_child():
    if _children:
        _children.pop().close()


# --- the cache folder -------------------------------------------------------------------------------
class _Store:
    """Verdicts on disk, one JSON file per (library, CPU, environment), written under a lock."""

    def __init__(self, path):
        self.path = path
        self._known: dict[str, Verdict] | None = None

    def _read(self) -> dict[str, Verdict]:
        try:
            with open(self.path) as f:
                return {k: Verdict(**v) for k, v in json.load(f).items()}
        except (OSError, ValueError, TypeError):
            return {}

    def get(self, key: str) -> Verdict | None:
        if self._known is None:
            self._known = self._read()
        return self._known.get(key)

    def put(self, key: str, v: Verdict) -> None:
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(self.path + ".lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self._known = self._read()
                self._known[key] = v
                tmp = f"{self.path}.{os.getpid()}.tmp"
                with open(tmp, "w") as f:
                    json.dump({k: asdict(x) for k, x in self._known.items()}, f, indent=0)
                os.replace(tmp, self.path)
        except OSError:
            pass  # an unwritable cache: the verdict holds for this process only


def fingerprint(library: str, environ=os.environ) -> str:
    """What the verdicts depend on: the library build, the CPU, its cores and the environment."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = "".join(
                line for line in f.read().split("\n\n")[0].splitlines(True) if line.startswith(("model name", "flags"))
            )
    except OSError:
        pass
    env = sorted((k, v) for k, v in environ.items() if k.startswith(ENV_PREFIXES))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return hashlib.sha256(json.dumps([os.path.basename(library), cpu, env, cores]).encode()).hexdigest()[:16]


_stores: list[_Store] = []


def _store() -> _Store:
    if not _stores:
        from jaxresnet.native import build

        library = str(build.library())
        _stores.append(_Store(os.path.join(build.cache_dir(), "probes", fingerprint(library) + ".json")))
    return _stores[0]


# --- run as a script: the child -----------------------------------------------------------------------
def _serve(library: str, reply_fd: int) -> None:
    lib = ctypes.CDLL(library)
    dims_t = ctypes.c_int64 * 15
    lib.JaxresnetConvLabel.argtypes = [ctypes.c_int, ctypes.c_int, dims_t, ctypes.c_char_p, ctypes.c_int]
    lib.JaxresnetConvProbe.argtypes = [
        ctypes.c_int,
        ctypes.c_int,
        dims_t,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_double),
    ]
    reply = os.fdopen(reply_fd, "w", buffering=1)
    for line in sys.stdin:
        kind, bf16, *dims = json.loads(line)
        dims, info, error = dims_t(*dims), ctypes.create_string_buffer(4096), ctypes.c_double(float("nan"))
        lib.JaxresnetConvLabel(ord(kind), bf16, dims, info, len(info))
        reply.write(info.value.decode() + "\n")  # first: a crash below still leaves the label
        status = lib.JaxresnetConvProbe(ord(kind), bf16, dims, info, len(info), ctypes.byref(error))
        detail = info.value.decode().partition("\t")[2]
        reply.write(json.dumps([status, detail, error.value]) + "\n")


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]))
