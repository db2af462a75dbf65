"""The strong augmentations: TrivialAugment / RandAugment's operations, MixUp and CutMix, the weights'
moving average, and their flags."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image, ImageOps

from jaxresnet.data import Split
from jaxresnet.data.augment import Augment, augment_source, epoch_key, mix_batch, step_key
from jaxresnet.data.policy import OPS, apply_ops, apply_policy, magnitudes
from jaxresnet.models import ResNet18
from jaxresnet.training.loop import DeviceData, StepSpec, train_steps, zero_metrics
from jaxresnet.training.state import create_train_state, cross_entropy


def _known_image(side=12):
    """A deterministic RGB image with edges, gradients and every channel different."""
    y, x = np.mgrid[0:side, 0:side]
    img = np.stack([(x * 21) % 256, (y * 17 + 40) % 256, ((x + y) * 9 + 5) % 256], -1)
    img[3:6, 4:9] = (230, 30, 120)
    return img.astype(np.uint8)


def _ours(img, op, m):
    out = apply_ops(jnp.asarray(img[None], jnp.float32), jnp.asarray([OPS.index(op)]), jnp.asarray([m], jnp.float32))
    return np.asarray(out[0])


# PIL is where these operations were defined (AutoAugment, TrivialAugment); torchvision follows it.
EXACT = [
    ("identity", 0.0, lambda im: im),
    ("posterize", 3.0, lambda im: ImageOps.posterize(im, 3)),
    ("solarize", 128.0, lambda im: ImageOps.solarize(im, 128)),
    ("autocontrast", 0.0, ImageOps.autocontrast),
    ("equalize", 0.0, ImageOps.equalize),
    ("translate_x", 3.0, lambda im: im.transform(im.size, Image.Transform.AFFINE, (1, 0, -3, 0, 1, 0), fillcolor=0)),
    ("translate_y", -2.7, lambda im: im.transform(im.size, Image.Transform.AFFINE, (1, 0, 0, 0, 1, 2), fillcolor=0)),
    ("shear_x", 0.7, lambda im: im.transform(im.size, Image.Transform.AFFINE, (1, 0.7, 0, 0, 1, 0), fillcolor=0)),
    ("shear_y", -0.3, lambda im: im.transform(im.size, Image.Transform.AFFINE, (1, 0, 0, -0.3, 1, 0), fillcolor=0)),
    ("rotate", 90.0, lambda im: im.rotate(90, fillcolor=0)),
]


@pytest.mark.parametrize("op, m, pil", EXACT, ids=[e[0] for e in EXACT])
def test_each_exact_operation_is_pils_on_a_known_image(op, m, pil):
    img = _known_image()
    want = np.asarray(pil(Image.fromarray(img)))
    np.testing.assert_array_equal(_ours(img, op, m), want)


@pytest.mark.parametrize("op", ["brightness", "color", "contrast", "sharpness"])
@pytest.mark.parametrize("m", [-0.9, -0.4, 0.5])
def test_each_enhancement_is_pils_to_its_rounding(op, m):
    """Blends with a degenerate image: PIL rounds, torchvision (whose arithmetic ours follows) cuts
    the fraction, and their grayscales round apart: a level or two, never more."""
    from PIL import ImageEnhance

    img = _known_image()
    enhancer = {"brightness": ImageEnhance.Brightness, "color": ImageEnhance.Color,
                "contrast": ImageEnhance.Contrast, "sharpness": ImageEnhance.Sharpness}[op]  # fmt: skip
    want = np.asarray(enhancer(Image.fromarray(img)).enhance(1 + m)).astype(np.float32)
    got = _ours(img, op, m)
    assert np.abs(got - want).max() <= 2 and np.abs(got - want).mean() < 0.75, np.abs(got - want).max()
    assert np.abs(got - img).mean() > 1  # and the operation really changed the image


def test_magnitudes_are_torchvisions():
    ta, ra = magnitudes("trivialaugment", 32), magnitudes("randaugment", 32)
    row = {op: i for i, op in enumerate(OPS)}
    assert ta[row["rotate"], -1] == 135.0 and ta[row["translate_x"], -1] == 32.0 and ta[row["shear_x"], -1] == 0.99
    assert list(ta[row["posterize"], [0, 5, 30]]) == [8, 7, 2] and list(ta[row["solarize"], [0, 30]]) == [255, 0]
    assert ra[row["rotate"], -1] == 30.0 and ra[row["translate_x"], -1] == pytest.approx(150 / 331 * 32)
    assert list(ra[row["posterize"], [0, 30]]) == [8, 4] and not ta[row["identity"]].any()


def test_policy_draws_follow_seed_epoch_and_step_and_differ_per_image():
    rng = np.random.default_rng(0)
    batch = jnp.asarray(rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8))
    aug = Augment(crop=2, flip=True, policy="trivialaugment")
    key = epoch_key(jax.random.key(7), 3)
    a, b = augment_source(batch, step_key(key, 5), aug), augment_source(batch, step_key(key, 5), aug)
    np.testing.assert_array_equal(a, b)  # the same (seed, epoch, step): the same draws
    assert not np.array_equal(a, augment_source(batch, step_key(key, 6), aug))
    assert not np.array_equal(a, augment_source(batch, step_key(epoch_key(jax.random.key(7), 4), 5), aug))
    one = apply_policy(jnp.broadcast_to(batch[:1], batch.shape), jax.random.key(0), "randaugment")
    assert len({np.asarray(x).tobytes() for x in one}) > 8  # one image, drawn for 16 times: mostly apart
    assert one.dtype == jnp.uint8


def _recorded_ops(monkeypatch, policy_module, batch, ops, magnitude):
    """(op, |magnitude|) of every image in every round of RandAugment(ops, magnitude) on `batch`."""
    seen, apply_ops_ = [], policy_module.apply_ops

    def recording(x, op, m):
        seen.append((np.asarray(op), np.abs(np.asarray(m))))
        return apply_ops_(x, op, m)

    monkeypatch.setattr(policy_module, "apply_ops", recording)
    apply_policy(batch, jax.random.key(3), "randaugment", ops, magnitude)
    return seen


@pytest.mark.parametrize("ops, magnitude", [(1, 0), (3, 14), (2, 30)])
def test_randaugment_applies_its_ops_in_turn_at_its_magnitude(monkeypatch, ops, magnitude):
    from jaxresnet.data import policy

    batch = jnp.asarray(np.stack([_known_image(16)] * 32))
    rounds = _recorded_ops(monkeypatch, policy, batch, ops, magnitude)
    table = magnitudes("randaugment", 16)
    assert len(rounds) == ops
    for op, m in rounds:
        np.testing.assert_array_equal(m, table[op, magnitude])  # torchvision's magnitude of that bin
        assert len(set(op.tolist())) > 5  # each image draws its own op


def test_a_larger_magnitude_moves_a_known_image_further():
    """The same draws (ops and signs do not depend on the magnitude) at bins 0, 9 and 30: the images
    change more as the bin grows; at bin 0 only the ops without a magnitude act (autocontrast,
    equalize, and solarize at 255)."""
    batch = jnp.asarray(np.stack([_known_image(16)] * 64))
    change = [float(jnp.abs(apply_policy(batch, jax.random.key(5), "randaugment", 1, m).astype(jnp.float32)
                            - batch.astype(jnp.float32)).mean()) for m in (0, 9, 30)]  # fmt: skip
    assert 0 < change[0] < change[1] < change[2], change
    default = apply_policy(batch, jax.random.key(5), "randaugment")
    np.testing.assert_array_equal(default, apply_policy(batch, jax.random.key(5), "randaugment", 2, 9))


def test_the_torch_mirror_applies_randaugments_ops_and_magnitude(monkeypatch):
    import torch

    from jaxresnet.config import TrainConfig
    from jaxresnet.pytorch import ingredients
    from jaxresnet.pytorch.ingredients import TorchAugment

    seen, pil_op = [], ingredients._pil_op
    monkeypatch.setattr(ingredients, "_pil_op", lambda img, op, m: seen.append((op, abs(m))) or pil_op(img, op, m))
    torch.manual_seed(0)
    aug = TorchAugment(TrainConfig(augment="randaugment", randaugment_ops=3, randaugment_magnitude=20))
    aug.source(torch.from_numpy(np.stack([_known_image(16)] * 4)))
    table = magnitudes("randaugment", 16)
    assert len(seen) == 3 * 4
    assert all(m == pytest.approx(float(table[OPS.index(op), 20])) for op, m in seen), seen


def test_test_images_are_never_augmented():
    spec = StepSpec(8, 16, augment=Augment(crop=2, flip=True, policy="trivialaugment", mixup=0.2))
    assert spec.for_eval(8).augment == Augment() and spec.for_eval(8).ema == 0.0


def test_mixup_blends_the_batch_with_its_roll_and_weights_the_labels_alike():
    x = jnp.arange(4 * 8 * 8 * 3, dtype=jnp.float32).reshape(4, 8, 8, 3)
    mixed, own = mix_batch(x, jax.random.key(1), Augment(mixup=0.4))
    np.testing.assert_allclose(mixed, own * x + (1 - own) * jnp.roll(x, 1, 0), rtol=1e-6)
    assert 0 < float(own) < 1
    # the loss on the mixed batch is the cross-entropy against the equally mixed one-hot targets
    logits, y = jax.random.normal(jax.random.key(2), (4, 10)), jnp.asarray([1, 3, 3, 7])
    targets = own * jax.nn.one_hot(y, 10) + (1 - own) * jax.nn.one_hot(jnp.roll(y, 1), 10)
    ours = own * cross_entropy(logits, y, 0.1) + (1 - own) * cross_entropy(logits, jnp.roll(y, 1), 0.1)
    np.testing.assert_allclose(ours, optax.softmax_cross_entropy(logits, optax.smooth_labels(targets, 0.1)).mean(),
                               rtol=1e-6)  # fmt: skip


def test_cutmix_pastes_one_box_of_the_rolled_batch_and_the_weight_is_its_complement():
    x = jax.random.uniform(jax.random.key(0), (4, 16, 16, 3))
    partner = jnp.roll(x, 1, 0)
    seen = set()
    for k in range(20):
        out, own = mix_batch(x, jax.random.key(k), Augment(cutmix=1.0))
        from_partner = np.asarray((out == partner).all(-1) & (out != x).all(-1))
        box = from_partner[0]
        assert (from_partner == box).all()  # one box, the same for every image
        rows, cols = np.nonzero(box)
        if rows.size:
            assert box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()  # a rectangle
        assert float(own) == pytest.approx(1 - box.mean(), abs=1e-6)
        seen.add(rows.size > 0)
    assert True in seen
    # with both on, each batch takes one or the other
    kinds = set()
    for k in range(20):
        out, own = mix_batch(x, jax.random.key(k), Augment(mixup=0.5, cutmix=1.0))
        kinds.add("mix" if np.allclose(out, own * x + (1 - own) * partner, atol=1e-6) else "cut")
    assert kinds == {"mix", "cut"}


def test_mix_prob_leaves_a_share_of_batches_unmixed_and_the_mixed_ones_as_they_were():
    x = jax.random.uniform(jax.random.key(0), (4, 16, 16, 3))
    mixed = 0
    for k in range(40):
        always = mix_batch(x, jax.random.key(k), Augment(cutmix=1.0))
        out, own = mix_batch(x, jax.random.key(k), Augment(cutmix=1.0, mix_prob=0.5))
        if float(own) == 1.0 and np.array_equal(out, x):
            continue  # left as it is, its own labels only
        mixed += 1
        np.testing.assert_array_equal(out, always[0])  # the same box as with every batch mixed
        assert float(own) == float(always[1])
    assert 8 <= mixed <= 32, mixed  # about half of 40 (binomial: outside this 1 in 10,000)


def test_the_moving_average_follows_its_rule_in_float64():
    """The average after three steps is d^3 p0 + d^2 (1-d) p1 + d (1-d) p2 + (1-d) p3 of the weights
    p_k after step k, to float32 rounding; BatchNorm's statistics are not averaged (they are recomputed
    for the average when it is scored: tests/test_average.py)."""
    rng = np.random.default_rng(0)
    data = DeviceData.put(Split(rng.integers(0, 256, (24, 16, 16, 3), dtype=np.uint8),
                                rng.integers(0, 10, 24).astype(np.int32)))  # fmt: skip
    d, spec = 0.8, StepSpec(8, 16, ema=0.8)
    state = create_train_state(ResNet18(num_classes=10), jax.random.key(0), 16, 0.05, 0.9)
    state = state.replace(ema=jax.tree.map(jnp.array, {"params": state.params, "batch_stats": state.batch_stats}))
    first_stats = jax.device_get(state.batch_stats)
    seen = [jax.device_get(state.params)]  # the state is donated
    for s in range(3):
        state, _ = train_steps(state, zero_metrics(), data.images, data.labels, jax.random.key(1), 1, s, spec)
        seen.append(jax.device_get(state.params))
    weights = [d**3, d**2 * (1 - d), d * (1 - d), 1 - d]
    want = jax.tree.map(lambda *p: sum(w * np.asarray(x, np.float64) for w, x in zip(weights, p)), *seen)
    for got, exact in zip(jax.tree.leaves(state.ema["params"]), jax.tree.leaves(want), strict=True):
        scale = np.abs(exact).max() + 1e-30
        assert np.abs(np.asarray(got, np.float64) - exact).max() <= 1e-6 * scale
    # and it is not simply the weights
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(state.ema["params"]), jax.tree.leaves(seen[-1])))
    for kept, first in zip(jax.tree.leaves(state.ema["batch_stats"]), jax.tree.leaves(first_stats), strict=True):
        np.testing.assert_array_equal(kept, first)
    assert any(not np.allclose(a, b) for a, b in zip(*map(jax.tree.leaves, (first_stats, state.batch_stats))))


def test_a_run_with_every_ingredient_scores_its_average_and_resumes_bit_for_bit(data_dir, tmp_path):
    from jaxresnet.config import TrainConfig
    from jaxresnet.tools.evaluate import Scoring, evaluate_checkpoint
    from jaxresnet.training.checkpoint import load_checkpoint
    from jaxresnet.training.run import train_run

    base = dict(arch="resnet18", resize=16, batch_size=16, train_per_class=4, test_per_class=2, seed=3,
                data_dir=data_dir, download=False, augment="crop,flip,trivialaugment,cutout", mixup=0.2,
                cutmix=1.0, ema=0.9, label_smoothing=0.1)  # fmt: skip
    whole = train_run(TrainConfig(epochs=2, **base), str(tmp_path / "whole"), progress=False)
    train_run(TrainConfig(epochs=1, **base), str(tmp_path / "part"), progress=False)
    resumed = train_run(TrainConfig(epochs=2, **base), str(tmp_path / "part"), progress=False)
    for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(whole.state)):
        np.testing.assert_array_equal(a, b)
    saved = load_checkpoint(str(tmp_path / "whole"))
    assert saved.state.ema is not None
    for a, b in zip(jax.tree.leaves(saved.state.ema), jax.tree.leaves(whole.state.ema)):
        np.testing.assert_array_equal(a, b)
    # scored with statistics recomputed for the average (not the initial ones it started with), which
    # evaluate.py recomputes alike: the run's accuracy again
    assert all(not np.allclose(v, 1.0) for v in jax.tree.leaves(saved.state.ema["batch_stats"]["bn1"]))
    report = evaluate_checkpoint(str(tmp_path / "whole"), "latest", Scoring(data_dir=data_dir, download=False))
    assert report.accuracy == whole.history[-1]["test_accuracy"]


@pytest.mark.parametrize("args, message", [
    (["--mixup", "-1"], "--mixup must be a number >= 0, got -1.0"),
    (["--cutmix", "-0.5"], "--cutmix must be a number >= 0, got -0.5"),
    (["--ema", "1"], "--ema must be in [0, 1), got 1.0"),
    (["--mix-prob", "0"], "--mix-prob must be positive, got 0.0"),
    (["--mix-prob", "1.5"], "--mix-prob must be in (0, 1], got 1.5"),
    (["--augment", "trivialaugment,randaugment"], "--augment must be none or a comma-separated list of crop, flip, "
                                                  "trivialaugment, randaugment, cutout"),
    (["--randaugment-ops", "0"], "--randaugment-ops must be an integer >= 1, got 0"),
    (["--randaugment-magnitude", "-1"], "--randaugment-magnitude must be an integer >= 0, got -1"),
    (["--randaugment-magnitude", "31"], "--randaugment-magnitude must be a bin of 0-30, got 31"),
    (["--randaugment-magnitude", "x"], "--randaugment-magnitude"),
    (["--augment", "crop,trivialaugment", "--randaugment-ops", "3"],
     "--randaugment-ops and --randaugment-magnitude need randaugment in --augment"),
    (["--recipe", "improved", "--augment", "crop,flip", "--randaugment-magnitude", "12"],
     "--randaugment-ops and --randaugment-magnitude need randaugment in --augment"),
])  # fmt: skip
def test_bad_values_exit_2_with_one_line(refused, args, message):
    refused(args, message)


def test_the_torch_mirror_applies_the_policy_and_mixes_alike():
    import torch

    from jaxresnet.config import TrainConfig
    from jaxresnet.pytorch.ingredients import TorchAugment

    torch.manual_seed(0)
    aug = TorchAugment(TrainConfig(augment="trivialaugment", mixup=0.4, cutmix=1.0))
    raw = torch.from_numpy(np.stack([_known_image(16)] * 8))
    out = aug.source(raw)
    assert out.shape == raw.shape and out.dtype == torch.uint8 and (out != raw).any()
    x = torch.rand(8, 3, 16, 16)
    kinds = set()
    for _ in range(20):
        mixed, own = aug.mix(x)
        partner = x.roll(1, 0)
        if torch.allclose(mixed, own * x + (1 - own) * partner, atol=1e-6):
            kinds.add("mix")
            continue
        box = (mixed != x).any(1)  # (n, h, w): where it came from the partner
        assert (box == box[0]).all() and torch.equal(mixed[:, :, box[0]], partner[:, :, box[0]])
        assert own == pytest.approx(1 - float(box[0].float().mean()))
        kinds.add("cut")
    assert kinds == {"mix", "cut"}
    half = TorchAugment(TrainConfig(cutmix=1.0, mix_prob=0.5))
    unmixed = sum(half.mix(x)[1] is None for _ in range(40))  # left as it is: no partner's label
    assert 8 <= unmixed <= 32, unmixed
