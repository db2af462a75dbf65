"""Stopping on request: SIGTERM (a scheduler's preemption) and SIGINT (Ctrl-C) end the run at the next
step boundary with a checkpoint there, instead of killing it mid-epoch.

Orbax notices preemption only under `jax.distributed`; a single process has to catch the signals
itself. The handler only records the first signal: the training loop looks at it after each step,
saves, and raises `Preempted`. A second signal while that save is written is ignored, so it cannot
tear the checkpoint (kill -9 still can, and the previous checkpoints then serve).

Several processes must stop at the same step, or the one that saves waits forever for the others'
collectives. There JAX's own preemption service (started by `jax.distributed.initialize`) catches
SIGTERM in any process and picks a step every process reaches; SIGINT keeps its default (a Ctrl-C
in one terminal of a cluster job has no agreed step: the last checkpoint serves).
"""

from __future__ import annotations

import signal
import threading

import jax
import numpy as np

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

    def requested(self, step_id: int) -> bool:
        """Whether to stop after global step `step_id` (every process gets the same answer)."""
        return self.signum is not None

    def agree(self, wanted: bool, step_id: int) -> bool:
        """One process decides alone: a decision taken from its own clock stands."""
        return wanted

    def _handle(self, signum, frame):
        if self.signum is None:
            self.signum = signum

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


class ClusterStopRequests:
    """The same questions answered for several processes, all alike at every step.

    `requested` must be asked at every training step, with a step id every process agrees on.
    `agree` shares process 0's decision (a time-based checkpoint falls due by its clock), once every
    AGREE_EVERY steps: a small collective that also waits for the device, so not every step.
    """

    AGREE_EVERY = 20

    def __init__(self):
        self.signum: int | None = None

    def requested(self, step_id: int) -> bool:
        from jax.experimental import multihost_utils

        if self.signum is None and multihost_utils.reached_preemption_sync_point(step_id):
            self.signum = signal.SIGTERM
        return self.signum is not None

    def agree(self, wanted: bool, step_id: int) -> bool:
        from jax.experimental import multihost_utils

        if step_id % self.AGREE_EVERY:
            return False
        return bool(multihost_utils.broadcast_one_to_all(np.asarray(wanted)))

    def __enter__(self) -> ClusterStopRequests:
        return self

    def __exit__(self, *exc) -> None:
        pass


def stop_requests():
    """What catches a stop request for this run: the process itself, or JAX's service across processes."""
    return ClusterStopRequests() if jax.process_count() > 1 else StopRequests()
