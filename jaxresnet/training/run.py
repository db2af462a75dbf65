"""A whole training run: data, model, epochs, printing, metrics, plots and checkpoints.

`train_run(config, workdir)` is what `scripts/train.py` calls; it runs a `Trainer`, whose methods
are the run's parts: open the workdir, load the data, restore or initialise the state, then epoch
by epoch train, evaluate and save. Step checkpoints inside an epoch (a stop request, or
--checkpoint-minutes) are a `StepSaver`'s job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import time
from collections.abc import Callable

import jax

from jaxresnet.config import ConfigError, TrainConfig, resume_mismatch
from jaxresnet.data import folder, load_dataset
from jaxresnet.data.augment import augment_at, augment_of
from jaxresnet.data.datasets import DEFAULT_DATASET, stored_images
from jaxresnet.data.resolution import resize_at
from jaxresnet.models.layers import native_fallback_report
from jaxresnet.training import memory
from jaxresnet.training.average import refresh_statistics
from jaxresnet.training.checkpoint import EpochCheckpoints, Snapshot, StepCheckpoint, continuation
from jaxresnet.training.events import EventLog
from jaxresnet.training.lock import Workdir
from jaxresnet.training.loop import (
    Call,
    DeviceData,
    EpochPosition,
    StepSpec,
    accuracy_percent,
    predict,
    prepare_programs,
    steps_per_call,
    train_epoch,
)
from jaxresnet.training.optimizer import learning_rate_at
from jaxresnet.training.outputs import RunResult, epoch_record, print_epoch, write_config, write_outputs
from jaxresnet.training.parallel import data_mesh, replicate
from jaxresnet.training.preemption import Preempted, stop_requests
from jaxresnet.training.progress import Progress
from jaxresnet.training.state import build_model, compute_dtype, fresh_run
from jaxresnet.training.steplog import StepLog

CHECKPOINT_DIR = "checkpoints"
STEP_CHECKPOINT_DIR = "checkpoints-step"  # the latest mid-epoch checkpoint (preemption, --checkpoint-minutes)


def train_run(
    config: TrainConfig, workdir: str, *, resume: bool = False, out=None, err=None, progress: bool | None = None
) -> RunResult:
    """Run (or continue) the experiment in `workdir`.

    An existing checkpoint in `workdir` is always continued, never silently overwritten; `resume=True`
    additionally insists that there is one. A step checkpoint newer than the last epoch checkpoint
    (a run stopped mid-epoch) is continued from its step. SIGTERM/SIGINT stop the run at the next
    step with a step checkpoint and raise `Preempted`. Raises ConfigError / DataError for bad input,
    WorkdirBusy when another run holds the workdir.
    """
    return Trainer(config, workdir, out=out, err=err, progress=progress).run(resume)


def has_checkpoints(workdir: str, folder: str = CHECKPOINT_DIR) -> bool:
    d = os.path.join(workdir, folder)
    return os.path.isdir(d) and any(name.isdigit() for name in os.listdir(d))


def check_precision(config: TrainConfig) -> None:
    """float64 needs JAX's 64-bit mode, which only the process's start may switch on (the CLI does)."""
    if config.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ConfigError(
            "--dtype float64 needs JAX's 64-bit mode: set JAX_ENABLE_X64=1 (scripts/train.py does it for you)"
        )


def warn_native_fallbacks(err) -> None:
    """The one line naming the convolution passes the native backend handed back to XLA, once."""
    if line := native_fallback_report():
        print(f"warning: {line}", file=err, flush=True)


class Trainer:
    """One run in one workdir (process 0 of several reports and writes the run's files)."""

    def __init__(self, config: TrainConfig, workdir: str, *, out=None, err=None, progress: bool | None = None):
        self.config, self.workdir, self.progress = config.validate(), workdir, progress
        check_precision(config)
        self.primary = jax.process_index() == 0
        quiet = None if self.primary else open(os.devnull, "w")  # multi-host: one process reports
        self.out, self.err = quiet or out or sys.stdout, quiet or err or sys.stderr
        self.history: list[dict] = []

    def run(self, resume: bool = False) -> RunResult:
        existing = has_checkpoints(self.workdir) or has_checkpoints(self.workdir, STEP_CHECKPOINT_DIR)
        if resume and not existing:
            raise ConfigError(f"--resume: no checkpoint to resume in {os.path.join(self.workdir, CHECKPOINT_DIR)}")
        with Workdir(self.workdir, lock=self.primary) as workdir, contextlib.ExitStack() as closing:
            if existing:  # refuse a changed experiment before spending time on data
                self._open_checkpoints(closing)
                self._refuse_another_experiment()
            self._check_data_fits()
            train, test, self.dataset = load_dataset(self.config)
            self._say_which_data(train, test)
            workdir.started()  # a new run writes nothing before its data is there
            if not existing:
                self._open_checkpoints(closing)
            self._start(train, test, restore=existing)
            self.events = closing.enter_context(contextlib.closing(EventLog(self.workdir, self.primary, self.err)))
            self.log = closing.enter_context(contextlib.closing(StepLog()))
            with stop_requests() as self.stop:
                self.saver = StepSaver(
                    self.step_checkpoint,
                    self.stop,
                    self.config.checkpoint_minutes,
                    int(jax.device_get(self.state.step)),
                    self._snapshot,
                    self.log,
                )
                for epoch in range(self.start_epoch + 1, self.config.epochs + 1):
                    self._epoch(epoch)
                # Still catching signals: one that comes while the last checkpoint is written is
                # ignored, and the run ends complete.
                self.checkpoints.wait()
                if self.primary:
                    write_outputs(self.workdir, self.history)
            return RunResult(self.workdir, self.history, self.state)

    # -- the start -------------------------------------------------------------------------------------
    def _open_checkpoints(self, closing: contextlib.ExitStack) -> None:
        # closed (their saves complete) before the workdir is released, however the run ends
        self.checkpoints = closing.enter_context(
            contextlib.closing(EpochCheckpoints(os.path.join(self.workdir, CHECKPOINT_DIR), keep=self.config.keep))
        )
        self.step_checkpoint = closing.enter_context(
            contextlib.closing(StepCheckpoint(os.path.join(self.workdir, STEP_CHECKPOINT_DIR)))
        )

    def _refuse_another_experiment(self) -> None:
        saved = self.checkpoints.saved_config() or self.step_checkpoint.saved_config()
        if saved is not None and (problem := resume_mismatch(saved, self.config)):
            raise ConfigError(f"cannot resume {self.workdir}: {problem}")

    def _check_data_fits(self) -> None:
        """Images that cannot fit in memory are refused before one is decoded."""
        config = self.config
        if folder.is_folder(config.dataset):
            _, _, counts = folder.survey(folder.folder_path(config.dataset))
            problem = memory.check_stored_images(
                sum(counts.values()), config.store_size, "lower --store-size or --train-per-class/--test-per-class"
            )
        elif config.dataset != DEFAULT_DATASET and (known := stored_images(config.dataset, config.data_dir)):
            problem = memory.check_stored_images(known[0], 0, "use --train-per-class/--test-per-class", pixels=known[1])
        else:
            problem = None
        if problem:
            raise ConfigError(problem)

    def _say_which_data(self, train, test) -> None:
        if folder.is_folder(self.config.dataset):
            info = self.dataset
            print(
                f"Data: {folder.folder_path(self.config.dataset)}: {len(train)} training images from 'train', "
                f"{len(test)} test images from {info.test_split!r}, {info.num_classes} classes, "
                f"stored at {info.store_size}x{info.store_size}",
                file=self.err,
            )

    def _start(self, train, test, restore: bool) -> None:
        """The data on the devices, the steps' specs, and the state: fresh, or where the run stopped."""
        config, stats = self.config, self.dataset.stats
        self.mesh = data_mesh() if jax.device_count() > 1 else None  # data parallel over every device
        self.train_data, self.test_data = (
            DeviceData.put(train, self.mesh, stats),
            DeviceData.put(test, self.mesh, stats),
        )
        self.test_labels = test.labels
        self.steps_per_epoch = -(-len(train) // config.batch_size)
        chunk = steps_per_call(config.steps_per_call, len(train) // config.batch_size, config.resize)
        self.spec = StepSpec(
            config.batch_size,
            config.resize,
            compute_dtype(config),
            self.mesh,
            augment_of(config),
            config.label_smoothing,
            stats,
            steps=chunk,
            ema=config.ema,
        )
        self.eval_spec = self.spec.for_eval(config.eval_batch_size, tta=config.tta)
        self.model = build_model(config, self.dataset.num_classes)
        self.average_spec = self.spec.for_eval(config.batch_size)  # --ema: its statistics' passes
        # Replicated before a restore: with several processes, orbax restores into the template's sharding.
        state, self.shuffle_key = fresh_run(config, self.dataset.num_classes, len(train))
        self.state, self.start_epoch, self.position = replicate(state, self.mesh), 0, None
        saved = continuation(self.checkpoints, self.step_checkpoint, self.state) if restore else None
        if saved is not None:
            self._resume_from(saved)
        self.shuffle_key = replicate(self.shuffle_key, self.mesh)  # its permutations feed steps on every device
        self.prepared = None  # the training spec whose programs were last prepared
        self._prepare(self.start_epoch + 1, self.position.step if self.position else 0)
        warn_native_fallbacks(self.err)  # the first program is traced: what the native backend refused of it
        if self.primary:
            write_config(self.workdir, config, framework="jax", dataset=self.dataset)

    def _train_spec(self, epoch: int) -> StepSpec:
        """The training steps' spec in `epoch`: at its side under --resize-schedule (and that side's
        steps per call) and with its augmentation under --refine, else `self.spec`."""
        side, augment = resize_at(self.config, epoch), augment_at(self.config, epoch)
        if side == self.spec.image_size and augment == self.spec.augment:
            return self.spec
        chunk = steps_per_call(self.config.steps_per_call, len(self.train_data) // self.config.batch_size, side)
        return dataclasses.replace(self.spec, image_size=side, steps=chunk, augment=augment)

    def _prepare(self, epoch: int, first_step: int = 0) -> None:
        """Have `epoch`'s training programs (and scoring's) prepared: at the start, and where
        --resize-schedule changes the side."""
        spec = self._train_spec(epoch)
        if spec != self.prepared:
            prepare_programs(
                self.state, self.shuffle_key, self.train_data, self.test_data, spec, self.eval_spec, first_step
            )
            self.prepared = spec

    def _resume_from(self, saved) -> None:
        self.state, self.shuffle_key, self.history, self.start_epoch = (
            saved.state,
            saved.shuffle_key,
            saved.history,
            saved.epoch,
        )
        if saved.position is not None:  # stopped inside epoch `saved.epoch`
            self.position = EpochPosition.from_json(saved.position)
            self.start_epoch -= 1
            print(f"Resuming {self.workdir} at epoch {saved.epoch}, step {self.position.step}", file=self.err)
        else:
            print(f"Resuming {self.workdir} after epoch {saved.epoch} of {self.config.epochs}", file=self.err)
        if self.start_epoch >= self.config.epochs:
            print(
                f"The run is already complete at epoch {self.start_epoch}; raise --epochs to continue it.",
                file=self.err,
            )

    # -- an epoch --------------------------------------------------------------------------------------
    def _epoch(self, epoch: int) -> None:
        """Train, score, report and save one epoch. A stop request, in any epoch, the last included,
        ends the run with a checkpoint: a step checkpoint while it trains or scores, else the epoch's."""
        config = self.config
        result = self._train(epoch)
        t_eval = time.perf_counter()
        scored = epoch % config.eval_every == 0 or epoch == config.epochs
        test_accuracy = self._evaluate(epoch, result) if scored else None
        eval_s = time.perf_counter() - t_eval
        print_epoch(self.out, epoch, config.epochs, result.train_accuracy, test_accuracy)
        lr = learning_rate_at(config, self.steps_per_epoch, epoch * self.steps_per_epoch - 1)
        self.history.append(
            epoch_record(
                epoch,
                result.train_accuracy,
                test_accuracy,
                result.train_loss,
                result.seconds + eval_s,
                result.seconds,
                len(self.train_data),
                lr,
            )
        )
        if self.primary:
            write_outputs(self.workdir, self.history)
        self.events.epoch(self.history[-1])
        if peak := (jax.local_devices()[0].memory_stats() or {}).get("peak_bytes_in_use"):  # accelerators
            self.log("device-peak-bytes", epoch, peak)
        stopping = self.stop.signum is not None
        saving = epoch % config.save_every == 0 or epoch == config.epochs or stopping
        if saving:
            self.log("save", epoch)
            self.checkpoints.save(epoch, self._snapshot(self.state))
            self.log("saved", epoch)
            self.saver.saved()
            if self.step_checkpoint.epochs():  # superseded by this epoch's checkpoint
                self.checkpoints.wait()
                self.step_checkpoint.delete()
        # A stop that came while the checkpoint was saved ends the run here too, but not once the last
        # epoch's is written: that run is complete.
        if stopping or (saving and epoch < config.epochs and self.stop.signum is not None):
            raise Preempted(self.stop.signum, f"after epoch {epoch}; saved in {self.checkpoints.directory}")

    def _train(self, epoch: int):
        bar = Progress(epoch, self.config.epochs, self.config.batch_size, self.err, enabled=self.progress)
        self._prepare(epoch)
        try:
            self.state, result = train_epoch(
                self.state,
                self.train_data,
                self.shuffle_key,
                epoch,
                self.prepared,
                start=self.position,
                on_call=lambda call: self._after_call(call, bar),
            )
        finally:
            bar.close()  # also on a stop: the message that follows gets a clean line
        self.position = None
        return result

    def _after_call(self, call: Call, bar: Progress) -> None:
        warn_native_fallbacks(self.err)  # the step's program is traced by now
        self.log("train", call.epoch, call.step)
        bar(call)
        self.saver(call)

    def _evaluate(self, epoch: int, result) -> float:
        # --ema: the average is scored, and checkpointed, with statistics of its own
        self.state = refresh_statistics(self.state, self.model, self.train_data, self.average_spec)
        preds = predict(self.state, self.test_data, self.eval_spec, functools.partial(self._after_batch, epoch, result))
        return accuracy_percent(int((preds == self.test_labels).sum()), len(self.test_labels))

    def _after_batch(self, epoch: int, result, done: int, batches: int) -> None:
        warn_native_fallbacks(self.err)
        self.log("eval", epoch, done)
        # A stop while the epoch is scored: its training is done, so the step checkpoint is at its end,
        # and the rerun scores it. (Several processes agree on stops at training steps only.)
        if self.stop.signum is not None:
            self.saver.stop_at(epoch, self.state, result.end, "while scoring it")

    def _snapshot(self, state) -> Snapshot:
        return Snapshot(state, self.shuffle_key, self.history, self.config, self.dataset)


class StepSaver:
    """After every training call: count the global steps (alike in every process), and write a step
    checkpoint where a stop was requested (then raise `Preempted`) or --checkpoint-minutes fell due."""

    def __init__(
        self,
        store: StepCheckpoint,
        stop,
        minutes: float,
        step_id: int,
        snapshot: Callable[[object], Snapshot],
        log: StepLog,
    ):
        self.store, self.stop, self.minutes, self.step_id = store, stop, minutes, step_id
        self.snapshot, self.log = snapshot, log
        self.last_save = time.monotonic()

    def saved(self) -> None:
        """A checkpoint was written (an epoch's counts): the next timed one is due `minutes` from now."""
        self.last_save = time.monotonic()

    def __call__(self, call: Call) -> None:
        stopping = due = False
        for _ in range(call.done):  # every process asks at every step id, alike
            self.step_id += 1
            stopping = self.stop.requested(self.step_id) or stopping
            if not call.last:
                wanted = self.minutes > 0 and time.monotonic() - self.last_save >= 60 * self.minutes
                due = self.stop.agree(wanted, self.step_id) or due
        if call.last or not (stopping or due):  # the epoch's own checkpoint follows, and acts on a stop
            return
        if self.stop.signum is not None:
            self.stop_at(call.epoch, call.state, call.position(), f"after step {call.step}")
        self._save(call.epoch, call.state, call.position())

    def stop_at(self, epoch: int, state, position: EpochPosition, where: str) -> None:
        """Save a step checkpoint at `position` and end the run there (raises `Preempted`)."""
        self._save(epoch, state, position)
        raise Preempted(self.stop.signum, f"in epoch {epoch} {where}; saved in {self.store.directory}")

    def _save(self, epoch: int, state, position: EpochPosition) -> None:
        self.store.save(epoch, self.snapshot(state), position.to_json())
        self.log("step-saved", epoch, position.step)
        self.saved()
