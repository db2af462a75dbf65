"""A whole training run: data, model, epochs, printing, metrics, plots and checkpoints.

`train_run(config, workdir)` is what `scripts/train.py` calls; it is a plain function so tests and
notebooks drive it the same way.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from jaxresnet.config import ConfigError, TrainConfig, resume_mismatch
from jaxresnet.data import DatasetInfo, folder, load_dataset
from jaxresnet.data.datasets import DEFAULT_DATASET, stored_images
from jaxresnet.data.augment import Augment, make_augment
from jaxresnet.models import ARCHS
from jaxresnet.models.layers import native_fallback_report
from jaxresnet.plots import plot_accuracy
from jaxresnet.training.checkpoint import CheckpointError, CheckpointStore
from jaxresnet.training.events import EventLog
from jaxresnet.training import memory
from jaxresnet.training.lock import WorkdirLock
from jaxresnet.training.loop import (DeviceData, EpochPosition, accuracy_percent, predict, steps_per_call,
                                     train_epoch)
from jaxresnet.training.parallel import data_mesh, replicate
from jaxresnet.training.preemption import Preempted, stop_requests
from jaxresnet.training.progress import Progress
from jaxresnet.training.optimizer import learning_rate_schedule, make_optimizer
from jaxresnet.training.state import create_train_state

CHECKPOINT_DIR = "checkpoints"
STEP_CHECKPOINT_DIR = "checkpoints-step"  # the latest mid-epoch checkpoint (preemption, --checkpoint-minutes)


@dataclass
class RunResult:
    workdir: str
    history: list[dict]
    state: object


@functools.lru_cache(maxsize=8)
def _model(arch, dtype, init, conv_impl, norm_impl, num_classes):
    param_dtype = jnp.float64 if dtype == jnp.float64 else jnp.float32  # float64: the reference mode
    return ARCHS[arch](num_classes=num_classes, dtype=dtype, param_dtype=param_dtype, weight_init=init, conv_impl=conv_impl,
                       norm_impl=norm_impl)


def build_model(config: TrainConfig, num_classes: int = 10):
    """The network of a config; the same object for the same network, so jitted steps are reused."""
    return _model(config.arch, compute_dtype(config), config.init, config.conv_impl, config.norm_impl, num_classes)


def compute_dtype(config: TrainConfig):
    return {"bfloat16": jnp.bfloat16, "float64": jnp.float64}.get(config.dtype, jnp.float32)


def check_precision(config: TrainConfig) -> None:
    """float64 needs JAX's 64-bit mode, which only the process's start may switch on (the CLI does)."""
    if config.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ConfigError("--dtype float64 needs JAX's 64-bit mode: set JAX_ENABLE_X64=1 "
                          "(scripts/train.py does it for you)")


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """(init_key, shuffle_key) for a seed."""
    init_key, shuffle_key = jax.random.split(jax.random.key(seed))
    return init_key, shuffle_key


def has_checkpoints(workdir: str, folder: str = CHECKPOINT_DIR) -> bool:
    d = os.path.join(workdir, folder)
    return os.path.isdir(d) and any(name.isdigit() for name in os.listdir(d))


def train_run(config: TrainConfig, workdir: str, *, resume: bool = False, out=None, err=None,
              progress: bool | None = None) -> RunResult:
    """Run (or continue) the experiment in `workdir`.

    An existing checkpoint in `workdir` is always continued, never silently overwritten; `resume=True`
    additionally insists that there is one. A step checkpoint newer than the last epoch checkpoint
    (a run stopped mid-epoch) is continued from its step. SIGTERM/SIGINT stop the run at the next
    step with a step checkpoint and raise `Preempted`. Raises ConfigError / DataError for bad input,
    WorkdirBusy when another run holds the workdir.
    """
    out, err = out or sys.stdout, err or sys.stderr
    if jax.process_index() != 0:  # multi-host: one process reports and writes the run's files
        out = err = open(os.devnull, "w")
    primary = jax.process_index() == 0
    config.validate()
    check_precision(config)
    existing = has_checkpoints(workdir) or has_checkpoints(workdir, STEP_CHECKPOINT_DIR)
    if resume and not existing:
        raise ConfigError(f"--resume: no checkpoint to resume in {os.path.join(workdir, CHECKPOINT_DIR)}")
    created = not os.path.exists(workdir)
    try:  # the workdir's writability is the first thing checked: the run's results go there
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create --workdir {workdir}: {e.strerror or e}") from None
    if not os.access(workdir, os.W_OK):
        raise ConfigError(f"--workdir {workdir} is not writable")
    lock = WorkdirLock(workdir).acquire() if primary else None  # WorkdirBusy: another run has it
    store = steps_store = events = None
    started = False

    def open_stores():
        return (CheckpointStore(os.path.join(workdir, CHECKPOINT_DIR), keep=config.keep),
                CheckpointStore(os.path.join(workdir, STEP_CHECKPOINT_DIR), keep=1, best=False))

    try:
        if existing:  # refuse a changed experiment before spending time on data
            store, steps_store = open_stores()
            saved = store.saved_config() or steps_store.saved_config()
            problem = resume_mismatch(saved, config) if saved is not None else None
            if problem:
                raise ConfigError(f"cannot resume {workdir}: {problem}")

        if folder.is_folder(config.dataset):  # its images must fit before one is decoded
            _, _, counts = folder.survey(folder.folder_path(config.dataset))
            if problem := memory.check_stored_images(sum(counts.values()), config.store_size,
                                                     "lower --store-size or --train-per-class/--test-per-class"):
                raise ConfigError(problem)
        elif config.dataset != DEFAULT_DATASET and (known := stored_images(config.dataset, config.data_dir)):
            if problem := memory.check_stored_images(known[0], 0, "use --train-per-class/--test-per-class",
                                                     pixels=known[1]):
                raise ConfigError(problem)
        train, test, dataset = load_dataset(config)
        if folder.is_folder(config.dataset):
            print(f"Data: {folder.folder_path(config.dataset)}: {len(train)} training images from 'train', "
                  f"{len(test)} test images from {dataset.test_split!r}, {dataset.num_classes} classes, "
                  f"stored at {dataset.store_size}x{dataset.store_size}", file=err)
        started = True
        if store is None:  # a new run writes nothing before its data is there
            store, steps_store = open_stores()
        mesh = data_mesh() if jax.device_count() > 1 else None  # data parallel over every device
        train_d, test_d = DeviceData.put(train, mesh, dataset.stats), DeviceData.put(test, mesh, dataset.stats)
        dtype = compute_dtype(config)
        init_key, shuffle_key = seed_keys(config.seed)
        # Replicated before a restore: with several processes, orbax restores into the template's sharding.
        recipe = Recipe.of(config, len(train))
        model = build_model(config, dataset.num_classes)
        state = replicate(create_train_state(model, init_key, config.resize, config.lr, config.momentum,
                                             recipe.optimizer), mesh)

        history: list[dict] = []
        start, position = 0, None
        restored = _restore(store, steps_store, state) if existing else None
        if restored is not None:
            state, shuffle_key, history, start = (restored.state, restored.shuffle_key,
                                                  restored.history, restored.epoch)
            if restored.position is not None:  # stopped inside epoch `restored.epoch`
                position = EpochPosition.from_json(restored.position)
                start -= 1
                print(f"Resuming {workdir} at epoch {start + 1}, step {position.step}", file=err)
            else:
                print(f"Resuming {workdir} after epoch {start} of {config.epochs}", file=err)
            if start >= config.epochs:
                print(f"The run is already complete at epoch {start}; raise --epochs to continue it.",
                      file=err)
        shuffle_key = replicate(shuffle_key, mesh)  # its permutations feed steps on every device

        if primary:
            write_config(workdir, config, framework="jax", dataset=dataset)
        events = EventLog(workdir, enabled=primary, err=err)
        chunk = steps_per_call(config.steps_per_call, len(train) // config.batch_size, config.resize)
        with stop_requests() as stop:
            last_save = time.monotonic()
            step_id = int(jax.device_get(state.step))  # the global step, counted alike by every process
            for epoch in range(start + 1, config.epochs + 1):

                def after_step(where, state, metrics, last, done, epoch=epoch):
                    nonlocal last_save, step_id
                    warn_native_fallbacks(err)  # the step's program is traced by now
                    stopping = due = False
                    for _ in range(done):  # every process asks at every step id, alike
                        step_id += 1
                        stopping = stop.requested(step_id) or stopping
                        if not last:
                            due = stop.agree(config.checkpoint_minutes > 0 and time.monotonic() - last_save
                                             >= 60 * config.checkpoint_minutes, step_id) or due
                    if last:  # the epoch's own checkpoint follows, and acts on a stop
                        return
                    if not stopping and not due:
                        return
                    here = where()
                    steps_store.save(epoch, state, shuffle_key, history, config, position=here.to_json(),
                                     dataset=dataset)
                    last_save = time.monotonic()
                    if stop.signum is not None:
                        raise Preempted(stop.signum, f"in epoch {epoch} after step {here.step}; "
                                                     f"saved in {steps_store.directory}")

                bar = Progress(epoch, config.epochs, config.batch_size, err, enabled=progress)
                try:
                    state, result = train_epoch(state, train_d, shuffle_key, epoch, batch_size=config.batch_size,
                                                image_size=config.resize, dtype=dtype, on_step=bar, mesh=mesh,
                                                start=position, after_step=after_step, chunk=chunk,
                                                augment=recipe.augment, label_smoothing=config.label_smoothing)
                finally:
                    bar.close()  # also on a stop: the message that follows gets a clean line
                position = None
                t_eval = time.perf_counter()
                test_acc = None
                if epoch % config.eval_every == 0 or epoch == config.epochs:
                    preds = predict(state, test_d, config.resize, config.eval_batch_size, dtype, mesh,
                                    tta=config.tta == "flip")
                    test_acc = accuracy_percent(int((preds == test.labels).sum()), len(test))
                    warn_native_fallbacks(err)
                eval_s = time.perf_counter() - t_eval
                print_epoch(out, epoch, config.epochs, result.train_accuracy, test_acc)
                history.append(epoch_record(epoch, result.train_accuracy, test_acc, result.train_loss,
                                            result.seconds + eval_s, result.seconds, len(train),
                                            recipe.lr_at(epoch * recipe.steps_per_epoch - 1)))
                if primary:
                    write_outputs(workdir, history)
                events.epoch(history[-1])
                stopping = stop.signum is not None and epoch < config.epochs
                if epoch % config.save_every == 0 or epoch == config.epochs or stopping:
                    store.save(epoch, state, shuffle_key, history, config, dataset=dataset)
                    last_save = time.monotonic()
                    if steps_store.epochs():  # superseded by this epoch's checkpoint
                        store.wait()
                        steps_store.delete_all()
                if stopping:
                    raise Preempted(stop.signum, f"after epoch {epoch}; saved in {store.directory}")
        if primary:
            write_outputs(workdir, history)
        return RunResult(workdir, history, state)
    finally:
        for s in (steps_store, store, events):
            if s is not None:
                s.close()  # saves are complete before the process can exit
        if lock is not None:
            lock.release()
        if created and not started and primary:  # a failed start leaves nothing behind
            shutil.rmtree(workdir, ignore_errors=True)


def _restore(store: CheckpointStore, steps_store: CheckpointStore, template):
    """The newest of: the latest epoch checkpoint, and a step checkpoint inside the epoch after it."""
    restored = store.restore(template)
    latest_epoch = restored.epoch if restored is not None else 0
    if steps_store.epochs():
        inside = steps_store.restore(template)
        if inside is not None and inside.epoch == latest_epoch + 1:
            return inside
    return restored


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
        try:
            check_precision(config)
        except ConfigError as e:
            raise CheckpointError(str(e)) from None
        dataset = store.read_dataset_info(epoch)
        template = create_train_state(build_model(config, dataset.num_classes), seed_keys(config.seed)[0],
                                      config.resize, config.lr, config.momentum, Recipe.of(config, 1).optimizer)
        restored = store.restore(template, epoch, fallback=False)
        return dataclasses.replace(restored, dataset=dataset)
    finally:
        store.close()


def warn_native_fallbacks(err) -> None:
    if line := native_fallback_report():
        print(f"warning: {line}", file=err, flush=True)


def print_epoch(out, epoch: int, epochs: int, train_accuracy: float, test_accuracy: float | None) -> None:
    """The reference's three lines per epoch (the test line only for a scored epoch: --eval-every)."""
    print(f"Epoch {epoch}/{epochs}", file=out)
    print(f"Train Accuracy: {train_accuracy} %", file=out)
    if test_accuracy is not None:
        print(f"Test Accuracy: {test_accuracy} %", file=out)
    out.flush()


def epoch_record(epoch, train_accuracy, test_accuracy, train_loss, seconds, train_seconds, n_train,
                 learning_rate: float) -> dict:
    """One epoch of metrics.json (the same fields for the JAX run and the torch baseline);
    `test_accuracy` is None for an epoch --eval-every did not score, `learning_rate` the epoch's last step's."""
    return {
        "epoch": epoch,
        "train_accuracy": train_accuracy,
        "test_accuracy": test_accuracy,
        "train_loss": round(float(train_loss), 6),
        "learning_rate": float(f"{learning_rate:.6g}"),
        "seconds": round(seconds, 3),
        "train_seconds": round(train_seconds, 3),
        "train_images_per_s": round(n_train / train_seconds, 2),
    }


@dataclass(frozen=True)
class Recipe:
    """What a config's recipe flags make: the optimizer, its learning rate per step, the augmentation."""

    optimizer: object
    schedule: object  # a float or an optax schedule
    augment: Augment
    steps_per_epoch: int

    @classmethod
    def of(cls, config: TrainConfig, n_train: int) -> "Recipe":
        steps = math.ceil(n_train / config.batch_size)
        sched = dict(schedule=config.schedule, total_steps=config.epochs * steps,
                     warmup_steps=round(config.warmup_epochs * steps))
        return cls(make_optimizer(config.lr, config.momentum, weight_decay=config.weight_decay,
                                  nesterov=config.nesterov, **sched),
                   learning_rate_schedule(config.lr, **sched),
                   make_augment(config.augment, config.crop_padding, config.cutout_size), steps)

    def lr_at(self, step: int) -> float:
        return float(self.schedule(step)) if callable(self.schedule) else float(self.schedule)


def write_config(workdir: str, config: TrainConfig, framework: str, dataset: DatasetInfo | None = None) -> None:
    """config.json: every resolved flag, the framework, and the dataset's class names and statistics."""
    _write_json(os.path.join(workdir, "config.json"),
                {**config.to_dict(), "framework": framework, **({"dataset_info": dataset.to_json()} if dataset else {})})


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
