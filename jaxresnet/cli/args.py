"""Command-line plumbing shared by the scripts: flags, one-line errors with exit status 2."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

from jaxresnet.config import TTAS, TrainConfig

EXIT_BAD_INPUT = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (no usage dump), exit status 2."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def fail(prog: str, message: str, status: int = EXIT_BAD_INPUT):
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(status)


def add_experiment_flags(p: argparse.ArgumentParser) -> None:
    """The flags both train.py and train_torch.py take (defaults: the reference experiment)."""
    d = TrainConfig()
    p.add_argument("--resize", type=int, default=d.resize, help="image side after bilinear resize (default %(default)s)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="default %(default)s")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="default %(default)s")
    p.add_argument("--lr", type=float, default=d.lr, help="SGD learning rate (default %(default)s)")
    p.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum (default %(default)s)")
    p.add_argument("--dataset", default=d.dataset,
                   help="any tensorflow-datasets image-classification dataset, e.g. cifar100, svhn_cropped "
                        "(default %(default)s)")
    p.add_argument("--store-size", type=int, default=d.store_size,
                   help="--dataset folder:PATH: the side in pixels every image is resized to once, on the host, "
                        "and kept at on the device (default %(default)s)")
    p.add_argument("--train-per-class", type=per_class, default=d.train_per_class,
                   help="training images per class, or all (default: 500 for CIFAR-10, 5,000 images; all for "
                        "other datasets)")
    p.add_argument("--test-per-class", type=per_class, default=d.test_per_class,
                   help="test images per class, or all (default: all; CIFAR-10's whole 10,000-image test split)")
    p.add_argument("--seed", type=int, default=d.seed, help="subset, init and shuffle seed (default %(default)s)")
    p.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size, help="default %(default)s")
    p.add_argument("--data-dir", default=d.data_dir,
                   help="tensorflow-datasets folder (default ~/tensorflow_datasets)")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="never touch the network; fail if CIFAR-10 is not in --data-dir")
    p.add_argument("--data-cache", default=d.data_cache,
                   help="folder of decoded images, read without TensorFlow on later runs (default "
                        "$JAXRESNET_DATA_CACHE or ~/.cache/jaxresnet/data; 'off' for none)")
    p.add_argument("--workdir", default=None,
                   help="where outputs go (default: a new folder under runs/)")
    add_recipe_flags(p)


def add_recipe_flags(p: argparse.ArgumentParser) -> None:
    """Beyond the reference (whose values are the defaults), with torch's meaning in both frameworks."""
    from jaxresnet.data.augment import AUGMENTS
    from jaxresnet.training.optimizer import SCHEDULES

    from jaxresnet.recipes import RECIPES

    d = TrainConfig()
    g = p.add_argument_group("recipe (the defaults are the reference's; README: A better model)")
    g.add_argument("--recipe", default=d.recipe, choices=sorted(RECIPES),
                   help="a preset of the experiment flags; a flag given explicitly overrides its value "
                        "(default %(default)s)")
    g.add_argument("--augment", default=d.augment,
                   help=f"training augmentation on the device: none, or a comma-separated list of {', '.join(AUGMENTS)} "
                        "(default %(default)s)")
    g.add_argument("--crop-padding", type=int, default=d.crop_padding,
                   help="crop: the largest shift in source pixels, reflect-padded (default %(default)s)")
    g.add_argument("--cutout-size", type=int, default=d.cutout_size,
                   help="cutout: the zeroed square's side in source pixels (default %(default)s)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help="torch SGD's: wd*param added to the gradient before momentum (default %(default)s)")
    g.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=d.nesterov,
                   help="Nesterov momentum (torch's); --no-nesterov turns a recipe's off")
    g.add_argument("--schedule", default=d.schedule, choices=SCHEDULES,
                   help="learning rate per step: constant, cosine (to 0) or onecycle (peak --lr) (default %(default)s)")
    g.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs,
                   help="linear warm-up from lr/100 (onecycle: its rising phase) (default %(default)s)")
    g.add_argument("--label-smoothing", type=float, default=d.label_smoothing,
                   help="torch CrossEntropyLoss's label_smoothing (default %(default)s)")
    g.add_argument("--tta", default=d.tta, choices=TTAS,
                   help="test-time augmentation: flip averages the logits with the mirrored image's")
    g.add_argument("--eval-every", type=int, default=d.eval_every,
                   help="score the test split every N epochs and at the last (default %(default)s)")


def experiment_config(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str],
                      exclude: tuple[str, ...]):
    """The TrainConfig of the flags: the defaults, then `--recipe`'s preset, then the flags given."""
    from jaxresnet.recipes import apply_recipe

    fields = {k: v for k, v in vars(args).items() if k not in exclude}
    given = given_flags(parser, argv)
    config = apply_recipe(TrainConfig(**fields), args.recipe, given)
    if config.dataset != TrainConfig.dataset and "train_per_class" not in given:
        config = dataclasses.replace(config, train_per_class=None)  # other datasets: every image by default
    return config


def given_flags(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The destinations of the flags present in `argv` (a second parse in which nothing has a default)."""
    import copy

    bare = copy.deepcopy(parser)
    for action in bare._actions:
        action.default = argparse.SUPPRESS
    bare.error = lambda message: None  # the real parse has already accepted argv
    try:
        return set(vars(bare.parse_known_args(argv)[0]))
    except SystemExit:
        return set()


def per_class(text: str) -> int | None:
    """An image count per class, or "all" (None)."""
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or all, got {text!r}") from None


def default_workdir(tag: str) -> str:
    base = os.path.join("runs", time.strftime("%Y%m%d-%H%M%S") + "-" + tag)
    path, i = base, 1
    while os.path.exists(path):
        i += 1
        path = f"{base}-{i}"
    return path


def quiet_libraries() -> None:
    """Keep orbax/absl's informational warnings out of the user's terminal; errors still show."""
    import logging

    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    # Reading a damaged checkpoint leaves orbax's failed read tasks unretrieved; the damage itself is
    # reported by jaxresnet in one line, so asyncio's dump of each task would only bury it.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
