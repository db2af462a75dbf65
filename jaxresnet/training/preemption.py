"""Stopping on request: SIGTERM (a scheduler's preemption) and SIGINT (Ctrl-C) end the run at the next
step boundary with a checkpoint there, instead of killing it mid-epoch.

Orbax notices preemption only under `jax.distributed`; a single process has to catch the signals
itself. The handler only records the first signal: the training loop looks at it after each step,
saves, and raises `Preempted`. A second signal while that save is written is ignored, so it cannot
tear the checkpoint (kill -9 still can, and the previous checkpoints then serve).
"""
from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """The run stopped on a signal after saving; `exit_status` is the shell's 128 + signal."""

    def __init__(self, signum: int, where: str):
        self.signum = signum
        self.exit_status = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name} {where}")


class StopRequests:
    """Catches SIGTERM and SIGINT while active (in the main thread; elsewhere it catches nothing)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum is None:
            self.signum = signum

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
