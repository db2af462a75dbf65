"""The recipe beyond the reference: on-device augmentation, torch's optimizer and schedules in optax,
label smoothing, flip test-time augmentation, --eval-every, and resuming such a run."""

import dataclasses
import functools
import io

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from jaxresnet.config import ConfigError, TrainConfig
from jaxresnet.data import Split, preprocess
from jaxresnet.data.augment import (
    Augment,
    augment_resized,
    augment_source,
    cutout_mask,
    epoch_key,
    random_crop,
    random_flip,
    step_key,
    tta_views,
)
from jaxresnet.models import ResNet18
from jaxresnet.models.layers import BatchNorm, Conv
from jaxresnet.pytorch.ingredients import TorchAugment, make_torch_optimizer
from jaxresnet.training.checkpoint import load_checkpoint
from jaxresnet.training.loop import DeviceData, StepSpec, predict, train_epoch
from jaxresnet.training.optimizer import learning_rate_at, make_optimizer
from jaxresnet.training.run import train_run
from jaxresnet.training.state import create_train_state, cross_entropy


def _images(n=6, h=12, w=10, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


# -- augmentation -------------------------------------------------------------------------------------
def test_crop_is_a_pure_shift_with_reflected_borders():
    x, pad = _images(), 3
    key = jax.random.key(7)
    out = np.asarray(random_crop(jnp.asarray(x), key, pad))
    offsets = np.asarray(jax.random.randint(key, (len(x), 2), 0, 2 * pad + 1))  # the draws random_crop makes
    assert len({tuple(o) for o in offsets}) > 1
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    h, w = x.shape[1:3]
    for i, (oy, ox) in enumerate(offsets):
        np.testing.assert_array_equal(out[i], padded[i, oy : oy + h, ox : ox + w])
        dy, dx = oy - pad, ox - pad  # the shift: out[y, x] = source[y + dy, x + dx] wherever that is inside
        ys, xs = slice(max(0, -dy), min(h, h - dy)), slice(max(0, -dx), min(w, w - dx))
        np.testing.assert_array_equal(out[i, ys, xs], x[i, ys.start + dy : ys.stop + dy, xs.start + dx : xs.stop + dx])


def test_flip_is_exact_and_about_half_the_images():
    x = _images(n=64)
    out = np.asarray(random_flip(jnp.asarray(x), jax.random.key(3)))
    flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x)]
    kept = [np.array_equal(o, i) for o, i in zip(out, x)]
    assert all(f != k for f, k in zip(flipped, kept))  # each image exactly one of the two
    assert 16 <= sum(flipped) <= 48


def test_cutout_zeroes_the_stated_square_and_nothing_else():
    n, h, w, size = 16, 20, 20, 6
    mask = np.asarray(cutout_mask(jax.random.key(5), n, h, w, size))[..., 0]
    for m in mask:
        ys, xs = np.nonzero(~m)
        assert ys.max() - ys.min() + 1 <= size and xs.max() - xs.min() + 1 <= size
        inside = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        assert (~m).sum() == inside  # a filled rectangle: the square, clipped at the border
    assert max((~m).sum() for m in mask) == size * size
    x = jnp.asarray(np.random.default_rng(0).normal(size=(n, h, w, 3)).astype(np.float32)) + 5.0  # never 0
    aug = Augment(cutout=3)  # 3 source pixels of 10 -> 6 of 20
    out = np.asarray(augment_resized(x, jax.random.key(5), aug, source_size=10))
    m = np.asarray(cutout_mask(jax.random.fold_in(jax.random.key(5), 1), n, h, w, size))
    np.testing.assert_array_equal(out, np.where(m, np.asarray(x), 0.0))


def test_draws_are_a_function_of_seed_epoch_and_step():
    x = jnp.asarray(_images(n=8))
    aug = Augment(crop=2, flip=True)
    key = jax.random.key(0)

    def draw(epoch, step):
        return np.asarray(augment_source(x, step_key(epoch_key(key, epoch), step), aug))

    np.testing.assert_array_equal(draw(3, 5), draw(3, 5))
    assert not np.array_equal(draw(3, 5), draw(3, 6)) and not np.array_equal(draw(3, 5), draw(4, 5))


def test_torch_augmentations_are_of_the_same_kinds():
    torch.manual_seed(0)
    aug = TorchAugment(TrainConfig(augment="crop,flip,cutout", crop_padding=2, cutout_size=4))
    x = torch.from_numpy(_images(n=32, h=10, w=10))
    out = aug.source(x).numpy()
    padded = np.pad(x.numpy(), ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    for o, p in zip(out, padded):  # each is a reflect-padded shift, possibly mirrored
        windows = [p[a : a + 10, b : b + 10] for a in range(5) for b in range(5)]
        assert any(np.array_equal(o, wnd) or np.array_equal(o, wnd[:, ::-1]) for wnd in windows)
    y = aug.resized(torch.ones(32, 3, 20, 20), source_size=10)
    assert {int((y[i, 0] == 0).sum()) for i in range(32)} <= set(range(1, 65)) and (y == 0).any()
    assert (y[:, 0] == 0).sum() > 0 and torch.equal(y[:, 0] == 0, y[:, 2] == 0)


# -- optimizer, schedules, loss ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "schedule, warmup_epochs",
    [("constant", 0), ("constant", 2), ("cosine", 0), ("cosine", 1.5), ("onecycle", 0), ("onecycle", 3)],
)
def test_schedules_match_torch_at_every_step(schedule, warmup_epochs):
    config = TrainConfig(lr=0.1, epochs=10, batch_size=10, schedule=schedule, warmup_epochs=warmup_epochs)
    n = 73  # 8 steps an epoch, the last of 3 images
    steps_per_epoch = -(-n // config.batch_size)
    opt, scheduler = make_torch_optimizer([torch.nn.Parameter(torch.zeros(1))], config, steps_per_epoch)
    total = config.epochs * steps_per_epoch
    theirs = []
    for _ in range(total):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        if scheduler is not None:
            scheduler.step()
    ours = [learning_rate_at(config, steps_per_epoch, k) for k in range(total)]
    # optax evaluates in float32 (1e-6 of lr at most); a step off by one moves a value by 1e-4 of lr or more
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6 * config.lr)
    assert max(ours) == pytest.approx(0.1, rel=1e-6)


def _sgd_reference(w, grads, lr, momentum, wd, nesterov):
    """torch.optim.SGD's update rule, written out in float64."""
    buf = None
    for g in grads:
        g = g + wd * w
        buf = g if buf is None else momentum * buf + g
        w = w - lr * (g + momentum * buf if nesterov else buf)
    return w


def test_sgd_with_weight_decay_and_nesterov_matches_torch():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(5, 4)).astype(np.float32)
    grads = [rng.normal(size=(5, 4)).astype(np.float32) for _ in range(3)]
    lr, m, wd = 0.05, 0.9, 5e-4
    want = _sgd_reference(w0.astype(np.float64), [g.astype(np.float64) for g in grads], lr, m, wd, True)

    tx = make_optimizer(lr, m, weight_decay=wd, nesterov=True)
    params, state = jnp.asarray(w0), None
    state = tx.init(params)
    for g in grads:
        updates, state = tx.update(jnp.asarray(g), state, params)
        params = optax.apply_updates(params, updates)

    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = torch.optim.SGD([p], lr=lr, momentum=m, weight_decay=wd, nesterov=True)
    for g in grads:
        p.grad = torch.from_numpy(g.copy())
        opt.step()
    # both within float32 rounding of the float64 rule (values about 1; a missed decay moves them 1e-4)
    np.testing.assert_allclose(np.asarray(params), want, rtol=0, atol=2e-6)
    np.testing.assert_allclose(p.detach().numpy(), want, rtol=0, atol=2e-6)
    without_decay = _sgd_reference(w0.astype(np.float64), [g.astype(np.float64) for g in grads], lr, m, 0, True)
    assert np.abs(without_decay - want).max() > 1e-5


def test_no_bias_decay_decays_only_the_weights_as_torch_parameter_groups_do():
    rng = np.random.default_rng(2)
    w0 = {
        "conv": {"kernel": rng.normal(size=(3, 3, 2, 4))},
        "bn": {"scale": rng.normal(size=4), "bias": rng.normal(size=4)},
        "fc": {"kernel": rng.normal(size=(4, 3)), "bias": rng.normal(size=3)},
    }
    grads = [jax.tree.map(lambda w: rng.normal(size=w.shape), w0) for _ in range(3)]
    lr, m, wd = 0.05, 0.9, 0.05  # a decay large enough that decaying a 1-d parameter shows

    def reference(path, w):
        decay = wd if path[-1].key == "kernel" else 0.0
        at = lambda tree: tree[path[0].key][path[1].key]  # noqa: E731
        return _sgd_reference(w, [at(g) for g in grads], lr, m, decay, True)

    want = jax.tree_util.tree_map_with_path(reference, w0)
    f32 = lambda tree: jax.tree.map(lambda a: np.asarray(a, np.float32), tree)  # noqa: E731

    def optax_run(bias_decay):
        tx = make_optimizer(lr, m, weight_decay=wd, nesterov=True, bias_decay=bias_decay)
        params = jax.tree.map(jnp.asarray, f32(w0))
        state = tx.init(params)
        for g in grads:
            updates, state = tx.update(jax.tree.map(jnp.asarray, f32(g)), state, params)
            params = optax.apply_updates(params, updates)
        return params

    config = TrainConfig(lr=lr, momentum=m, weight_decay=wd, nesterov=True, bias_decay=False)
    leaves, tree = jax.tree.flatten(f32(w0))
    ps = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in leaves]
    opt, _ = make_torch_optimizer(ps, config, steps_per_epoch=1)
    for g in grads:
        for p, gl in zip(ps, jax.tree.leaves(f32(g))):
            p.grad = torch.from_numpy(gl.copy())
        opt.step()
    torch_params = jax.tree.unflatten(tree, [p.detach().numpy() for p in ps])
    for got in (optax_run(False), torch_params):
        jax.tree.map(lambda g, w: np.testing.assert_allclose(np.asarray(g), w, rtol=0, atol=1e-5), got, want)
    # the default decays the 1-d parameters too (torch SGD's one group): they move by about lr*wd*|p|
    decayed = optax_run(True)
    assert np.abs(np.asarray(decayed["bn"]["scale"]) - want["bn"]["scale"]).max() > 1e-3
    np.testing.assert_allclose(np.asarray(decayed["conv"]["kernel"]), want["conv"]["kernel"], rtol=0, atol=1e-5)


def test_zero_init_residual_zeroes_each_blocks_last_scale_in_both_frameworks():
    from flax.traverse_util import flatten_dict

    from jaxresnet.models.resnet import BasicBlock
    from jaxresnet.pytorch.convert import torch_to_flax
    from jaxresnet.pytorch.ingredients import zero_init_residual
    from jaxresnet.pytorch.reference import TorchResNet18

    x = jnp.zeros((1, 32, 32, 3))
    plain = ResNet18(num_classes=10).init(jax.random.key(0), x)
    zeroed = ResNet18(num_classes=10, zero_init_residual=True).init(jax.random.key(0), x)
    flat_plain = dict(jax.tree_util.tree_flatten_with_path(plain)[0])
    flat_zeroed = dict(jax.tree_util.tree_flatten_with_path(zeroed)[0])
    changed = {jax.tree_util.keystr(k) for k in flat_plain if not np.array_equal(flat_plain[k], flat_zeroed[k])}
    assert changed == {f"['params']['layer{i}_{j}']['bn2']['scale']" for i in range(1, 5) for j in range(2)}
    assert all(
        not np.asarray(flat_zeroed[k]).any() for k in flat_zeroed if "'bn2']['scale']" in jax.tree_util.keystr(k)
    )

    # torch: the same eight scales at 0, every other BatchNorm scale at 1
    model = TorchResNet18()
    zero_init_residual(model)
    flat = flatten_dict(torch_to_flax(model.state_dict())["params"], sep="/")
    scales = {k: np.asarray(v) for k, v in flat.items() if k.endswith("/scale")}
    assert {k for k, v in scales.items() if not v.any()} == {
        f"layer{i}_{j}/bn2/scale" for i in range(1, 5) for j in range(2)
    }
    assert sum(bool((v == 1).all()) for v in scales.values()) == len(scales) - 8

    # a zero-initialised block is its shortcut followed by ReLU, whatever its branch's conv weights
    rng = np.random.default_rng(3)
    conv = functools.partial(Conv, impl="xla")
    norm = functools.partial(BatchNorm, use_running_average=False, impl="xla")
    for strides in (1, 2):
        block = BasicBlock(8, conv=conv, norm=norm, strides=strides, zero_init_residual=True)
        h = jnp.asarray(rng.normal(size=(2, 6, 6, 8)), jnp.float32)
        variables = block.init(jax.random.key(1), h)
        y, _ = block.apply(variables, h, mutable=["batch_stats"])
        other = jax.tree_util.tree_map_with_path(
            lambda k, v: v * 3 + 1 if "conv1" in jax.tree_util.keystr(k) or "conv2" in jax.tree_util.keystr(k) else v,
            variables,
        )
        y_other, _ = block.apply(other, h, mutable=["batch_stats"])
        np.testing.assert_array_equal(np.asarray(y), np.asarray(y_other))
        assert float(y.min()) == 0 and float(y.max()) > 0
        if strides == 1:
            np.testing.assert_array_equal(np.asarray(y), np.maximum(np.asarray(h), 0))


def test_label_smoothed_loss_matches_torch():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(16, 10)) * 3
    labels = rng.integers(0, 10, 16)
    want = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    got = float(cross_entropy(jnp.asarray(logits, jnp.float32), jnp.asarray(labels), 0.1))
    plain = float(cross_entropy(jnp.asarray(logits, jnp.float32), jnp.asarray(labels)))
    assert got == pytest.approx(want, rel=1e-6) and abs(got - plain) > 1e-2


# -- the run ---------------------------------------------------------------------------------------
def _tiny_data(n=30, seed=0):
    rng = np.random.default_rng(seed)
    return Split(rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int32))


def test_flip_tta_averages_the_mirrored_logits_and_test_images_are_not_augmented():
    model = ResNet18(num_classes=10)
    state = create_train_state(model, jax.random.key(0), 16, 0.01, 0.9)
    data = DeviceData.put(_tiny_data())
    state, _ = train_epoch(
        state, data, jax.random.key(1), 1, StepSpec(10, 16, augment=Augment(crop=2, flip=True, cutout=4))
    )
    x = preprocess(data.images, 16)  # the test path: preprocessing only
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    plain = model.apply(variables, x, train=False)
    mirrored = model.apply(variables, x[:, :, ::-1], train=False)
    # Compared where the two best classes are apart by more than rounding (the jitted and the eager
    # forward pass round differently; a barely trained network has near-ties)
    for got, logits in [
        (predict(state, data, StepSpec(30, 16)), plain),
        (predict(state, data, StepSpec(30, 16, tta="flip")), (plain + mirrored) / 2),
    ]:
        top2 = np.sort(np.asarray(logits), -1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 1e-4 * np.abs(np.asarray(logits)).max()
        assert clear.sum() >= 20, clear.sum()
        np.testing.assert_array_equal(got[clear], np.argmax(logits, -1)[clear])
    assert (np.argmax(plain, -1) != np.argmax((plain + mirrored) / 2, -1)).any()  # TTA changes something


def test_flip_shift_views_are_one_pixel_shifts_with_reflected_borders_in_both_frameworks():
    images = np.random.default_rng(0).integers(0, 256, (2, 5, 6, 3), dtype=np.uint8)
    views = tta_views(jnp.asarray(images), "flip-shift")
    assert [w for w, _ in views] == [0.5, 0.25, 0.25]
    same, up_left, down_right = (np.asarray(v) for _, v in views)
    np.testing.assert_array_equal(same, images)
    # view[i, j] = image[i - 1, j - 1] (up-left padding) and image[i + 1, j + 1], rows and columns
    # beyond the border reflected (-1 -> 1, h -> h - 2)
    rows, cols = np.arange(5), np.arange(6)
    reflect = lambda i, n: np.abs(i) if i < n else 2 * (n - 1) - i  # noqa: E731
    for view, d in [(up_left, -1), (down_right, 1)]:
        for i in rows:
            for j in cols:
                np.testing.assert_array_equal(view[:, i, j], images[:, reflect(i + d, 5), reflect(j + d, 6)])
    for tta in ("none", "flip"):
        ((weight, view),) = tta_views(images, tta, np)
        assert weight == 1.0 and view is images
    for (w1, a), (w2, b) in zip(views, tta_views(images, "flip-shift", np)):  # the torch baseline's views
        assert w1 == w2
        np.testing.assert_array_equal(np.asarray(a), b)


def test_flip_shift_tta_averages_six_passes_with_airbench_weights():
    model = ResNet18(num_classes=10)
    state = create_train_state(model, jax.random.key(0), 16, 0.01, 0.9)
    data = DeviceData.put(_tiny_data())
    state, _ = train_epoch(state, data, jax.random.key(1), 1, StepSpec(10, 16, augment=Augment(crop=2, flip=True)))
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    source = np.asarray(data.images)
    padded = np.pad(source, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")

    def both(images):  # float64 sum of a view and its mirror, from eager passes
        x = preprocess(jnp.asarray(images), 16)
        return (
            np.float64(model.apply(variables, x, train=False)) + model.apply(variables, x[:, :, ::-1], train=False)
        ) / 2

    expected = 0.5 * both(source) + 0.25 * both(padded[:, :16, :16]) + 0.25 * both(padded[:, 2:, 2:])
    flip_only = both(source)
    got = predict(state, data, StepSpec(30, 16, tta="flip-shift"))
    top2 = np.sort(expected, -1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-4 * np.abs(expected).max()
    assert clear.sum() >= 20, clear.sum()
    np.testing.assert_array_equal(got[clear], np.argmax(expected, -1)[clear])
    assert (np.argmax(expected, -1) != np.argmax(flip_only, -1)).any()  # the shifts change something


RECIPE = dict(
    arch="resnet18",
    resize=16,
    batch_size=10,
    train_per_class=2,
    test_per_class=1,
    augment="crop,flip,cutout",
    weight_decay=5e-4,
    nesterov=True,
    schedule="cosine",
    warmup_epochs=1,
    label_smoothing=0.1,
    tta="flip",
    eval_every=2,
    download=False,
    checkpoint_minutes=0,
)


def test_a_recipe_run_resumes_bit_for_bit_and_refuses_a_changed_recipe(data_dir, tmp_path):
    config = TrainConfig(epochs=3, data_dir=data_dir, **RECIPE)  # 2 steps an epoch
    whole = train_run(config, str(tmp_path / "whole"), out=io.StringIO(), err=io.StringIO(), progress=False)
    out = io.StringIO()
    # Stopped after epoch 2 (a process killed then would restart from that checkpoint), then continued.
    train_run(config, str(tmp_path / "parts"), out=io.StringIO(), err=io.StringIO(), progress=False)
    parts_dir = str(tmp_path / "parts")
    import shutil

    shutil.rmtree(tmp_path / "parts" / "checkpoints" / "3")
    resumed = train_run(config, parts_dir, out=out, err=io.StringIO(), progress=False)
    assert out.getvalue().startswith("Epoch 3/3\n") and "Test Accuracy" in out.getvalue()
    a, b = load_checkpoint(str(tmp_path / "whole")), load_checkpoint(parts_dir)
    for x, y in zip(
        jax.tree.leaves((a.state.params, a.state.opt_state)), jax.tree.leaves((b.state.params, b.state.opt_state))
    ):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    h = whole.history
    assert [e["test_accuracy"] is None for e in h] == [True, False, False]  # every 2nd epoch and the last
    assert [e["learning_rate"] for e in h] == [e["learning_rate"] for e in resumed.history]
    # 2 steps an epoch: warm-up from lr/100 over steps 0-1, then cosine over steps 2-5 (each epoch's last step)
    assert [e["learning_rate"] for e in h] == pytest.approx(
        [0.00505, 0.01 * (1 + np.cos(np.pi / 4)) / 2, 0.01 * (1 + np.cos(3 * np.pi / 4)) / 2], rel=1e-5
    )
    # TensorBoard events: every scalar of metrics.json, at step = epoch (the resumed run adds epoch 3 again)
    scalars = _events(tmp_path / "whole" / "tensorboard")
    assert scalars["accuracy/train"] == [(e["epoch"], pytest.approx(e["train_accuracy"])) for e in h]
    assert scalars["accuracy/test"] == [(e["epoch"], pytest.approx(e["test_accuracy"])) for e in h[1:]]
    assert [s for s, _ in scalars["learning_rate"]] == [1, 2, 3] and "speed/train_images_per_s" in scalars
    assert [s for s, _ in _events(tmp_path / "parts" / "tensorboard")["loss/train"]] == [1, 2, 3, 3]
    for flag, change in [
        ("--label-smoothing", dict(label_smoothing=0.2)),
        ("--augment", dict(augment="flip")),
        ("--schedule", dict(schedule="onecycle")),
        ("--epochs", dict(epochs=5)),
    ]:
        with pytest.raises(ConfigError, match=flag):
            train_run(dataclasses.replace(config, **change), parts_dir, out=io.StringIO(), err=io.StringIO())


def _events(folder):
    """{tag: [(step, value)]} from the TensorBoard event files in `folder` (TFRecord framing, read by hand)."""
    import os
    import struct

    from tensorboardX.proto import event_pb2

    scalars = {}
    for name in sorted(os.listdir(folder)):
        data = open(os.path.join(folder, name), "rb").read()
        i = 0
        while i < len(data):
            (length,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + length])
            i += 12 + length + 4
            for v in event.summary.value:
                scalars.setdefault(v.tag, []).append((event.step, v.simple_value))
    return scalars


def test_recipe_presets_resolve_and_an_explicit_flag_wins():
    from jaxresnet.cli.args import experiment_config
    from jaxresnet.cli.train import build_parser
    from jaxresnet.cli.train_torch import build_parser as torch_parser
    from jaxresnet.data.resolution import resize_at
    from jaxresnet.recipes import RECIPES

    def resolve(parser, argv):
        return experiment_config(parser, parser.parse_args(argv), argv)

    assert resolve(build_parser(), []) == TrainConfig()  # the reference: today's defaults, exactly
    improved = resolve(build_parser(), ["--recipe", "improved"])
    assert improved.recipe == "improved" and all(getattr(improved, k) == v for k, v in RECIPES["improved"].items())
    for name, preset in RECIPES.items():  # every preset is a valid experiment for both frameworks
        for parser in (build_parser(), torch_parser()):
            resolved = resolve(parser, ["--recipe", name]).validate()
            assert resolved.recipe == name and all(getattr(resolved, k) == v for k, v in preset.items())
    mixed = resolve(build_parser(), ["--recipe", "improved", "--epochs", "12", "--lr=0.2", "--augment", "none"])
    assert (mixed.epochs, mixed.lr, mixed.augment, mixed.schedule) == (12, 0.2, "none", RECIPES["improved"]["schedule"])
    # the preset's resize stage is a share of --epochs, so it scales with an explicit --epochs
    assert [resize_at(mixed.validate(), e) for e in range(1, 13)] == [32] * 5 + [48] * 7
    # a boolean of the preset can be turned either way
    assert resolve(build_parser(), ["--recipe", "improved", "--no-nesterov"]).nesterov is False
    assert resolve(build_parser(), ["--recipe", "reference", "--nesterov"]).nesterov is True
    # the torch baseline resolves the same flags the same way
    assert resolve(torch_parser(), ["--recipe", "improved", "--epochs", "12"]) == dataclasses.replace(
        improved, epochs=12
    )
