"""The recipe flags' ingredients in torch, for the baseline, with the meaning they have in the JAX run.

Optimizer and schedules are torch's own (`torch.optim.SGD`, `CosineAnnealingLR`, `OneCycleLR`,
`LinearLR` + `SequentialLR`), stepped per batch; `jaxresnet.training.optimizer` reproduces them in
optax. Augmentation is of the same kinds (reflect-padded crop, flip, cutout of the normalised image,
`jaxresnet.data.augment`), its draws from torch's generator. `--zero-init-residual` and
`--no-bias-decay` are torchvision's and the usual parameter groups'; `--ema`'s statistics are
`swa_utils.update_bn`'s.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from jaxresnet.config import TrainConfig
from jaxresnet.data.augment import augment_at
from jaxresnet.pytorch.reference import ResNetBlock, torch_preprocess
from jaxresnet.training.optimizer import ONECYCLE_DIV, ONECYCLE_FINAL_DIV, ONECYCLE_PCT_START, WARMUP_START_FACTOR


def zero_init_residual(model: torch.nn.Module) -> None:
    """--zero-init-residual: each block's last BatchNorm scale at 0, as torchvision's ResNet does."""
    for block in model.modules():
        if isinstance(block, ResNetBlock):
            torch.nn.init.zeros_(block.basicblock[4].weight)


def refresh_average_statistics(average: torch.nn.Module, images_u8: torch.Tensor, config: TrainConfig, stats) -> None:
    """--ema: the average's BatchNorm statistics recomputed by torch's `update_bn` over the training
    images as scored (not augmented), in order, `config.batch_size` at a time (`training.average`)."""
    batches = (
        torch_preprocess(images_u8[start : start + config.batch_size], config.resize, stats)
        for start in range(0, len(images_u8), config.batch_size)
    )
    torch.optim.swa_utils.update_bn(batches, average)


def make_torch_optimizer(params, config: TrainConfig, steps_per_epoch: int):
    """(optimizer, scheduler or None): the scheduler is stepped after every optimizer step."""
    if not config.bias_decay:  # --no-bias-decay: the 1-d parameters (BatchNorm's, biases) in a group without decay
        params = list(params)
        params = [
            {"params": [p for p in params if p.ndim > 1]},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
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
    """The JAX run's augmentations on a torch batch: crop, flip and the policy of uint8 NHWC, cutout
    and the mixing of float NCHW, as the run applies them in `epoch` (--refine's last epochs: crop and flip)."""

    def __init__(self, config: TrainConfig, epoch: int = 1):
        self.aug = augment_at(config, epoch)

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
        if self.aug.policy:
            x = torch.stack([pil_policy(image, self.aug) for image in x])
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

    def mix(self, x: torch.Tensor) -> tuple[torch.Tensor, float | None]:
        """(the batch mixed with itself rolled by one, the weight of each image's own label), as
        torchvision's v2.MixUp / v2.CutMix (v2.RandomChoice of the two when both are on), on a share
        --mix-prob of the batches (v2.RandomApply)."""
        mixup, cutmix = self.aug.mixup, self.aug.cutmix
        if not (mixup or cutmix) or (self.aug.mix_prob < 1 and torch.rand(()) >= self.aug.mix_prob):
            return x, None
        use_cutmix = bool(cutmix) and (not mixup or torch.rand(()) < 0.5)
        alpha = cutmix if use_cutmix else mixup
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        partner = x.roll(1, 0)
        if not use_cutmix:
            return lam * x + (1 - lam) * partner, lam
        h, w = x.shape[-2:]
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        r = 0.5 * math.sqrt(1.0 - lam)
        rh, rw = int(r * h), int(r * w)
        y0, y1, x0, x1 = max(cy - rh, 0), min(cy + rh, h), max(cx - rw, 0), min(cx + rw, w)
        out = x.clone()
        out[..., y0:y1, x0:x1] = partner[..., y0:y1, x0:x1]
        return out, 1.0 - (y1 - y0) * (x1 - x0) / (h * w)


def pil_policy(image_u8: torch.Tensor, aug) -> torch.Tensor:
    """One HWC uint8 image under `aug.policy` (jaxresnet.data.policy's draws and magnitudes) through PIL's
    own operations, as torchvision's TrivialAugmentWide / RandAugment apply them to a PIL image.
    (torchvision itself is not used: the registry's build of it needs CUDA's libraries.)"""
    from PIL import Image

    from jaxresnet.data.policy import BINS, OPS, SIGNED, magnitudes

    img = Image.fromarray(image_u8.numpy())
    wide = aug.policy == "trivialaugment"
    table = magnitudes(aug.policy, img.size[1])
    for _ in range(1 if wide else aug.policy_ops):
        op = int(torch.randint(len(OPS), ()))
        m = float(table[op, int(torch.randint(BINS, ())) if wide else aug.policy_magnitude])
        if OPS[op] in SIGNED and torch.rand(()) < 0.5:
            m = -m
        img = _pil_op(img, OPS[op], m)
    return torch.from_numpy(np.asarray(img).copy())


def _pil_op(img, op: str, m: float):
    from PIL import Image, ImageEnhance, ImageOps

    affine = {"shear_x": (1, m, 0, 0, 1, 0), "shear_y": (1, 0, 0, m, 1, 0),
              "translate_x": (1, 0, -int(m), 0, 1, 0), "translate_y": (1, 0, 0, 0, 1, -int(m))}  # fmt: skip
    enhance = {"brightness": ImageEnhance.Brightness, "color": ImageEnhance.Color,
               "contrast": ImageEnhance.Contrast, "sharpness": ImageEnhance.Sharpness}  # fmt: skip
    if op in affine:
        return img.transform(img.size, Image.Transform.AFFINE, affine[op], Image.Resampling.NEAREST, fillcolor=0)
    if op == "rotate":
        return img.rotate(m, resample=Image.Resampling.NEAREST, fillcolor=0)
    if op in enhance:
        return enhance[op](img).enhance(1.0 + m)
    return {
        "identity": lambda: img,
        "posterize": lambda: ImageOps.posterize(img, int(m)),
        "solarize": lambda: ImageOps.solarize(img, m),
        "autocontrast": lambda: ImageOps.autocontrast(img),
        "equalize": lambda: ImageOps.equalize(img),
    }[op]()


def steps_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)
