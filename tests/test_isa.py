"""The native path as CPUs with smaller instruction sets run it, whatever CPU runs the suite.

oneDNN honours ONEDNN_MAX_CPU_ISA: under AVX2 an AVX-512 machine takes the kernels an AVX2-only
CPU gets (most machines without a GPU: AMD Zen 2/3, Intel's desktop and laptop CPUs), which is
where oneDNN 3.2's gemm convolutions once crashed every run. Each check is a subprocess with the
cap set; the verdicts of the native probe are kept per cap, so each one checks its passes anew.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.test_onednn import needs_onednn

SMALL_RUN = (
    "--resize",
    "32",
    "--epochs",
    "1",
    "--train-per-class",
    "12",
    "--test-per-class",
    "5",
    "--batch-size",
    "16",
    "--seed",
    "0",
    "--no-download",
)


def _capped(isa: str, **env) -> dict:
    return dict(os.environ, ONEDNN_MAX_CPU_ISA=isa, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", **env)


@needs_onednn
def test_the_native_tests_pass_under_avx2():
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "tests/test_onednn.py"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env=_capped("AVX2"),
    )
    assert done.returncode == 0, done.stdout[-4000:]
    assert " passed" in done.stdout.strip().splitlines()[-1] and "failed" not in done.stdout


@needs_onednn
@pytest.mark.parametrize("isa", ["AVX2", "SSE41"])
def test_a_training_run_under_a_smaller_isa_prints_its_epoch(run_script, data_dir, tmp_path, monkeypatch, isa):
    for key, value in _capped(isa).items():
        monkeypatch.setenv(key, value)
    proc = run_script("train.py", *SMALL_RUN, "--data-dir", data_dir, "--workdir", tmp_path / "w")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert (
        lines[0] == "Epoch 1/1" and lines[1].startswith("Train Accuracy: ") and lines[2].startswith("Test Accuracy: ")
    )
    assert "warning" not in proc.stderr  # float32: oneDNN serves every pass under either cap
    assert len(json.load(open(tmp_path / "w" / "metrics.json"))) == 1


@needs_onednn
def test_bfloat16_under_avx2_trains_on_xla_with_one_warning(run_script, data_dir, tmp_path, monkeypatch):
    for key, value in _capped("AVX2").items():
        monkeypatch.setenv(key, value)
    proc = run_script(
        "train.py", *SMALL_RUN, "--dtype", "bfloat16", "--data-dir", data_dir, "--workdir", tmp_path / "w"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[0] == "Epoch 1/1"
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, proc.stderr
    assert (
        warnings[0].startswith("warning: ")
        and "convolution passes run on XLA instead of oneDNN on this CPU "
        "(slower): no oneDNN kernel for this CPU: forward of conv 7x7 3->64 stride 2 on 16x32x32 bfloat16"
        in warnings[0]
    )


@needs_onednn
def test_a_layer_whose_kernel_crashes_here_costs_speed_not_the_run(run_script, data_dir, tmp_path, monkeypatch):
    """A fault injected into one pass of one layer (JAXRESNET_ONEDNN_FAULT makes that kernel kill
    the process, as a faulty kernel on an untested CPU would): the run finishes, that pass on XLA."""
    label = "weight gradient of conv 3x3 64->64 stride 1 on 16x9x9 float32"
    monkeypatch.setenv("JAXRESNET_ONEDNN_FAULT", f"crash:{label}")
    proc = run_script("train.py", *SMALL_RUN, "--data-dir", data_dir, "--workdir", tmp_path / "w")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[0] == "Epoch 1/1"
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert warnings == [
        "warning: 1 convolution pass runs on XLA instead of oneDNN on this CPU (slower): "
        f"its check crashed (SIGSEGV): {label}"
    ], proc.stderr
    assert len(json.load(open(tmp_path / "w" / "metrics.json"))) == 1
