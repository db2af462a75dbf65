"""Will a step fit? An estimate of a training and a scoring step's working memory, checked against
what the device (or, on CPU, the machine) has free, before any data is loaded or program compiled.

The per-pixel figures are measured, not derived: XLA:CPU's temporary buffer for a ResNet34 float32
training step at --resize 128, batch 32 is 558 MB, about 1,070 bytes per image pixel (activations
kept for the backward pass, their gradients, workspace); a scoring step keeps only a few live maps,
about 150 bytes per pixel. bfloat16 halves the activations. Deeper or wider networks scale them.
"""

from __future__ import annotations

import os

import jax

from jaxresnet.config import TrainConfig
from jaxresnet.data.resolution import parse_resize_schedule

TRAIN_BYTES_PER_PIXEL = 1100
EVAL_BYTES_PER_PIXEL = 150
ARCH_SCALE = {"resnet18": 0.6, "resnet34": 1.0, "resnet50": 2.5}


def step_bytes(config: TrainConfig) -> int:
    """The larger of a training and a scoring step's working memory, estimated."""
    side = max([config.resize] + [s for s, _ in parse_resize_schedule(config.resize_schedule)])  # the largest trained
    scale = ARCH_SCALE.get(config.arch, 1.0) * {"bfloat16": 0.6, "float64": 2.0}.get(config.dtype, 1.0)
    train = config.batch_size * side * side * TRAIN_BYTES_PER_PIXEL * scale
    score = config.eval_batch_size * config.resize * config.resize * EVAL_BYTES_PER_PIXEL * scale
    return int(max(train, score))


def available_bytes() -> int | None:
    """Free memory of the first device where it reports it, else the machine's available memory."""
    stats = jax.local_devices()[0].memory_stats() or {}  # this process's own device
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def check(config: TrainConfig) -> str | None:
    """A one-line refusal when a step cannot fit, naming the estimate and what is available."""
    need, have = step_bytes(config), available_bytes()
    if have is None or need <= 0.9 * have:
        return None
    return (
        f"a step at --resize {config.resize} with --batch-size {config.batch_size} / --eval-batch-size "
        f"{config.eval_batch_size} needs about {_gb(need)} of memory, and {_gb(have)} is available on "
        f"{jax.local_devices()[0].platform}; lower --resize or the batch sizes"
    )


def check_stored_images(count: int, side: int, flag_hint: str, pixels: int | None = None) -> str | None:
    """A one-line refusal when `count` stored uint8 images of side `side` (or `pixels` each; on the
    device, and decoded once on the host) cannot fit, naming both figures."""
    need, have = count * (pixels or side * side) * 3, available_bytes()
    if have is None or need <= 0.5 * have:
        return None
    size = f"{side}x{side}" if not pixels else f"{pixels} pixels each"
    return (
        f"{count} images stored at {size} need {_gb(need)} on the device and as much on the host, "
        f"and {_gb(have)} is available; {flag_hint}"
    )


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n < 2**60 else f"{n:.1e} bytes"
