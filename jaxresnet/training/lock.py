"""One run per workdir: an exclusive `fcntl` lock on `<workdir>/.lock`, held for the life of the run.

The kernel drops the lock when its process ends, however it ends (kill -9 included), so a stale lock
cannot block the next run; the file only records the holder's pid for the message. Readers
(evaluate.py, load_checkpoint) never take it.
"""
from __future__ import annotations

import fcntl
import os

LOCK_FILE = ".lock"


class WorkdirBusy(RuntimeError):
    """Another process holds the workdir's lock."""


class WorkdirLock:
    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, LOCK_FILE)
        self._fd: int | None = None

    def acquire(self) -> "WorkdirLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise WorkdirBusy(f"{os.path.dirname(self.path)} is in use by another training run "
                              f"(process {holder}); wait for it, or give another --workdir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
