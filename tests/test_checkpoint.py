"""Checkpoint/resume: an interrupted run ends exactly as if it had never stopped."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import ROOT

from jaxresnet.config import ConfigError, TrainConfig
from jaxresnet.training.checkpoint import CheckpointError, EpochCheckpoints
from jaxresnet.training.run import train_run
from jaxresnet.training.state import build_model, create_train_state, seed_keys

TIMING = {"seconds", "train_seconds", "train_images_per_s"}


def small_config(data_dir, **kw):
    base = dict(
        arch="resnet18",
        resize=16,
        batch_size=16,
        train_per_class=4,
        test_per_class=2,
        epochs=3,
        seed=7,
        data_dir=data_dir,
        download=False,
    )
    return TrainConfig(**{**base, **kw})


def without_timing(history):
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


def assert_trees_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(a), jax.device_get(b))


@pytest.fixture(scope="module")
def full_run(data_dir, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("full"))
    return train_run(small_config(data_dir), workdir, progress=False)


def test_resume_is_bitwise_identical(data_dir, tmp_path, full_run, capsys):
    part = str(tmp_path / "part")
    train_run(small_config(data_dir, epochs=2), part, progress=False)
    resumed = train_run(small_config(data_dir, epochs=3), part, progress=False)  # same workdir: continues
    out = capsys.readouterr().out
    assert out.count("Epoch 3/3") == 1 and "Epoch 1/3" not in out  # only the missing epoch ran
    assert without_timing(resumed.history) == without_timing(full_run.history)
    saved = json.load(open(os.path.join(part, "metrics.json")))
    assert without_timing(saved) == without_timing(full_run.history)
    assert_trees_equal(resumed.state.params, full_run.state.params)
    assert_trees_equal(resumed.state.batch_stats, full_run.state.batch_stats)
    assert_trees_equal(resumed.state.opt_state, full_run.state.opt_state)
    assert int(resumed.state.step) == int(full_run.state.step) == 3 * 3


def test_checkpoint_holds_everything_and_keeps_latest_plus_best(data_dir, tmp_path, full_run):
    workdir = str(tmp_path / "keep")
    train_run(small_config(data_dir, epochs=5, keep=2), workdir, progress=False)
    store = EpochCheckpoints(os.path.join(workdir, "checkpoints"))
    history = store.read_history(5)
    best = max(history, key=lambda h: (h["test_accuracy"], h["epoch"]))["epoch"]
    assert store.epochs() == sorted({4, 5, best})
    assert store.best_epoch() == best
    config = small_config(data_dir, epochs=5)
    template = create_train_state(build_model(config), seed_keys(0)[0], 16, 0.01, 0.9)
    restored = store.restore(template)
    store.close()
    assert restored.epoch == 5 and len(restored.history) == 5
    assert restored.config.seed == 7 and restored.config.arch == "resnet18"
    np.testing.assert_array_equal(jax.random.key_data(restored.shuffle_key), jax.random.key_data(seed_keys(7)[1]))
    assert int(restored.state.step) == 5 * 3


@pytest.mark.parametrize(
    "field, value", [("resize", 32), ("seed", 8), ("train_per_class", 5), ("arch", "resnet34"), ("test_per_class", 3)]
)
def test_resume_refuses_a_changed_experiment(data_dir, tmp_path, full_run, field, value):
    with pytest.raises(ConfigError, match="--" + field.replace("_", "-")):
        train_run(small_config(data_dir, **{field: value}), full_run.workdir, progress=False)


def test_resume_flag_needs_a_checkpoint(data_dir, tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint to resume"):
        train_run(small_config(data_dir), str(tmp_path / "empty"), resume=True)


def _largest_file(directory):
    files = [f for f in glob.glob(os.path.join(directory, "**"), recursive=True) if os.path.isfile(f)]
    return max(files, key=os.path.getsize)


@pytest.mark.parametrize("damage", ["truncate", "remove"])
def test_damaged_checkpoint_is_named_or_falls_back(data_dir, tmp_path, full_run, damage, capsys):
    workdir = str(tmp_path / damage)
    train_run(small_config(data_dir), workdir, progress=False)
    ckpt = os.path.join(workdir, "checkpoints")
    victim = _largest_file(os.path.join(ckpt, "3", "state"))
    if damage == "truncate":
        with open(victim, "r+b") as f:
            f.truncate(os.path.getsize(victim) // 2)
    else:
        os.remove(victim)
    config = small_config(data_dir)
    template = create_train_state(build_model(config), seed_keys(0)[0], 16, 0.01, 0.9)
    store = EpochCheckpoints(ckpt)
    rel = os.path.relpath(victim, os.path.join(ckpt, "3"))
    with pytest.raises(CheckpointError, match=r"checkpoints/3 is damaged: ") as info:
        store.restore(template, 3)
    assert rel in str(info.value)  # the damaged file is named
    assert ("is missing" if damage == "remove" else "bytes") in str(info.value)
    restored = store.restore(template)  # latest: falls back to epoch 2 with a warning
    store.close()
    assert restored.epoch == 2
    assert "checkpoints/3 is damaged" in capsys.readouterr().err
    assert os.listdir(ckpt + "-damaged")  # moved aside, not deleted
    # Rerunning the workdir redoes epoch 3 and ends exactly like the undamaged run.
    again = train_run(config, workdir, progress=False)
    assert without_timing(again.history) == without_timing(full_run.history)
    assert_trees_equal(again.state.params, full_run.state.params)


def test_kill_minus_nine_then_rerun_resumes(data_dir, tmp_path, full_run, xla_cache):
    workdir = str(tmp_path / "killed")
    args = [
        sys.executable,
        os.path.join(ROOT, "scripts", "train.py"),
        "--arch",
        "resnet18",
        "--resize",
        "16",
        "--batch-size",
        "16",
        "--train-per-class",
        "4",
        "--test-per-class",
        "2",
        "--epochs",
        "3",
        "--seed",
        "7",
        "--data-dir",
        data_dir,
        "--no-download",
        "--workdir",
        workdir,
    ]
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=xla_cache)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    ckpt = os.path.join(workdir, "checkpoints")
    killed_at = None
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        names = os.listdir(ckpt) if os.path.isdir(ckpt) else []
        if (any("tmp" in n for n in names) and "1" in names) or "2" in names:
            killed_at = sorted(names)  # mid-save of epoch 2, or just after it, mid-epoch 3
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    assert killed_at is not None, f"the run ended before it could be killed: {proc.stderr.read()[-2000:]}"
    print("killed with checkpoints/ holding", killed_at)
    # Rerun the same command: it resumes from the last complete checkpoint and finishes.
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Resuming" in out.stderr
    assert "Epoch 3/3" in out.stdout and "Epoch 1/3" not in out.stdout
    assert not [n for n in os.listdir(ckpt) if "tmp" in n]  # leftovers of the killed save are gone
    assert {1, 2, 3} <= {int(n) for n in os.listdir(ckpt) if n.isdigit()}  # nothing earlier was lost
    saved = json.load(open(os.path.join(workdir, "metrics.json")))
    assert without_timing(saved) == without_timing(full_run.history)


# Orbax leaves the failed reads of a damaged checkpoint as never-awaited coroutines.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_unsealed_damaged_checkpoint_still_falls_back(data_dir, tmp_path, full_run, capsys):
    """A checkpoint whose process died before writing its manifest is checked by orbax's reads."""
    workdir = str(tmp_path / "unsealed")
    train_run(small_config(data_dir), workdir, progress=False)
    ckpt = os.path.join(workdir, "checkpoints")
    os.remove(os.path.join(ckpt, "3", "jaxresnet_manifest.json"))
    victim = _largest_file(os.path.join(ckpt, "3", "state"))
    with open(victim, "r+b") as f:
        f.truncate(100)
    again = train_run(small_config(data_dir), workdir, progress=False)
    assert "checkpoints/3 is damaged" in capsys.readouterr().err
    assert without_timing(again.history) == without_timing(full_run.history)
