"""One run per workdir: an exclusive `fcntl` lock on `<workdir>/.lock`, held for the life of the run.

The kernel drops the lock when its process ends, however it ends (kill -9 included), so a stale lock
cannot block the next run; the file only records the holder's pid for the message. Readers
(evaluate.py, load_checkpoint) never take it.
"""

from __future__ import annotations

import fcntl
import os
import shutil

LOCK_FILE = ".lock"


class WorkdirBusy(RuntimeError):
    """Another process holds the workdir's lock."""


class WorkdirLock:
    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, LOCK_FILE)
        self._fd: int | None = None

    def acquire(self) -> WorkdirLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise WorkdirBusy(
                f"{os.path.dirname(self.path)} is in use by another training run "
                f"(process {holder}); wait for it, or give another --workdir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class Workdir:
    """A run's folder for the life of the run: created if need be, checked writable, locked (by the
    primary process), and removed again if the run never started (`started()` was not called), so a
    refused start leaves nothing behind."""

    def __init__(self, path: str, lock: bool = True):
        self.path, self._lock = path, WorkdirLock(path) if lock else None
        self._created = self._started = False

    def started(self) -> None:
        self._started = True

    def __enter__(self) -> Workdir:
        from jaxresnet.config import ConfigError

        self._created = not os.path.exists(self.path)
        try:  # the workdir's writability is the first thing checked: the run's results go there
            os.makedirs(self.path, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create --workdir {self.path}: {e.strerror or e}") from None
        if not os.access(self.path, os.W_OK):
            raise ConfigError(f"--workdir {self.path} is not writable")
        if self._lock is not None:
            try:
                self._lock.acquire()
            except WorkdirBusy:
                self._remove_if_unused()
                raise
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            self._lock.release()
        self._remove_if_unused()

    def _remove_if_unused(self) -> None:
        if self._created and not self._started and self._lock is not None:
            shutil.rmtree(self.path, ignore_errors=True)
