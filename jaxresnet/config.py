"""A run's configuration: every setting declared once, with its flag, bounds, help and resume rule.

Each `TrainConfig` field is declared with `option(...)`: its default (the reference experiment's),
its help text, its bounds or choices, whether a resumed run may change it, and whether the torch
baseline shares it. The parsers of train.py and train_torch.py (`jaxresnet.cli.args`), `validate`'s
checks and the resume rules are made from those declarations, so a new setting is one field here
plus the code that uses it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jaxresnet.data.augment import parse_augment, parse_refine, refined_epochs
from jaxresnet.data.policy import BINS, RANDAUGMENT_BIN, RANDAUGMENT_OPS
from jaxresnet.data.resolution import parse_resize_schedule, staged_epochs
from jaxresnet.models import ARCHS
from jaxresnet.models.layers import CONV_IMPLS, INITS, NORM_IMPLS
from jaxresnet.recipes import RECIPES
from jaxresnet.training.optimizer import SCHEDULES

# float64 is a numerical reference, not a way to train: parameters, activations and statistics in
# double precision (CPU; JAX's 64-bit mode must be on), where rounding cannot hide a sharding or
# multi-process bug (tests/test_distributed.py).
DTYPES = ("float32", "bfloat16", "float64")
TTAS = ("none", "flip", "flip-shift")
GROUPS = {
    "experiment": None,
    "recipe": "recipe (the defaults are the reference's; README: A better model)",
    "run": "how and how long to run (a resumed run may change these)",
}


class ConfigError(ValueError):
    """A configuration value is out of range or inconsistent; the message names the flag."""


@dataclass(frozen=True)
class Flag:
    """How one setting is given on the command line and checked."""

    help: str
    group: str = "experiment"  # a key of GROUPS: where --help lists it
    low: float | None = None  # the smallest value allowed (exclusive with `positive`)
    positive: bool = False  # must be > 0
    below: float | None = None  # values must be smaller than this
    choices: tuple | None = None
    resumable: bool = False  # a resumed run may change it; the others define the experiment
    torch: bool = True  # the torch baseline takes it, with the same meaning
    spelling: str | None = None  # the flag, where it is not --the-field-name ("--no-download")
    parse: Callable[[str], Any] | None = None  # the argument's parser, where not the field's type
    check: Callable[[Any], str | None] | None = None  # a further check: the error message, or None
    note: str = ""  # what a bound's message adds ("(0: never)")


def option(default, help: str, **flag) -> Any:
    """A TrainConfig field: its default and its `Flag`."""
    return dataclasses.field(default=default, metadata={"flag": Flag(help=help, **flag)})


def per_class(text: str) -> int | None:
    """An image count per class, or "all" (None)."""
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected an integer or all, got {text!r}") from None


def _parse_error(parse: Callable[[str], Any]) -> Callable[[str], str | None]:
    """A `Flag.check` from a parser that raises ValueError with the message to show."""

    def check(value: str) -> str | None:
        try:
            parse(value)
        except ValueError as e:
            return str(e)
        return None

    return check


def _dataset_error(value) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"--dataset must name a tensorflow-datasets dataset, got {value!r}"
    return None


@dataclass(frozen=True)
class TrainConfig:
    # The experiment: changing any of these makes a different run, so a resume refuses them.
    arch: str = option("resnet34", "the network", choices=tuple(ARCHS))
    dataset: str = option(
        "cifar10",
        "any tensorflow-datasets image-classification dataset (cifar100, svhn_cropped, "
        "...), or folder:PATH for your own images",
        check=_dataset_error,
    )
    store_size: int = option(
        64,
        "folder:PATH and datasets of varying image sizes: the side every image is "
        "resized to once, on the host, and kept at",
        low=8,
    )
    resize: int = option(128, "image side after the bilinear resize on the device", low=8)
    batch_size: int = option(32, "training batch", low=1)
    lr: float = option(0.01, "SGD learning rate (the peak, with a schedule)", positive=True)
    momentum: float = option(0.9, "SGD momentum (torch's: buf = m*buf + g)", low=0, below=1)
    train_per_class: int | None = option(
        500,
        "training images per class, or all (500 for CIFAR-10: 5,000 images; all for other datasets)",
        low=1,
        parse=per_class,
    )
    test_per_class: int | None = option(
        None, "test images per class, or all (default: the whole test split)", low=1, parse=per_class
    )
    seed: int = option(
        0,
        "subset, initialisation, shuffle and augmentation seed",
        low=0,
        check=lambda v: f"--seed must be below 2**31, got {v}" if v >= 2**31 else None,
    )
    dtype: str = option(
        "float32",
        "compute dtype; parameters and BatchNorm statistics stay float32 (float64: a numerical reference, CPU)",
        choices=DTYPES,
    )
    init: str = option("torch", "weight initialisation: torch's defaults or flax's", choices=INITS, torch=False)
    # The recipe (tests/test_recipe.py; docs/recipe/): the reference's values are the defaults.
    recipe: str = option(
        "reference",
        "a preset of the experiment flags; a flag given explicitly overrides its value",
        group="recipe",
        choices=tuple(sorted(RECIPES)),
    )
    augment: str = option(
        "none",
        "training augmentation on the device: none, or a comma-separated list of crop, flip, trivialaugment or "
        "randaugment (torchvision's policies), cutout",
        group="recipe",
        check=_parse_error(parse_augment),
    )
    resize_schedule: str = option(
        "none",
        "progressive resizing: comma-separated SIDE:EPOCHS or SIDE:PERCENT% (of --epochs) stages trained before "
        "the rest of the epochs at --resize (32:40: epochs 1-40 at 32 pixels); the test split is always scored at "
        "--resize",
        group="recipe",
        check=_parse_error(parse_resize_schedule),
    )
    refine: str = option(
        "0",
        "refined augmentation: the last EPOCHS or PERCENT% of --epochs train with crop and flip only, the policy, "
        "cutout, MixUp and CutMix off (He et al. 2019; 0: off)",
        group="recipe",
        check=_parse_error(parse_refine),
    )
    randaugment_ops: int = option(
        RANDAUGMENT_OPS,
        "randaugment: the ops applied to each image in turn (torchvision's num_ops)",
        group="recipe",
        low=1,
    )
    randaugment_magnitude: int = option(
        RANDAUGMENT_BIN,
        f"randaugment: the magnitude, a bin of 0-{BINS - 1} (torchvision's magnitude of {BINS} bins)",
        group="recipe",
        low=0,
        check=lambda b: None if b < BINS else f"--randaugment-magnitude must be a bin of 0-{BINS - 1}, got {b}",
    )
    crop_padding: int = option(4, "crop: the largest shift in source pixels, reflect-padded", group="recipe", low=1)
    cutout_size: int = option(8, "cutout: the zeroed square's side in source pixels", group="recipe", low=1)
    weight_decay: float = option(
        0.0, "torch SGD's: wd*param added to the gradient before momentum", group="recipe", low=0
    )
    nesterov: bool = option(False, "Nesterov momentum (torch's); --no-nesterov turns a recipe's off", group="recipe")
    bias_decay: bool = option(
        True, "weight decay on BatchNorm's scales and shifts and on biases too, as torch SGD's one parameter group "
        "does; --no-bias-decay: on conv and linear weights only (torch: a group of the 1-d parameters at 0)",
        group="recipe")  # fmt: skip
    zero_init_residual: bool = option(
        False, "start each block's last BatchNorm scale at 0, so each block starts as its shortcut (torchvision's "
        "zero_init_residual)", group="recipe")  # fmt: skip
    schedule: str = option(
        "constant",
        "learning rate per step: constant, cosine (to 0) or onecycle (peak --lr)",
        group="recipe",
        choices=SCHEDULES,
    )
    warmup_epochs: float = option(0.0, "linear warm-up from lr/100 (onecycle: its rising phase)", group="recipe", low=0)
    mixup: float = option(
        0.0, "MixUp: each batch blended with itself rolled by one, by a weight from Beta(a, a) (torchvision's "
        "v2.MixUp; 0: off)", group="recipe", low=0)  # fmt: skip
    cutmix: float = option(
        0.0, "CutMix: a box of the batch rolled by one pasted in, its area from Beta(a, a) (torchvision's v2.CutMix; "
        "0: off; with --mixup too, each batch takes one of the two)", group="recipe", low=0)  # fmt: skip
    mix_prob: float = option(
        1.0, "the share of batches --mixup/--cutmix mix, each batch drawn (the CutMix paper's CIFAR runs: 0.5); the "
        "others train unmixed", group="recipe", positive=True,
        check=lambda v: f"--mix-prob must be in (0, 1], got {v}" if v > 1 else None)  # fmt: skip
    ema: float = option(
        0.0, "score an exponential moving average of the weights, this decay per step, in place of the weights, "
        "with BatchNorm statistics recomputed for it on the training images (torch's AveragedModel and update_bn; "
        "0: off)", group="recipe", low=0, below=1)  # fmt: skip
    label_smoothing: float = option(0.0, "torch CrossEntropyLoss's label_smoothing", group="recipe", low=0, below=1)
    tta: str = option(
        "none",
        "test-time augmentation: flip averages the logits with the mirrored image's; flip-shift also with the "
        "image shifted one source pixel up-left and down-right (airbench's: 6 passes, 3x flip's cost)",
        group="recipe",
        choices=TTAS,
    )
    # How and how long to run: these may change when a run is resumed.
    epochs: int = option(
        10, "epochs to train (raise it on a finished run to extend it)", group="run", low=1, resumable=True
    )
    eval_every: int = option(
        1, "score the test split every N epochs and at the last", group="recipe", low=1, resumable=True
    )
    conv_impl: str = option(
        "auto",
        "how convolutions are computed (auto: fastest per backend and shape)",
        group="run",
        choices=CONV_IMPLS,
        resumable=True,
        torch=False,
    )
    norm_impl: str = option(
        "auto",
        "how training BatchNorm+ReLU(+residual) is computed: xla, or fused C++ on CPU (auto: fused where it builds)",
        group="run",
        choices=NORM_IMPLS,
        resumable=True,
        torch=False,
    )
    eval_batch_size: int = option(
        500, "test batch (the last is padded, the padding discarded)", group="run", low=1, resumable=True
    )
    save_every: int = option(
        1, "checkpoint every N epochs (and the last)", group="run", low=1, resumable=True, torch=False
    )
    keep: int = option(3, "latest checkpoints kept, plus the best", group="run", low=1, resumable=True, torch=False)
    checkpoint_minutes: float = option(
        10.0,
        "also save a step checkpoint inside an epoch this often, at a step "
        "boundary (0: never); SIGTERM/SIGINT always save one",
        group="run",
        low=0,
        resumable=True,
        torch=False,
        note="(0: never)",
    )
    steps_per_call: int = option(
        0,
        "training steps per jitted call, run as one lax.scan (0: auto, a divisor of "
        "the epoch's steps up to 16; 1 on CPU above --resize 64)",
        group="run",
        low=0,
        resumable=True,
        torch=False,
    )
    data_dir: str | None = option(
        None, "tensorflow-datasets folder (default ~/tensorflow_datasets)", group="run", resumable=True
    )
    download: bool = option(
        True,
        "never touch the network; fail if the dataset is not in --data-dir",
        group="run",
        spelling="--no-download",
        resumable=True,
    )
    data_cache: str | None = option(
        None,
        "folder of decoded images, read without TensorFlow on later runs "
        "(default $JAXRESNET_DATA_CACHE or ~/.cache/jaxresnet/data; 'off' for none)",
        group="run",
        resumable=True,
    )

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the first flag whose value is out of bounds or inconsistent."""
        for f in dataclasses.fields(self):
            if error := _field_error(f, getattr(self, f.name)):
                raise ConfigError(error)
        if self.warmup_epochs >= self.epochs and self.warmup_epochs:
            raise ConfigError(f"--warmup-epochs ({self.warmup_epochs}) must be fewer than --epochs ({self.epochs})")
        if self.resize_schedule != "none" and staged_epochs(self) >= self.epochs:
            raise ConfigError(
                f"--resize-schedule {self.resize_schedule} spans {staged_epochs(self)} epochs; "
                f"--epochs ({self.epochs}) must go beyond it, so the run ends at --resize ({self.resize})"
            )
        if refined_epochs(self) >= self.epochs:
            raise ConfigError(
                f"--refine {self.refine} spans {refined_epochs(self)} epochs; "
                f"--epochs ({self.epochs}) must go beyond it"
            )
        if (self.randaugment_ops, self.randaugment_magnitude) != (RANDAUGMENT_OPS, RANDAUGMENT_BIN) and (
            "randaugment" not in parse_augment(self.augment)
        ):
            raise ConfigError("--randaugment-ops and --randaugment-magnitude need randaugment in --augment")
        if self.nesterov and not self.momentum:
            raise ConfigError("--nesterov needs a momentum > 0 (torch's rule)")
        if error := norm_impl_dtype_error(self.norm_impl, self.dtype):
            raise ConfigError(error)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def flag_of(field: dataclasses.Field) -> Flag:
    return field.metadata["flag"]


@functools.cache
def field_types() -> dict[str, tuple[type, bool]]:
    """Each field's (type, whether None is allowed): `int | None` is (int, True)."""
    out = {}
    for name, hint in typing.get_type_hints(TrainConfig).items():
        args = typing.get_args(hint)
        out[name] = (next(a for a in args if a is not type(None)), True) if args else (hint, False)
    return out


def flag(name: str) -> str:
    """The command-line spelling of field `name`."""
    return flag_of(TrainConfig.__dataclass_fields__[name]).spelling or "--" + name.replace("_", "-")


# Fields a resumed run may change; every other field defines the experiment.
RESUMABLE_CHANGES = tuple(f.name for f in dataclasses.fields(TrainConfig) if flag_of(f).resumable)


def _field_error(f: dataclasses.Field, value) -> str | None:
    spec, (kind, optional), name = flag_of(f), field_types()[f.name], flag(f.name)
    if value is None and optional:
        return None  # "all", or the library's default
    if spec.choices is not None and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}, got {value!r}"
    if kind is int and (
        not isinstance(value, int) or isinstance(value, bool) or (spec.low is not None and value < spec.low)
    ):
        return f"{name} must be an integer >= {spec.low:g}, got {value!r}"
    if kind is float and (error := _number_error(spec, value)):
        return f"{name} {error}, got {value}"
    return spec.check(value) if spec.check else None


def _number_error(spec: Flag, value) -> str | None:
    finite = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if spec.positive and not (finite and value > 0):
        return "must be positive"
    if spec.below is not None and not (finite and spec.low <= value < spec.below):
        return f"must be in [{spec.low:g}, {spec.below:g})"
    if spec.low is not None and not (finite and value >= spec.low):
        return " ".join(filter(None, [f"must be a number >= {spec.low:g}", spec.note]))
    return None


def config_flags(config: TrainConfig) -> list[str]:
    """The command-line flags that make `config` (those that differ from the defaults)."""
    out = []
    for f in dataclasses.fields(TrainConfig):
        value = getattr(config, f.name)
        if value == f.default:
            continue
        if field_types()[f.name][0] is bool:
            out.append(flag(f.name) if flag_of(f).spelling or value else "--no-" + f.name.replace("_", "-"))
        else:
            out += [flag(f.name), "all" if value is None else str(value)]
    return out


def resume_mismatch(saved: TrainConfig, now: TrainConfig) -> str | None:
    """A message naming the first experiment-defining field that differs, or None."""
    if saved.schedule != "constant" and saved.epochs != now.epochs and saved.schedule == now.schedule:
        return (
            f"--epochs is {now.epochs} but the run being resumed used {saved.epochs}, and its "
            f"--schedule {saved.schedule} spans them; a scheduled run cannot be extended"
        )
    for f in dataclasses.fields(TrainConfig):
        if f.name in RESUMABLE_CHANGES:
            continue
        a, b = getattr(saved, f.name), getattr(now, f.name)
        if a != b:
            return (
                f"{flag(f.name)} is {b!r} but the run being resumed used {a!r}; "
                f"only {', '.join(flag(n) for n in RESUMABLE_CHANGES)} may change on resume"
            )
    return None


def norm_impl_dtype_error(norm_impl: str, dtype: str) -> str | None:
    """The fused BatchNorm kernel is float32 only: say so rather than fail inside a custom call."""
    if norm_impl == "fused" and dtype != "float32":
        return f"--norm-impl fused is float32 only; use --norm-impl auto or xla with --dtype {dtype}"
    return None
