"""The jitted train and eval steps and the epoch loop over a dataset resident on the device.

One epoch makes no host round trip per step: the dataset lives on the device, the batch is cut out
of a device-side permutation inside the step, the state is donated, and the running metrics are
accumulated on the device and read once at the end of the epoch. What a step is compiled for is
one frozen `StepSpec`, its only static argument.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxresnet.data import CIFAR10, Split, preprocess
from jaxresnet.data.augment import (
    Augment,
    augment_resized,
    augment_source,
    epoch_key,
    mix_batch,
    step_key,
    tta_views,
)
from jaxresnet.training import programs
from jaxresnet.training.parallel import batch_sharding, constrain, replicate, replicated
from jaxresnet.training.state import TrainState, cross_entropy, ema_update

NO_BAD_STEP = np.iinfo(np.int32).max
NO_AUGMENT = Augment()


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class StepSpec:
    """What the jitted steps are compiled for, and their one static argument (frozen, hashable):
    the same spec is the same program."""

    batch_size: int  # the batch of one step
    image_size: int  # the side the images are resized to
    dtype: Any = jnp.float32  # the compute dtype
    mesh: Mesh | None = None  # the devices a batch is split over (None: one device)
    augment: Augment = NO_AUGMENT
    label_smoothing: float = 0.0
    stats: tuple = CIFAR10.stats  # the (mean, std) the images are normalised with
    steps: int = 1  # training steps per call (a lax.scan when > 1)
    stride: int = 0  # step s's batch starts at s * stride in the epoch's order (0: batch_size)
    tta: str = "none"  # evaluation's test-time augmentation (config.TTAS)
    ema: float = 0.0  # the decay per step of the weights' moving average (0: none kept)

    @property
    def sharding(self):
        return batch_sharding(self.mesh, self.batch_size)

    def sized(self, batch_size: int, steps: int = 1) -> StepSpec:
        """The spec of a call of `steps` steps of `batch_size` images, at this spec's stride."""
        return dataclasses.replace(self, batch_size=batch_size, steps=steps, stride=self.stride or self.batch_size)

    def for_eval(self, batch_size: int, tta: str = "none") -> StepSpec:
        """The evaluation program's spec: nothing of training's in it, so one program serves every epoch."""
        return StepSpec(batch_size, self.image_size, self.dtype, self.mesh, stats=self.stats, tta=tta)


def epoch_permutation(shuffle_key: jax.Array, epoch: int, n: int) -> jax.Array:
    """The order of the training examples in `epoch` (1-based): a fresh shuffle per epoch from the seed.

    A function of (key, epoch) alone, so a resumed run replays the same order.
    """
    return jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n)


def zero_metrics() -> dict:
    """An epoch's running sums at its start (host values: made without compiling anything)."""
    return {
        "loss_sum": np.zeros((), np.float32),
        "correct": np.zeros((), np.int32),
        "count": np.zeros((), np.int32),
        "bad_step": np.full((), NO_BAD_STEP, np.int32),
    }


def sgd_step(state: TrainState, metrics: dict, images, labels, perm, step, aug_key, spec: StepSpec):
    """One SGD step on the batch perm[step*stride : step*stride + batch_size] (traceable, not jitted:
    `train_steps` runs it); metrics are running sums."""
    sharding, batch = spec.sharding, spec.batch_size
    idx = constrain(jax.lax.dynamic_slice_in_dim(perm, step * (spec.stride or batch), batch), sharding)
    raw = images[idx]
    if spec.augment:  # draws from (seed, epoch, step): `aug_key` is the epoch's, `step` its step
        key = step_key(aug_key, step)
        raw = augment_source(raw, key, spec.augment)
    x = preprocess(raw, spec.image_size, spec.dtype, spec.stats)
    if spec.augment:
        x = augment_resized(x, key, spec.augment, images.shape[1])
    y, own = labels[idx], None
    if spec.augment.mixup or spec.augment.cutmix:  # `own`: the weight of each image's own label
        x, own = mix_batch(x, key, spec.augment)
    x = constrain(x, sharding)

    def loss_fn(params):
        logits, updates = state.apply_fn(
            {"params": params, "batch_stats": state.batch_stats}, x, train=True, mutable=["batch_stats"]
        )
        loss = cross_entropy(logits, y, spec.label_smoothing)
        if own is not None:  # the partner's label (cross-entropy is linear in the target)
            loss = own * loss + (1 - own) * cross_entropy(logits, jnp.roll(y, 1), spec.label_smoothing)
        return loss, (logits, updates["batch_stats"])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    if spec.ema:
        state = state.replace(ema=ema_update(state.ema, state.params, spec.ema))
    metrics = {
        # kept in the running sums' own dtypes (a float64 run's loss would promote them; a scan's carry
        # must keep its type)
        "loss_sum": (metrics["loss_sum"] + loss * batch).astype(metrics["loss_sum"].dtype),
        "correct": (metrics["correct"] + jnp.sum(jnp.argmax(logits, -1) == y)).astype(metrics["correct"].dtype),
        "count": metrics["count"] + batch,
        "bad_step": jnp.where(jnp.isfinite(loss), metrics["bad_step"], jnp.minimum(metrics["bad_step"], step)),
    }
    return state, metrics


# The state is donated; the metrics are not, so that the host can wait on the previous call's while
# the next one runs (train_epoch).
@functools.partial(jax.jit, static_argnames=("spec",), donate_argnums=(0,))
def train_steps(state: TrainState, metrics: dict, images, labels, shuffle_key, epoch, first_step, spec: StepSpec):
    """`spec.steps` SGD steps of `epoch` from its step `first_step` in one call: with more than one, a
    `lax.scan` of the step, so the host dispatches once per call (what launch-bound accelerators need).
    The epoch's order and augmentation key are made here from (shuffle key, epoch), not on the host:
    no small programs of their own to compile."""
    perm = epoch_permutation(shuffle_key, epoch, labels.shape[0])
    aug_key = epoch_key(shuffle_key, epoch) if spec.augment else None
    if spec.steps == 1:
        return sgd_step(state, metrics, images, labels, perm, first_step, aug_key, spec)

    def body(carry, i):
        return sgd_step(*carry, images, labels, perm, first_step + i, aug_key, spec), None

    (state, metrics), _ = jax.lax.scan(body, (state, metrics), jnp.arange(spec.steps, dtype=jnp.int32))
    return state, metrics


@functools.partial(jax.jit, static_argnames=("spec",))
def predict_step(state: TrainState, images, idx, spec: StepSpec):
    sharding = spec.sharding
    idx = constrain(idx, sharding)
    logits = scored_logits(functools.partial(state.apply_fn, scored_variables(state), train=False), images[idx], spec)
    # Gathered on every device: with several processes, each reads the whole batch's predictions.
    return constrain(jnp.argmax(logits, -1).astype(jnp.int32), replicated(sharding))


def scored_variables(state: TrainState) -> dict:
    """What is scored: the moving average where the run keeps one (--ema; with the BatchNorm statistics
    recomputed for it when the run last scored it, `training.average`), else the weights."""
    return state.ema if state.ema is not None else {"params": state.params, "batch_stats": state.batch_stats}


def scored_logits(apply: Callable, images_u8, spec: StepSpec):
    """The logits a test batch of uint8 images is scored by: `apply` (the network in eval mode) on
    each of `spec.tta`'s views, resized and normalised, and on its mirror unless tta is none; weighted."""
    logits = None
    for weight, view in tta_views(images_u8, spec.tta):
        x = constrain(preprocess(view, spec.image_size, spec.dtype, spec.stats), spec.sharding)
        out = apply(x)
        if spec.tta != "none":
            out = (out + apply(x[:, :, ::-1])) / 2
        logits = weight * out if logits is None else logits + weight * out  # none and flip: 1.0 * out, exact
    return logits


@dataclass
class DeviceData:
    """A split resident on the device: uint8 images and int32 labels, and the (mean, std) its images
    are normalised with (the dataset's: CIFAR-10's by default)."""

    images: jax.Array
    labels: jax.Array
    stats: tuple = CIFAR10.stats

    @classmethod
    def put(cls, split: Split, mesh: Mesh | None = None, stats: tuple = CIFAR10.stats) -> DeviceData:
        if mesh is None:
            return cls(jax.device_put(split.images), jax.device_put(split.labels), stats)
        return cls(*replicate((np.asarray(split.images), np.asarray(split.labels)), mesh), stats)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def predict(
    state: TrainState, data: DeviceData, spec: StepSpec, on_batch: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """Predicted class of every example, `spec.batch_size` at a time (at most the whole split): the
    last batch is padded, and the padding dropped. `on_batch(done, batches)` runs on the host after
    each batch is queued, the one before it finished (the host runs one batch ahead, as in training)."""
    n = len(data)
    spec = dataclasses.replace(spec, batch_size=min(spec.batch_size, n))
    starts = range(0, n, spec.batch_size)
    preds = []
    for start in starts:
        idx = np.arange(start, start + spec.batch_size, dtype=np.int32) % n  # the remainder padded by wrapping
        preds.append(programs.call(predict_step, spec, state, data.images, idx))
        if len(preds) > 1:
            jax.block_until_ready(preds[-2])
        if on_batch is not None:
            on_batch(len(preds), len(starts))
    return np.concatenate(jax.device_get(preds))[:n]


def accuracy_percent(correct: int, total: int) -> float:
    return round(100.0 * correct / total, 2)


@dataclass
class EpochPosition:
    """Where an interrupted epoch stands: steps done, its running metrics (host values), seconds spent."""

    step: int
    metrics: dict
    seconds: float

    def to_json(self) -> dict:
        return {
            "step": self.step,
            "seconds": self.seconds,
            **{k: v.item() if hasattr(v, "item") else v for k, v in self.metrics.items()},
        }

    @classmethod
    def from_json(cls, d: dict) -> EpochPosition:
        return cls(int(d["step"]), {k: d[k] for k in zero_metrics()}, float(d["seconds"]))


@dataclass
class EpochResult:
    train_accuracy: float
    train_loss: float
    seconds: float
    steps: int
    end: EpochPosition | None = None  # the epoch's end as a place to continue from (a stop while scoring it)


@dataclass
class Call:
    """One dispatched training call, as the epoch loop reports it to `on_call`."""

    epoch: int
    step: int  # steps of the epoch dispatched so far, this call's included
    steps: int  # steps in the epoch
    done: int  # steps this call ran
    state: TrainState
    metrics: dict  # the epoch's running sums after this call (device values)
    started: float  # perf_counter at the epoch's start (less the time an interrupted epoch had spent)

    @property
    def last(self) -> bool:
        return self.step == self.steps

    def position(self) -> EpochPosition:
        """Where the epoch stands after this call: reads the device (only to write a checkpoint)."""
        return EpochPosition(self.step, jax.device_get(self.metrics), time.perf_counter() - self.started)


def epoch_calls(spec: StepSpec, n: int, first: int = 0):
    """The calls of an epoch of `n` examples from its step `first`: (first step, the call's spec).
    Full steps go `spec.steps` at a time while they last; the rest, and the smaller last batch, one
    at a time."""
    s, batch, full_steps = first, spec.batch_size, n // spec.batch_size
    while s * batch < n:
        if spec.steps > 1 and s + spec.steps <= full_steps:
            call = spec.sized(batch, spec.steps)
        else:
            call = spec.sized(min(batch, n - s * batch))
        yield s, call
        s += call.steps


def prepare_programs(
    state: TrainState,
    shuffle_key,
    train: DeviceData,
    test: DeviceData,
    spec: StepSpec,
    eval_spec: StepSpec,
    first_step: int = 0,
) -> None:
    """Prepare the programs of an epoch (the one a run continuing at `first_step` calls first, first)
    and of scoring `test` (`programs`): the first call waits for its own program only."""
    calls = [call for _, call in epoch_calls(spec, len(train), first_step)]
    calls += [call for _, call in epoch_calls(spec, len(train))]
    args = (state, zero_metrics(), train.images, train.labels, shuffle_key, 1, 0)
    eval_spec = dataclasses.replace(eval_spec, batch_size=min(eval_spec.batch_size, len(test)))
    eval_args = (state, test.images, np.arange(eval_spec.batch_size, dtype=np.int32))
    programs.prepare(*[(train_steps, c, args) for c in dict.fromkeys(calls)], (predict_step, eval_spec, eval_args))


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


def train_epoch(
    state: TrainState,
    data: DeviceData,
    shuffle_key,
    epoch: int,
    spec: StepSpec,
    *,
    start: EpochPosition | None = None,
    on_call: Callable[[Call], None] | None = None,
):
    """One pass over `data` in the epoch's order, every example once (a smaller last batch if need be).

    Train accuracy is the running accuracy over the epoch's batches in train mode, as the
    reference reports it. `spec` is the full batch's, with `spec.steps` steps per call; the last,
    smaller batch and a remainder run one step per call. `start` continues an interrupted epoch
    where it stood (the same steps follow, so the epoch ends as an uninterrupted one would).
    `on_call(Call)` runs on the host after each call is dispatched (progress, step checkpoints); it
    stops the epoch by raising.
    """
    t0 = time.perf_counter() - (start.seconds if start else 0.0)
    n, steps = len(data), math.ceil(len(data) / spec.batch_size)
    metrics = zero_metrics()
    if start is not None:
        metrics = {k: np.asarray(start.metrics[k], v.dtype) for k, v in metrics.items()}
    previous = None
    for s, call in epoch_calls(spec, n, start.step if start else 0):
        args = (state, metrics, data.images, data.labels, shuffle_key, epoch, s)
        state, metrics = programs.call(train_steps, call, *args)
        s += call.steps
        # The host keeps one call queued and no more: it waits for the previous call before it goes
        # on, so what it acts on (a stop request, a timed checkpoint) is at most this call away. An
        # unbounded host would queue the whole epoch within seconds and see a signal only at its end.
        if previous is not None:
            jax.block_until_ready(previous)
        previous = metrics
        if on_call is not None:
            on_call(Call(epoch, s, steps, call.steps, state, metrics, t0))
    m = jax.device_get(metrics)
    if m["bad_step"] != NO_BAD_STEP:
        raise NonFiniteLoss(f"non-finite loss at epoch {epoch}, step {int(m['bad_step']) + 1} of {steps}")
    seconds = time.perf_counter() - t0
    result = EpochResult(
        train_accuracy=accuracy_percent(int(m["correct"]), int(m["count"])),
        train_loss=float(m["loss_sum"]) / int(m["count"]),
        seconds=seconds,
        steps=steps,
        end=EpochPosition(steps, m, seconds),
    )
    return state, result
