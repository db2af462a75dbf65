"""The jitted train and eval steps and the epoch loop over a dataset resident on the device.

One epoch makes no host round trip per step: the dataset lives on the device, the batch is cut out
of a device-side permutation inside the step, the state is donated, and the running metrics are
accumulated on the device and read once at the end of the epoch.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from jaxresnet.data import CIFAR10, Split, preprocess
from jaxresnet.data.augment import Augment, augment_resized, augment_source, epoch_key, step_key
from jaxresnet.training.parallel import batch_sharding, constrain, replicate, replicated
from jaxresnet.training.state import TrainState, cross_entropy

NO_BAD_STEP = np.iinfo(np.int32).max
NO_AUGMENT = Augment()


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


def epoch_permutation(shuffle_key: jax.Array, epoch: int, n: int) -> jax.Array:
    """The order of the training examples in `epoch` (1-based): a fresh shuffle per epoch from the seed.

    A function of (key, epoch) alone, so a resumed run replays the same order.
    """
    return jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n)


def zero_metrics() -> dict:
    return {
        "loss_sum": jnp.zeros((), jnp.float32),
        "correct": jnp.zeros((), jnp.int32),
        "count": jnp.zeros((), jnp.int32),
        "bad_step": jnp.full((), NO_BAD_STEP, jnp.int32),
    }


def _step(state: TrainState, metrics: dict, images, labels, perm, start, step, aug_key=None,
          *, batch_size: int, image_size: int, dtype=jnp.float32, sharding=None, augment: Augment = NO_AUGMENT,
          label_smoothing: float = 0.0, stats=CIFAR10.stats):
    """One SGD step on the batch perm[start:start+batch_size]; metrics are running sums."""
    idx = constrain(jax.lax.dynamic_slice_in_dim(perm, start, batch_size), sharding)
    raw = images[idx]
    if augment:  # draws from (seed, epoch, step): `aug_key` is the epoch's, `step` its step
        key = step_key(aug_key, step)
        raw = augment_source(raw, key, augment)
    x = preprocess(raw, image_size, dtype, stats)
    if augment:
        x = augment_resized(x, key, augment, images.shape[1])
    x = constrain(x, sharding)
    y = labels[idx]

    def loss_fn(params):
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats}, x, train=True, mutable=["batch_stats"]
        )
        return cross_entropy(logits, y, label_smoothing), (logits, updates["batch_stats"])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    metrics = {
        # kept in the running sums' own dtypes (a float64 run's loss would promote them; a scan's carry
        # must keep its type)
        "loss_sum": (metrics["loss_sum"] + loss * batch_size).astype(metrics["loss_sum"].dtype),
        "correct": (metrics["correct"] + jnp.sum(jnp.argmax(logits, -1) == y)).astype(metrics["correct"].dtype),
        "count": metrics["count"] + batch_size,
        "bad_step": jnp.where(jnp.isfinite(loss), metrics["bad_step"], jnp.minimum(metrics["bad_step"], step)),
    }
    return state, metrics


STEP_STATICS = ("batch_size", "image_size", "dtype", "sharding", "augment", "label_smoothing", "stats")


@functools.partial(jax.jit, static_argnames=STEP_STATICS, donate_argnums=(0, 1))
def train_step(state: TrainState, metrics: dict, images, labels, perm, start, step, aug_key=None,
               *, batch_size: int, image_size: int, dtype=jnp.float32, sharding=None, augment: Augment = NO_AUGMENT,
               label_smoothing: float = 0.0, stats=CIFAR10.stats):
    """One SGD step on the batch perm[start:start+batch_size]; metrics are running sums."""
    return _step(state, metrics, images, labels, perm, start, step, aug_key, batch_size=batch_size,
                 image_size=image_size, dtype=dtype, sharding=sharding, augment=augment,
                 label_smoothing=label_smoothing, stats=stats)


@functools.partial(jax.jit, static_argnames=("count",) + STEP_STATICS, donate_argnums=(0, 1))
def train_steps(state: TrainState, metrics: dict, images, labels, perm, first_step, aug_key=None,
                *, count: int, batch_size: int, image_size: int, dtype=jnp.float32, sharding=None,
                augment: Augment = NO_AUGMENT, label_smoothing: float = 0.0, stats=CIFAR10.stats):
    """`count` full steps from step `first_step` in one call: a `lax.scan` of `train_step`'s body,
    so the host dispatches once per `count` steps (what launch-bound accelerators need)."""
    def body(carry, i):
        step = first_step + i
        return _step(*carry, images, labels, perm, step * batch_size, step, aug_key, batch_size=batch_size,
                     image_size=image_size, dtype=dtype, sharding=sharding, augment=augment,
                     label_smoothing=label_smoothing, stats=stats), None

    (state, metrics), _ = jax.lax.scan(body, (state, metrics), jnp.arange(count, dtype=jnp.int32))
    return state, metrics


@functools.partial(jax.jit, static_argnames=("image_size", "dtype", "sharding", "tta", "stats"))
def predict_step(state: TrainState, images, idx, *, image_size: int, dtype=jnp.float32, sharding=None,
                 tta: bool = False, stats=CIFAR10.stats):
    idx = constrain(idx, sharding)
    x = constrain(preprocess(images[idx], image_size, dtype, stats), sharding)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    logits = state.apply_fn(variables, x, train=False)
    if tta:  # test-time augmentation: the logits averaged with the mirrored image's
        logits = (logits + state.apply_fn(variables, x[:, :, ::-1], train=False)) / 2
    # Gathered on every device: with several processes, each reads the whole batch's predictions.
    return constrain(jnp.argmax(logits, -1).astype(jnp.int32), replicated(sharding))


@dataclass
class DeviceData:
    """A split resident on the device: uint8 images and int32 labels, and the (mean, std) its images
    are normalised with (the dataset's: CIFAR-10's by default)."""

    images: jax.Array
    labels: jax.Array
    stats: tuple = CIFAR10.stats

    @classmethod
    def put(cls, split: Split, mesh: Mesh | None = None, stats: tuple = CIFAR10.stats) -> "DeviceData":
        if mesh is None:
            return cls(jax.device_put(split.images), jax.device_put(split.labels), stats)
        return cls(*replicate((np.asarray(split.images), np.asarray(split.labels)), mesh), stats)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def predict(state: TrainState, data: DeviceData, image_size: int, batch_size: int = 500,
            dtype=jnp.float32, mesh: Mesh | None = None, tta: bool = False) -> np.ndarray:
    """Predicted class of every example: the last batch is padded, and the padding dropped."""
    n = len(data)
    batch_size = min(batch_size, n)
    sharding = batch_sharding(mesh, batch_size)
    preds = []
    for start in range(0, n, batch_size):
        idx = np.arange(start, start + batch_size) % n  # pad the remainder by wrapping around
        preds.append(predict_step(state, data.images, jnp.asarray(idx, jnp.int32),
                                  image_size=image_size, dtype=dtype, sharding=sharding, tta=tta,
                                  stats=data.stats))
    return np.concatenate(jax.device_get(preds))[:n]


def accuracy_percent(correct: int, total: int) -> float:
    return round(100.0 * correct / total, 2)


@dataclass
class EpochResult:
    train_accuracy: float
    train_loss: float
    seconds: float
    steps: int


@dataclass
class EpochPosition:
    """Where an interrupted epoch stands: steps done, its running metrics (host values), seconds spent."""

    step: int
    metrics: dict
    seconds: float

    def to_json(self) -> dict:
        return {"step": self.step, "seconds": self.seconds,
                **{k: v.item() if hasattr(v, "item") else v for k, v in self.metrics.items()}}

    @classmethod
    def from_json(cls, d: dict) -> "EpochPosition":
        return cls(int(d["step"]), {k: d[k] for k in zero_metrics()}, float(d["seconds"]))


CPU_SCAN_MAX_RESIZE = 64


def steps_per_call(requested: int, full_steps: int, resize: int = 128) -> int:
    """How many steps one call runs: `requested`, or for 0 (auto) the largest divisor of the epoch's
    full steps up to 16 (so every call runs the same program), except on CPU above --resize 64, where
    one step per call is as fast (measured, BENCHMARKS.md: 17.7 against 19.5 and 18.2 images/s at
    --resize 128, within noise, while at --resize 32 a scan of 8 runs 141 against 112) and keeps the
    reference run's programs exactly as they were."""
    if requested > 0:
        return max(1, min(requested, full_steps))
    if jax.default_backend() == "cpu" and resize > CPU_SCAN_MAX_RESIZE:
        return 1
    return max([k for k in range(1, 17) if full_steps % k == 0] or [1])


def train_epoch(state: TrainState, data: DeviceData, shuffle_key, epoch: int, *, batch_size: int,
                image_size: int, dtype=jnp.float32, on_step: Callable | None = None, mesh: Mesh | None = None,
                start: EpochPosition | None = None, after_step: Callable | None = None, chunk: int = 1,
                augment: Augment = NO_AUGMENT, label_smoothing: float = 0.0):
    """One pass over `data` in the epoch's order, every example once (a smaller last batch if need be).

    Train accuracy is the running accuracy over the epoch's batches in train mode, as the
    reference reports it. `on_step(step, steps, metrics)` is for progress display only.
    `start` continues an interrupted epoch where it stood (the same steps follow, so the epoch ends
    as an uninterrupted one would). `after_step(position_fn, state, metrics, last, done)` runs on the
    host after each call is dispatched (`done` steps; `last`: it ended the epoch); it must not wait on
    the device unless it saves a step checkpoint (`position_fn()` gives the EpochPosition to save),
    and it stops the epoch by raising. `chunk` > 1 runs that many full steps per call
    (`train_steps`); the last, smaller batch and a remainder run one step per call.
    """
    t0 = time.perf_counter() - (start.seconds if start else 0.0)
    n = len(data)
    perm = epoch_permutation(shuffle_key, epoch, n)
    aug_key = epoch_key(shuffle_key, epoch) if augment else None
    recipe = dict(augment=augment, label_smoothing=label_smoothing, stats=data.stats)
    steps = math.ceil(n / batch_size)
    metrics = zero_metrics()
    if start is not None:
        metrics = {k: jnp.asarray(start.metrics[k], v.dtype) for k, v in metrics.items()}
    full_steps = n // batch_size
    s = start.step if start else 0
    while s < steps:
        offset = s * batch_size
        size = min(batch_size, n - offset)
        if chunk > 1 and s + chunk <= full_steps:
            done = chunk
            state, metrics = train_steps(state, metrics, data.images, data.labels, perm, s, aug_key, count=chunk,
                                         batch_size=batch_size, image_size=image_size, dtype=dtype,
                                         sharding=batch_sharding(mesh, batch_size), **recipe)
        else:
            done = 1
            state, metrics = train_step(state, metrics, data.images, data.labels, perm, offset, s, aug_key,
                                        batch_size=size, image_size=image_size, dtype=dtype,
                                        sharding=batch_sharding(mesh, size), **recipe)
        s += done
        if on_step is not None:
            on_step(s, steps, metrics)
        if after_step is not None:
            def position(s=s, metrics=metrics):  # reads the device: only when a checkpoint is written
                return EpochPosition(s, jax.device_get(metrics), time.perf_counter() - t0)
            after_step(position, state, metrics, s == steps, done)
    m = jax.device_get(metrics)
    if m["bad_step"] != NO_BAD_STEP:
        raise NonFiniteLoss(f"non-finite loss at epoch {epoch}, step {int(m['bad_step']) + 1} of {steps}")
    result = EpochResult(
        train_accuracy=accuracy_percent(int(m["correct"]), int(m["count"])),
        train_loss=float(m["loss_sum"]) / int(m["count"]),
        seconds=time.perf_counter() - t0,
        steps=steps,
    )
    return state, result
