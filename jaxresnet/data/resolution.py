"""Progressive resizing (`--resize-schedule`): the first epochs trained at smaller sides, the rest at --resize.

An epoch at a smaller side costs less (the reference stem's maps shrink with it), so a run holds more
epochs in the same time; the network, pooled adaptively, takes any side, and the epochs at --resize
fit its weights and BatchNorm statistics to the side the test split is scored at (fast.ai's and
FFCV's progressive resizing). The side is a function of the epoch alone, so a resumed run trains
each epoch at the side an uninterrupted one does.
"""

from __future__ import annotations

MIN_SIDE = 8  # as --resize's bound


def parse_resize_schedule(text: str) -> tuple[tuple[int, int], ...]:
    """ "none", or comma-separated SIZE:EPOCHS stages -> ((side, epochs), ...); ValueError if bad."""
    if text.strip() == "none":
        return ()
    stages = []
    for part in text.split(","):
        side, colon, epochs = part.strip().partition(":")
        stage = (int(side), int(epochs)) if colon and side.isdigit() and epochs.isdigit() else None
        if stage is None or stage[0] < MIN_SIDE or stage[1] < 1:
            raise ValueError(
                "--resize-schedule must be none or comma-separated SIDE:EPOCHS stages (sides >= "
                f"{MIN_SIDE}, epochs >= 1; 32:40 trains the first 40 epochs at 32 pixels), got {text!r}"
            )
        stages.append(stage)
    return tuple(stages)


def staged_epochs(text: str) -> int:
    """How many epochs the schedule's stages take before the run trains at --resize."""
    return sum(epochs for _, epochs in parse_resize_schedule(text))


def resize_at(config, epoch: int) -> int:
    """The side a run's (`jaxresnet.config.TrainConfig`) training epoch `epoch` (1-based) resizes to."""
    end = 0
    for side, epochs in parse_resize_schedule(config.resize_schedule):
        end += epochs
        if epoch <= end:
            return side
    return config.resize
