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

from jaxresnet.config import ConfigError, TrainConfig, resume_mismatch
from jaxresnet.data import load_subsets
from jaxresnet.models import ARCHS
from jaxresnet.plots import plot_accuracy
from jaxresnet.training.checkpoint import CheckpointError, CheckpointStore
from jaxresnet.training.loop import DeviceData, accuracy_percent, predict, train_epoch
from jaxresnet.training.parallel import data_mesh, replicate
from jaxresnet.training.progress import Progress
from jaxresnet.training.state import create_train_state

CHECKPOINT_DIR = "checkpoints"


@dataclass
class RunResult:
    workdir: str
    history: list[dict]
    state: object


@functools.lru_cache(maxsize=8)
def _model(arch, dtype, init, conv_impl, norm_impl):
    return ARCHS[arch](num_classes=10, dtype=dtype, weight_init=init, conv_impl=conv_impl, norm_impl=norm_impl)


def build_model(config: TrainConfig):
    """The network of a config; the same object for the same network, so jitted steps are reused."""
    return _model(config.arch, compute_dtype(config), config.init, config.conv_impl, config.norm_impl)


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
    if jax.process_index() != 0:  # multi-host: one process reports and writes the run's files
        out = err = open(os.devnull, "w")
    primary = jax.process_index() == 0
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
                                   config.test_per_class, config.seed, config.data_cache)
        os.makedirs(workdir, exist_ok=True)  # only once the data is there: a failed start leaves nothing
        store = store or CheckpointStore(ckpt_dir, keep=config.keep)
        mesh = data_mesh() if jax.device_count() > 1 else None  # data parallel over every device
        train_d, test_d = DeviceData.put(train, mesh), DeviceData.put(test, mesh)
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
        state = replicate(state, mesh)

        if primary:
            write_config(workdir, config, framework="jax")
        for epoch in range(start + 1, config.epochs + 1):
            bar = Progress(epoch, config.epochs, config.batch_size, err, enabled=progress)
            state, result = train_epoch(state, train_d, shuffle_key, epoch, batch_size=config.batch_size,
                                        image_size=config.resize, dtype=dtype, on_step=bar, mesh=mesh)
            bar.close()
            t_eval = time.perf_counter()
            preds = predict(state, test_d, config.resize, config.eval_batch_size, dtype, mesh)
            test_acc = accuracy_percent(int((preds == test.labels).sum()), len(test))
            eval_s = time.perf_counter() - t_eval
            print_epoch(out, epoch, config.epochs, result.train_accuracy, test_acc)
            history.append(epoch_record(epoch, result.train_accuracy, test_acc, result.train_loss,
                                        result.seconds + eval_s, result.seconds, len(train)))
            if primary:
                write_outputs(workdir, history)
            if epoch % config.save_every == 0 or epoch == config.epochs:
                store.save(epoch, state, shuffle_key, history, config)
        if primary:
            write_outputs(workdir, history)
        return RunResult(workdir, history, state)
    finally:
        if store is not None:
            store.close()  # saves are complete before the process can exit


def load_checkpoint(workdir: str, which: str | int = "latest"):
    """A saved run's state without training: `which` is "latest", "best" or an epoch number.

    Returns `jaxresnet.training.checkpoint.Restored` (epoch, state, shuffle_key, history, config).
    Read-only: a damaged checkpoint raises CheckpointError naming it.
    """
    store = CheckpointStore(os.path.join(workdir, CHECKPOINT_DIR), read_only=True)
    try:
        epoch = {"latest": store.latest_epoch, "best": store.best_epoch}.get(str(which), lambda: int(which))()
        if epoch is None or epoch not in store.epochs():
            raise CheckpointError(f"no checkpoint for epoch {which} in {store.directory} "
                                  f"(saved: {', '.join(map(str, store.epochs())) or 'none'})")
        try:
            config = store.read_config(epoch)
        except Exception as e:
            raise CheckpointError(f"checkpoint {os.path.join(store.directory, str(epoch))} is damaged: "
                                  f"{type(e).__name__}") from e
        template = create_train_state(build_model(config), seed_keys(config.seed)[0], config.resize,
                                      config.lr, config.momentum)
        return store.restore(template, epoch, fallback=False)
    finally:
        store.close()


def print_epoch(out, epoch: int, epochs: int, train_accuracy: float, test_accuracy: float) -> None:
    """The reference's three lines per epoch."""
    print(f"Epoch {epoch}/{epochs}", file=out)
    print(f"Train Accuracy: {train_accuracy} %", file=out)
    print(f"Test Accuracy: {test_accuracy} %", file=out)
    out.flush()


def epoch_record(epoch, train_accuracy, test_accuracy, train_loss, seconds, train_seconds, n_train) -> dict:
    """One epoch of metrics.json (the same fields for the JAX run and the torch baseline)."""
    return {
        "epoch": epoch,
        "train_accuracy": train_accuracy,
        "test_accuracy": test_accuracy,
        "train_loss": round(float(train_loss), 6),
        "seconds": round(seconds, 3),
        "train_seconds": round(train_seconds, 3),
        "train_images_per_s": round(n_train / train_seconds, 2),
    }


def write_config(workdir: str, config: TrainConfig, framework: str) -> None:
    _write_json(os.path.join(workdir, "config.json"), {**config.to_dict(), "framework": framework})


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
