"""A run's configuration: defaults (the reference experiment), validation, and what may change on resume."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from jaxresnet.data.augment import parse_augment
from jaxresnet.models.layers import CONV_IMPLS, INITS, NORM_IMPLS
from jaxresnet.models import ARCHS
from jaxresnet.recipes import RECIPES
from jaxresnet.training.optimizer import SCHEDULES

# float64 is a numerical reference, not a way to train: parameters, activations and statistics in
# double precision (CPU; JAX's 64-bit mode must be on), where rounding cannot hide a sharding or
# multi-process bug (tests/test_distributed.py).
DTYPES = ("float32", "bfloat16", "float64")
TTAS = ("none", "flip")


class ConfigError(ValueError):
    """A configuration value is out of range or inconsistent; the message names the flag."""


@dataclass(frozen=True)
class TrainConfig:
    # The experiment: changing any of these makes a different run, so a resume refuses them.
    arch: str = "resnet34"
    dataset: str = "cifar10"  # a tensorflow-datasets image-classification dataset (jaxresnet.data.datasets)
    store_size: int = 64  # folder:PATH datasets: the side images are stored at, once, on the host
    resize: int = 128
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    train_per_class: int | None = 500  # None: every image (the CLI's default for datasets other than CIFAR-10)
    test_per_class: int | None = None  # None: the whole 10,000-image test split
    seed: int = 0
    dtype: str = "float32"
    init: str = "torch"
    # The recipe (tests/test_recipe.py; docs/recipe/): the reference's values are the defaults.
    recipe: str = "reference"  # the preset the values below started from (jaxresnet.recipes)
    augment: str = "none"  # none, or a comma-separated list of crop, flip, cutout
    crop_padding: int = 4  # crop: the largest shift, in source pixels
    cutout_size: int = 8  # cutout: the square's side, in source pixels
    weight_decay: float = 0.0
    nesterov: bool = False
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    tta: str = "none"  # none, or flip
    # How and how long to run: these may change when a run is resumed.
    epochs: int = 10
    conv_impl: str = "auto"
    norm_impl: str = "auto"
    eval_batch_size: int = 500
    save_every: int = 1
    keep: int = 3
    checkpoint_minutes: float = 10.0  # a step checkpoint inside an epoch this often (0: never)
    steps_per_call: int = 0  # training steps per jitted call (a lax.scan); 0: auto (loop.steps_per_call)
    eval_every: int = 1  # score the test split every N epochs and at the last
    data_dir: str | None = None
    download: bool = True
    data_cache: str | None = None  # decoded-data cache folder (None: the default; "off": none)

    def validate(self) -> "TrainConfig":
        _at_least("--resize", self.resize, 8)
        _at_least("--epochs", self.epochs, 1)
        _at_least("--batch-size", self.batch_size, 1)
        _at_least("--eval-batch-size", self.eval_batch_size, 1)
        if self.train_per_class is not None:
            _at_least("--train-per-class", self.train_per_class, 1)
        _at_least("--store-size", self.store_size, 8)
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ConfigError(f"--dataset must name a tensorflow-datasets dataset, got {self.dataset!r}")
        if self.test_per_class is not None:
            _at_least("--test-per-class", self.test_per_class, 1)
        _at_least("--save-every", self.save_every, 1)
        _at_least("--keep", self.keep, 1)
        _at_least("--seed", self.seed, 0)
        _at_least("--steps-per-call", self.steps_per_call, 0)
        if not (isinstance(self.checkpoint_minutes, (int, float)) and 0 <= self.checkpoint_minutes < float("inf")):
            raise ConfigError(f"--checkpoint-minutes must be a number >= 0 (0: never), got {self.checkpoint_minutes}")
        if self.seed >= 2**31:
            raise ConfigError(f"--seed must be below 2**31, got {self.seed}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum}")
        _at_least("--eval-every", self.eval_every, 1)
        _at_least("--crop-padding", self.crop_padding, 1)
        _at_least("--cutout-size", self.cutout_size, 1)
        try:
            parse_augment(self.augment)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if not (isinstance(self.weight_decay, (int, float)) and 0 <= self.weight_decay < float("inf")):
            raise ConfigError(f"--weight-decay must be a number >= 0, got {self.weight_decay}")
        if not (isinstance(self.label_smoothing, (int, float)) and 0 <= self.label_smoothing < 1):
            raise ConfigError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if not (isinstance(self.warmup_epochs, (int, float)) and 0 <= self.warmup_epochs < float("inf")):
            raise ConfigError(f"--warmup-epochs must be a number >= 0, got {self.warmup_epochs}")
        _one_of("--schedule", self.schedule, SCHEDULES)
        _one_of("--tta", self.tta, TTAS)
        _one_of("--recipe", self.recipe, tuple(RECIPES))
        if self.warmup_epochs >= self.epochs and self.warmup_epochs:
            raise ConfigError(f"--warmup-epochs ({self.warmup_epochs}) must be fewer than --epochs ({self.epochs})")
        if self.nesterov and not self.momentum:
            raise ConfigError("--nesterov needs a momentum > 0 (torch's rule)")
        _one_of("--arch", self.arch, tuple(ARCHS))
        _one_of("--dtype", self.dtype, DTYPES)
        _one_of("--init", self.init, INITS)
        _one_of("--conv-impl", self.conv_impl, CONV_IMPLS)
        _one_of("--norm-impl", self.norm_impl, NORM_IMPLS)
        if error := norm_impl_dtype_error(self.norm_impl, self.dtype):
            raise ConfigError(error)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# Fields a resumed run may change; every other field defines the experiment.
RESUMABLE_CHANGES = ("epochs", "conv_impl", "norm_impl", "eval_batch_size", "save_every", "keep", "data_dir", "download",
                     "data_cache", "checkpoint_minutes", "steps_per_call", "eval_every")


def flag(name: str) -> str:
    return {"download": "--no-download"}.get(name, "--" + name.replace("_", "-"))


def resume_mismatch(saved: TrainConfig, now: TrainConfig) -> str | None:
    """A message naming the first experiment-defining field that differs, or None."""
    if saved.schedule != "constant" and saved.epochs != now.epochs and saved.schedule == now.schedule:
        return (f"--epochs is {now.epochs} but the run being resumed used {saved.epochs}, and its "
                f"--schedule {saved.schedule} spans them; a scheduled run cannot be extended")
    for f in dataclasses.fields(TrainConfig):
        if f.name in RESUMABLE_CHANGES:
            continue
        a, b = getattr(saved, f.name), getattr(now, f.name)
        if a != b:
            return (f"{flag(f.name)} is {b!r} but the run being resumed used {a!r}; "
                    f"only {', '.join(flag(n) for n in RESUMABLE_CHANGES)} may change on resume")
    return None


def norm_impl_dtype_error(norm_impl: str, dtype: str) -> str | None:
    """The fused BatchNorm kernel is float32 only: say so rather than fail inside a custom call."""
    if norm_impl == "fused" and dtype != "float32":
        return f"--norm-impl fused is float32 only; use --norm-impl auto or xla with --dtype {dtype}"
    return None


def _at_least(name: str, value, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def _one_of(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
