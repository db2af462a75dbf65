"""Answer for new images with a trained run: each image's top classes with probabilities, by the
run's own class names and preprocessing (stored size, resize, normalisation, test-time augmentation)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import numpy as np

from jaxresnet.data import DataError, folder
from jaxresnet.training.checkpoint import load_checkpoint
from jaxresnet.training.loop import StepSpec, scored_logits, scored_variables
from jaxresnet.training.state import TrainState, compute_dtype

CIFAR_SIDE = 32


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (class name, probability), most probable first

    def to_json(self) -> dict:
        return {"image": self.path, "top": [{"class": c, "probability": round(p, 6)} for c, p in self.top]}

    def text(self) -> str:
        return "\n".join([self.path] + [f"  {c:<16} {100 * p:6.2f} %" for c, p in self.top])


def read_images(paths: list[str], side: int) -> np.ndarray:
    """Each file decoded (any size or mode) and resized to the run's stored side; DataError names a bad file."""
    images = []
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise DataError(f"cannot read image {path}: {e.strerror or e}") from None
        images.append(folder.decode(data, side, path))
    return np.stack(images)


def predict_images(workdir: str, paths: list[str], which: str = "best", top: int = 5) -> tuple[int, list[Prediction]]:
    """(the checkpoint's epoch, one Prediction per path)."""
    restored = load_checkpoint(workdir, which)
    config, dataset = restored.config, restored.dataset
    images = read_images(paths, dataset.image_size or dataset.store_size or CIFAR_SIDE)
    probs = class_probabilities(
        restored.state,
        images,
        StepSpec(len(images), config.resize, compute_dtype(config), stats=dataset.stats, tta=config.tta),
    )
    k = min(top, dataset.num_classes)
    out = []
    for path, p in zip(paths, probs):
        best = np.argsort(-p, kind="stable")[:k]
        out.append(Prediction(path, [(dataset.class_names[i], float(p[i])) for i in best]))
    return restored.epoch, out


def class_probabilities(state: TrainState, images: np.ndarray, spec: StepSpec) -> np.ndarray:
    apply = functools.partial(state.apply_fn, scored_variables(state), train=False)
    logits = scored_logits(apply, jax.numpy.asarray(images), spec)
    return np.asarray(jax.nn.softmax(logits.astype(np.float32), axis=-1))
