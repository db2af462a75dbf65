"""SIGTERM / SIGINT mid-epoch: a step checkpoint, one line, exit 143 / 130; the same command continues
and ends bit for bit as the uninterrupted run."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest
from conftest import ROOT

ARGS = [
    "--resize",
    "32",
    "--epochs",
    "2",
    "--batch-size",
    "10",
    "--train-per-class",
    "10",
    "--test-per-class",
    "2",
    "--no-download",
    "--checkpoint-minutes",
    "0",
    "--steps-per-call",
    "1",
]  # stops between any two steps
TIMING = ("seconds", "train_seconds", "train_images_per_s")


def _args(data_dir, workdir):
    return [*ARGS, "--data-dir", data_dir, "--workdir", str(workdir)]


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory, xla_cache):
    workdir = tmp_path_factory.mktemp("preempt") / "whole"
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=xla_cache)
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "train.py"), *_args(data_dir, workdir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


def _interrupt(data_dir, workdir, xla_cache, sig, epoch, step, *extra):
    """Start train.py, send `sig` once the progress bar shows `step` of `epoch`; (exit status, stderr)."""
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=xla_cache, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "scripts", "train.py"), *_args(data_dir, workdir), "--progress", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(iter(lambda: proc.stderr.read(1), "")), daemon=True)
    reader.start()
    target = re.compile(rf"epoch {epoch}/2 step {step}/10")
    deadline = time.time() + 300
    while not target.search("".join(seen)):
        assert proc.poll() is None and time.time() < deadline, "".join(seen)[-2000:]
        time.sleep(0.05)
    proc.send_signal(sig)
    status = proc.wait(timeout=300)
    reader.join(timeout=10)
    return status, "".join(seen)


def _final(workdir):
    from jaxresnet.training.checkpoint import load_checkpoint

    saved = load_checkpoint(str(workdir), "latest")
    trees = (saved.state.params, saved.state.batch_stats, saved.state.opt_state, saved.state.step)
    metrics = [
        {k: v for k, v in e.items() if k not in TIMING} for e in json.loads((workdir / "metrics.json").read_text())
    ]
    return jax.device_get(trees), metrics


@pytest.mark.parametrize("sig, epoch, status", [(signal.SIGTERM, 2, 143), (signal.SIGINT, 1, 130)])
def test_a_signal_mid_epoch_saves_the_step_and_the_rerun_ends_bit_for_bit(
    uninterrupted, data_dir, tmp_path, xla_cache, run_script, sig, epoch, status
):
    workdir = tmp_path / "stopped"
    code, stderr = _interrupt(data_dir, workdir, xla_cache, sig, epoch, 4)
    assert code == status, stderr[-3000:]
    last = stderr.strip().splitlines()[-1].split("\x1b[K")[-1]  # as shown: the bar's line is cleared first
    assert re.fullmatch(
        rf"train\.py: stopped by {sig.name} in epoch {epoch} after step \d+; saved in "
        rf"{re.escape(str(workdir))}/checkpoints-step; run the same command again to continue "
        rf"\(or --resume --workdir {re.escape(str(workdir))}\)",
        last,
    ), last
    assert "Traceback" not in stderr
    assert len(os.listdir(workdir / "checkpoints-step")) == 1
    rerun = run_script("train.py", *_args(data_dir, workdir), check=True)
    assert re.search(rf"Resuming .* at epoch {epoch}, step \d+", rerun.stderr), rerun.stderr
    assert rerun.stdout.startswith(f"Epoch {epoch}/2\n")
    assert not os.listdir(workdir / "checkpoints-step")  # superseded by the epoch checkpoint
    (want_trees, want_metrics), (got_trees, got_metrics) = _final(uninterrupted), _final(workdir)
    assert got_metrics == want_metrics
    for want, got in zip(jax.tree.leaves(want_trees), jax.tree.leaves(got_trees)):
        assert np.array_equal(want, got)


def test_bad_checkpoint_minutes_exit_2(run_script):
    proc = run_script("train.py", "--checkpoint-minutes", "-1")
    assert (
        proc.returncode == 2
        and proc.stderr.strip() == "train.py: error: --checkpoint-minutes must be a number >= 0 (0: never), got -1.0"
    )


def test_timed_step_checkpoints_survive_kill_9_mid_epoch(uninterrupted, data_dir, tmp_path, xla_cache, run_script):
    workdir = tmp_path / "killed"
    # every step is "due" at 1e-5 minutes: each step boundary writes a step checkpoint, the latest kept
    code, stderr = _interrupt(data_dir, workdir, xla_cache, signal.SIGKILL, 2, 6, "--checkpoint-minutes", "1e-5")
    assert code == -signal.SIGKILL, stderr[-2000:]
    assert len([d for d in os.listdir(workdir / "checkpoints-step") if d.isdigit()]) == 1  # only the latest
    rerun = run_script("train.py", *_args(data_dir, workdir), check=True)
    resumed = re.search(r"Resuming .* at epoch 2, step (\d+)", rerun.stderr)
    assert resumed and 3 <= int(resumed.group(1)) <= 9, rerun.stderr  # mid-epoch, not from the epoch's start
    (want_trees, want_metrics), (got_trees, got_metrics) = _final(uninterrupted), _final(workdir)
    assert got_metrics == want_metrics
    for want, got in zip(jax.tree.leaves(want_trees), jax.tree.leaves(got_trees)):
        assert np.array_equal(want, got)
