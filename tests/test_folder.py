"""--dataset folder:PATH end to end: a small image folder made here (mixed sizes, PNG and JPEG,
grayscale, RGBA and CMYK, three classes) trains, evaluates and predicts; and each bad folder or
image is refused in one line."""

import json
import os

import numpy as np
import pytest
from PIL import Image

CLASSES = ("cat", "dog", "owl")


def make_folder(root, per_class=4, test="val"):
    """Three classes with a mean colour each (so they can be learned), every image a different size and mode."""
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), (test, 2)):
        for c, name in enumerate(CLASSES):
            d = os.path.join(root, split, name)
            os.makedirs(d)
            for i in range(n):
                h, w = 20 + 5 * i, 40 - 3 * i
                arr = np.clip(rng.normal(60 + 70 * c, 20, (h, w, 3)), 0, 255).astype(np.uint8)
                im = Image.fromarray(arr)
                kind = i % 4
                if kind == 0:
                    im.convert("L").save(os.path.join(d, f"{i}.png"))
                elif kind == 1:
                    im.convert("RGBA").save(os.path.join(d, f"{i}.png"))
                elif kind == 2:
                    im.convert("CMYK").save(os.path.join(d, f"{i}.jpg"))
                else:
                    im.save(os.path.join(d, f"{i}.jpeg"))
    return root


ARGS = [
    "--arch",
    "resnet18",
    "--resize",
    "16",
    "--store-size",
    "24",
    "--epochs",
    "2",
    "--batch-size",
    "6",
    "--no-progress",
    "--checkpoint-minutes",
    "0",
]


def test_an_image_folder_trains_evaluates_and_predicts(tmp_path, run_script):
    root = make_folder(str(tmp_path / "pets"))
    workdir = tmp_path / "run"
    trained = run_script("train.py", "--dataset", f"folder:{root}", *ARGS, "--workdir", workdir, check=True)
    assert "Epoch 2/2" in trained.stdout and trained.stdout.count("Test Accuracy") == 2
    assert (
        f"Data: {root}: 12 training images from 'train', 6 test images from 'val', 3 classes, stored at 24x24"
        in trained.stderr
    )
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["dataset_info"]["class_names"] == list(CLASSES) and saved["dataset_info"]["store_size"] == 24
    assert saved["train_per_class"] is None  # every image by default for a dataset other than CIFAR-10

    # the same workdir with another store size is another experiment: refused, naming the flag
    other = run_script("train.py", "--dataset", f"folder:{root}", *ARGS, "--store-size", "32", "--workdir", workdir)
    assert other.returncode == 2 and "--store-size is 32 but the run being resumed used 24" in other.stderr

    evaluated = run_script("evaluate.py", "--workdir", workdir, check=True)
    assert "Test Accuracy" in evaluated.stdout and all(f"  {c}" in evaluated.stdout for c in CLASSES)
    assert os.path.exists(workdir / "confusion-epoch2.png")

    images = [os.path.join(root, "val", "owl", "0.png"), os.path.join(root, "val", "dog", "1.png")]
    predicted = run_script("predict.py", "--workdir", workdir, "--json", *images, check=True)
    out = json.loads(predicted.stdout)
    assert [p["image"] for p in out["predictions"]] == images
    for p in out["predictions"]:
        assert [t["class"] for t in p["top"]] and set(t["class"] for t in p["top"]) == set(CLASSES)
        probs = [t["probability"] for t in p["top"]]
        assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-4
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG but not really")
    refused = run_script("predict.py", "--workdir", workdir, images[0], bad)
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip().splitlines() == [
        f"predict.py: error: cannot decode image {bad}: "
        f"UnidentifiedImageError: " + refused.stderr.split("UnidentifiedImageError: ")[1].strip()
    ]


def test_bad_folders_are_refused_in_one_line_and_leave_nothing(tmp_path, run_script):
    empty = tmp_path / "empty"
    empty.mkdir()
    for dataset, message in [
        (f"folder:{empty}", "no train split"),
        (f"folder:{tmp_path / 'missing'}", "no such folder"),
    ]:
        proc = run_script("train.py", "--dataset", dataset, *ARGS, "--workdir", tmp_path / "w")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr[-2000:]
        assert not os.path.exists(tmp_path / "w")  # nothing written


def test_each_bad_folder_or_image_is_named(tmp_path):
    import io

    from jaxresnet.config import TrainConfig
    from jaxresnet.data import DataError
    from jaxresnet.training.run import train_run

    def refusal(root, **extra):
        config = TrainConfig(
            **{
                **dict(
                    dataset=f"folder:{root}",
                    arch="resnet18",
                    resize=16,
                    store_size=24,
                    epochs=1,
                    train_per_class=None,
                    test_per_class=None,
                    data_cache="off",
                ),
                **extra,
            }
        )
        with pytest.raises(DataError) as e:
            train_run(config, str(tmp_path / "w"), out=io.StringIO(), err=io.StringIO())
        assert not os.path.exists(tmp_path / "w")
        return str(e.value)

    root = make_folder(str(tmp_path / "a"))
    os.makedirs(os.path.join(root, "train", "emu"))
    assert f"class folder {os.path.join(root, 'train', 'emu')} has no images" in refusal(root)
    root = make_folder(str(tmp_path / "b"))
    with open(os.path.join(root, "train", "dog", "broken.jpg"), "wb") as f:
        f.write(b"not an image at all")
    assert f"cannot decode image {os.path.join(root, 'train', 'dog', 'broken.jpg')}" in refusal(root)
    root = make_folder(str(tmp_path / "c"))
    assert "6 images per class asked for, but the split holds only 4 of class 'cat'" in refusal(root, train_per_class=6)
    root = make_folder(str(tmp_path / "d"), test="elsewhere")
    assert "no test split" in refusal(root)
    root = make_folder(str(tmp_path / "e"))
    os.rename(os.path.join(root, "val", "owl"), os.path.join(root, "val", "emu"))
    assert "the classes of train (cat, dog, owl) and val (cat, dog, emu) differ" in refusal(root)


def test_predict_text_lists_each_image_then_its_classes_by_probability():
    from jaxresnet.tools.predict import Prediction

    text = Prediction("val/owl/0.png", [("owl", 0.75), ("dog", 0.2), ("cat", 0.05)]).text()
    assert text.splitlines() == [
        "val/owl/0.png",
        "  owl               75.00 %",
        "  dog               20.00 %",
        "  cat                5.00 %",
    ]
