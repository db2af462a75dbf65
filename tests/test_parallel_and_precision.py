"""Data parallelism over several devices, and bfloat16 mixed precision."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
from conftest import ROOT

from jaxresnet.data import balanced_subset
from jaxresnet.models import ResNet18
from jaxresnet.training.loop import DeviceData, StepSpec, train_epoch
from jaxresnet.training.state import create_train_state

# In float64, one device and two differ only by the order of a few sums (about 1e-16 relative, grown
# by two training steps to 1e-13 at most), so the bound of 1e-9 holds on any CPU, while a sharding
# bug (a per-device BatchNorm statistic, a gradient not all-reduced) moves parameters by 1e-3 or more.
# In float32 the same comparison measures the CPU's rounding: 3e-3 on an Intel Xeon against 1e-4 on
# an AMD EPYC for one BatchNorm bias made only of accumulated updates.
TWO_DEVICES = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    from jaxresnet.data import Split
    from jaxresnet.models import ResNet18
    from jaxresnet.training.loop import DeviceData, StepSpec, predict, train_epoch
    from jaxresnet.training.parallel import data_mesh, replicate
    from jaxresnet.training.state import create_train_state

    assert jax.device_count() == 2, jax.devices()
    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 64).astype(np.int32))
    model = ResNet18(num_classes=10, dtype=jnp.float64, param_dtype=jnp.float64)

    def run(mesh):
        data = DeviceData.put(split, mesh)
        state = replicate(create_train_state(model, jax.random.key(0), 32, 0.01, 0.9), mesh)
        # One epoch of 2 steps: momentum and the running statistics take part.
        spec = StepSpec(32, 32, jnp.float64, mesh)
        state, result = train_epoch(state, data, jax.random.key(1), 1, spec)
        return state, result, predict(state, data, spec.for_eval(32))

    def max_rel(a, b):
        return max(float(np.max(np.abs(x - y)) / (np.max(np.abs(y)) + 1e-300))
                   for x, y in zip(jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b))))

    one, r1, p1 = run(None)
    two, r2, p2 = run(data_mesh())
    assert {x.dtype for x in jax.tree.leaves(one.params)} == {np.dtype("float64")}
    # The batch really is split: the step's input lives on both devices, half each.
    x = two.params["fc2"]["kernel"]
    assert len(x.sharding.device_set) == 2, x.sharding
    def tree_rel(a, b):  # against the tree's largest value: the stem conv's bias, followed by a
        # BatchNorm, has a gradient (and momentum) of exactly zero but for rounding, ~1e-17
        a, b = jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b))
        return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b)) / max(float(np.max(np.abs(y))) for y in b)

    rel, srel, orel = max_rel(two.params, one.params), max_rel(two.batch_stats, one.batch_stats), \
        tree_rel(two.opt_state, one.opt_state)
    print("REL", rel, srel, orel, r1.train_loss, r2.train_loss)
    assert rel < 1e-9 and srel < 1e-9 and orel < 1e-9, (rel, srel, orel)
    # and training moved them: the comparison is not of two untouched initialisations
    assert max_rel(one.params, create_train_state(model, jax.random.key(0), 32, 0.01, 0.9).params) > 1e-4
    assert abs(r1.train_loss - r2.train_loss) < 1e-9 * abs(r1.train_loss)
    assert (p1 == p2).all()
    assert int(two.step) == 2
""")


def test_data_parallel_over_two_devices_matches_one():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", TWO_DEVICES], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "REL" in proc.stdout


def test_bfloat16_mixed_precision_trains(cifar):
    train, _ = cifar
    small = DeviceData.put(train.take(balanced_subset(train.labels, 4, seed=1)))  # 40 real images
    state = create_train_state(ResNet18(num_classes=10, dtype=jnp.bfloat16), jax.random.key(0), 32, 0.01, 0.9)
    losses, accs = [], []
    for epoch in range(1, 16):
        state, result = train_epoch(state, small, jax.random.key(1), epoch, StepSpec(40, 32, jnp.bfloat16))
        losses.append(result.train_loss)
        accs.append(result.train_accuracy)
        if result.train_accuracy >= 95:
            break
    assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}
    assert {x.dtype for x in jax.tree.leaves(state.batch_stats)} == {jnp.dtype(jnp.float32)}
    assert np.isfinite(losses).all() and losses[-1] < 0.75 * losses[0], losses
    assert max(accs) >= 95, accs
