"""The PyTorch baseline: the reference network trained on the same subset, in the same batch order.

Same data (`jaxresnet.data.load_subsets`), same per-epoch order (`jaxresnet.training.loop.epoch_permutation`),
same bilinear resize and normalisation, same SGD, same printed lines and metrics.json: a JAX run and a
torch run with the same flags are directly comparable (`scripts/compare.py`). Initialisation is
torch's own default (what `--init torch` reproduces in distribution, not draw for draw).
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from jaxresnet.config import ConfigError, TrainConfig
from jaxresnet.data import load_dataset
from jaxresnet.data.augment import tta_views
from jaxresnet.data.resolution import resize_at
from jaxresnet.pytorch.ingredients import (
    TorchAugment,
    make_torch_optimizer,
    refresh_average_statistics,
    steps_per_epoch,
    zero_init_residual,
)
from jaxresnet.pytorch.reference import TORCH_ARCHS, torch_preprocess
from jaxresnet.training.events import EventLog
from jaxresnet.training.loop import accuracy_percent, epoch_permutation
from jaxresnet.training.outputs import RunResult, epoch_record, print_epoch, write_config, write_outputs
from jaxresnet.training.state import seed_keys


def check_torch_config(config: TrainConfig) -> None:
    config.validate()
    if config.arch not in TORCH_ARCHS:
        raise ConfigError(f"--arch {config.arch} has no torch baseline; use one of {', '.join(TORCH_ARCHS)}")
    if config.dtype != "float32":
        raise ConfigError("the torch baseline runs in float32 only (--dtype float32)")


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The JAX run's order of the training examples in `epoch`, as int64 indices for torch."""
    return np.asarray(epoch_permutation(seed_keys(seed)[1], epoch, n)).astype(np.int64)


def torch_train_run(config: TrainConfig, workdir: str, *, out=None, err=None) -> RunResult:
    out, err = out or sys.stdout, err or sys.stderr
    check_torch_config(config)
    train, test, dataset = load_dataset(config)  # the JAX run's data path, statistics included
    os.makedirs(workdir, exist_ok=True)
    write_config(workdir, config, framework="torch", dataset=dataset)
    torch.manual_seed(config.seed)
    run = _TorchRun(config, train, test, dataset)
    history, events = [], EventLog(workdir, err=err)
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        train_acc, train_loss, lr = run.train_epoch(epoch)
        train_s = time.perf_counter() - t0
        test_acc = run.evaluate() if epoch % config.eval_every == 0 or epoch == config.epochs else None
        print_epoch(out, epoch, config.epochs, train_acc, test_acc)
        history.append(
            epoch_record(epoch, train_acc, test_acc, train_loss, time.perf_counter() - t0, train_s, len(train), lr)
        )
        write_outputs(workdir, history)
        events.epoch(history[-1])
    events.close()
    return RunResult(workdir, history, run.model)


class _TorchRun:
    """The baseline's model, optimizer and data on the device (the data lives there, as JAX's does)."""

    def __init__(self, config: TrainConfig, train, test, dataset):
        self.config, self.stats = config, dataset.stats
        self.device = device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = TORCH_ARCHS[config.arch](num_classes=dataset.num_classes).to(device)
        if config.zero_init_residual:
            zero_init_residual(self.model)
        self.opt, self.scheduler = make_torch_optimizer(
            self.model.parameters(), config, steps_per_epoch(len(train), config.batch_size)
        )
        # --ema: torch's own moving average of the weights; its BatchNorm statistics recomputed to score it
        swa = torch.optim.swa_utils
        self.ema = (swa.AveragedModel(self.model, multi_avg_fn=swa.get_ema_multi_avg_fn(config.ema))
                    if config.ema else None)  # fmt: skip
        self.source_size = train.images.shape[1]
        self.images = torch.from_numpy(np.array(train.images)).to(device)
        self.labels = torch.from_numpy(np.array(train.labels)).long().to(device)
        self.test_images, self.test_labels = torch.from_numpy(np.array(test.images)).to(device), test.labels

    def train_epoch(self, epoch: int) -> tuple[float, float, float]:
        """(train accuracy %, mean loss, the last step's learning rate) of one epoch in the JAX run's order."""
        config, n = self.config, len(self.labels)
        perm = torch.from_numpy(epoch_order(config.seed, epoch, n)).to(self.device)
        self.model.train()
        correct, loss_sum, side, augment = 0, 0.0, resize_at(config, epoch), TorchAugment(config, epoch)
        for start in range(0, n, config.batch_size):
            idx = perm[start : start + config.batch_size]
            logits, loss, lr = self._step(self.images[idx], self.labels[idx], side, augment)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite loss at epoch {epoch}, step {start // config.batch_size + 1}")
            correct += int((logits.argmax(1) == self.labels[idx]).sum())
            loss_sum += float(loss.detach()) * len(idx)
        return accuracy_percent(correct, n), loss_sum / n, lr

    def _step(self, raw, y, side: int, augment: TorchAugment):
        config = self.config
        if augment:
            x = augment.resized(torch_preprocess(augment.source(raw), side, self.stats), self.source_size)
        else:
            x = torch_preprocess(raw, side, self.stats)
        x, own = augment.mix(x)
        self.opt.zero_grad(set_to_none=True)
        logits = self.model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
        if own is not None:  # mixed: the partner's label by the rest of the weight
            loss = own * loss + (1 - own) * F.cross_entropy(
                logits, y.roll(1, 0), label_smoothing=config.label_smoothing
            )
        loss.backward()
        lr = self.opt.param_groups[0]["lr"]  # the rate this step uses
        self.opt.step()
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return logits, loss, lr

    def evaluate(self) -> float:
        config, preds = self.config, []
        model = self.ema.module if self.ema is not None else self.model
        if self.ema is not None:
            refresh_average_statistics(self.ema, self.images, config, self.stats)
        model.eval()
        with torch.no_grad():
            for start in range(0, len(self.test_labels), config.eval_batch_size):
                batch = self.test_images[start : start + config.eval_batch_size]
                logits = None
                for weight, view in tta_views(batch.cpu().numpy(), config.tta, np):  # as scored_logits
                    x = torch_preprocess(
                        torch.from_numpy(np.ascontiguousarray(view)).to(batch.device), config.resize, self.stats
                    )
                    out = model(x)
                    if config.tta != "none":  # averaged with the mirrored image's
                        out = (out + model(x.flip(3))) / 2
                    logits = weight * out if logits is None else logits + weight * out
                preds.append(logits.argmax(1).cpu().numpy())
        return accuracy_percent(int((np.concatenate(preds) == self.test_labels).sum()), len(self.test_labels))
