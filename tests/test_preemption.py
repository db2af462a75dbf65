"""SIGTERM / SIGINT as a scheduler or Ctrl-C sends them, to a run with no terminal: stdout and stderr
are a file and a pipe, no progress bar. Wherever the signal lands (a training step of the first or
the last epoch, the evaluation, a checkpoint save) the run stops within two steps (or two
evaluation batches) with a step checkpoint, one line and exit 143 / 130, and the same command
continues it to the end bit for bit as the uninterrupted run. Where the run is comes from its step
log (JAXRESNET_STEP_LOG), which stamps every training call, evaluation batch and save."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import ROOT

# 10 steps an epoch, 400 test images scored in 20 batches: every place a signal can land lasts long
# enough for the test to aim at it.
ARGS = ["--arch", "resnet18", "--resize", "32", "--epochs", "2", "--batch-size", "10", "--train-per-class", "10",
        "--test-per-class", "40", "--eval-batch-size", "20", "--no-download", "--checkpoint-minutes", "0",
        "--steps-per-call", "1"]  # fmt: skip
TIMING = ("seconds", "train_seconds", "train_images_per_s")


def _args(data_dir, workdir):
    return [*ARGS, "--data-dir", data_dir, "--workdir", str(workdir)]


def _env(xla_cache, log=None):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a batch job has it
    env["JAX_COMPILATION_CACHE_DIR"] = xla_cache
    if log is not None:
        env["JAXRESNET_STEP_LOG"] = str(log)
    return env


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory, xla_cache):
    workdir = tmp_path_factory.mktemp("preempt") / "whole"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train.py"), *_args(data_dir, workdir)],
                          capture_output=True, text=True, env=_env(xla_cache), timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return workdir


def _events(log):
    """The step log's lines as (time, event, epoch, n)."""
    if not os.path.exists(log):
        return []
    rows = [line.split() for line in open(log).read().splitlines()]
    return [(float(t), e, int(a), int(b)) for t, e, a, b in rows]


class Stopped:
    """An interrupted run: its exit status, stderr, stdout as it was when the signal was sent, and
    its step log split at the signal."""

    def __init__(self, status, stderr, stdout_then, before, after):
        self.status, self.stderr, self.stdout_then, self.before, self.after = status, stderr, stdout_then, before, after

    def last(self, event, epoch=None, which="before"):
        rows = [r for r in getattr(self, which) if r[1] == event and (epoch is None or r[2] == epoch)]
        return rows[-1][3] if rows else None


def _interrupt(data_dir, workdir, xla_cache, sig, at, *extra):
    """Start train.py, send `sig` once its step log shows the event `at` ("train 1 4"), and wait."""
    log, out = workdir.parent / f"{workdir.name}.steps", workdir.parent / f"{workdir.name}.out"
    cmd = [sys.executable, os.path.join(ROOT, "scripts", "train.py"), *_args(data_dir, workdir), *extra]
    with open(out, "w") as stdout:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.PIPE, text=True, env=_env(xla_cache, log))
        deadline = time.time() + 300
        while not any(f"{e} {a} {b}" == at for _, e, a, b in _events(log)):
            assert proc.poll() is None and time.time() < deadline, (proc.poll(), _events(log)[-3:])
            time.sleep(0.01)
        stdout_then, sent = open(out).read(), time.time()
        proc.send_signal(sig)
        stderr = proc.communicate(timeout=300)[1]
    events = _events(log)
    return Stopped(proc.returncode, stderr, stdout_then, [r for r in events if r[0] < sent],
                   [r for r in events if r[0] >= sent])  # fmt: skip


def _final(workdir):
    from jaxresnet.training.checkpoint import load_checkpoint

    saved = load_checkpoint(str(workdir), "latest")
    trees = (saved.state.params, saved.state.batch_stats, saved.state.opt_state, saved.state.step)
    metrics = [
        {k: v for k, v in e.items() if k not in TIMING} for e in json.loads((workdir / "metrics.json").read_text())
    ]
    return jax.device_get(trees), metrics


def _assert_continues_bit_for_bit(run_script, data_dir, workdir, uninterrupted, resumed_at):
    rerun = run_script("train.py", *_args(data_dir, workdir), check=True)
    assert re.search(resumed_at, rerun.stderr), rerun.stderr
    assert not os.listdir(workdir / "checkpoints-step")  # superseded by the epoch checkpoint
    (want_trees, want_metrics), (got_trees, got_metrics) = _final(uninterrupted), _final(workdir)
    assert got_metrics == want_metrics
    for want, got in zip(jax.tree.leaves(want_trees), jax.tree.leaves(got_trees)):
        assert np.array_equal(want, got)


def _message(stopped, sig, workdir, where, folder="checkpoints-step"):
    last = stopped.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"train\.py: stopped by {sig.name} {where}; saved in {re.escape(str(workdir))}/"
                        rf"{folder}; run the same command again to continue \(or --resume --workdir "
                        rf"{re.escape(str(workdir))}\)", last), last  # fmt: skip
    assert "Traceback" not in stopped.stderr


@pytest.mark.parametrize("sig, epoch, status", [(signal.SIGTERM, 1, 143), (signal.SIGINT, 2, 130)])
def test_a_signal_in_a_training_step_of_the_first_or_last_epoch_stops_within_two_steps(
    uninterrupted, data_dir, tmp_path, xla_cache, run_script, sig, epoch, status
):
    workdir = tmp_path / "stopped"
    stopped = _interrupt(data_dir, workdir, xla_cache, sig, f"train {epoch} 4")
    assert stopped.status == status, stopped.stderr[-3000:]
    at_signal, saved = stopped.last("train", epoch), stopped.last("step-saved", epoch, "after")
    assert 0 <= saved - at_signal <= 2, (at_signal, saved)  # the steps that ran after the signal
    _message(stopped, sig, workdir, f"in epoch {epoch} after step {saved}")
    if epoch == 2:  # with stdout a file, epoch 1's lines were there while the run went on
        assert stopped.stdout_then.startswith("Epoch 1/2\nTrain Accuracy: "), stopped.stdout_then
        assert "Test Accuracy: " in stopped.stdout_then
    _assert_continues_bit_for_bit(run_script, data_dir, workdir, uninterrupted, rf"at epoch {epoch}, step {saved}\b")


def test_a_signal_while_the_test_split_is_scored_stops_within_two_batches(
    uninterrupted, data_dir, tmp_path, xla_cache, run_script
):
    workdir = tmp_path / "scoring"
    stopped = _interrupt(data_dir, workdir, xla_cache, signal.SIGTERM, "eval 1 3")
    assert stopped.status == 143, stopped.stderr[-3000:]
    at_signal, last = stopped.last("eval", 1), stopped.last("eval", 1, "after") or stopped.last("eval", 1)
    assert last - at_signal <= 2 and last < 20, (at_signal, last)  # not the whole test split
    assert stopped.last("step-saved", 1, "after") == 10  # at the end of the epoch's training
    _message(stopped, signal.SIGTERM, workdir, "in epoch 1 while scoring it")
    _assert_continues_bit_for_bit(run_script, data_dir, workdir, uninterrupted, r"at epoch 1, step 10\b")


def test_a_signal_during_a_checkpoint_save_stops_once_it_is_written(
    uninterrupted, data_dir, tmp_path, xla_cache, run_script
):
    workdir = tmp_path / "saving"
    stopped = _interrupt(data_dir, workdir, xla_cache, signal.SIGTERM, "save 1 0")
    assert stopped.status == 143, stopped.stderr[-3000:]
    if stopped.last("step-saved", 2, "after") is None:  # the signal came while the save call ran
        assert stopped.last("train", 2, "after") is None  # no step of the next epoch ran
        _message(stopped, signal.SIGTERM, workdir, "after epoch 1", folder="checkpoints")
        _assert_continues_bit_for_bit(run_script, data_dir, workdir, uninterrupted, r"after epoch 1 of 2")
    else:  # while its files were written behind the next epoch's first steps
        saved = stopped.last("step-saved", 2, "after")
        assert saved <= 2, stopped.after
        _message(stopped, signal.SIGTERM, workdir, f"in epoch 2 after step {saved}")
        _assert_continues_bit_for_bit(run_script, data_dir, workdir, uninterrupted, rf"at epoch 2, step {saved}\b")


def test_a_signal_after_the_last_checkpoint_lets_the_run_finish(uninterrupted, data_dir, tmp_path, xla_cache):
    workdir = tmp_path / "finishing"
    stopped = _interrupt(data_dir, workdir, xla_cache, signal.SIGTERM, "saved 2 0")
    assert stopped.status == 0, stopped.stderr[-3000:]
    assert "stopped" not in stopped.stderr and not os.listdir(workdir / "checkpoints-step")
    assert _final(workdir)[1] == _final(uninterrupted)[1]


def test_bad_checkpoint_minutes_exit_2(run_script):
    proc = run_script("train.py", "--checkpoint-minutes", "-1")
    assert (
        proc.returncode == 2
        and proc.stderr.strip() == "train.py: error: --checkpoint-minutes must be a number >= 0 (0: never), got -1.0"
    )


def test_timed_step_checkpoints_survive_kill_9_mid_epoch(uninterrupted, data_dir, tmp_path, xla_cache, run_script):
    workdir = tmp_path / "killed"
    # every step is "due" at 1e-5 minutes: each step boundary writes a step checkpoint, the latest kept
    stopped = _interrupt(data_dir, workdir, xla_cache, signal.SIGKILL, "train 2 6", "--checkpoint-minutes", "1e-5")
    assert stopped.status == -signal.SIGKILL, stopped.stderr[-2000:]
    assert len([d for d in os.listdir(workdir / "checkpoints-step") if d.isdigit()]) == 1  # only the latest
    rerun = run_script("train.py", *_args(data_dir, workdir), check=True)
    resumed = re.search(r"Resuming .* at epoch 2, step (\d+)", rerun.stderr)
    assert resumed and 3 <= int(resumed.group(1)) <= 9, rerun.stderr  # mid-epoch, not from the epoch's start
    (want_trees, want_metrics), (got_trees, got_metrics) = _final(uninterrupted), _final(workdir)
    assert got_metrics == want_metrics
    for want, got in zip(jax.tree.leaves(want_trees), jax.tree.leaves(got_trees)):
        assert np.array_equal(want, got)
