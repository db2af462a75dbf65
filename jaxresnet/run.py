"""A whole training run: data, model, epochs, printing, metrics, plots and checkpoints.

`train_run(config, workdir)` is what `scripts/train.py` calls; it is a plain function so tests and
notebooks drive it the same way.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from jaxresnet.checkpoint import CheckpointStore
from jaxresnet.config import ConfigError, TrainConfig, resume_mismatch
from jaxresnet.data import load_subsets
from jaxresnet.models import ARCHS
from jaxresnet.plots import plot_accuracy
from jaxresnet.progress import Progress
from jaxresnet.train import DeviceData, create_train_state, predict, train_epoch, accuracy_percent

CHECKPOINT_DIR = "checkpoints"


@dataclass
class RunResult:
    workdir: str
    history: list[dict]
    state: object


@functools.lru_cache(maxsize=8)
def _model(arch, dtype, init, conv_impl):
    return ARCHS[arch](num_classes=10, dtype=dtype, weight_init=init, conv_impl=conv_impl)


def build_model(config: TrainConfig):
    """The network of a config; the same object for the same network, so jitted steps are reused."""
    return _model(config.arch, compute_dtype(config), config.init, config.conv_impl)


def compute_dtype(config: TrainConfig):
    return jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """(init_key, shuffle_key) for a seed."""
    init_key, shuffle_key = jax.random.split(jax.random.key(seed))
    return init_key, shuffle_key


def has_checkpoints(workdir: str) -> bool:
    d = os.path.join(workdir, CHECKPOINT_DIR)
    return os.path.isdir(d) and any(name.isdigit() for name in os.listdir(d))


def train_run(config: TrainConfig, workdir: str, *, resume: bool = False, out=None, err=None,
              progress: bool | None = None) -> RunResult:
    """Run (or continue) the experiment in `workdir`.

    An existing checkpoint in `workdir` is always continued, never silently overwritten; `resume=True`
    additionally insists that there is one. Raises ConfigError / DataError for bad input.
    """
    out, err = out or sys.stdout, err or sys.stderr
    config.validate()
    ckpt_dir = os.path.join(workdir, CHECKPOINT_DIR)
    existing = has_checkpoints(workdir)
    if resume and not existing:
        raise ConfigError(f"--resume: no checkpoint to resume in {os.path.join(workdir, CHECKPOINT_DIR)}")
    store = None
    try:
        if existing:  # refuse a changed experiment before spending time on data
            store = CheckpointStore(ckpt_dir, keep=config.keep)
            saved = store.saved_config()
            problem = resume_mismatch(saved, config) if saved is not None else None
            if problem:
                raise ConfigError(f"cannot resume {workdir}: {problem}")

        train, test = load_subsets(config.data_dir, config.download, config.train_per_class,
                                   config.test_per_class, config.seed)
        os.makedirs(workdir, exist_ok=True)  # only once the data is there: a failed start leaves nothing
        store = store or CheckpointStore(ckpt_dir, keep=config.keep)
        train_d, test_d = DeviceData.put(train), DeviceData.put(test)
        dtype = compute_dtype(config)
        init_key, shuffle_key = seed_keys(config.seed)
        state = create_train_state(build_model(config), init_key, config.resize, config.lr, config.momentum)

        history: list[dict] = []
        start = 0
        restored = store.restore(state) if existing else None
        if restored is not None:
            state, shuffle_key, history, start = (restored.state, restored.shuffle_key,
                                                  restored.history, restored.epoch)
            print(f"Resuming {workdir} after epoch {start} of {config.epochs}", file=err)
            if start >= config.epochs:
                print(f"The run is already complete at epoch {start}; raise --epochs to continue it.",
                      file=err)

        _write_json(os.path.join(workdir, "config.json"), config.to_dict())
        for epoch in range(start + 1, config.epochs + 1):
            bar = Progress(epoch, config.epochs, config.batch_size, err, enabled=progress)
            state, result = train_epoch(state, train_d, shuffle_key, epoch, batch_size=config.batch_size,
                                        image_size=config.resize, dtype=dtype, on_step=bar)
            bar.close()
            t_eval = time.perf_counter()
            preds = predict(state, test_d, config.resize, config.eval_batch_size, dtype)
            test_acc = accuracy_percent(int((preds == test.labels).sum()), len(test))
            eval_s = time.perf_counter() - t_eval
            print(f"Epoch {epoch}/{config.epochs}", file=out)
            print(f"Train Accuracy: {result.train_accuracy} %", file=out)
            print(f"Test Accuracy: {test_acc} %", file=out)
            out.flush()
            history.append({
                "epoch": epoch,
                "train_accuracy": result.train_accuracy,
                "test_accuracy": test_acc,
                "train_loss": round(result.train_loss, 6),
                "seconds": round(result.seconds + eval_s, 3),
                "train_seconds": round(result.seconds, 3),
                "train_images_per_s": round(len(train) / result.seconds, 2),
            })
            write_outputs(workdir, history)
            if epoch % config.save_every == 0 or epoch == config.epochs:
                store.save(epoch, state, shuffle_key, history, config)
        write_outputs(workdir, history)
        return RunResult(workdir, history, state)
    finally:
        if store is not None:
            store.close()  # saves are complete before the process can exit


def write_outputs(workdir: str, history: list[dict]) -> None:
    _write_json(os.path.join(workdir, "metrics.json"), history)
    if history:
        plot_accuracy(history, os.path.join(workdir, "accuracy.png"))


def _write_json(path: str, obj) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)  # a kill never leaves half a file
