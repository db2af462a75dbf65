"""A one-line progress bar on stderr (step, images/s, ETA), shown only on an interactive terminal."""

from __future__ import annotations

import sys
import time

import jax


class Progress:
    def __init__(self, epoch: int, epochs: int, batch_size: int, stream=None, enabled: bool | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.epoch, self.epochs, self.batch_size = epoch, epochs, batch_size
        self._t0 = None

    def __call__(self, call) -> None:
        """After a training call (`jaxresnet.training.loop.Call`)."""
        if not self.enabled:
            return
        step, steps = call.step, call.steps
        # Wait for this step, so the rate shown is real, not the rate at which steps are dispatched.
        # (Only on a terminal; the metrics are donated to the next step, so they cannot be held.)
        jax.block_until_ready(call.metrics["count"])
        now = time.perf_counter()
        if self._t0 is None:  # the first step includes compilation; rates start after it
            self._t0, self._s0 = now, step
            return
        done = step - self._s0  # steps finished since the first call returned (a call may run several)
        rate = done * self.batch_size / max(now - self._t0, 1e-9)
        eta = (steps - step) * self.batch_size / rate if rate > 0 else float("nan")
        self.stream.write(
            f"\repoch {self.epoch}/{self.epochs} step {step}/{steps} {rate:7.1f} img/s ETA {_hms(eta)}   "
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _hms(seconds: float) -> str:
    if seconds != seconds:
        return "--:--"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
