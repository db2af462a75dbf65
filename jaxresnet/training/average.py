"""The BatchNorm statistics the moving average of the weights (--ema) is scored with.

Only the weights are averaged (`state.ema_update`). With weight decay under BatchNorm the weights
shrink and turn as they train, and an average of weights that turned is smaller than each of them:
its activations are smaller than the statistics of the weights it averages expect (averaged with
them, those statistics scored the average far below its own weights: docs/recipe, session 17). So
before the average is scored its own statistics are recomputed, as torch's `swa_utils.update_bn`
does: forward passes in training mode over the training images (as scored, not augmented), in their
stored order, a batch of the run's size at a time, each layer's running mean and unbiased variance
the mean of its batches' with every batch weighted alike.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from jaxresnet.data import preprocess
from jaxresnet.training.loop import DeviceData, StepSpec
from jaxresnet.training.parallel import constrain
from jaxresnet.training.state import TrainState


def refresh_statistics(state: TrainState, model, data: DeviceData, spec: StepSpec) -> TrainState:
    """`state` with its average's BatchNorm statistics recomputed on `data` (a state without an average
    as it is). `model` is the network `state` was made for; `spec` gives the batch size, the image size,
    dtype and normalisation, and the devices. The weights, the optimizer and the average's weights are
    untouched, so what follows trains alike whether or not (and how often) this ran."""
    if state.ema is None:
        return state
    counting = _counting(model).apply  # each layer's running statistics come out as its batch's
    n, total, batches = len(data), None, 0
    for start in range(0, n, spec.batch_size):
        size = min(spec.batch_size, n - start)
        idx = np.arange(start, start + size, dtype=np.int32)
        stats = _batch_statistics(state.ema, data.images, idx, counting, dataclasses.replace(spec, batch_size=size))
        total = stats if total is None else _add(total, stats)
        batches += 1
    return state.replace(ema={"params": state.ema["params"], "batch_stats": _divide(total, batches)})


@functools.lru_cache(maxsize=8)
def _counting(model):
    return model.clone(norm_momentum=0.0)


@functools.partial(jax.jit, static_argnames=("apply_fn", "spec"))
def _batch_statistics(variables: dict, images, idx, apply_fn, spec: StepSpec):
    sharding = spec.sharding
    x = constrain(preprocess(images[constrain(idx, sharding)], spec.image_size, spec.dtype, spec.stats), sharding)
    _, updates = apply_fn(variables, x, train=True, mutable=["batch_stats"])
    return updates["batch_stats"]


@jax.jit
def _add(a, b):
    return jax.tree.map(lambda x, y: x + y, a, b)


@functools.partial(jax.jit, static_argnums=1)
def _divide(tree, count: int):
    return jax.tree.map(lambda x: (x / count).astype(x.dtype), tree)
