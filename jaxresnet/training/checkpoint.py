"""Checkpoints with orbax: `EpochCheckpoints` (one per saved epoch, the latest `keep` plus the best
by test accuracy) and `StepCheckpoint` (the latest one inside an epoch: a stop request, or
--checkpoint-minutes), on a shared base; `continuation` says where a run continues.

A checkpoint holds everything a run needs to continue bit for bit: params, batch_stats, optimizer
state, step and epoch, the PRNG key (as key data), the metrics history and the configuration
(a `Snapshot`); a step checkpoint also its place in the epoch. Saves are asynchronous (the next
epoch trains while the last one is written) and always finished before `close()` returns. Orbax
writes into a temporary folder and renames it when complete, so a process killed mid-save leaves
the previous checkpoints intact; the leftover temporary folder is removed the next time the store
is opened.

    epochs = EpochCheckpoints("runs/x/checkpoints")
    epochs.save(epoch, Snapshot(state, shuffle_key, history, config))
    saved = epochs.restore(template_state)          # latest complete checkpoint, or None
    epochs.close()
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from jaxresnet.checksums import crc32
from jaxresnet.config import TrainConfig
from jaxresnet.data.datasets import DatasetInfo
from jaxresnet.training.state import TrainState


class CheckpointError(RuntimeError):
    """No usable checkpoint where one was expected."""


@dataclass
class Snapshot:
    """What a checkpoint saves besides its number: the state and the run's own record."""

    state: TrainState
    shuffle_key: jax.Array
    history: list[dict]
    config: TrainConfig
    dataset: DatasetInfo | None = None  # the dataset's class names and statistics (None: CIFAR-10)


@dataclass
class Saved:
    """A restored checkpoint: where the run stood, and everything it needs to go on from there."""

    epoch: int  # epochs finished; for a step checkpoint, the epoch it stopped inside
    state: TrainState
    shuffle_key: jax.Array
    history: list[dict]
    config: TrainConfig
    position: dict | None = None  # a step checkpoint's place in its epoch (`loop.EpochPosition`)
    dataset: DatasetInfo | None = None  # filled in by load_checkpoint


def _test_accuracy(metrics) -> float:
    value = metrics.get("test_accuracy") if metrics else None
    return -1.0 if value is None else float(value)  # an epoch --eval-every did not score is never the best


class _Checkpoints:
    """An orbax checkpoint folder with manifests, damage handling and reads; the kinds below say
    how their checkpoints are numbered and which are kept."""

    def __init__(self, directory: str, policy, *, read_only: bool = False):
        self.directory = os.path.abspath(directory)
        self._quarantine = self.directory + "-damaged"
        self._read_only = read_only
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy,
            cleanup_tmp_directories=not read_only,  # removes what a killed save left behind
            create=not read_only,
            read_only=read_only,
            enable_async_checkpointing=True,
            save_interval_steps=0 if read_only else 1,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "history", "config", "position")
        )
        # Orbax removes a killed save's temporary folders in a background thread; wait for it, so the
        # cleanup is done before anything is restored and cannot race the interpreter's exit.
        wait_cleanup = getattr(self._manager, "_maybe_await_cleanup_tmp_directory", None)
        if wait_cleanup is not None:
            wait_cleanup()

    def _save(
        self, number: int, epoch: int, snap: Snapshot, position: dict | None = None, metrics: dict | None = None
    ) -> float:
        """Start saving checkpoint `number`; returns the seconds the call blocked (the write goes on behind)."""
        t0 = time.perf_counter()
        self._manager.wait_until_finished()  # normally long done: the last save had a whole epoch
        self._seal()
        items = dict(
            state=ocp.args.StandardSave(_state_tree(snap.state, snap.shuffle_key, epoch)),
            history=ocp.args.JsonSave({"epochs": snap.history}),
            # the dataset's class names and statistics ride with the config (absent: CIFAR-10)
            config=ocp.args.JsonSave(
                {**snap.config.to_dict(), **({"dataset_info": snap.dataset.to_json()} if snap.dataset else {})}
            ),
        )
        if position is not None:
            items["position"] = ocp.args.JsonSave(position)
        self._manager.save(number, args=ocp.args.Composite(**items), metrics=metrics)
        return time.perf_counter() - t0

    def wait(self) -> None:
        self._manager.wait_until_finished()
        self._seal()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._seal()
        self._manager.close()

    # -- integrity ----------------------------------------------------------------------------------
    # Orbax finds a truncated or missing file only while reading arrays, from background tasks that
    # then flood stderr. Each finished checkpoint gets a manifest of its files' sizes and CRC32s, so
    # damage is found first, and named.
    def _seal(self) -> None:
        if self._read_only or jax.process_index() != 0:  # one process writes the run's files
            return
        for step in self.epochs():
            folder = os.path.join(self.directory, str(step))
            manifest = os.path.join(folder, MANIFEST)
            if not os.path.exists(manifest):
                _write_manifest(folder, manifest)

    def verify(self, step: int) -> None:
        """Raise CheckpointError naming the first file that is missing, truncated or altered."""
        folder = os.path.join(self.directory, str(step))
        manifest = os.path.join(folder, MANIFEST)
        if not os.path.exists(manifest):
            return  # saved by a process killed before it sealed it: orbax's own checks apply
        with open(manifest) as f:
            expected = json.load(f)
        for rel, (size, crc) in expected.items():
            path = os.path.join(folder, rel)
            if not os.path.isfile(path):
                raise CheckpointError(f"checkpoint {folder} is damaged: {rel} is missing")
            actual = os.path.getsize(path)
            if actual != size:
                raise CheckpointError(f"checkpoint {folder} is damaged: {rel} has {actual} bytes, {size} were saved")
            if crc32(path) != crc:
                raise CheckpointError(f"checkpoint {folder} is damaged: {rel} has changed since it was saved")

    # -- restoring ----------------------------------------------------------------------------------
    def epochs(self) -> list[int]:
        """The numbers of the saved checkpoints (epochs, or global steps for a step checkpoint)."""
        return sorted(self._manager.all_steps())

    def read_history(self, epoch: int) -> list[dict]:
        out = self._manager.restore(epoch, args=ocp.args.Composite(history=ocp.args.JsonRestore()))
        return list(out["history"]["epochs"])

    def read_config(self, epoch: int) -> TrainConfig:
        out = self._manager.restore(epoch, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        return TrainConfig.from_dict(dict(out["config"]))

    def read_dataset_info(self, epoch: int) -> DatasetInfo:
        out = self._manager.restore(epoch, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
        return DatasetInfo.from_json(dict(out["config"]).get("dataset_info"))

    def saved_config(self) -> TrainConfig | None:
        """The configuration of the newest checkpoint whose configuration is readable."""
        for step in reversed(self.epochs()):
            try:
                return self.read_config(step)
            except Exception:  # a damaged checkpoint: restore() reports it; an older one still tells
                continue
        return None

    def restore(self, template: TrainState, epoch: int | None = None, *, fallback: bool = True) -> Saved | None:
        """Restore `epoch` (default: the latest). None if there is no checkpoint at all.

        A damaged checkpoint (a file truncated or removed) raises CheckpointError naming it; with
        `fallback` (and no explicit epoch) the previous one is tried instead, with a warning. Once an
        older one restores, the damaged newer ones are moved aside to `<dir>-damaged/` (never
        deleted) so the run can save those epochs again.
        """
        saved = self.epochs()
        if epoch is not None and epoch not in saved:
            raise CheckpointError(
                f"no checkpoint for epoch {epoch} in {self.directory} (saved: {', '.join(map(str, saved)) or 'none'})"
            )
        candidates = saved if epoch is None else [epoch]
        damaged = []
        for step in reversed(candidates):
            try:
                self.verify(step)
                restored = self._restore_step(template, step)
            except Exception as e:  # orbax/tensorstore raise many types for damaged files
                where = os.path.join(self.directory, str(step))
                message = (
                    str(e) if isinstance(e, CheckpointError) else f"checkpoint {where} is damaged: {_first_line(e)}"
                )
                if not fallback or epoch is not None:
                    raise CheckpointError(message) from e
                print(f"warning: {message}; trying the previous one", file=sys.stderr)
                damaged.append(step)
                continue
            for step_bad in damaged:
                moved = self._move_aside(step_bad)
                print(f"warning: moved damaged checkpoint {step_bad} to {moved}", file=sys.stderr)
            return restored
        if candidates:
            raise CheckpointError(
                f"no complete checkpoint left in {self.directory} (damaged: {', '.join(map(str, damaged))})"
            )
        return None

    _has_position = False

    def _restore_step(self, template: TrainState, step: int) -> Saved:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _state_tree(template, jax.random.key(0), 0))
        items = dict(
            state=ocp.args.StandardRestore(abstract), history=ocp.args.JsonRestore(), config=ocp.args.JsonRestore()
        )
        if self._has_position:
            items["position"] = ocp.args.JsonRestore()
        out = self._manager.restore(step, args=ocp.args.Composite(**items))
        tree = out["state"]
        state = template.replace(
            params=tree["params"],
            batch_stats=tree["batch_stats"],
            opt_state=tree["opt_state"],
            step=tree["step"],
            ema=tree.get("ema"),
        )
        return Saved(
            epoch=int(tree["epoch"]),
            state=state,
            shuffle_key=jax.random.wrap_key_data(tree["rng"]),
            history=list(out["history"]["epochs"]),
            config=TrainConfig.from_dict(dict(out["config"])),
            position=dict(out["position"]) if self._has_position else None,
        )

    def _move_aside(self, step: int) -> str:
        os.makedirs(self._quarantine, exist_ok=True)
        dest = os.path.join(self._quarantine, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(os.path.join(self.directory, str(step)), dest)
        self._manager.reload()
        return dest


class EpochCheckpoints(_Checkpoints):
    """One checkpoint per saved epoch, numbered by it: the latest `keep` plus the best by test accuracy."""

    def __init__(self, directory: str, keep: int = 3, *, read_only: bool = False):
        policy = pp.AnyPreservationPolicy([pp.LatestN(n=keep), pp.BestN(get_metric_fn=_test_accuracy, n=1)])
        super().__init__(directory, policy, read_only=read_only)

    def save(self, epoch: int, snap: Snapshot) -> float:
        """Start saving finished epoch `epoch`; returns the seconds the call blocked."""
        return self._save(epoch, epoch, snap, metrics={"test_accuracy": snap.history[-1]["test_accuracy"]})

    def latest_epoch(self) -> int | None:
        steps = self.epochs()
        return steps[-1] if steps else None

    def best_epoch(self) -> int | None:
        """The saved epoch with the highest test accuracy (the latest of equals)."""
        steps = self.epochs()
        if not steps:
            return None
        history = self.read_history(steps[-1])
        acc = {h["epoch"]: h["test_accuracy"] for h in history if h["test_accuracy"] is not None}
        return max(steps, key=lambda s: (acc.get(s, -1.0), s))


class StepCheckpoint(_Checkpoints):
    """The latest checkpoint inside an epoch, numbered by the global step: the state, and where in
    the epoch it stood (the steps done and the epoch's running metrics). An epoch checkpoint after
    it supersedes it (`delete`)."""

    _has_position = True

    def __init__(self, directory: str, *, read_only: bool = False):
        super().__init__(directory, pp.LatestN(n=1), read_only=read_only)

    def save(self, epoch: int, snap: Snapshot, position: dict) -> float:
        """Start saving the place `position` inside epoch `epoch` (in progress)."""
        return self._save(int(jax.device_get(snap.state.step)), epoch, snap, position)

    def delete(self) -> None:
        """Remove it (after the saves under way are done)."""
        self._manager.wait_until_finished()
        for step in self.epochs():
            self._manager.delete(step)


def continuation(epochs: EpochCheckpoints, steps: StepCheckpoint, template: TrainState) -> Saved | None:
    """Where a run continues: the latest epoch checkpoint, or a step checkpoint inside the epoch after it."""
    restored = epochs.restore(template)
    latest_epoch = restored.epoch if restored is not None else 0
    if steps.epochs():
        inside = steps.restore(template)
        if inside is not None and inside.epoch == latest_epoch + 1:
            return inside
    return restored


def load_checkpoint(workdir: str, which: str | int = "latest", folder: str = "checkpoints") -> Saved:
    """A saved run's state without training: `which` is "latest", "best" or an epoch number.
    Read-only: a damaged checkpoint raises CheckpointError naming it."""
    from jaxresnet.training.state import new_state

    store = EpochCheckpoints(os.path.join(workdir, folder), read_only=True)
    try:
        epoch = {"latest": store.latest_epoch, "best": store.best_epoch}.get(str(which), lambda: int(which))()
        if epoch is None or epoch not in store.epochs():
            raise CheckpointError(
                f"no checkpoint for epoch {which} in {store.directory} "
                f"(saved: {', '.join(map(str, store.epochs())) or 'none'})"
            )
        try:
            config = store.read_config(epoch)
        except Exception as e:
            raise CheckpointError(
                f"checkpoint {os.path.join(store.directory, str(epoch))} is damaged: {type(e).__name__}"
            ) from e
        if config.dtype == "float64" and not jax.config.jax_enable_x64:
            raise CheckpointError(
                "--dtype float64 needs JAX's 64-bit mode: set JAX_ENABLE_X64=1 (scripts/train.py does it for you)"
            )
        dataset = store.read_dataset_info(epoch)
        template = new_state(config, dataset.num_classes, dataset.train_size)
        restored = store.restore(template, epoch, fallback=False)
        return dataclasses.replace(restored, dataset=dataset)
    finally:
        store.close()


MANIFEST = "jaxresnet_manifest.json"


def _write_manifest(folder: str, manifest: str) -> None:
    entries = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder)
            if rel != MANIFEST:
                entries[rel] = (os.path.getsize(path), crc32(path))
    tmp = manifest + ".tmp"
    with open(tmp, "w") as f:
        json.dump(entries, f, indent=0, sort_keys=True)
    os.replace(tmp, manifest)


def _state_tree(state: TrainState, shuffle_key: jax.Array, epoch: int) -> dict:
    # The small values go where the parameters are (replicated over the mesh with several devices or
    # processes), so every process saves and restores the same global arrays.
    where = jax.tree.leaves(state.params)[0].sharding
    tree = {
        "params": state.params,
        "batch_stats": state.batch_stats,
        "opt_state": state.opt_state,
        "step": _placed(state.step, where, np.int32),
        "epoch": _placed(epoch, where, np.int32),
        "rng": _placed(jax.random.key_data(shuffle_key), where, np.uint32),
    }
    if state.ema is not None:  # --ema: the moving average goes on from where it was
        tree["ema"] = state.ema
    return tree


def _placed(value, sharding, dtype) -> jax.Array:
    if isinstance(value, jax.Array) and value.sharding == sharding and value.dtype == dtype:
        return value
    host = np.asarray(value, dtype)  # the same on every process
    return jax.make_array_from_callback(host.shape, sharding, lambda i: host[i])


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300]}" if text else type(e).__name__
