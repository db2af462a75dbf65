"""The train state (params, BatchNorm statistics, optimizer) and how a fresh one is made.

The optimizer and loss live here: a new optimizer setting or loss goes beside `sgd` and
`cross_entropy`, built from optax's own transformations.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state


class TrainState(train_state.TrainState):
    batch_stats: Any


@functools.partial(jax.jit, static_argnums=(0, 2))
def _init_variables(model, key, image_size: int):
    return model.init(key, jnp.zeros((1, image_size, image_size, 3), jnp.float32), train=False)


def create_train_state(model, key: jax.Array, image_size: int, lr: float, momentum: float,
                       tx: optax.GradientTransformation | None = None) -> TrainState:
    """Fresh variables and optimizer state (`tx`, default torch's SGD at lr and momentum). Steps
    compile once per model *instance* (its `apply` is part of the state), so reuse one model object
    for runs of the same network."""
    variables = _init_variables(model, key, image_size)
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        tx=tx if tx is not None else sgd(lr, momentum),
    )


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
