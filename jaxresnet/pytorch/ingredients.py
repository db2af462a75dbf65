"""The recipe flags' ingredients in torch, for the baseline, with the meaning they have in the JAX run.

Optimizer and schedules are torch's own (`torch.optim.SGD`, `CosineAnnealingLR`, `OneCycleLR`,
`LinearLR` + `SequentialLR`), stepped per batch; `jaxresnet.training.optimizer` reproduces them in
optax. Augmentation is of the same kinds (reflect-padded crop, flip, cutout of the normalised image,
`jaxresnet.data.augment`), its draws from torch's generator.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from jaxresnet.config import TrainConfig
from jaxresnet.data.augment import make_augment
from jaxresnet.training.optimizer import ONECYCLE_DIV, ONECYCLE_FINAL_DIV, ONECYCLE_PCT_START, WARMUP_START_FACTOR


def make_torch_optimizer(params, config: TrainConfig, steps_per_epoch: int):
    """(optimizer, scheduler or None): the scheduler is stepped after every optimizer step."""
    opt = torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=config.nesterov
    )
    total = config.epochs * steps_per_epoch
    warmup = round(config.warmup_epochs * steps_per_epoch)
    if config.schedule == "onecycle":
        pct = warmup / total if warmup else ONECYCLE_PCT_START
        return opt, torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=config.lr,
            total_steps=total,
            pct_start=pct,
            anneal_strategy="cos",
            cycle_momentum=False,
            div_factor=ONECYCLE_DIV,
            final_div_factor=ONECYCLE_FINAL_DIV,
        )
    if config.schedule == "constant" and not warmup:
        return opt, None
    after = (
        torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
        if config.schedule == "constant"
        else torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total - warmup, 1))
    )
    if not warmup:
        return opt, after
    first = torch.optim.lr_scheduler.LinearLR(opt, start_factor=WARMUP_START_FACTOR, total_iters=warmup)
    return opt, torch.optim.lr_scheduler.SequentialLR(opt, [first, after], milestones=[warmup])


class TorchAugment:
    """The JAX run's augmentations on a torch batch: crop and flip of uint8 NHWC, cutout of float NCHW."""

    def __init__(self, config: TrainConfig):
        self.aug = make_augment(config.augment, config.crop_padding, config.cutout_size)

    def __bool__(self) -> bool:
        return bool(self.aug)

    def source(self, images_u8: torch.Tensor) -> torch.Tensor:
        n, h, w, _ = images_u8.shape
        x = images_u8
        if self.aug.crop:
            p = self.aug.crop
            padded = F.pad(x.permute(0, 3, 1, 2).float(), (p, p, p, p), mode="reflect").round().to(torch.uint8)
            dy, dx = torch.randint(0, 2 * p + 1, (2, n), device=x.device).tolist()
            x = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)]).permute(0, 2, 3, 1)
        if self.aug.flip:
            flip = torch.rand(n, device=x.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(2), x)
        return x

    def resized(self, x: torch.Tensor, source_size: int) -> torch.Tensor:
        if not self.aug.cutout:
            return x
        n, _, h, w = x.shape
        size = max(1, round(self.aug.cutout * h / source_size))
        cy = torch.randint(0, h, (n, 1, 1), device=x.device) - size // 2
        cx = torch.randint(0, w, (n, 1, 1), device=x.device) - size // 2
        rows = torch.arange(h, device=x.device)[None, :, None]
        cols = torch.arange(w, device=x.device)[None, None, :]
        inside = (rows >= cy) & (rows < cy + size) & (cols >= cx) & (cols < cx + size)
        return x.masked_fill(inside[:, None], 0.0)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)
