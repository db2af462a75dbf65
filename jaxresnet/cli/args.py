"""Command-line plumbing shared by the scripts: flags, one-line errors with exit status 2."""
from __future__ import annotations

import argparse
import os
import sys
import time

from jaxresnet.config import TrainConfig

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
    p.add_argument("--train-per-class", type=int, default=d.train_per_class,
                   help="training images per class (default %(default)s: 5,000 images)")
    p.add_argument("--test-per-class", type=int, default=d.test_per_class,
                   help="test images per class (default: the whole 10,000-image test split)")
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
