"""A line per training call, evaluation batch and checkpoint save, as the host sees them:
`JAXRESNET_STEP_LOG=FILE` turns it on (off by default).

For following a batch job where there is no terminal for the progress bar (`tail -f FILE`), and for
the tests that stop a run at a chosen point. Each line is `<unix time> <event> <epoch> <n>`:
`train E S` (the call that ends at step S of epoch E is queued, every step before it done),
`eval E B` (batch B of epoch E's scoring queued, the ones before it done), `save E 0` and
`saved E 0` (an epoch checkpoint's save called and returned; the files are written behind),
`step-saved E S` (a step checkpoint at step S), `device-peak-bytes E N` (an accelerator's peak
memory so far, where it reports one).
"""

from __future__ import annotations

import os
import time

ENV = "JAXRESNET_STEP_LOG"


class StepLog:
    def __init__(self, path: str | None = None):
        path = path if path is not None else os.environ.get(ENV)
        self._file = open(path, "a", buffering=1) if path else None  # noqa: SIM115 (open for the run)

    def __call__(self, event: str, epoch: int, n: int = 0) -> None:
        if self._file is not None:
            self._file.write(f"{time.time():.6f} {event} {epoch} {n}\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
