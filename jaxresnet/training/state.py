"""The train state (params, BatchNorm statistics, optimizer state), the loss, and the one factory
that makes a config's model and fresh state: the run, evaluation, prediction, the benchmark and
measure.py all build them here.

The optimizer itself (torch's SGD, decay, schedules) is built in `jaxresnet.training.optimizer`;
a new loss goes beside `cross_entropy`.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from jaxresnet.config import TrainConfig
from jaxresnet.models import ARCHS


class TrainState(train_state.TrainState):
    batch_stats: Any
    # With --ema: {"params": the weights' exponential moving average over the steps, "batch_stats":
    # the statistics recomputed for it when it was last scored (`training.average`)}, scored in place
    # of the weights; None otherwise.
    ema: Any = None


def ema_update(ema: dict, params, decay: float) -> dict:
    """One step of the moving average of the weights: decay * average + (1 - decay) * now (torch's
    AveragedModel with get_ema_multi_avg_fn(decay)). BatchNorm's statistics are not averaged: the
    average's own are recomputed before it is scored (`training.average`)."""
    average = jax.tree.map(lambda a, x: (decay * a + (1 - decay) * x).astype(a.dtype), ema["params"], params)
    return {"params": average, "batch_stats": ema["batch_stats"]}


@functools.partial(jax.jit, static_argnums=(0, 2))
def _init_variables(model, key, image_size: int):
    return model.init(key, jnp.zeros((1, image_size, image_size, 3), jnp.float32), train=False)


def create_train_state(
    model,
    key: jax.Array,
    image_size: int,
    lr: float = 0.01,
    momentum: float = 0.9,
    tx: optax.GradientTransformation | None = None,
) -> TrainState:
    """Fresh variables of `model` and the optimizer state of `tx` (default torch's SGD at lr and
    momentum). Steps compile once per model *instance* (its `apply` is part of the state), so reuse
    one model object for runs of the same network. A run's state comes from `new_state`."""
    variables = _init_variables(model, key, image_size)
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        tx=tx if tx is not None else sgd(lr, momentum),
    )


def compute_dtype(config: TrainConfig):
    return {"bfloat16": jnp.bfloat16, "float64": jnp.float64}.get(config.dtype, jnp.float32)


@functools.lru_cache(maxsize=8)
def _model(arch, dtype, init, conv_impl, norm_impl, num_classes, zero_init_residual=False):
    param_dtype = jnp.float64 if dtype == jnp.float64 else jnp.float32  # float64: the reference mode
    return ARCHS[arch](
        num_classes=num_classes,
        dtype=dtype,
        param_dtype=param_dtype,
        weight_init=init,
        zero_init_residual=zero_init_residual,
        conv_impl=conv_impl,
        norm_impl=norm_impl,
    )


def build_model(config: TrainConfig, num_classes: int = 10):
    """The network of a config; the same object for the same network, so jitted steps are reused."""
    return _model(
        config.arch,
        compute_dtype(config),
        config.init,
        config.conv_impl,
        config.norm_impl,
        num_classes,
        config.zero_init_residual,
    )


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """(init_key, shuffle_key) for a seed."""
    init_key, shuffle_key = jax.random.split(jax.random.key(seed))
    return init_key, shuffle_key


def new_state(config: TrainConfig, num_classes: int = 10, train_size: int | None = None) -> TrainState:
    """The config's model with fresh weights (from its seed) and its optimizer. `train_size`, the
    number of training images, sets the schedule's steps per epoch; a state only restored into
    (evaluation, prediction) may leave it out, its optimizer then being only the right structure."""
    return fresh_run(config, num_classes, train_size)[0]


def fresh_run(config: TrainConfig, num_classes: int = 10, train_size: int | None = None):
    """(new_state's state, the shuffle key of the config's seed), made in one compiled program."""
    from jaxresnet.training.optimizer import optimizer_of

    steps_per_epoch = math.ceil(train_size / config.batch_size) if train_size else 1
    model, tx = build_model(config, num_classes), optimizer_of(config, steps_per_epoch)
    return _fresh(model, tx, config.resize, config.seed, bool(config.ema))


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 4))
def _fresh(model, tx, image_size: int, seed, ema: bool):
    # The keys, the variables and the optimizer state in one program: done eagerly they were some
    # thirty small compilations (a zeros per parameter shape for the momentum, the key splits).
    init_key, shuffle_key = seed_keys(seed)
    variables = model.init(init_key, jnp.zeros((1, image_size, image_size, 3), jnp.float32), train=False)
    params, stats = variables["params"], variables["batch_stats"]
    average = {"params": params, "batch_stats": stats} if ema else None  # starts at the initial weights
    return TrainState.create(apply_fn=model.apply, params=params, batch_stats=stats, tx=tx, ema=average), shuffle_key


@functools.lru_cache(maxsize=16)
def sgd(lr: float, momentum: float) -> optax.GradientTransformation:
    """torch's SGD (buf = m*buf + g; p -= lr*buf). One object per setting: it is part of the jit key."""
    return optax.sgd(lr, momentum)


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
    """torch's CrossEntropyLoss(label_smoothing=e): targets (1-e)*one_hot + e/classes."""
    if not label_smoothing:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets).mean()
