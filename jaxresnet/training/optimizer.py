"""The optimizer of a run, with torch's semantics, built from optax's own pieces.

- SGD: torch's `buf = m*buf + g; p -= lr*buf` is `optax.sgd(lr, momentum)`; with `--nesterov`,
  torch's `p -= lr*(g + m*buf)` is `optax.sgd(..., nesterov=True)`.
- `--weight-decay`: torch SGD adds `wd*p` to the gradient before the momentum, on every parameter
  (BatchNorm and biases included): `optax.add_decayed_weights(wd)` ahead of the SGD. With
  `--no-bias-decay`, only on the conv and linear weights (the parameters of more than one axis, as
  torch's usual second parameter group of the 1-d ones at weight decay 0): its `mask`.
- Schedules, stepped per batch as a torch scheduler stepped after every `optimizer.step()`:
  `constant`; `cosine` = `CosineAnnealingLR(T_max=steps, eta_min=0)`; `onecycle` = `OneCycleLR(max_lr=lr,
  total_steps=steps, pct_start=p, anneal_strategy="cos", div_factor=25, final_div_factor=1e4,
  cycle_momentum=False)` with p = warm-up epochs / epochs (0.3 without them). A warm-up before
  `constant`/`cosine` is torch's `LinearLR(start_factor=0.01, total_iters=W)` followed by the schedule
  over the remaining steps (`SequentialLR`). tests/test_recipe.py checks each against torch.

The reference setting (constant lr, no decay, no Nesterov) returns the very `optax.sgd` object the
reference run has always used, so its jitted steps and numbers are untouched.
"""

from __future__ import annotations

import functools

import jax
import optax

SCHEDULES = ("constant", "cosine", "onecycle")
WARMUP_START_FACTOR = 0.01  # torch LinearLR's start_factor: the first warm-up step runs at lr/100
ONECYCLE_PCT_START = 0.3  # torch OneCycleLR's default rising fraction
ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 25.0, 1e4  # torch OneCycleLR's defaults


def learning_rate_schedule(lr: float, schedule: str, total_steps: int, warmup_steps: int = 0):
    """A float (constant, no warm-up) or an optax schedule: step -> learning rate."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if schedule == "onecycle":
        pct = warmup_steps / total_steps if warmup_steps else ONECYCLE_PCT_START
        # torch's phases end at steps pct*T - 1 (the peak) and T - 1 (the floor), not at pct*T and T
        # as optax.cosine_onecycle_schedule's do; optax's cosine interpolation between those steps is exact.
        start = lr / ONECYCLE_DIV
        return optax.piecewise_interpolate_schedule(
            "cosine",
            start,
            {float(pct * total_steps) - 1: ONECYCLE_DIV, total_steps - 1: 1 / (ONECYCLE_DIV * ONECYCLE_FINAL_DIV)},
        )
    if schedule == "constant" and not warmup_steps:
        return lr
    after = (
        optax.constant_schedule(lr)
        if schedule == "constant"
        else optax.cosine_decay_schedule(lr, max(total_steps - warmup_steps, 1))
    )
    if not warmup_steps:
        return after
    warmup = optax.linear_schedule(lr * WARMUP_START_FACTOR, lr, warmup_steps)
    return optax.join_schedules([warmup, after], [warmup_steps])


@functools.lru_cache(maxsize=32)
def make_optimizer(
    lr: float,
    momentum: float,
    *,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    schedule: str = "constant",
    total_steps: int = 1,
    warmup_steps: int = 0,
    bias_decay: bool = True,
) -> optax.GradientTransformation:
    """One object per setting: the optimizer is part of the jitted step's cache key."""
    from jaxresnet.training.state import sgd

    rate = learning_rate_schedule(lr, schedule, total_steps, warmup_steps)
    if not weight_decay and not nesterov and not callable(rate):
        return sgd(lr, momentum)  # the reference's own
    sgd_ = optax.sgd(rate, momentum, nesterov=nesterov)
    if not weight_decay:
        return sgd_
    return optax.chain(optax.add_decayed_weights(weight_decay, mask=None if bias_decay else _weights_only), sgd_)


def _weights_only(params):
    """True for the conv kernels and linear weights, False for BatchNorm's scales and shifts and biases."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def schedule_of(config, steps_per_epoch: int):
    """The learning rate per step of a run (a float, or an optax schedule) from its recipe flags."""
    return learning_rate_schedule(
        config.lr, config.schedule, config.epochs * steps_per_epoch, round(config.warmup_epochs * steps_per_epoch)
    )


def optimizer_of(config, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optimizer of a run (a `jaxresnet.config.TrainConfig`) with this many steps per epoch."""
    return make_optimizer(
        config.lr,
        config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
        schedule=config.schedule,
        total_steps=config.epochs * steps_per_epoch,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
        bias_decay=config.bias_decay,
    )


def learning_rate_at(config, steps_per_epoch: int, step: int) -> float:
    rate = schedule_of(config, steps_per_epoch)
    return float(rate(step)) if callable(rate) else float(rate)
