"""Progressive resizing (`--resize-schedule`): the first epochs trained at smaller sides, the rest at --resize.

An epoch at a smaller side costs less (the reference stem's maps shrink with it), so a run holds more
epochs in the same time; the network, pooled adaptively, takes any side, and the epochs at --resize
fit its weights and BatchNorm statistics to the side the test split is scored at (fast.ai's and
FFCV's progressive resizing). The side is a function of the epoch alone, so a resumed run trains
each epoch at the side an uninterrupted one does.

A stage lasts a number of epochs (32:40) or a share of --epochs (32:44%, rounded half up: 40 of 90),
so a preset's schedule scales with the run when --epochs is given.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

MIN_SIDE = 8  # as --resize's bound
_LENGTH = r"\d+|\d+(?:\.\d+)?%"  # EPOCHS or PERCENT% (of --epochs)
_STAGE = re.compile(rf"(\d+):({_LENGTH})")  # SIDE:EPOCHS or SIDE:PERCENT%


def parse_length(text: str) -> int | Fraction | None:
    """A span of a run: EPOCHS -> int, PERCENT% (of --epochs) -> Fraction; None if neither."""
    if not re.fullmatch(_LENGTH, text.strip()):
        return None
    text = text.strip()
    return Fraction(text[:-1]) if text.endswith("%") else int(text)


def epochs_of(length: int | Fraction, epochs: int) -> int:
    """A span's epochs in a run of `epochs`: a share rounded half up (44% of 90: 40)."""
    return math.floor(length * epochs / 100 + Fraction(1, 2)) if isinstance(length, Fraction) else length


def parse_resize_schedule(text: str) -> tuple[tuple[int, int | Fraction], ...]:
    """ "none", or comma-separated stages -> ((side, epochs, or a percent of --epochs as a Fraction), ...);
    ValueError if bad."""
    if text.strip() == "none":
        return ()
    stages = []
    for part in text.split(","):
        match = _STAGE.fullmatch(part.strip())
        if match:
            side, length = int(match[1]), parse_length(match[2])
        if not match or side < MIN_SIDE or not 0 < length < (100 if isinstance(length, Fraction) else math.inf):
            raise ValueError(
                "--resize-schedule must be none or comma-separated SIDE:EPOCHS or SIDE:PERCENT% stages (sides >= "
                f"{MIN_SIDE}, epochs >= 1, 0 < percent < 100; 32:40 trains the first 40 epochs at 32 pixels), "
                f"got {text!r}"
            )
        stages.append((side, length))
    return tuple(stages)


def resize_stages(config) -> tuple[tuple[int, int], ...]:
    """A run's (`jaxresnet.config.TrainConfig`) stages as (side, epochs), shares of --epochs resolved."""
    stages = parse_resize_schedule(config.resize_schedule)
    return tuple((side, epochs_of(length, config.epochs)) for side, length in stages)


def staged_epochs(config) -> int:
    """How many epochs a run's stages take before it trains at --resize."""
    return sum(epochs for _, epochs in resize_stages(config))


def resize_at(config, epoch: int) -> int:
    """The side a run's training epoch `epoch` (1-based) resizes to."""
    end = 0
    for side, epochs in resize_stages(config):
        end += epochs
        if epoch <= end:
            return side
    return config.resize
