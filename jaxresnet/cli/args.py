"""Command-line plumbing shared by the scripts: flags, one-line errors with exit status 2."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

from jaxresnet.config import GROUPS, TrainConfig, field_types, flag, flag_of

EXIT_BAD_INPUT = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (no usage dump), exit status 2."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def line_buffered_output() -> None:
    """Every printed line reaches a file or pipe when it is printed: Python block-buffers stdout
    there, so a batch job's log (`train.py > log`, a SLURM output file, `| tee`) would show nothing
    until a buffer filled."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):  # replaced by something that is not a text file
            pass


def fail(prog: str, message: str, status: int = EXIT_BAD_INPUT):
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(status)


def add_config_flags(p: argparse.ArgumentParser, *, torch: bool = False) -> None:
    """One flag per TrainConfig field, from its declaration (`jaxresnet.config.option`); `torch`:
    only those the torch baseline shares."""
    groups = {key: p.add_argument_group(title) if title else p for key, title in GROUPS.items()}
    types = field_types()
    for f in dataclasses.fields(TrainConfig):
        spec = flag_of(f)
        if torch and not spec.torch:
            continue
        kind = types[f.name][0]
        shown = "" if f.default is None else f" (default: {f.default})"
        text = spec.help.replace("%", "%%")  # argparse %-formats help text (`--help` would raise on 32:44%)
        if kind is bool and spec.spelling:  # --no-download: a switch that turns the field off
            groups[spec.group].add_argument(spec.spelling, dest=f.name, action="store_false", help=text)
        elif kind is bool:
            groups[spec.group].add_argument(
                flag(f.name), action=argparse.BooleanOptionalAction, default=f.default, help=text
            )
        else:
            groups[spec.group].add_argument(
                flag(f.name),
                type=_argument_type(spec.parse or kind),
                default=f.default,
                choices=spec.choices,
                help=text + shown.replace("%", "%%"),
            )
    p.add_argument("--workdir", default=None, help="where outputs go (default: a new folder under runs/)")


def _argument_type(parse):
    """argparse's type for `parse`: its ValueError's text becomes the one-line error (argparse would
    otherwise say only "invalid per_class value")."""
    if parse in (int, float, str):
        return parse

    def checked(text: str):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    checked.__name__ = parse.__name__
    return checked


def experiment_config(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str]) -> TrainConfig:
    """The TrainConfig of the flags: the defaults, then `--recipe`'s preset, then the flags given."""
    from jaxresnet.recipes import apply_recipe

    fields = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
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
