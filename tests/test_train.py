import jax
import numpy as np
import pytest

from jaxresnet.data import Split, balanced_subset
from jaxresnet.models import ResNet18, ResNet34
from jaxresnet.training.loop import DeviceData, NonFiniteLoss, StepSpec, epoch_permutation, predict, train_epoch
from jaxresnet.training.state import create_train_state


def test_overfits_a_few_dozen_real_images(cifar):
    train, _ = cifar
    small = DeviceData.put(train.take(balanced_subset(train.labels, 4, seed=0)))  # 40 images
    state = create_train_state(ResNet34(num_classes=10), jax.random.key(0), 32, lr=0.01, momentum=0.9)
    key = jax.random.key(1)
    history = []
    for epoch in range(1, 31):  # 30 full-batch steps at most
        state, result = train_epoch(state, small, key, epoch, StepSpec(40, 32))
        history.append(result.train_accuracy)
        if result.train_accuracy >= 95.0:
            break
    assert history[0] < 50.0, history  # it starts near chance...
    assert max(history) >= 95.0, history  # ...and memorises the 40 images
    print("train accuracy per step:", history)


def test_every_example_once_per_epoch_with_a_fresh_order():
    key = jax.random.key(0)
    p1, p2 = np.asarray(epoch_permutation(key, 1, 50)), np.asarray(epoch_permutation(key, 2, 50))
    assert sorted(p1.tolist()) == list(range(50)) and not np.array_equal(p1, p2)
    np.testing.assert_array_equal(p1, epoch_permutation(key, 1, 50))


def test_remainder_batch_is_trained_and_every_test_image_scored():
    rng = np.random.default_rng(0)
    data = DeviceData.put(
        Split(rng.integers(0, 256, (23, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 23).astype(np.int32))
    )
    state = create_train_state(ResNet18(num_classes=10), jax.random.key(0), 16, 0.01, 0.9)
    state, result = train_epoch(state, data, jax.random.key(1), 1, StepSpec(10, 16))
    assert result.steps == 3 and int(state.step) == 3  # 10 + 10 + 3
    preds = predict(state, data, StepSpec(10, 16))  # 10 + 10 + 3 (padded, then dropped)
    assert preds.shape == (23,) and set(preds.tolist()) <= set(range(10))


def test_non_finite_loss_stops_with_epoch_and_step():
    rng = np.random.default_rng(0)
    data = DeviceData.put(
        Split(rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 40).astype(np.int32))
    )
    state = create_train_state(ResNet18(num_classes=10), jax.random.key(0), 16, lr=1e30, momentum=0.9)
    with pytest.raises(NonFiniteLoss, match=r"epoch 1, step [2-4] of 4"):
        train_epoch(state, data, jax.random.key(1), 1, StepSpec(10, 16))


def test_progress_bar_shows_step_rate_and_eta():
    import io

    from jaxresnet.training.progress import Progress

    rng = np.random.default_rng(0)
    data = DeviceData.put(
        Split(rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 30).astype(np.int32))
    )
    state = create_train_state(ResNet18(num_classes=10), jax.random.key(0), 16, 0.01, 0.9)
    stream = io.StringIO()
    bar = Progress(1, 1, 10, stream, enabled=True)
    train_epoch(state, data, jax.random.key(1), 1, StepSpec(10, 16), on_call=bar)
    bar.close()
    text = stream.getvalue()
    assert "step 3/3" in text and "img/s" in text and "ETA" in text
    quiet = io.StringIO()
    Progress(1, 1, 10, quiet)(None)  # not a terminal: draws nothing, touches nothing
    assert quiet.getvalue() == ""


def test_torch_baseline_sees_the_same_batches():
    """train_torch.py visits the examples in the JAX run's order, epoch by epoch, for a seed."""
    from jaxresnet.pytorch.train import epoch_order
    from jaxresnet.training.state import seed_keys

    for epoch in (1, 2):
        np.testing.assert_array_equal(
            epoch_order(7, epoch, 50), np.asarray(epoch_permutation(seed_keys(7)[1], epoch, 50))
        )
    assert not np.array_equal(epoch_order(7, 1, 50), epoch_order(8, 1, 50))


def test_several_steps_per_call_train_exactly_as_one_per_call():
    """`steps` > 1 runs full steps as one lax.scan; the remainder and the smaller last batch one by one.
    On CPU the scan's body compiles to the same arithmetic: the parameters come out bit for bit."""
    rng = np.random.default_rng(0)
    data = DeviceData.put(
        Split(rng.integers(0, 256, (45, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 45).astype(np.int32))
    )
    model = ResNet18(num_classes=10)
    runs = {}
    for chunk in (1, 2, 4):
        seen, after = [], []
        state = create_train_state(model, jax.random.key(0), 16, 0.01, 0.9)

        def on_call(call, seen=seen, after=after):
            seen.append((call.step, call.steps))
            after.append((call.position().step, call.last, call.done))

        state, result = train_epoch(state, data, jax.random.key(1), 1, StepSpec(10, 16, steps=chunk), on_call=on_call)
        runs[chunk] = (jax.device_get(state.params), result, seen, after, int(state.step))
    one = runs[1]
    assert one[2] == [(s, 5) for s in range(1, 6)]
    # 4 full steps and a last batch of 5: chunks of 2 give 2+2+1 calls, of 4 give 4+1
    assert runs[2][2] == [(2, 5), (4, 5), (5, 5)] and runs[4][2] == [(4, 5), (5, 5)]
    assert runs[2][3] == [(2, False, 2), (4, False, 2), (5, True, 1)]
    for chunk in (2, 4):
        params, result, _, _, steps = runs[chunk]
        assert steps == 5
        assert result.train_loss == one[1].train_loss and result.train_accuracy == one[1].train_accuracy
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(one[0])):
            np.testing.assert_array_equal(a, b)


def test_steps_per_call_auto_is_a_divisor_of_the_epoch_but_one_on_cpu_at_large_resizes(monkeypatch):
    from jaxresnet.training import loop

    assert loop.steps_per_call(0, 156, resize=128) == 1  # this CPU at the reference's resize
    assert loop.steps_per_call(0, 156, resize=32) == 13  # 5,000 images in batches of 32: 156 = 12 x 13
    assert loop.steps_per_call(8, 156) == 8 and loop.steps_per_call(500, 156) == 156
    monkeypatch.setattr(loop.jax, "default_backend", lambda: "gpu")
    assert loop.steps_per_call(0, 156, resize=128) == 13
    assert loop.steps_per_call(0, 97) == 1  # a prime count: one step per call
