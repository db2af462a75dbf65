"""Run on transparent huge pages: restart the process with glibc's malloc asking for them.

Every step, XLA:CPU maps a fresh temporary buffer (558 MB for ResNet34 at --resize 128, batch
32) and each activation in it is first touched by the layer that writes it -- with 4 KiB pages,
about 136k page faults a step. Debian's kernels give huge pages only where asked
(transparent_hugepage "madvise"), and glibc asks on every block it maps when started with
GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (glibc 2.35+). Measured: 22.3-22.9 -> 23.5-24.4 images/s
(BENCHMARKS.md). The tunable is read once at process start, hence the re-exec.
JAXRESNET_HUGE_PAGES=0 turns this off.
"""

from __future__ import annotations

import os
import sys

TUNABLE = "glibc.malloc.hugetlb=1"
THP_SETTING = "/sys/kernel/mm/transparent_hugepage/enabled"


def wanted(environ=os.environ, thp_setting: str | None = None) -> bool:
    """Whether a restart would change anything: Linux with THP "madvise", not yet asked, not off."""
    if sys.platform != "linux" or environ.get("JAXRESNET_HUGE_PAGES", "1") == "0":
        return False
    if "glibc.malloc.hugetlb" in environ.get("GLIBC_TUNABLES", ""):
        return False  # set already (by us before the restart, or by the user)
    if thp_setting is None:
        try:
            with open(THP_SETTING) as f:
                thp_setting = f.read()
        except OSError:
            return False
    return "[madvise]" in thp_setting  # "[always]": every mapping is huge already; "[never]": none can be


def restart_with_huge_pages() -> None:
    """Re-exec this Python program with the tunable set; returns only where that is not wanted."""
    if not wanted():
        return
    tunables = os.environ.get("GLIBC_TUNABLES")
    os.environ["GLIBC_TUNABLES"] = f"{tunables}:{TUNABLE}" if tunables else TUNABLE
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
