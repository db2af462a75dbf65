"""The restart onto transparent huge pages: when it happens, and that it keeps the program's arguments."""

import os
import subprocess
import sys

import pytest

from jaxresnet.native import huge_pages

MADVISE = "always [madvise] never\n"


@pytest.mark.skipif(sys.platform != "linux", reason="glibc tunables are Linux-only")
def test_restart_is_wanted_only_where_it_changes_something():
    assert huge_pages.wanted({}, MADVISE)
    assert not huge_pages.wanted({}, "[always] madvise never\n")  # huge already
    assert not huge_pages.wanted({}, "always madvise [never]\n")  # none to be had
    assert not huge_pages.wanted({"JAXRESNET_HUGE_PAGES": "0"}, MADVISE)
    assert not huge_pages.wanted({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, MADVISE)  # the user's choice
    assert huge_pages.wanted({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, MADVISE)


PROGRAM = (
    "import os, sys\n"
    "from jaxresnet.native.huge_pages import restart_with_huge_pages\n"
    "restart_with_huge_pages()\n"
    "print(os.environ.get('GLIBC_TUNABLES'), sys.argv[1:])\n"
)


def _run(tmp_path, **env):
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environ = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "JAXRESNET_HUGE_PAGES")}
    done = subprocess.run(
        [sys.executable, "-u", str(script), "--resize", "128", "a b"],
        capture_output=True,
        text=True,
        env={**environ, "PYTHONPATH": root, **env},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_restart_sets_the_tunable_keeps_the_arguments_and_can_be_turned_off(tmp_path):
    expect = "glibc.malloc.hugetlb=1" if huge_pages.wanted({}) else "None"
    assert _run(tmp_path) == f"{expect} ['--resize', '128', 'a b']"
    assert _run(tmp_path, JAXRESNET_HUGE_PAGES="0") == "None ['--resize', '128', 'a b']"
    if huge_pages.wanted({}):
        assert (
            _run(tmp_path, GLIBC_TUNABLES="glibc.malloc.arena_max=2")
            == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1 ['--resize', '128', 'a b']"
        )
